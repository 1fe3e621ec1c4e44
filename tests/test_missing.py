"Missing values as a mask (issue 16): the masked distance, the per-feature update, exactness without NaN, 2 processes, imputation."
import io, math, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from hypothesis import given, settings, strategies as st
from fastsom.all import *
from fastsom.cli import main, read_settings
from conftest import blobs, free_port, holey, som_with

HERE = Path(__file__).parent
NAN = float('nan')


def masked_d2_loop(x, w):
    "Reference: squared distance of each row of `x` to each row of `w` over the row's observed features, x D / n_obs"
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    out = np.empty((len(x), len(w)))
    for i, r in enumerate(x):
        o = ~np.isnan(r)
        out[i] = ((r[o] - w[:, o]) ** 2).sum(1) * len(r) / o.sum()
    return out


def grid_d2(rows, cols, topology='rect', toroidal=False):
    "Reference: squared lattice distances between units, from the definitions (hex: odd rows shifted by 1/2)"
    r, c = np.divmod(np.arange(rows * cols), cols)
    if topology == 'hex': x, y = c + .5 * (r % 2), r * math.sqrt(3) / 2
    else: x, y = c.astype(float), r.astype(float)
    dx, dy = np.abs(x[:, None] - x[None]), np.abs(y[:, None] - y[None])
    if toroidal: dx, dy = np.minimum(dx, cols - dx), np.minimum(dy, rows - dy)
    return dx ** 2 + dy ** 2


def ref_masked_step(x, w, d2, rule, alpha, sigma):
    "Reference: one masked step in float64: BMUs by `masked_d2_loop`, per-unit-and-feature num/den, the update rule"
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    h = np.exp(-d2[masked_d2_loop(x, w).argmin(1)] / (2 * sigma ** 2))  # (n, units)
    m = ~np.isnan(x)
    num, den = h.T @ np.where(m, x, 0.), h.T @ m
    if rule == 'online': return w + alpha * (num - den * w) / np.maximum(m.sum(0), 1)
    target = np.where(den > 1e-30, num / np.where(den > 0, den, 1.), w)
    return target if rule == 'batch' else w + alpha * (target - w)


# the masked distance

@pytest.mark.parametrize('dist', ['euclidean', 'sqeuclidean'])
@pytest.mark.parametrize('size,k', [((5, 7), 1), ((9, 9), 1), ((5, 7), 3), ((16, 17), 1), ((16, 17), 2)])
@pytest.mark.parametrize('offset,scale', [(0., 1.), (1000., 1.), (45.5, .01)])
def test_masked_distance_equals_a_loop_over_observed_features(dist, size, k, offset, scale):
    g = torch.Generator().manual_seed(1)
    x = holey(offset + scale * torch.randn(700, 6, generator=g), .35, seed=2)
    som = Som(size, 6, dist=dist).init_codebook(offset + scale * torch.randn(300, 6, generator=g), 'random', seed=0)
    som.chunk_mb = .01  # several chunks
    i, d = som.search(x, k, missing='mask')
    ref = masked_d2_loop(x, som.weights)
    got = ref[np.arange(len(x))[:, None], i.numpy()]
    # the k nearest, in order (ties within float32 rounding count as agreeing)
    np.testing.assert_allclose(got, np.sort(ref, 1)[:, :k], rtol=1e-6, atol=1e-6 * scale ** 2)
    d2 = d.double().numpy() ** (2 if dist == 'euclidean' else 1)
    np.testing.assert_allclose(d2, got, rtol=1e-4, atol=1e-5 * scale ** 2)  # the cancellation of |x|^2 - 2xw + |w|^2
    assert d[:, 0].mean().item() == pytest.approx(np.sqrt(got[:, 0]).mean() if dist == 'euclidean' else got[:, 0].mean(),
                                            rel=1e-4)


@settings(max_examples=30, deadline=None)
@given(offset=st.sampled_from([0., 1., 1e2, 1e4, 1e6]), log_scale=st.integers(-30, 30), seed=st.integers(0, 1000))
def test_masked_search_matches_float64_at_any_offset_and_scale(offset, log_scale, seed):
    "As `test_precision`'s sweep of the complete search: the masked search works in the same centred frame"
    scale, g = 10. ** log_scale, np.random.default_rng(seed)
    x = ((offset + g.standard_normal((500, 4))) * scale).astype(np.float32)
    x[g.random(x.shape) < .3] = np.nan
    x = x[~np.isnan(x).all(1)]
    som = Som((5, 6), 4)
    som.weights.copy_(torch.from_numpy(((offset + g.standard_normal((30, 4))) * scale).astype(np.float32)))
    ref = masked_d2_loop(x, som.weights)
    i, d = som.search(torch.from_numpy(x), missing='mask')
    got = ref[np.arange(len(x)), i[:, 0].numpy()]
    assert (got <= ref.min(1) * (1 + 1e-9)).mean() >= .999
    assert d.double().mean().item() == pytest.approx(np.sqrt(ref.min(1)).mean(), rel=1e-4)


def test_masked_kernel_on_complete_data_matches_the_search():
    x = blobs(2000, 7)
    som = Som((10, 9), 7).init_codebook(x, 'sample', seed=0)
    i, d = som._search_masked(x, 2)
    j, e = som._search(x, 2)
    np.testing.assert_array_equal(i.numpy(), j.numpy())
    torch.testing.assert_close(d ** 2, e ** 2, rtol=1e-4, atol=1e-4)  # both cancel near 0 (rows on units)
    bmu = i[:, 0]
    (hm, sm), (h, s) = som.batch_stats(x, bmu, missing='mask'), som.batch_stats(x, bmu)
    assert torch.equal(hm, h[:, None].expand_as(hm)) and torch.equal(sm, s)


def test_rows_with_holes_search_only_their_observed_features():
    som = som_with([[[0., 0.], [10., 10.]]])  # a 1 x 2 map
    i, d = som.search(torch.tensor([[1., NAN], [NAN, 9.], [NAN, 1.]]), missing='mask')
    assert i[:, 0].tolist() == [0, 1, 0]
    torch.testing.assert_close(d[:, 0], torch.tensor([math.sqrt(2 * 1.), math.sqrt(2 * 1.), math.sqrt(2 * 1.)]))


def test_moments_with_holes_are_pairwise_complete():
    x = holey(blobs(500, 4) * torch.tensor([1., 3., .5, 2.]) + 40, .3)
    mean, cov = moments(x)
    df = pd.DataFrame(x.double().numpy())
    np.testing.assert_allclose(mean.numpy(), df.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), df.cov().to_numpy(), rtol=1e-9, atol=1e-12)  # pandas: pairwise-complete
    dls = SomDataLoaders.from_tensor(x, missing='mask', seed=0)
    learn = som_learner(dls, seed=0)  # map size and PCA start from the rows with holes
    assert learn.model.size == default_size(dls.train.x) and torch.isfinite(learn.codebook).all()


# the masked step

def test_masked_step_by_hand():
    som = som_with([[[0., 0.], [10., 10.]]], update='batch')  # 1 x 2, sigma .5: h = 1 at the BMU, e^-2 next door
    x = torch.tensor([[1., NAN], [NAN, 9.], [2., 3.]])  # BMUs 0, 1, 0
    som.step(x, alpha=1., sigma=.5, missing='mask')
    e = math.exp(-2)
    want = [[3 / 2, (3 + 9 * e) / (1 + e)],   # unit 0: feature 0 from rows 0, 2; feature 1 from rows 2 (h 1), 1 (h e)
            [3 * e / (2 * e), (9 + 3 * e) / (1 + e)]]  # unit 1: feature 0 from rows 0, 2 (both h e), feature 1 1, 2
    torch.testing.assert_close(som.weights, torch.tensor(want))


@pytest.mark.parametrize('rule', update_rules)
@pytest.mark.parametrize('topology,toroidal', [('rect', False), ('hex', False), ('rect', True)])
def test_masked_step_equals_the_float64_reference(rule, topology, toroidal):
    g = torch.Generator().manual_seed(3)
    x = holey(torch.randn(400, 5, generator=g) * 2, .4, seed=4)
    som = Som((4, 6), 5, topology, toroidal, update=rule).init_codebook(torch.randn(100, 5, generator=g), 'random', seed=1)
    w0 = som.weights.clone()
    alpha, sigma = (.7 if rule != 'online' else 3.), 1.3
    som.step(x, alpha, sigma, missing='mask')
    ref = ref_masked_step(x, w0, grid_d2(4, 6, topology, toroidal), rule, alpha, sigma)
    np.testing.assert_allclose(som.weights.numpy(), ref, rtol=1e-4, atol=1e-5)


# exactly the unmasked result without NaN

@pytest.mark.parametrize('rule', update_rules)
@pytest.mark.parametrize('init', inits)
@pytest.mark.parametrize('topology,toroidal,neigh', [('rect', False, 'gaussian'), ('hex', True, 'gaussian'),
                                                     ('hex', False, 'bubble')])
def test_no_nan_masked_fit_is_exactly_the_unmasked_fit(rule, init, topology, toroidal, neigh):
    x = blobs(900, 5)
    kw = dict(epochs=2, bs=100, seed=0, init=init, alpha=(.9, .1) if rule != 'online' else (5., 1.))
    make = lambda: Som((6, 5), 5, topology, toroidal, neigh=neigh, update=rule)
    assert torch.equal(make().fit(x, missing='mask', **kw).codebook, make().fit(x, **kw).codebook)


def test_no_nan_masked_learner_is_exactly_the_unmasked_learner():
    x = blobs(800, 4)
    books = []
    for missing in (None, 'mask'):
        dls = SomDataLoaders.from_tensor(x, bs=64, valid_pct=.2, seed=0, missing=missing)
        learn = som_learner(dls, (5, 5), seed=0)
        with learn.no_bar(), learn.no_logging(): learn.fit(2)
        books.append((learn.codebook.clone(), learn.validate()))
    assert torch.equal(books[0][0], books[1][0])
    assert [float(v) for v in books[0][1]] == [float(v) for v in books[1][1]]


# training on data with holes

def test_masked_training_recovers_the_holes():
    x = blobs(3000, 8, k=4)
    xm = holey(x, .3)
    holes = torch.isnan(xm)
    som = Som((8, 8), 8).fit(xm, epochs=5, seed=0, missing='mask')
    rmse = lambda xi: ((xi - x)[holes] ** 2).mean().sqrt().item()
    assert rmse(som.impute(xm)) < .5 * rmse(torch.where(holes, xm.nanmean(0), xm))  # column means: the baseline
    qe_obs = som.quantization_error(xm, missing='mask')
    qe_full = Som((8, 8), 8).fit(x, epochs=5, seed=0).quantization_error(xm, missing='mask')
    assert qe_obs < 1.25 * qe_full  # on the observed entries, about as close as the complete-data map
    assert 0 <= som.topographic_error(xm, missing='mask') <= .2


def test_online_rule_divides_each_feature_by_the_samples_observing_it():
    som = som_with([[[0., 0.]]], update='online')  # one unit: h = 1
    som.step(torch.tensor([[2., NAN], [4., 6.]]), alpha=.5, sigma=1., missing='mask')
    torch.testing.assert_close(som.weights, torch.tensor([[.5 * (2 + 4) / 2, .5 * 6 / 1]]))


# two processes

@pytest.fixture(scope='module')
def masked_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist_masked')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
           f'--master_port={free_port()}', str(HERE / 'dist_masked_worker.py'), str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get('PYTHONPATH', '')]))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return torch.load(out / 'masked.pt')


@pytest.mark.parametrize('rule', update_rules)
def test_distributed_masked_training_equals_one_process(masked_run, rule):
    books = masked_run[rule]
    assert torch.equal(books[0], books[1])
    x = holey(torch.randn(1001, 5, generator=torch.Generator().manual_seed(0)), .3)
    ref = Som((6, 7), 5, 'hex', update=rule).fit(x, epochs=3, bs=120, alpha=(.9, .2) if rule != 'online' else (5., 1.),
                                                 shuffle=False, missing='mask')
    torch.testing.assert_close(books[0], ref.codebook.data, atol=2e-4, rtol=1e-4)


def test_distributed_masked_learner_equals_one_process(masked_run):
    books = masked_run['learner']
    assert torch.equal(books[0], books[1])
    x = holey(torch.randn(1001, 5, generator=torch.Generator().manual_seed(0)), .3)
    dls = SomDataLoaders.from_tensor(x, bs=80, valid_pct=.2, seed=0, shuffle=False, norm=None, missing='mask')
    learn = som_learner(dls, size=(6, 7), topology='hex', seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit(3); valid = learn.validate()
    torch.testing.assert_close(books[0], learn.codebook, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(masked_run['valid'], [float(v) for v in valid], atol=1e-4, rtol=1e-4)


def test_all_reduce_stats_in_one_process_keeps_per_feature_hits():
    h, s = torch.rand(4, 3), torch.rand(4, 3)
    assert all(torch.equal(a, b) for a, b in zip(all_reduce_stats(h, s), (h, s)))


# imputation

def test_som_impute_round_trip():
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(0)) * 3
    som = som_with(x.view(3, 4, 5))  # the codebook holds the complete rows
    xm = holey(x, .4, seed=1)
    filled = som.impute(xm)
    assert torch.equal(filled, x)  # each row's BMU is its own complete row: the holes come back exactly
    assert torch.equal(som.impute(x), x)
    assert not torch.equal(filled, xm.nan_to_num(0.))


def frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({'h': rng.normal(170, 10, n).astype(np.float32), 'c': rng.choice(['r', 'g', 'b'], n),
                         'w': rng.normal(70, 8, n), 's': pd.Categorical(rng.choice(['S', 'M', 'L'], n)),
                         'label': rng.choice(['x', 'y'], n)})


def punch(df, seed=1):
    "`df` with holes in every feature column; each row keeps a continuous value (`h` or `w`), so its BMU is unique"
    rng = np.random.default_rng(seed)
    out, even = df.copy(), np.arange(len(df)) % 2 == 0
    for c, rows in dict(h=~even, w=even, c=True, s=True).items():
        out.loc[(rng.random(len(df)) < .35) & rows, c] = None
    return out


def test_dataframe_impute_round_trip_through_the_learner(tmp_path):
    df = frame(12)
    dm = punch(df)
    assert dm[['h', 'c', 'w', 's']].isna().sum().min() > 0
    dls = SomDataLoaders.from_df(dm, cat_names=['c', 's'], label_names='label', missing='mask', valid_pct=0, seed=0)
    learn = som_learner(dls, (3, 4), seed=0)
    learn.model.weights.copy_(dls.preprocessor.encode(df))  # the complete rows as codebook: the answer is known
    out = learn.impute(dm)
    assert list(out.columns) == list(dm.columns) and (out.dtypes == dm.dtypes).all()
    assert out[['c', 's', 'label']].equals(df[['c', 's', 'label']])
    np.testing.assert_allclose(out[['h', 'w']].to_numpy(), df[['h', 'w']].to_numpy(), rtol=1e-5)
    assert out.mask(dm.isna()).equals(dm)  # the observed cells are dm's own
    learn.path = tmp_path
    learn.export('m.pkl')
    learn2 = load_learner(tmp_path / 'm.pkl')
    assert learn2.missing == 'mask' and learn2.impute(dm).equals(out)
    np.testing.assert_array_equal(learn2.bmus(dm), np.arange(12))  # BMUs of rows with holes, over what they observe


def test_impute_arrays_and_complete_maps():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    dls = SomDataLoaders.from_tensor(x, valid_pct=0, seed=0)  # trained without holes, imputes rows with holes
    learn = som_learner(dls, (4, 4), seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    xm = holey(x[:20], .3, seed=5)
    out = learn.impute(xm)
    assert isinstance(out, torch.Tensor) and out.shape == (20, 3) and not out.isnan().any()
    assert torch.equal(out[~xm.isnan()], xm[~xm.isnan()])
    w = dls.denormalize(learn.model.weights)
    b = learn.model.search(dls.preprocessor.encode(xm, missing='mask'), missing='mask')[0][:, 0]
    torch.testing.assert_close(out[xm.isnan()], w[b][xm.isnan()])  # from the BMU's codebook vector, original units


# the command

def test_cli_impute_end_to_end(tmp_path):
    df = frame(200, seed=3)
    dm = punch(df, seed=4)
    dm.to_csv(tmp_path / 'holes.csv', index=False)
    env = dict(os.environ, MPLBACKEND='Agg')
    run = lambda *a: subprocess.run([sys.executable, '-c', 'from fastsom.cli import cli; cli()', *map(str, a)],
                                    cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    r = run('train', 'holes.csv', '--cat', 'c', '--cat', 's', '--label', 'label', '--missing', 'mask',
            '--rows', '4', '--cols', '5', '--epochs', '3', '-q', '-o', 'out')
    assert r.returncode == 0, r.stderr
    r = run('impute', 'out/model.pt', 'holes.csv', '-o', 'filled.csv')
    assert r.returncode == 0, r.stderr
    filled = pd.read_csv(tmp_path / 'filled.csv')
    assert filled.shape == dm.shape and not filled.drop(columns='label').isna().any().any()
    obs = dm.notna().to_numpy()
    assert (filled.to_numpy()[obs] == pd.read_csv(tmp_path / 'holes.csv').to_numpy()[obs]).all()
    assert set(filled['c']) <= {'r', 'g', 'b'} and set(filled['s']) <= {'S', 'M', 'L'}
    stdout = run('impute', 'out/model.pt', 'holes.csv')
    assert stdout.returncode == 0 and pd.read_csv(io.StringIO(stdout.stdout)).equals(filled)
    r = run('predict', 'out/model.pt', 'holes.csv', '-o', 'bmus.csv')  # BMUs over the observed features
    assert r.returncode == 0 and len(pd.read_csv(tmp_path / 'bmus.csv')) == len(dm), r.stderr
    r = run('impute', 'out/model.pt', 'holes.csv', '-o', 'holes.csv')  # never over an input
    assert r.returncode == 1 and 'Refusing to replace holes.csv: it is the input' in r.stderr
    r = run('impute', 'out/model.pt', 'holes.csv', '-o', 'out/codebook.csv')  # nor over a file of the output
    assert r.returncode == 1 and 'part of the output fastsom train wrote' in r.stderr


def test_cli_missing_setting(tmp_path, capsys):
    dm = punch(frame(60)).drop(columns=['c', 's', 'label'])
    dm.to_csv(tmp_path / 'holes.csv', index=False)
    small = ['--rows', '3', '--cols', '3', '--epochs', '1', '-q']
    assert main(['train', str(tmp_path / 'holes.csv'), '-o', str(tmp_path / 'a'), *small]) == 1
    assert "or --missing mask to train around them" in capsys.readouterr().err  # the loaders' message, in flags
    (tmp_path / 's.ini').write_text('[fastsom]\nmissing = mask\n')
    assert read_settings(tmp_path / 's.ini')['missing'] == 'mask'
    assert main(['train', str(tmp_path / 'holes.csv'), '-o', str(tmp_path / 'b'), '--settings', str(tmp_path / 's.ini'),
                 *small]) == 0
    assert main(['train', str(tmp_path / 'holes.csv'), '-o', str(tmp_path / 'c'), '--missing', 'fill', *small]) == 1
    assert "Unknown --missing 'fill': choose one of ['none', 'mask']" in capsys.readouterr().err


# refusals

def test_refusals_say_what_to_do(tmp_path):
    som = Som((3, 3), 2)
    empty_row = torch.tensor([[1., 2.], [NAN, NAN]])
    cases = [
        (lambda: som.fit(torch.tensor([[1., NAN], [2., 3.]])), "NaN or inf in feature column(s) [1]"),
        (lambda: som.fit(empty_row, missing='mask'), "1 row(s) with no observed value (all NaN), the first at row 1"),
        (lambda: som.fit(torch.tensor([[1., math.inf], [NAN, 1.]]), missing='mask'), "inf in feature column(s) [1]"),
        (lambda: som.fit(torch.tensor([[1., NAN], [2., NAN]]), missing='mask'), "Feature column(s) [1] have no observed"),
        (lambda: som.fit(torch.ones(4, 2), missing='nan'), "Unknown missing 'nan': choose one of [None, 'mask']"),
        (lambda: Som((3, 3), 2, dist='cosine').fit(torch.ones(4, 2), missing='mask'), "needs the euclidean"),
        (lambda: SomDataLoaders.from_tensor(torch.tensor([[1., NAN], [2., 3.], [3., 4.]])),
         "or missing='mask' to train around them"),
        (lambda: SomDataLoaders.from_tensor(torch.cat([empty_row, torch.ones(5, 2)]), missing='mask', valid_pct=0),
         "no observed value"),
        (lambda: SomDataLoaders.from_tensor(torch.ones(5, 2), fill_missing='mean', missing='mask'), "exclude each other"),
        (lambda: SomDataLoaders.from_df(punch(frame()).drop(columns='label'), cat_names=['c', 's']),
         "contain NaN"),
        (lambda: SomDataLoaders.from_df(punch(frame()).drop(columns='label').assign(c=None), cat_names=['c', 's'],
                                        missing='mask'), "has no values"),
    ]
    for f, msg in cases:
        with pytest.raises((ValueError, TypeError)) as e: f()
        assert msg in str(e.value), (msg, str(e.value))
    dls = SomDataLoaders.from_tensor(torch.randn(50, 2), missing='mask', valid_pct=0)
    with pytest.raises(ValueError, match='no observed value'): dls.test_dl(empty_row)
    np.save(tmp_path / 'e.npy', torch.cat([torch.ones(5, 2), empty_row]).numpy())
    with pytest.raises(ValueError, match='the first at row 6'): SomDataLoaders.from_npy(tmp_path / 'e.npy', missing='mask')
