"The fastsom command end to end in subprocesses, its bad inputs, settings, and the safe model file."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from fastsom.cli import DEFAULTS, FORMAT_VERSION, load_som, main, read_settings, save_som
from fastsom.som import Som

ROOT = Path(__file__).parents[1]


def fastsom(*args, cwd):
    env = dict(os.environ, MPLBACKEND='Agg')
    return subprocess.run([sys.executable, '-c', 'from fastsom.cli import cli; cli()', *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    res = fastsom('train', '--epochs', '2', '--rows', '6', '--cols', '7', '--output', 'out', cwd=d)
    assert res.returncode == 0, res.stderr
    return d, res


def test_train_writes_everything(trained):
    d, res = trained
    out = d / 'out'
    assert sorted(p.name for p in out.iterdir()) == ['codebook.csv', 'codebook.png', 'hits.png', 'labels.png', 'metrics.json',
                                                    'model.pt', 'planes.png', 'umatrix.png']
    m = json.loads((out / 'metrics.json').read_text())
    assert m['qe'] > 0 and 0 <= m['te'] <= 1 and m['settings']['epochs'] == 2 and m['settings']['rows'] == 6
    cb = pd.read_csv(out / 'codebook.csv')
    assert len(cb) == 42 and {'row', 'col'} <= set(cb.columns)
    som, pre, meta = load_som(out / 'model.pt')
    assert som.codebook.shape == (6, 7, 61) and som.grid.topology == 'hex'
    assert sum(meta['hits']) == m['rows']
    assert 'QE' in res.stdout and 'Wrote out/' in res.stdout
    # the model file is plain tensors and values: loads with weights_only=True
    torch.load(out / 'model.pt', weights_only=True)


def test_predict_and_plot(trained):
    d, _ = trained
    from sklearn.datasets import load_digits
    df = pd.DataFrame(load_digits().data[:20], columns=[f'px{i}' for i in range(64)])
    df.to_csv(d / 'new.csv', index=False)
    res = fastsom('predict', 'out/model.pt', 'new.csv', '-o', 'bmus.csv', cwd=d)
    assert res.returncode == 0, res.stderr
    pred = pd.read_csv(d / 'bmus.csv')
    assert list(pred.columns) == ['row', 'col', 'distance'] and len(pred) == 20
    som, pre, _ = load_som(d / 'out/model.pt')
    idx, dist = som.search(pre.encode(df))
    assert (pred['row'] * 7 + pred['col']).tolist() == idx[:, 0].tolist()
    np.testing.assert_allclose(pred['distance'], dist[:, 0].numpy(), rtol=1e-5)
    for kind in ['umatrix', 'hits', 'labels', 'planes', 'codebook']:
        res = fastsom('plot', 'out/model.pt', '--kind', kind, '-o', f'{kind}2.png', cwd=d)
        assert res.returncode == 0, res.stderr
        assert (d / f'{kind}2.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.parametrize('args,message', [
    (['train', 'missing.csv'], 'No data file at missing.csv'),
    (['train', 'data.txt'], 'use a .csv, .parquet or .npy file'),
    (['train', 'bad.csv'], 'Cannot read'),
    (['train', 'good.csv', '--label', 'nope'], "Column 'nope' is not in the data"),
    (['train', '--output', 'exists'], 'pass --force'),
    (['predict', 'old.pt', 'good.csv'], 'reads format 1'),
    (['predict', 'trunc.pt', 'good.csv'], 'not a readable fastsom model file'),
    (['plot', 'nomodel.pt'], 'No model file at nomodel.pt'),
])
def test_bad_input_one_line_error(tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / 'data.txt').write_text('1,2\n')
    (tmp_path / 'bad.csv').write_bytes(b'\x00\xff\xfe"unterminated\n1,2,3\n4')
    pd.DataFrame({'a': [1., 2, 3, 4], 'b': [4., 3, 2, 2]}).to_csv(tmp_path / 'good.csv', index=False)
    (tmp_path / 'exists').mkdir()
    p = save_som(tmp_path / 'ok.pt', Som((2, 2), 2))
    d = torch.load(p, weights_only=True); d['format_version'] = FORMAT_VERSION + 1; torch.save(d, tmp_path / 'old.pt')
    (tmp_path / 'trunc.pt').write_bytes(p.read_bytes()[:200])
    before = sorted(tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(tmp_path.iterdir()) == before  # nothing half-written


def test_error_from_the_command_is_one_line_without_traceback(tmp_path):
    res = fastsom('train', 'missing.csv', cwd=tmp_path)
    assert res.returncode == 1 and res.stderr.strip() == 'fastsom train: error: No data file at missing.csv.', res.stderr


def test_settings_file_matches_defaults_and_flags_override(tmp_path, monkeypatch):
    assert read_settings(ROOT / 'settings.ini') == DEFAULTS
    (tmp_path / 'settings.ini').write_text('[fastsom]\nrows = 5\ncols = 4\ntopology = rect\nepochs = 1\noutput = here\n')
    monkeypatch.chdir(tmp_path)
    s = read_settings()
    assert (s['rows'], s['cols'], s['topology'], s['epochs'], s['bs']) == (5, 4, 'rect', 1, DEFAULTS['bs'])
    assert main(['train', '--cols', '3', '-q']) == 0
    som, _, meta = load_som(tmp_path / 'here' / 'model.pt')
    assert som.grid.shape == (5, 3) and som.grid.topology == 'rect' and meta['settings']['cols'] == 3
    (tmp_path / 'settings.ini').write_text('[fastsom]\nrowz = 5\n')
    with pytest.raises(ValueError, match="Unknown setting 'rowz'"): read_settings()


def test_help_is_complete():
    for cmd, words in [('train', ['--rows', '--topology', '--epochs', '--schedule', '--bs', '--norm', '--seed', '--output', '--force', '--label', '--cat']),
                       ('predict', ['model', 'data', '--output']), ('plot', ['--kind', 'umatrix', 'codebook'])]:
        res = subprocess.run([sys.executable, '-c', 'from fastsom.cli import cli; cli()', cmd, '--help'], capture_output=True, text=True)
        assert res.returncode == 0 and all(w in res.stdout for w in words), res.stdout


def test_model_file_refuses_custom_functions_and_pickled_code(tmp_path):
    with pytest.raises(ValueError, match='cannot be stored in a safe model file'):
        save_som(tmp_path / 'm.pt', Som((2, 2), 2, dist=lambda x, w: torch.cdist(x, w)))
    torch.save({'format': 'fastsom', 'format_version': FORMAT_VERSION, 'evil': Som((2, 2), 2)}, tmp_path / 'evil.pt')
    with pytest.raises(ValueError, match='not a readable fastsom model file'): load_som(tmp_path / 'evil.pt')
