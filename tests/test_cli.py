"The fastsom command: end to end in subprocesses, bad inputs in-process, output folders, crash safety, safe model files."
import configparser, copy, json, math, os, shutil, signal, subprocess, sys, time
from functools import partial
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
import fastsom.cli as cli
from fastsom.cli import DEFAULTS, MARKER, main, read_settings, recover_output
from fastsom.modelfile import FORMAT_VERSION, load_som, save_som
from fastsom.preprocess import SomPreprocessor
from fastsom.som import Som, default_bs, defaults

ROOT = Path(__file__).parents[1]
SMALL = ['--rows', '3', '--cols', '4', '--epochs', '1', '-q']  # a run of a second or so


def fastsom(*args, cwd, env=None, popen=False):
    "The fastsom command in a fresh Python process"
    env = dict(os.environ, MPLBACKEND='Agg', **(env or {}))
    cmd = [sys.executable, '-c', 'from fastsom.cli import cli; cli()', *map(str, args)]
    if popen: return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def small_csv(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    pd.DataFrame(rng.normal(size=(n, 3)), columns=['a', 'b', 'c']).to_csv(path, index=False)
    return path


def snapshot(folder:Path)->dict:
    "Every file of `folder` with its bytes"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def tree(folder:Path)->dict:
    "Every file under `folder`, at any depth, with its bytes"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    res = fastsom('train', '--epochs', '2', '--rows', '6', '--cols', '7', '--output', 'out', cwd=d)
    assert res.returncode == 0, res.stderr
    assert 'constant' not in res.stderr, res.stderr  # the expected warning of digits' blank pixels is silenced
    return d, res


def test_train_writes_everything(trained):
    d, res = trained
    out = d / 'out'
    files = ['codebook.csv', 'codebook.png', 'hits.png', 'labels.png', 'metrics.json', 'model.pt', 'planes.png', 'umatrix.png']
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *files])
    assert json.loads((out / MARKER).read_text())['files'] == files  # the marker lists what fastsom wrote
    m = json.loads((out / 'metrics.json').read_text())
    assert m['qe'] > 0 and 0 <= m['te'] <= 1 and m['settings']['epochs'] == 2 and m['settings']['rows'] == 6
    assert m['settings']['bs'] == 'auto' and m['bs'] == default_bs(m['rows'])  # the batch size of the table's rule
    assert m['settings']['output'] == 'out'  # the folder written (-o), not the default setting
    cb = pd.read_csv(out / 'codebook.csv')
    assert len(cb) == 42 and {'row', 'col'} <= set(cb.columns)
    som, pre, meta = load_som(out / 'model.pt')
    assert som.codebook.shape == (6, 7, 64) and som.grid.topology == 'hex'  # all 64 pixels, the 3 blank ones too
    assert pre.cont_names == [f'pixel_{i}_{j}' for i in range(8) for j in range(8)]  # scikit-learn's names
    assert sum(meta['hits']) == m['rows'] and meta['settings']['output'] == 'out'
    assert 'QE' in res.stdout and 'Wrote out/' in res.stdout
    torch.load(out / 'model.pt', weights_only=True)  # plain tensors and values


def test_predict_and_plot(trained, monkeypatch):
    d, _ = trained
    from sklearn.datasets import load_digits
    df = load_digits(as_frame=True).data[:20]
    df.to_csv(d / 'new.csv', index=False)
    np.save(d / 'raw.npy', load_digits().data[:20])  # scikit-learn's raw 64-column array
    monkeypatch.chdir(d)
    assert main(['predict', 'out/model.pt', 'raw.npy', '-o', 'raw_bmus.csv']) == 0
    res = fastsom('predict', 'out/model.pt', 'new.csv', '-o', 'bmus.csv', cwd=d)
    assert res.returncode == 0, res.stderr
    pred = pd.read_csv(d / 'bmus.csv')
    pd.testing.assert_frame_equal(pd.read_csv(d / 'raw_bmus.csv'), pred)  # the array and the named columns agree
    assert list(pred.columns) == ['row', 'col', 'distance'] and len(pred) == 20
    som, pre, _ = load_som(d / 'out/model.pt')
    x = pre.encode(df).double()
    w = som.weights.double()
    d2 = ((x[:, None] - w[None]) ** 2).sum(-1)  # float64 reference
    np.testing.assert_allclose(pred['distance'], d2.min(1).values.sqrt().numpy(), rtol=1e-4)
    assert (d2.gather(1, torch.tensor(pred['row'] * 7 + pred['col'])[:, None])[:, 0] <= d2.min(1).values * (1 + 1e-5)).all()
    for kind in ['umatrix', 'hits', 'labels', 'planes', 'codebook']:
        assert main(['plot', 'out/model.pt', '--kind', kind, '-o', f'{kind}2.png']) == 0
        assert (d / f'{kind}2.png').read_bytes()[:4] == b'\x89PNG'


def fake_output(folder:Path):
    "A small output of fastsom (model file and marker) written the way `train` writes one"
    cli._replace(folder, cli._write_new(folder, lambda f: save_som(f / 'model.pt', Som((2, 2), 2)), ['model.pt']))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    "A folder of good and bad inputs, made the current folder; training is forbidden (refusals come before it)"
    (tmp_path / 'data.txt').write_text('1,2\n')
    (tmp_path / 'bad.csv').write_bytes(b'\x00\xff\xfe"unterminated\n1,2,3\n4')
    (tmp_path / 'header.csv').write_text('a,b\n')
    pd.DataFrame({'a': [1., 2, 3, 4], 'b': [4., 3, 2, 2]}).to_csv(tmp_path / 'good.csv', index=False)
    pd.DataFrame({'a': [1., 2, 3, 4], 'b': list('xyxy'), 'c': list('pqpq')}).to_csv(tmp_path / 'text.csv', index=False)
    (tmp_path / 'data').mkdir(); shutil.copy(tmp_path / 'good.csv', tmp_path / 'data' / 'in.csv')
    (tmp_path / 'mine').mkdir(); (tmp_path / 'mine' / 'thesis.tex').write_text('years of work')
    fake_output(tmp_path / 'out'); (tmp_path / 'out' / 'notes.txt').write_text('mine')
    (tmp_path / 'home').mkdir()
    inis = {'nohead.ini': b'rows = 5\n', 'dup.ini': b'[fastsom]\nrows = 5\nrows = 6\n', 'pct.ini': b'[fastsom]\nalpha = 50%\n',
            'bin.ini': bytes(range(256)), 'nul.ini': b'[fastsom]\nrows = 5\x00\n', 'unknown.ini': b'[fastsom]\nrowz = 5\n',
            'junk.ini': b'[fastsom]\njust words\n', 'value.ini': b'[fastsom]\nepochs = -1\n', 'nosection.ini': b'[other]\nrows = 5\n'}
    for k, v in inis.items(): (tmp_path / k).write_bytes(v)
    p = save_som(tmp_path / 'ok.pt', Som((2, 2), 2))
    d = torch.load(p, weights_only=True)
    torch.save({**d, 'format_version': FORMAT_VERSION + 1}, tmp_path / 'old.pt')
    torch.save({**d, 'codebook': torch.full((2, 2, 2), math.nan)}, tmp_path / 'nan.pt')
    (tmp_path / 'trunc.pt').write_bytes(p.read_bytes()[:200])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    def no_training(*a, **k): raise AssertionError("training started before the bad input was refused")
    monkeypatch.setattr('fastsom.learner.som_learner', no_training)
    return tmp_path


BAD = [  # (command line, the one line it must get)
    (['train', 'missing.csv'], 'No data file at missing.csv.'),
    (['train', 'data.txt'], 'use a .csv, .parquet or .npy file'),
    (['train', 'bad.csv'], 'Cannot read bad.csv as csv'),
    (['train', 'header.csv'], 'header.csv has no rows (only a header)'),
    (['train', 'good.csv', '--label', 'nope'], "Unknown column(s) ['nope'] in --label: the data has columns ['a', 'b']."),
    # the loaders' messages, naming the flags
    (['train', 'text.csv'], "Column(s) ['b', 'c'] are not numeric (str) and not named as categorical or label columns: "
                            "pass them in --cat (one-hot encoded) or --label (kept aside), or drop them from the data."),
    (['train', 'text.csv', '--cat', 'b', '--label', 'c', '--label', 'c'], "--label names a column twice: ['c', 'c']."),
    (['train', 'text.csv', '--cat', 'b', '--cat', 'b', '--label', 'c'], "--cat names a column twice: ['b', 'b']."),
    (['train', 'text.csv', '--cat', 'b', '--label', 'b'], "Column(s) ['b'] have more than one role: name each in only "
                                                          "one of --cat, --label."),
    (['train', 'good.csv', '--label', 'a', '--label', 'b'], 'The data has no feature columns: keep some out of --label.'),
    (['train', 'good.csv', '--valid_pct', '.75'], '--valid_pct 0.75 leaves 1 training row(s) of 4: lower --valid_pct'),
    # settings files
    (['train', '--settings', 'nohead.ini'], 'nohead.ini has no section header: put a [fastsom] line before its first setting'),
    (['train', '--settings', 'dup.ini'], 'dup.ini sets rows twice (again on line 3): keep one.'),
    (['train', '--settings', 'pct.ini'], "alpha in pct.ini must be a number, got '50%'"),
    (['train', '--settings', 'bin.ini'], 'bin.ini is not a text file'),
    (['train', '--settings', 'nul.ini'], 'nul.ini is not a text file'),
    (['train', '--settings', 'unknown.ini'], "Unknown setting 'rowz' in unknown.ini: valid settings are"),
    (['train', '--settings', 'junk.ini'], "junk.ini, line 2: 'just words' is not a `name = value` setting."),
    (['train', '--settings', 'value.ini'], 'epochs in value.ini must be a positive integer, got -1.'),
    (['train', '--settings', 'nosection.ini'], 'nosection.ini has no [fastsom] section.'),
    (['train', '--settings', 'none.ini'], 'No settings file at none.ini.'),
    # flags, named as flags
    (['train', '--alpha', '-1'], '--alpha must be a finite number in [0, 1], got -1.0.'),
    (['train', '--alpha', 'inf'], '--alpha must be a finite number in [0, 1], got inf.'),
    (['train', '--alpha', 'nan'], '--alpha must be a finite number in [0, 1], got nan.'),
    (['train', '--alpha', '1e9'], '--alpha must be a finite number in [0, 1], got 1000000000.0.'),
    (['train', '--alpha', '-1', '--update', 'online'], '--alpha must be a finite number >= 0, got -1.0.'),
    (['train', '--alpha', 'abc'], "--alpha must be a number, got 'abc'"),
    (['train', '--epochs', '-1'], '--epochs must be a positive integer, got -1.'),
    (['train', '--epochs', '0'], '--epochs must be a positive integer, got 0.'),
    (['train', '--epochs', '2.5'], '--epochs must be a positive integer, got 2.5.'),
    (['train', '--bs', '0'], '--bs must be auto or a positive integer, got 0.'),
    (['train', '--bs', '-1'], '--bs must be auto or a positive integer, got -1.'),
    (['train', '--sigma', '-2'], '--sigma must be auto or a finite number > 0, got -2.0.'),
    (['train', '--sigma', '0'], '--sigma must be auto or a finite number > 0, got 0.0.'),
    (['train', '--rows', '0'], '--rows must be a positive integer, got 0.'),
    (['train', '--rows', '1', '--cols', '1'], 'A 1 x 1 map has a single unit, with no neighbours (no topographic error, '
                                              'no U-matrix): set --rows or --cols to 2 or more.'),
    (['train', '--cols', 'x'], "--cols must be a positive integer, got 'x'."),
    (['train', '--seed', '-1'], '--seed must be an integer >= 0, got -1.'),
    (['train', '--valid_pct', '1'], '--valid_pct must be below 1'),
    (['train', '--valid_pct', '-0.1'], '--valid_pct must be a finite number in [0, 1], got -0.1.'),
    (['train', '--topology', 'hexa'], "Unknown --topology 'hexa': choose one of ['rect', 'hex']."),
    (['train', '--schedule', 'step'], "Unknown --schedule 'step': choose one of"),
    (['train', '--bogus'], 'fastsom: error: unrecognized arguments: --bogus (see fastsom --help)'),
    (['predict', 'ok.pt'], 'fastsom predict: error: the following arguments are required: data'),
    # output folders: nothing fastsom did not write is replaced
    (['train', '--output', 'mine'], 'Output folder mine exists: pass --force to replace it'),
    (['train', '--output', 'mine', '--force'], 'Refusing to replace mine: it is not an output of fastsom (no model.pt and '
                                               '.fastsom-output), and --force only replaces those.'),
    (['train', '--output', 'out', '--force'], 'Refusing to replace out: it holds files fastsom did not write (notes.txt); '
                                              'move them out'),
    (['train', '--output', '.', '--force'], 'Refusing to replace .: it is the current folder'),
    (['train', '--output', '..', '--force'], 'Refusing to replace ..: it holds the current folder'),
    (['train', 'data/in.csv', '--output', 'data', '--force'], 'Refusing to replace data: it holds the input data/in.csv'),
    (['train', 'good.csv', '--output', 'good.csv', '--force'], 'Refusing to replace good.csv: it is the input good.csv'),
    (['train', '--settings', 'dup.ini', '-o', 'x', '--rows', '0'], 'dup.ini sets rows twice'),  # the file first
    (['train', '--output', 'home', '--force'], 'Refusing to replace home: it is your home folder'),
    (['train', '--output', '/', '--force'], 'Refusing to replace /: it is the filesystem root'),
    (['train', '--output', 'ok.pt', '--force'], 'Refusing to replace ok.pt: it is a file, not an output folder'),
    # model files
    (['predict', 'old.pt', 'good.csv'], 'reads format 1'),
    (['predict', 'trunc.pt', 'good.csv'], 'not a readable fastsom model file'),
    (['predict', 'nan.pt', 'good.csv'], 'Cannot load nan.pt: its codebook holds 8 NaN or infinite value(s).'),
    (['predict', 'ok.pt', 'header.csv'], 'header.csv has no rows'),
    (['plot', 'nomodel.pt'], 'No model file at nomodel.pt'),
    (['plot', 'ok.pt', '--kind', 'hits'], 'This model file holds no hit counts'),
    (['plot', 'ok.pt', '--kind', 'labels'], 'This model was trained without labels'),
    # output files of predict and plot: never an input, a folder, or a file of a fastsom output
    (['predict', 'ok.pt', 'good.csv', '-o', 'good.csv'], 'Refusing to replace good.csv: it is the input good.csv; '
                                                         'choose a new file with --output.'),
    (['predict', 'ok.pt', 'good.csv', '-o', 'data/../ok.pt'], 'Refusing to replace data/../ok.pt: it is the input ok.pt'),
    (['predict', 'ok.pt', 'good.csv', '-o', 'mine'], 'Refusing to replace mine: it is a folder; name a file with --output.'),
    (['predict', 'ok.pt', 'good.csv', '-o', 'out/model.pt'], 'Refusing to replace out/model.pt: it is part of the output '
                                                             'fastsom train wrote in out'),
    (['plot', 'ok.pt', '-o', 'ok.pt'], 'Refusing to replace ok.pt: it is the input ok.pt'),
    (['plot', 'out/model.pt', '-o', 'out/model.pt'], 'Refusing to replace out/model.pt: it is the input out/model.pt'),
    (['plot', 'ok.pt', '-o', '.'], 'Refusing to replace .: it is the current folder'),
    (['plot', 'ok.pt', '-o', 'data'], 'Refusing to replace data: it is a folder'),
]


@pytest.mark.parametrize('args,message', BAD, ids=[' '.join(a) for a, _ in BAD])
def test_bad_input_one_line_error(workdir, capsys, args, message):
    before = tree(workdir)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert tree(workdir) == before  # every file kept, nothing half-written


def test_error_from_the_command_is_one_line_without_traceback(tmp_path):
    res = fastsom('train', '--alpha', '-1', cwd=tmp_path)
    assert res.returncode == 1 and res.stderr.strip() == (
        'fastsom train: error: --alpha must be a finite number in [0, 1], got -1.0.'), res.stderr


def test_defaults_come_from_the_table_and_agree_with_settings_ini():
    for k in ['toroidal', 'schedule', 'alpha', 'update', 'init', 'valid_pct']: assert DEFAULTS[k] == getattr(defaults, k), k
    assert DEFAULTS['norm'] == (defaults.norm or 'none') and DEFAULTS['bs'] == DEFAULTS['sigma'] == 'auto'
    assert (DEFAULTS['rows'], DEFAULTS['cols'], DEFAULTS['topology'], DEFAULTS['epochs']) == (20, 20, 'hex', 20)
    text = (ROOT / 'settings.ini').read_text()
    assert 'default run settings of the `fastsom` command' in text and 'any flag overrides' in text
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=('#',))
    cp.read_string(text)
    assert sorted(cp['fastsom']) == sorted(DEFAULTS)  # every setting (once: the parser is strict), none missing
    assert read_settings(ROOT / 'settings.ini') == DEFAULTS
    assert "alpha (in [0, 1] for 'minibatch', >= 0 for the others" in text  # the range `read_settings` checks


def test_alpha_range_is_the_engines():
    "`Som.check_hypers` takes alpha in [0, 1] for the mini-batch rule, >= 0 for the others: so does the command"
    for update, good, bad in [('minibatch', [0, 1], [-1e-9, 1.01]), ('online', [0, 1.5], [-1]), ('batch', [0, 7], [-1])]:
        som = Som((2, 2), 2, update=update)
        read = partial(read_settings, ROOT / 'settings.ini', update=update)
        for a in good: assert read(alpha=str(a))['alpha'] == som.check_hypers(a, 1.)[0] == a
        for a in bad:
            with pytest.raises(ValueError) as e: som.check_hypers(a, 1.)
            with pytest.raises(ValueError, match=r'--alpha must be a finite number') as e2: read(alpha=a)
            assert str(e2.value) == str(e.value).replace('alpha', '--alpha', 1)  # the same range, the same words


def test_settings_file_and_flags_override(tmp_path, monkeypatch):
    small_csv(tmp_path / 'x.csv')
    (tmp_path / 'settings.ini').write_text('[fastsom]\nrows = 5\ncols = 4\ntopology = rect\nepochs = 1\noutput = here%1\n')
    monkeypatch.chdir(tmp_path)
    s = read_settings()
    assert (s['rows'], s['cols'], s['topology'], s['epochs'], s['bs'], s['output']) == (5, 4, 'rect', 1, 'auto', 'here%1')
    assert main(['train', 'x.csv', '--cols', '3', '-q']) == 0
    som, _, meta = load_som(tmp_path / 'here%1' / 'model.pt')
    assert som.grid.shape == (5, 3) and som.grid.topology == 'rect' and meta['settings']['cols'] == 3


def test_auto_means_the_rules_of_thumb(tmp_path, monkeypatch):
    "bs and sigma 'auto' reach the loaders and the learner as None (their rule of thumb); numbers pass as given"
    import fastsom.learner
    seen, real = [], fastsom.learner.som_learner
    def spy(dls, **kw):
        seen.append(dict(kw, bs=dls.train.bs, n_train=len(dls.train.dataset)))
        return real(dls, **kw)
    monkeypatch.setattr(fastsom.learner, 'som_learner', spy)
    small_csv(tmp_path / 'x.csv', n=1500)
    monkeypatch.chdir(tmp_path)
    assert main(['train', 'x.csv', '-o', 'a', *SMALL]) == 0
    assert main(['train', 'x.csv', '-o', 'b', '--bs', '32', '--sigma', '1.5', *SMALL]) == 0
    assert seen[0]['sigma'] is None and seen[0]['bs'] == default_bs(seen[0]['n_train']) == 84
    assert seen[1]['sigma'] == 1.5 and seen[1]['bs'] == 32
    assert json.loads((tmp_path / 'a' / 'metrics.json').read_text())['bs'] == 84


def test_npy_round_trip_without_warnings(tmp_path, monkeypatch, capsys):
    "A streamed .npy: its preprocessor (no categorical columns, no weights) loads, and predict reads it without warnings"
    x = np.random.default_rng(0).normal(size=(300, 3)).astype('float32')
    np.save(tmp_path / 'x.npy', x)
    monkeypatch.chdir(tmp_path)
    assert main(['train', 'x.npy', '-o', 'out', *SMALL]) == 0
    capsys.readouterr()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert main(['predict', 'out/model.pt', 'x.npy', '-o', 'bmus.csv']) == 0
    som, pre, _ = load_som('out/model.pt')
    d2 = ((pre.encode(x).double()[:, None] - som.weights.double()[None]) ** 2).sum(-1)
    np.testing.assert_allclose(pd.read_csv('bmus.csv')['distance'], d2.min(1).values.sqrt().numpy(), rtol=1e-4)


@pytest.mark.parametrize('missing', ['none', 'mask'])
def test_train_scores_every_row_as_the_interpretation_in_memory(tmp_path, monkeypatch, missing):
    "metrics.json and the model's hits and majority labels, streamed over 10 batches, are those of all rows at once"
    from fastsom.interp import SomInterpretation
    rng = np.random.default_rng(0)
    y = rng.integers(3, size=300)
    df = pd.DataFrame(rng.normal(size=(3, 3))[y] * 3 + rng.normal(size=(300, 3)), columns=['a', 'b', 'c'])
    if missing == 'mask': df[['b', 'c']] = df[['b', 'c']].mask(rng.random((300, 2)) < .2)  # `a` is always observed
    df['kind'] = pd.Series(np.array(['u', 'v', 'w'], dtype=object)[y]).where(rng.random(300) > .1)  # some unlabelled
    df.to_csv(tmp_path / 'x.csv', index=False)
    monkeypatch.chdir(tmp_path)
    assert main(['train', 'x.csv', '--label', 'kind', '--bs', '32', '--valid_pct', '0', '--missing', missing,
                 '-o', 'out', *SMALL]) == 0
    m = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    som, pre, meta = load_som(tmp_path / 'out' / 'model.pt')
    df = pd.read_csv(tmp_path / 'x.csv')
    ref = SomInterpretation(som, pre.encode(df[['a', 'b', 'c']]), labels=df['kind'], missing=pre.missing)
    hits = ref.activation_response()
    assert m['rows'] == 300 and m['bs'] == 32 and pre.missing == (None if missing == 'none' else missing)
    assert m['qe'] == pytest.approx(ref.dists.double().mean().item(), rel=1e-6)
    assert m['te'] == pytest.approx(som.topographic_error(ref.x, pre.missing), abs=1e-7)
    assert m['units_hit'] == pytest.approx((hits > 0).float().mean().item())
    assert meta['hits'] == hits.flatten().tolist()
    assert meta['unit_labels'] == [None if v is None else str(v) for v in ref.majority_labels().flatten()]
    assert meta['label_name'] == 'kind'

def test_force_replaces_an_output_of_fastsom_and_nothing_else(tmp_path, monkeypatch):
    small_csv(tmp_path / 'x.csv')
    monkeypatch.chdir(tmp_path)
    assert main(['train', 'x.csv', '-o', 'out', '--seed', '0', *SMALL]) == 0
    old = snapshot(tmp_path / 'out')
    assert main(['train', 'x.csv', '-o', 'out', '--seed', '0', *SMALL]) == 1  # no --force: kept
    assert main(['train', 'x.csv', '-o', 'out', '--seed', '1', '--force', *SMALL]) == 0
    new = snapshot(tmp_path / 'out')
    assert new.keys() == old.keys() and new['model.pt'] != old['model.pt']
    assert sorted(os.listdir(tmp_path)) == ['out', 'x.csv']  # no temporary folder left
    (tmp_path / 'out' / 'my notes.txt').write_text('keep me')
    assert main(['train', 'x.csv', '-o', 'out', '--seed', '2', '--force', *SMALL]) == 1
    assert snapshot(tmp_path / 'out') == {**new, 'my notes.txt': b'keep me'}


def test_stale_temporary_folders_are_removed_by_name_and_marker(tmp_path, monkeypatch):
    small_csv(tmp_path / 'x.csv')
    monkeypatch.chdir(tmp_path)
    fake_output(tmp_path / 'out')
    dead = 2**22 + 1  # above Linux's largest pid: no such process
    stale = tmp_path / f'.out.fastsom-new-{dead}-abc'; shutil.copytree(tmp_path / 'out', stale)
    running = tmp_path / f'.out.fastsom-new-{os.getpid()}-abc'; shutil.copytree(tmp_path / 'out', running)
    unmarked = tmp_path / f'.out.fastsom-old-{dead}-abc'; unmarked.mkdir(); (unmarked / 'model.pt').write_text('?')
    other = tmp_path / f'.outx.fastsom-new-{dead}-abc'; shutil.copytree(tmp_path / 'out', other)
    foreign = tmp_path / f'.out.fastsom-old-{dead}-def'; shutil.copytree(tmp_path / 'out', foreign)
    (foreign / 'thesis.tex').write_text('years of work')  # not in its marker: fastsom deletes its own files only
    assert main(['train', 'x.csv', '-o', 'out', '--force', *SMALL]) == 0
    assert not stale.exists() and running.exists() and unmarked.exists() and other.exists()
    assert snapshot(foreign) == {'thesis.tex': b'years of work'}  # the folder left in place, with the foreign file


def test_output_modes_are_those_of_mkdir_and_open(tmp_path, monkeypatch):
    "The output folder gets 0o777 & ~umask (not mkdtemp's 0o700), predict's and plot's files 0o666 & ~umask"
    small_csv(tmp_path / 'x.csv')
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o027)
    try:
        assert main(['train', 'x.csv', '-o', 'a/out', *SMALL]) == 0
        assert main(['predict', 'a/out/model.pt', 'x.csv', '-o', 'bmus.csv']) == 0
        assert main(['plot', 'a/out/model.pt', '-o', 'u.png']) == 0
    finally: os.umask(old)
    modes = {p: (tmp_path / p).stat().st_mode & 0o777 for p in ['a', 'a/out', 'bmus.csv', 'u.png']}
    assert modes == {'a': 0o750, 'a/out': 0o750, 'bmus.csv': 0o640, 'u.png': 0o640}


def test_predict_and_plot_write_whole_files_or_none(tmp_path, monkeypatch, capsys):
    "A write that fails midway leaves the old file as it was, and no temporary file"
    import matplotlib.figure
    small_csv(tmp_path / 'x.csv', n=20)
    save_som(tmp_path / 'm.pt', Som((2, 2), 3))
    monkeypatch.chdir(tmp_path)
    for f in ['bmus.csv', 'u.png']: (tmp_path / f).write_text('old')
    def half(self, path, *a, **k):
        Path(path).write_text('half')
        raise OSError('No space left on device')
    monkeypatch.setattr(pd.DataFrame, 'to_csv', half)
    monkeypatch.setattr(matplotlib.figure.Figure, 'savefig', half)
    assert main(['predict', 'm.pt', 'x.csv', '-o', 'bmus.csv']) == 1
    assert main(['plot', 'm.pt', '-o', 'u.png']) == 1
    assert capsys.readouterr().err.count('No space left on device') == 2
    assert snapshot(tmp_path) == {'bmus.csv': b'old', 'm.pt': (tmp_path / 'm.pt').read_bytes(), 'u.png': b'old',
                                  'x.csv': (tmp_path / 'x.csv').read_bytes()}
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(['predict', 'm.pt', 'x.csv', '-o', 'bmus.csv']) == 0 and len(pd.read_csv('bmus.csv')) == 20  # replaced


STEPS = {  # pause point of the replace -> what is on disk when the process is killed there, and after the next run
    'written': 'old',  # the new output complete in its temporary folder, the old one in place
    'aside': 'old',  # the old output renamed aside, the target missing: the next run puts the old one back
    'moved': 'new',  # the new output renamed in, the old one aside, not yet deleted
}


def test_sigkill_during_replace_leaves_old_or_new_output_whole(tmp_path, monkeypatch):
    small_csv(tmp_path / 'x.csv')
    monkeypatch.chdir(tmp_path)
    assert main(['train', 'x.csv', '-o', 'out', '--seed', '0', *SMALL]) == 0
    old = snapshot(tmp_path / 'out')
    procs = {}
    for step in STEPS:  # one real `fastsom train --force` per pause point, all at once
        d = tmp_path / step; d.mkdir()
        shutil.copy(tmp_path / 'x.csv', d); shutil.copytree(tmp_path / 'out', d / 'out')
        procs[step] = fastsom('train', 'x.csv', '-o', 'out', '--seed', '1', '--force', *SMALL, cwd=d,
                              env=dict(FASTSOM_TEST_PAUSE=step), popen=True)
    reached = dict(written=lambda d, pid: any(p.name.startswith(f'.out.fastsom-new-{pid}-') and cli._is_whole(p) for p in d.iterdir()),
                   aside=lambda d, pid: not (d / 'out').exists(),
                   moved=lambda d, pid: any(p.name.startswith(f'.out.fastsom-old-{pid}-') for p in d.iterdir())
                                        and (d / 'out').exists())
    for step, proc in procs.items():
        d, deadline = tmp_path / step, time.monotonic() + 300
        while not reached[step](d, proc.pid):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, f"never reached {step}"
            time.sleep(.05)
        proc.send_signal(signal.SIGKILL); proc.wait()
        assert (d / 'out').exists() == (step != 'aside')
        recover_output(d / 'out')  # what the next run does first
        assert sorted(os.listdir(d)) == ['out', 'x.csv'], step  # stale temporary folders gone
        now = snapshot(d / 'out')
        if STEPS[step] == 'old': assert now == old, step
        else:
            assert now.keys() == old.keys() and now['model.pt'] != old['model.pt'] and cli._is_whole(d / 'out')
            assert json.loads(now['metrics.json'])['settings']['seed'] == 1
            load_som(d / 'out' / 'model.pt')


def test_help_is_complete(capsys):
    for cmd, words in [('train', ['--rows', '--topology', '--epochs', '--schedule', '--bs', '--norm', '--seed', '--output',
                                  '--force', '--label', '--cat', 'auto']),
                       ('predict', ['model', 'data', '--output']), ('plot', ['--kind', 'umatrix', 'codebook'])]:
        with pytest.raises(SystemExit) as e: main([cmd, '--help'])
        out = capsys.readouterr().out
        assert e.value.code == 0 and all(w in out for w in words), out


def test_model_file_refuses_custom_functions_and_pickled_code(tmp_path):
    with pytest.raises(ValueError, match='cannot be stored in a safe model file'):
        save_som(tmp_path / 'm.pt', Som((2, 2), 2, dist=lambda x, w: torch.cdist(x, w)))
    torch.save({'format': 'fastsom', 'format_version': FORMAT_VERSION, 'evil': Som((2, 2), 2)}, tmp_path / 'evil.pt')
    with pytest.raises(ValueError, match='not a readable fastsom model file'): load_som(tmp_path / 'evil.pt')


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    "A valid model file with a preprocessor of 2 continuous and 1 categorical column (3 levels): 5 features"
    df = pd.DataFrame({'a': np.arange(30.), 'b': np.arange(30.) ** 2, 'c': list('xyz') * 10})
    pre = SomPreprocessor(['a', 'b'], ['c']).fit(df)
    som = Som((3, 2), pre.n_features).init_codebook(pre.encode(df), seed=0)
    p = save_som(tmp_path_factory.mktemp('model') / 'm.pt', som, pre, hits=[5] * 6)
    return p, som, pre


def test_valid_model_file_round_trips(model_file):
    p, som, pre = model_file
    som2, pre2, meta = load_som(p)
    assert torch.equal(som2.codebook, som.codebook) and meta['hits'] == [5] * 6
    assert all(torch.equal(getattr(pre2, k), getattr(pre, k)) for k in ('shift', 'scale', 'weights'))


CORRUPT = [  # (change to the file's dict, message)
    (lambda f: f['codebook'].view(-1)[3].fill_(math.nan), 'its codebook holds 1 NaN or infinite value(s)'),
    (lambda f: f['codebook'].view(-1)[:2].fill_(math.inf), 'its codebook holds 2 NaN or infinite value(s)'),
    (lambda f: f.update(codebook=torch.full((3, 2, 5), 1e39, dtype=torch.float64)), 'its codebook holds 30 NaN'),  # > float32
    (lambda f: f.update(codebook=f['codebook'].tolist()), 'its codebook is a list, not a tensor'),
    (lambda f: f.update(codebook=f['codebook'].long()), 'its codebook has dtype torch.int64, not a float dtype'),
    (lambda f: f.update(codebook=torch.zeros(2, 3, 5)), 'its codebook has shape (2, 3, 5), not (3, 2, 5)'),
    (lambda f: f.pop('codebook'), 'its codebook is a NoneType, not a tensor'),
    (lambda f: f['config'].update(size=[0, 2]), 'map rows must be a positive integer, got 0'),
    (lambda f: f['config'].update(size=6), 'its size must be [rows, cols], got 6'),
    (lambda f: f['config'].update(size=['3', 2]), "map rows must be a positive integer, got '3'"),
    (lambda f: f['config'].update(n_features=5.0), 'n_features must be a positive integer, got 5.0'),
    (lambda f: f['config'].update(topology='hexagonal'), "Unknown topology 'hexagonal'"),
    (lambda f: f['config'].update(dist='manhattan2'), "Unknown distance 'manhattan2'"),
    (lambda f: f['config'].update(neigh=None), "Unknown neighbourhood None"),
    (lambda f: f['config'].update(update='sgd'), "Unknown update rule 'sgd'"),
    (lambda f: f['config'].update(toroidal='yes'), "its toroidal must be true or false, got 'yes'"),
    (lambda f: f['config'].pop('neigh'), "its config lacks ['neigh']"),
    (lambda f: f.update(config=[3, 2]), 'its config is a list, not a dict'),
    (lambda f: f['config'].update(size=[100_000, 100_000]), 'needs about'),
    (lambda f: f['preprocessor'].update(scale=torch.ones(3)), "its preprocessor's scale has shape (3,), not (2,)"),
    (lambda f: f['preprocessor'].update(scale=torch.tensor([1., 0.])), "its preprocessor's scale holds values <= 0"),
    (lambda f: f['preprocessor'].update(shift=torch.tensor([1., math.nan])), "its preprocessor's shift holds 1 NaN"),
    (lambda f: f['preprocessor'].update(fill=torch.zeros(1)), "its preprocessor's fill has shape (1,), not (2,)"),
    (lambda f: f['preprocessor'].update(weights=[1.]), "its preprocessor's weights is a list, not a tensor"),
    (lambda f: f['preprocessor'].update(weights=None), "its preprocessor's weights is a NoneType, not a tensor"),
    (lambda f: f['preprocessor'].update(cont_names=['a']), 'its preprocessor encodes 4 features but its map has 5'),
    (lambda f: f['preprocessor']['levels'].update(c='xyz'), "column names and category levels are not lists"),
    (lambda f: f['preprocessor'].pop('norm'), "its preprocessor lacks 'norm'"),
    (lambda f: f['preprocessor'].update(norm='robust'), "Cannot load"),
    (lambda f: f.update(preprocessor=[1, 2]), 'its preprocessor is a list, not a dict'),
    (lambda f: f['meta'].update(hits=[1, 2]), 'its hits must be 6 counts, one per unit'),
    (lambda f: f['meta'].update(unit_labels=[1] * 6), 'its unit_labels must be 6 labels'),
]


@pytest.mark.parametrize('change,message', CORRUPT, ids=[m for _, m in CORRUPT])
def test_corrupt_model_file_is_refused_naming_it(model_file, tmp_path, change, message):
    f = copy.deepcopy(torch.load(model_file[0], weights_only=True))
    change(f)
    torch.save(f, tmp_path / 'bad.pt')
    with pytest.raises(ValueError) as e: load_som(tmp_path / 'bad.pt')
    assert str(e.value).startswith(f"Cannot load {tmp_path / 'bad.pt'}: ") and message in str(e.value), str(e.value)


def test_huge_declared_size_fails_fast_without_allocating(tmp_path):
    "A model file declaring a map too big for memory, or one that fits but not its codebook, allocates nothing"
    script = f'''
import resource, time, torch
from fastsom.modelfile import load_som, save_som
from fastsom.som import Som
p = save_som({str(tmp_path / "m.pt")!r}, Som((2, 2), 10))
d = torch.load(p, weights_only=True)
peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for size, msg in [([100_000, 100_000], 'needs about'), ([4000, 4000], 'its codebook has shape (2, 2, 10)')]:
    torch.save({{**d, 'config': {{**d['config'], 'size': size}}}}, p)
    t = time.perf_counter()
    try: load_som(p)
    except ValueError as e: assert msg in str(e), e
    else: raise AssertionError('loaded')
    assert time.perf_counter() - t < 1
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0) / 1024)  # MiB
'''
    res = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout.split()[-1]) < 50  # building the 4000 x 4000 x 10 map would take about 1.5 GiB


def test_progress_in_a_log_is_one_line_per_epoch(tmp_path, monkeypatch, capsys):
    "stdout is not a terminal (a log, CI): no progress bar, one line per epoch, then the summary"
    small_csv(tmp_path / 'x.csv')
    monkeypatch.chdir(tmp_path)
    assert main(['train', 'x.csv', '-o', 'out', '--rows', '3', '--cols', '4', '--epochs', '3']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l.split()[:2] for l in lines[:3]] == [['epoch', str(e)] for e in range(3)]
    assert all('train_loss' in l and 'topographic_error' in l for l in lines[:3])
    assert len(lines) == 5 and lines[3].startswith('Trained a 3x4 hex map') and lines[4].startswith('Wrote out/')
    assert '█' not in ''.join(lines) and max(map(len, lines)) < 200
