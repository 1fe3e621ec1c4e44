"Interpretation tests: the numbers behind every picture (hits, U-matrix, label maps, component planes), MiniSom-compatible accessors, and every plot rendering headless for rect, hex and toroidal maps."
import math, os, subprocess, sys, textwrap
from collections import Counter
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np, pandas as pd, pytest, torch
from fastsom.all import *
from fastsom.plot import unit_polygons
from conftest import som_with, holey


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close('all')


def drawn(ax):
    "The per-unit numbers a `plot_lattice` picture shows, NaN where blank"
    return np.ma.filled(ax.collections[0].get_array().astype(float), np.nan)


def trained(size, topology='rect', toroidal=False, n=400, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) + torch.randint(3, (n, 1), generator=g) * 3.
    return Som(size, d, topology, toroidal).fit(x, epochs=3, bs=128, seed=seed), x


# ---------------------------------------------------------------- hits

@pytest.mark.parametrize('size,topology,toroidal', [((5, 7), 'rect', False), ((6, 4), 'hex', False),
                                                    ((4, 6), 'rect', True), ((4, 6), 'hex', True)])
def test_hits_equal_bincount_of_bmus(size, topology, toroidal):
    som, x = trained(size, topology, toroidal)
    interp = SomInterpretation(som, x)
    ref = torch.cdist(x.double(), som.weights.double()).argmin(1)  # float64 reference
    assert torch.equal(interp.bmus, ref)
    hits = interp.activation_response()
    assert hits.shape == size
    assert torch.equal(hits.flatten(), torch.bincount(ref, minlength=som.n_units))
    # the picture: counts where hit, blank (NaN) where empty
    v = drawn(interp.plot_hits())
    h = hits.flatten().numpy()
    assert np.array_equal(v[h > 0], h[h > 0])
    assert np.isnan(v[h == 0]).all()
    # on new data
    assert torch.equal(interp.activation_response(x[:50]).flatten(), torch.bincount(ref[:50], minlength=som.n_units))


def test_empty_units_are_blank_in_hits():
    som = som_with(torch.tensor([[0., 10., 20.], [30., 40., 50.]]))
    interp = SomInterpretation(som, torch.tensor([[0.], [1.], [49.]]))
    assert interp.activation_response().tolist() == [[2, 0, 0], [0, 0, 1]]
    ax = interp.plot_hits()
    fc = ax.collections[0].to_rgba(ax.collections[0].get_array())
    assert np.allclose(fc[[1, 2, 3, 4]], [1, 1, 1, 1])  # white
    assert not np.allclose(fc[[0, 5]], [1, 1, 1, 1])
    assert '4 empty units' in ax.get_title()


# ---------------------------------------------------------------- U-matrix, by hand

W23 = torch.tensor([[0., 1., 3.], [6., 10., 15.]])  # one feature: distances are absolute differences


def test_umatrix_rect_by_hand():
    # (0,0): (0,1) (1,0) (1,1) -> 1, 6, 10;   (0,1): (0,0) (0,2) (1,0) (1,1) (1,2) -> 1, 2, 5, 9, 14
    # (0,2): (0,1) (1,1) (1,2) -> 2, 7, 12;   (1,0): (0,0) (0,1) (1,1) -> 6, 5, 4
    # (1,1): (0,0) (0,1) (0,2) (1,0) (1,2) -> 10, 9, 7, 4, 5;   (1,2): (0,1) (0,2) (1,1) -> 14, 12, 5
    expected = torch.tensor([[17 / 3, 31 / 5, 21 / 3], [15 / 3, 35 / 5, 31 / 3]])
    interp = SomInterpretation(som_with(W23), torch.zeros(1, 1))
    assert torch.allclose(interp.distance_map(), expected)
    assert torch.allclose(interp.distance_map(normalize=True), expected / expected.max())
    assert np.allclose(drawn(interp.plot_umatrix()), expected.flatten().numpy())


def test_umatrix_hex_by_hand():
    # odd rows shifted right by 0.5: (0,0) touches (0,1) and (1,0) only; (1,2) touches (0,2) and (1,1)
    # (0,1): (0,0) (0,2) (1,0) (1,1) -> 1, 2, 5, 9;   (0,2): (0,1) (1,1) (1,2) -> 2, 7, 12
    # (1,0): (0,0) (0,1) (1,1) -> 6, 5, 4;   (1,1): (0,1) (0,2) (1,0) (1,2) -> 9, 7, 4, 5
    expected = torch.tensor([[7 / 2, 17 / 4, 21 / 3], [15 / 3, 25 / 4, 17 / 2]])
    interp = SomInterpretation(som_with(W23, 'hex'), torch.zeros(1, 1))
    assert torch.allclose(interp.distance_map(), expected)
    assert np.allclose(drawn(interp.plot_umatrix()), expected.flatten().numpy())


def test_umatrix_rect_toroidal_by_hand():
    # a 2 x 3 torus: every unit is adjacent to all five others
    w = W23.flatten()
    expected = (w[:, None] - w[None]).abs().sum(1) / 5
    interp = SomInterpretation(som_with(W23, 'rect', True), torch.zeros(1, 1))
    assert torch.allclose(interp.distance_map().flatten(), expected)
    # 4 x 4 torus, w = unit index: (0,0) has (3,3) (3,0) (3,1) (0,3) (0,1) (1,3) (1,0) (1,1) = 15 12 13 3 1 7 4 5
    som = som_with(torch.arange(16.).view(4, 4), 'rect', True)
    u = SomInterpretation(som, torch.zeros(1, 1)).distance_map()
    assert u[0, 0].item() == pytest.approx(60 / 8)
    assert u[1, 1].item() == pytest.approx((5 + 4 + 3 + 1 + 1 + 3 + 4 + 5) / 8)  # interior: no wrap


def test_umatrix_hex_toroidal_by_hand():
    som = som_with(torch.arange(16.).view(4, 4), 'hex', True)
    u = SomInterpretation(som, torch.zeros(1, 1)).distance_map()
    # (0,0), an even row: (3,3) (3,0) (0,3) (0,1) (1,3) (1,0) = 15 12 3 1 7 4
    assert u[0, 0].item() == pytest.approx(42 / 6)
    # (1,1), an odd row: (0,1) (0,2) (1,0) (1,2) (2,1) (2,2) = 1 2 4 6 9 10, around 5
    assert u[1, 1].item() == pytest.approx((4 + 3 + 1 + 1 + 4 + 5) / 6)
    # (3,3), odd row, wraps on both axes: (2,3) (2,0) (3,2) (3,0) (0,3) (0,0) = 11 8 14 12 3 0, around 15
    assert u[3, 3].item() == pytest.approx((4 + 7 + 1 + 3 + 12 + 15) / 6)


@pytest.mark.parametrize('topology,toroidal,size', [('rect', False, (3, 5)), ('hex', False, (5, 3)),
                                                    ('rect', True, (4, 5)), ('hex', True, (4, 6))])
def test_umatrix_against_brute_force_geometry(topology, toroidal, size):
    "Neighbours found from unit positions alone (distance 1 on hex, king moves on rect), wrap by hand"
    rows, cols = size
    w = torch.randn(rows, cols, 3, generator=torch.Generator().manual_seed(1))
    r, c = np.divmod(np.arange(rows * cols), cols)
    if topology == 'hex':
        y, x = r * math.sqrt(3) / 2, c + .5 * (r % 2)
        dy, dx = np.abs(y[:, None] - y[None]), np.abs(x[:, None] - x[None])
        if toroidal: dy, dx = np.minimum(dy, rows * math.sqrt(3) / 2 - dy), np.minimum(dx, cols - dx)
        adj = np.abs(np.hypot(dy, dx) - 1) < 1e-6
    else:
        dr, dc = np.abs(r[:, None] - r[None]), np.abs(c[:, None] - c[None])
        if toroidal: dr, dc = np.minimum(dr, rows - dr), np.minimum(dc, cols - dc)
        adj = (dr <= 1) & (dc <= 1) & ~np.eye(rows * cols, dtype=bool)
    wf = w.view(-1, 3).numpy()
    d = np.linalg.norm(wf[:, None] - wf[None], axis=-1)
    expected = (d * adj).sum(1) / adj.sum(1)
    interp = SomInterpretation(som_with(w, topology, toroidal), torch.zeros(1, 3))
    assert np.allclose(interp.distance_map().flatten().numpy(), expected, atol=1e-5)
    assert np.allclose(drawn(interp.plot_umatrix()), expected, atol=1e-5)


# ---------------------------------------------------------------- labels

def labelled():
    "Units at 0, 10, ..., 50 on a 2 x 3 map; units (0,1) and (1,1) get no samples, (1,0) only an unlabelled one"
    som = som_with(torch.tensor([[0., 10., 20.], [30., 40., 50.]]))
    x = torch.tensor([[0.], [.1], [20.], [21.], [30.], [50.], [50.2], [49.]])
    labels = ['a', 'b', 'b', 'b', None, 'c', 'c', 'a']
    return SomInterpretation(som, x, labels=labels)


def test_label_map_leaves_empty_units_empty():
    interp = labelled()
    assert interp.classes == ['a', 'b', 'c']
    m = interp.majority_labels()
    assert m.tolist() == [['a', None, 'b'], [None, None, 'c']]  # (0,0) ties a/b: first class wins
    lm = interp.labels_map()
    assert set(lm) == {(0, 0), (0, 2), (1, 2)}
    assert lm[0, 0] == Counter(a=1, b=1) and lm[0, 2] == Counter(b=2) and lm[1, 2] == Counter(c=2, a=1)
    assert lm[0, 1] == Counter()  # an empty unit looks up as an empty Counter, as in MiniSom
    p = interp.class_proportions()
    assert np.isnan(p[0, 1]).all() and np.isnan(p[1, 0]).all() and np.isnan(p[1, 1]).all()
    assert np.allclose(p[1, 2], [1 / 3, 0, 2 / 3])
    pur = interp.purity()
    assert np.isnan(pur[[0, 1, 1], [1, 0, 1]]).all()
    assert pur[0, 0] == .5 and pur[0, 2] == 1


def test_label_pictures_leave_empty_units_blank():
    interp = labelled()
    for ax in (interp.plot_class_map(), interp.plot_class_map(purity=True)):
        fc = ax.collections[0].get_facecolor()
        assert np.allclose(fc[[1, 3, 4]], 1)  # white
        assert not np.allclose(fc[[0, 2, 5]], 1)
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ['a', 'b', 'c']
    # purity: the pure unit (0,2) keeps its class colour, the half-mixed (0,0) is paler but not white
    fc = interp.plot_class_map(purity=True).collections[0].get_facecolor()
    assert np.allclose(fc[2], plt.get_cmap('tab10')(1))
    assert (fc[0, :3] > plt.get_cmap('tab10')(0)[:3]).all() and not np.allclose(fc[0], 1)
    ax = interp.plot_class_map(proportions=True)
    assert len(ax.collections[1].get_paths()) == 5  # wedges: (0,0) a+b, (0,2) b, (1,2) c+a
    ax = interp.plot_labels()
    assert sorted(t.get_text() for t in ax.texts) == ['a', 'b', 'c']
    yx = interp.grid.coords.numpy()
    pos = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert pos == {(0, 0): 'a', (0, 2): 'b', (1, 2): 'c'}
    ax = interp.plot_umatrix('labels')
    assert sorted(t.get_text() for t in ax.texts) == ['a', 'b', 'c']


def test_labels_as_codes_and_dataframe():
    som = som_with(torch.tensor([[0., 10.]]))
    x = torch.tensor([[0.], [10.], [11.]])
    interp = SomInterpretation(som, x, labels=pd.DataFrame({'y': [1, 2, 2], 'z': ['p', 'q', 'q']}), label='z')
    assert interp.majority_labels().tolist() == [['p', 'q']] and interp.label_name == 'z'
    interp = SomInterpretation(som, x, labels=torch.tensor([3, 1, 1]))
    assert interp.classes == [1, 3] and interp.majority_labels().tolist() == [[3, 1]]
    with pytest.raises(ValueError, match='one label per sample'): SomInterpretation(som, x, labels=[1, 2])
    # new samples with their labels, unlabelled (None/NaN) ones not counted
    lm = interp.labels_map(torch.tensor([[1.], [9.], [12.], [2.]]), ['u', 'v', None, float('nan')])
    assert dict(lm) == {(0, 0): Counter(u=1), (0, 1): Counter(v=1)}
    with pytest.raises(ValueError, match='No labels'): SomInterpretation(som, x).labels_map()


# ---------------------------------------------------------------- scores streamed batch by batch

def numpy_scores(w, x, shape, toroidal):
    ("QE, TE and hits by hand in float64 numpy: Euclidean distances over the observed features rescaled by "
     "n_features / n_observed, the rect lattice's 8 neighbours (wrapping when toroidal)")
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    obs = ~np.isnan(x)
    diff = np.where(obs[:, None], np.nan_to_num(x)[:, None] - w[None], 0.)
    d = np.sqrt((diff ** 2).sum(-1) * x.shape[1] / obs.sum(1, keepdims=True))
    first, second = np.argsort(d, 1, kind='stable')[:, :2].T
    rows, cols = shape
    (r1, c1), (r2, c2) = np.divmod(first, cols), np.divmod(second, cols)
    dr, dc = abs(r1 - r2), abs(c1 - c2)
    if toroidal: dr, dc = np.minimum(dr, rows - dr), np.minimum(dc, cols - dc)
    return d[np.arange(len(x)), first].mean(), ((dr > 1) | (dc > 1)).mean(), np.bincount(first, minlength=rows * cols)


@pytest.mark.parametrize('toroidal,missing', [(False, None), (True, None), (False, 'mask')])
def test_stream_scores_equal_float64_numpy(toroidal, missing):
    som, x = trained((5, 6), 'rect', toroidal)
    if missing: x = holey(x, .3)
    sc = stream_scores(som, x.split(37), missing=missing)  # 11 batches, the last one short
    qe, te, hits = numpy_scores(som.weights, x, (5, 6), toroidal)
    assert sc['rows'] == len(x) and sc['hits'].shape == (5, 6)
    assert np.array_equal(sc['hits'].flatten().numpy(), hits)
    assert sc['qe'] == pytest.approx(qe, rel=1e-5)
    assert 0 < te and sc['te'] == pytest.approx(te, abs=1e-12)
    assert sc['unit_labels'] is None and sc['label_name'] is None


def test_stream_scores_majority_ties_and_unlabelled_rows():
    interp = labelled()  # hand-counted: (0,0) ties a/b, (1,0) holds one unlabelled row
    labels = ['a', 'b', 'b', 'b', None, 'c', 'c', 'a']
    sc = stream_scores(interp.som, interp.x.split(3), labels=labels)
    assert sc['unit_labels'].tolist() == [['a', None, 'b'], [None, None, 'c']]
    assert sc['hits'].tolist() == [[2, 0, 2], [1, 0, 3]] and sc['rows'] == 8
    df = pd.DataFrame({'y': labels, 'z': list('pqqqqrrr')})
    assert stream_scores(interp.som, interp.x.split(3), labels=df, label='z')['unit_labels'].tolist() == \
        [['p', None, 'q'], ['q', None, 'r']]
    assert stream_scores(interp.som, interp.x.split(3), labels=df)['label_name'] == 'y'
    with pytest.raises(ValueError, match='Got 7 labels for more samples'):
        stream_scores(interp.som, interp.x.split(3), labels=labels[:7])
    with pytest.raises(ValueError, match='Got 9 labels for 8 samples'):
        stream_scores(interp.som, interp.x.split(3), labels=labels + ['a'])
    with pytest.raises(ValueError, match='no rows'): stream_scores(interp.som, [])
    with pytest.raises(ValueError, match='single unit'): stream_scores(som_with([[0.]]), [interp.x])


@pytest.mark.parametrize('topology,toroidal,missing', [('hex', False, None), ('rect', True, None),
                                                       ('hex', False, 'mask')])
def test_stream_scores_equal_the_interpretation_of_all_rows(topology, toroidal, missing):
    SomDataLoaders = pytest.importorskip('fastsom.data').SomDataLoaders
    som_learner = pytest.importorskip('fastsom.learner').som_learner
    rng = np.random.default_rng(0)
    y = rng.integers(3, size=500)
    x = rng.normal(size=(3, 4))[y] * 3 + rng.normal(size=(500, 4))
    df = pd.DataFrame(holey(x, .2).numpy() if missing else x, columns=list('abcd'))
    df['y'] = pd.Series(np.array(['p', 'q', 'r'], dtype=object)[y]).where(rng.random(500) > .1)  # NaN: unlabelled
    df['z'] = y
    dls = SomDataLoaders.from_df(df, label_names=['y', 'z'], bs=64, seed=0, missing=missing)
    learn = som_learner(dls, size=(5, 6), topology=topology, toroidal=toroidal, seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    dl = dls.train.new(shuffle=False, drop_last=False)
    assert len(dl) > 5 and learn.missing == missing  # several batches
    for label in (None, 'z'):
        ref = SomInterpretation.from_learner(learn, dl=dl, label=label)
        sc = stream_scores(learn.model, dl, label=label, missing=learn.missing)
        assert sc['rows'] == len(ref.x) == len(dls.train.x)
        assert torch.equal(sc['hits'], ref.activation_response())
        assert sc['qe'] == pytest.approx(ref.dists.double().mean().item(), rel=1e-6)
        assert sc['te'] == pytest.approx(learn.model.topographic_error(ref.x, learn.missing), abs=1e-7)
        assert sc['unit_labels'].tolist() == ref.majority_labels().tolist()
        assert sc['label_name'] == ref.label_name == (label or 'y')


# ---------------------------------------------------------------- MiniSom compatibility

def test_accessors_match_minisom():
    minisom = pytest.importorskip('minisom')
    som, x = trained((4, 5), 'rect')
    labels = np.array(list('abc'))[torch.randint(3, (len(x),), generator=torch.Generator().manual_seed(0)).numpy()]
    interp = SomInterpretation(som, x, labels=labels)
    ms = minisom.MiniSom(4, 5, 4)
    ms._weights = som.codebook.double().numpy().copy()
    xn = x.double().numpy()
    assert np.array_equal(interp.activation_response().numpy(), ms.activation_response(xn))
    assert np.allclose(interp.distance_map(normalize=True).numpy(), ms.distance_map(scaling='mean'), atol=1e-5)
    assert dict(interp.labels_map()) == dict(ms.labels_map(xn, labels))
    wm, mwm = interp.win_map(return_indices=True), ms.win_map(xn, return_indices=True)
    assert set(wm) == set(mwm) and all(wm[k] == mwm[k] for k in wm)
    samples = interp.win_map()
    k = next(iter(samples))
    assert torch.equal(torch.stack(samples[k]), x[wm[k]])


# ---------------------------------------------------------------- component planes, decoding

def test_component_planes_equal_denormalised_codebook_plain():
    som, x = trained((4, 6), 'hex')
    mean, std = torch.tensor([100., -5., 0., 2.]), torch.tensor([10., 2., 1., .5])
    interp = SomInterpretation(som, x, decode=lambda t: t * std + mean, feature_names=list('pqrs'))
    axs = interp.plot_component_planes()
    assert axs.shape == (1, 4)
    den = som.weights * std + mean
    for j, ax in enumerate(axs.flat):
        assert ax.get_title() == 'pqrs'[j]
        assert np.allclose(drawn(ax), den[:, j].numpy(), rtol=1e-5)
    axs = interp.plot_component_planes(['s', 0], ncols=1)
    assert axs.shape == (2, 1) and axs[0, 0].get_title() == 's' and axs[1, 0].get_title() == 'p'
    with pytest.raises(ValueError, match='Unknown feature'): interp.plot_component_planes(['nope'])


def mixed_learner(size=(4, 5), topology='rect', toroidal=False, epochs=3):
    SomDataLoaders = pytest.importorskip('fastsom.data').SomDataLoaders
    som_learner = pytest.importorskip('fastsom.learner').som_learner
    rng = np.random.default_rng(0)
    y = rng.integers(3, size=300)
    df = pd.DataFrame(rng.normal(size=(3, 3))[y] * 3 + rng.normal(size=(300, 3)), columns=['a', 'b', 'c'])
    df['a'] = df['a'] * 20 + 500
    df['kind'] = np.array(['u', 'v', 'w'])[y]
    df['label'] = np.array(['x', 'y', 'z'])[y]
    dls = SomDataLoaders.from_df(df, cat_names='kind', label_names='label', bs=64, seed=0)
    learn = som_learner(dls, size=size, topology=topology, toroidal=toroidal, seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn, df


def test_component_planes_equal_denormalised_codebook_dataloaders():
    learn, df = mixed_learner()
    dls = learn.dls
    interp = SomInterpretation.from_learner(learn)
    axs = interp.plot_component_planes()
    titles = [a.get_title() for a in axs.flat if a.get_visible()]
    assert titles == ['a', 'b', 'c', 'kind']
    den = dls.denormalize(learn.model.weights.detach())
    for j in range(3): assert np.allclose(drawn(axs.flat[j]), den[:, j].numpy(), rtol=1e-5)
    # the categorical plane: each unit coloured as its most likely level
    levels = ['u', 'v', 'w']
    blk = den[:, 3:6].argmax(1).numpy()
    fc = axs.flat[3].collections[0].get_facecolor()
    colours = {lv: plt.get_cmap('tab10')(i) for i, lv in enumerate(levels)}
    assert all(np.allclose(fc[u], colours[levels[blk[u]]]) for u in range(learn.model.n_units))
    assert interp.decoded_codebook()['kind'].tolist() == [levels[i] for i in blk]


def test_from_learner_reads_every_row_once():
    learn, df = mixed_learner()
    dls, som = learn.dls, learn.model
    seen = []  # the rows each get_preds pass reads
    orig = learn.get_preds
    learn.get_preds = lambda *a, dl=None, **k: seen.append(dl.rows.tolist()) or orig(*a, dl=dl, **k)
    interp = SomInterpretation.from_learner(learn)
    assert sorted(r for rows in seen for r in rows) == list(range(len(df)))  # each row exactly once
    assert len(dls.valid.x) > 0 and len(seen) == 2  # one pass per split
    # in the DataFrame's order, labels aligned: an independent encoding of df, and df's own label column
    assert torch.allclose(interp.x, dls.test_dl(df).x)
    assert torch.equal(interp.bmus, torch.cdist(interp.x, som.weights).argmin(1))
    assert interp.labels.tolist() == df['label'].tolist()
    assert interp.feature_names == dls.feature_names
    # plots and accessors then need no more passes
    interp.plot_hits(); interp.plot_class_map(); interp.labels_map(); interp.top_losses(3); interp.win_map()
    assert len(seen) == 2
    # one split, in split order
    for i, dl in enumerate(dls.loaders):
        s = SomInterpretation.from_learner(learn, ds_idx=i)
        assert torch.equal(s.x, dl.x) and torch.equal(s.bmus, som.bmu(dl.x))
        assert s.labels.tolist() == df['label'].to_numpy()[dl.rows].tolist()
    # a test DataLoader with its labels
    t = SomInterpretation.from_learner(learn, dl=dls.test_dl(df.iloc[::-1]))
    assert torch.equal(t.x, interp.x.flip(0)) and t.labels.tolist() == df['label'].tolist()[::-1]
    with pytest.raises(ValueError, match='below 2'): SomInterpretation.from_learner(learn, ds_idx=2)
    with pytest.raises(ValueError, match='integer >= 0'): SomInterpretation.from_learner(learn, ds_idx=-1)


def test_from_learner_all_digits():
    load_digits = pytest.importorskip('sklearn.datasets').load_digits
    d = load_digits()
    dls = SomDataLoaders.from_array(d.data.astype(np.float32), labels=d.target, norm=None, valid_pct=.2, seed=0)
    learn = som_learner(dls, size=(8, 8), seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    interp = SomInterpretation.from_learner(learn)
    x = torch.as_tensor(d.data, dtype=torch.float32)
    assert len(interp.x) == 1797 and torch.equal(interp.x, x)
    hits = interp.activation_response()
    assert hits.sum() == 1797
    assert torch.equal(hits.flatten(), torch.bincount(torch.cdist(x, learn.model.weights).argmin(1), minlength=64))
    assert np.array_equal(interp.labels.astype(int), d.target)
    assert len(SomInterpretation.from_learner(learn, ds_idx=1).x) == len(dls.valid.x) == 359
    assert len(SomInterpretation.from_learner(learn, ds_idx=0).x) == 1797 - 359


def test_from_learner_label_frame_and_empty_split():
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.normal(size=(120, 2)), columns=['a', 'b'])
    df['y'], df['z'] = rng.integers(3, size=120), np.array(list('pqr'))[rng.integers(3, size=120)]
    learn = som_learner(SomDataLoaders.from_df(df, label_names=['y', 'z'], seed=0), size=(3, 3), seed=0)
    interp = SomInterpretation.from_learner(learn, label='z')  # two label columns, both splits
    assert interp.labels.tolist() == df['z'].tolist() and interp.label_name == 'z'
    assert SomInterpretation.from_learner(learn).labels.tolist() == df['y'].tolist()
    learn = som_learner(SomDataLoaders.from_df(df, label_names=['y', 'z'], valid_pct=0, seed=0), size=(3, 3), seed=0)
    assert SomInterpretation.from_learner(learn).labels.tolist() == df['y'].tolist()  # no validation rows
    with pytest.raises(ValueError, match='DataLoader 1 of `learn.dls` is empty'):
        SomInterpretation.from_learner(learn, ds_idx=1)


def test_exported_learner_interprets_given_data_in_fresh_process(tmp_path):
    learn, df = mixed_learner()
    ref = SomInterpretation.from_learner(learn)
    learn.export(tmp_path / 'learn.pkl')
    df.to_csv(tmp_path / 'df.csv', index=False)
    np.save(tmp_path / 'bmus.npy', ref.bmus.numpy())
    ref.decoded_codebook().to_pickle(tmp_path / 'codebook.pkl')
    code = textwrap.dedent(f'''
        import numpy as np, pandas as pd, pytest
        from fastai.learner import load_learner
        from fastsom.all import *
        learn = load_learner({str(tmp_path / 'learn.pkl')!r})
        df = pd.read_csv({str(tmp_path / 'df.csv')!r})
        interp = SomInterpretation.from_learner(learn, dl=learn.dls.test_dl(df))
        assert (interp.bmus.numpy() == np.load({str(tmp_path / 'bmus.npy')!r})).all()
        assert interp.labels.tolist() == df['label'].tolist()
        pd.testing.assert_frame_equal(interp.decoded_codebook(), pd.read_pickle({str(tmp_path / 'codebook.pkl')!r}))
        interp.plot_class_map(); interp.plot_component_planes()
        hint = r'pass the data to interpret as `dl=learn\\.dls\\.test_dl\\(your_data\\)`'
        with pytest.raises(ValueError, match=hint):
            SomInterpretation.from_learner(learn)
        print('ok')
    ''')
    env = {**os.environ, 'MPLBACKEND': 'Agg'}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr[-3000:]


def test_top_losses_decoded():
    learn, df = mixed_learner()
    interp = SomInterpretation.from_learner(learn)
    tl = interp.top_losses(4)
    assert list(tl.columns[:4]) == ['dist', 'row', 'col', 'label']
    d = torch.cdist(interp.x, learn.model.weights).min(1).values
    assert tl.index.tolist() == d.argsort(descending=True)[:4].tolist()
    assert np.allclose(tl['dist'], d.sort(descending=True).values[:4].numpy(), atol=1e-4)
    rows = tl.index.to_numpy()  # all rows, in the DataFrame's order
    assert np.allclose(tl['a'], df['a'].to_numpy()[rows], atol=1e-3)
    assert tl['kind'].tolist() == df['kind'].to_numpy()[rows].tolist()
    rc = learn.model.bmu_rc(interp.x[tl.index.tolist()])
    assert tl[['row', 'col']].to_numpy().tolist() == rc.tolist()
    best = interp.top_losses(2, largest=False)
    assert best['dist'].is_monotonic_increasing and best['dist'].iloc[-1] <= tl['dist'].iloc[-1]


# ---------------------------------------------------------------- codebook colours, predictions

def test_codebook_colours():
    w = torch.tensor([[[0., 0, 0], [1, 0, 0]], [[0, 1, 0], [.2, .4, 1]]])
    assert np.allclose(SomInterpretation(som_with(w), torch.zeros(1, 3)).codebook_colors(), w.numpy())
    # 0-255 values are divided by 255
    assert np.allclose(SomInterpretation(som_with(w * 255), torch.zeros(1, 3)).codebook_colors(), w.numpy(), atol=1e-6)
    # other ranges are scaled to [0, 1] per channel
    c = SomInterpretation(som_with(w * 10 - 3), torch.zeros(1, 3)).codebook_colors()
    assert c.min() == 0 and c.max() == 1
    # more features: principal components, each channel spanning [0, 1]
    som, x = trained((5, 6), 'hex', d=6)
    c = SomInterpretation(som, x).codebook_colors()
    assert c.shape == (5, 6, 3) and np.allclose(c.reshape(-1, 3).min(0), 0) and np.allclose(c.reshape(-1, 3).max(0), 1)
    # the first channel is the first principal component
    wc = som.weights - som.weights.mean(0)
    pc1 = wc @ torch.linalg.svd(wc, full_matrices=False)[2][0]
    assert abs(np.corrcoef(c.reshape(-1, 3)[:, 0], pc1.numpy())[0, 1]) > .999
    ax = SomInterpretation(som, x).plot_codebook()
    assert np.allclose(ax.collections[0].get_facecolor()[:, :3], c.reshape(-1, 3))


def test_predictions_over_the_map():
    som, x = trained((4, 6), 'rect')
    interp = SomInterpretation(som, x, feature_names=list('pqrs'))

    class Model:  # sklearn-like
        def predict(self, df): return (df['p'] > 0).map({True: 'pos', False: 'neg'}).to_numpy()
        def predict_proba(self, df): return np.stack([df['p'], -df['p']], 1)

    p = interp.predict_codebook(Model())
    assert p.tolist() == np.where(som.weights[:, 0].numpy() > 0, 'pos', 'neg').tolist()
    ax = interp.plot_predictions(Model())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == sorted(set(p))
    ax = interp.plot_predictions(Model(), 'predict_proba', column=1)
    assert np.allclose(drawn(ax), -som.weights[:, 0].numpy())
    with pytest.raises(ValueError, match='column='): interp.plot_predictions(Model(), 'predict_proba')
    ax = interp.plot_predictions(lambda df: df['q'].to_numpy() * 2)
    assert np.allclose(drawn(ax), som.weights[:, 1].numpy() * 2)
    ax = interp.plot_predictions(torch.nn.Linear(4, 1))  # a torch module gets the raw codebook
    assert drawn(ax).shape == (24,)
    ax = interp.plot_feature_over_map(np.arange(24).reshape(4, 6))
    assert np.array_equal(drawn(ax), np.arange(24))
    with pytest.raises(ValueError, match='one value per unit'): interp.plot_feature_over_map(np.arange(5))


# ---------------------------------------------------------------- every plot renders

def all_plots(interp, labels=True):
    yield 'codebook', interp.plot_codebook()
    yield 'umatrix', interp.plot_umatrix()
    yield 'umatrix_hits', interp.plot_umatrix('hits')
    yield 'hits', interp.plot_hits(annotate=True)
    yield 'planes', interp.plot_component_planes()
    yield 'feature', interp.plot_feature_over_map(interp.som.weights[:, 0])
    yield 'predictions', interp.plot_predictions(lambda df: df.iloc[:, 0].to_numpy())
    if labels:
        yield 'umatrix_labels', interp.plot_umatrix('labels')
        yield 'labels', interp.plot_labels()
        yield 'class_map', interp.plot_class_map()
        yield 'purity', interp.plot_class_map(purity=True)
        yield 'pies', interp.plot_class_map(proportions=True)


def check_png(obj, path):
    fig = (obj.flat[0] if isinstance(obj, np.ndarray) else obj).figure
    fig.savefig(path, dpi=40)
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('size,topology,toroidal', [((5, 8), 'rect', False), ((7, 4), 'hex', False),
                                                    ((4, 6), 'rect', True), ((6, 5), 'hex', True), ((1, 6), 'hex', False)])
def test_every_plot_renders(tmp_path, size, topology, toroidal):
    som, x = trained(size, topology, toroidal)
    labels = np.array(['cat', 'dog', 'eel'])[(x[:, 0] > 0).long() + (x[:, 1] > 1).long()]
    interp = SomInterpretation(som, x, labels=labels)
    for name, obj in all_plots(interp): check_png(obj, tmp_path / f'{name}.png')
    # on given axes
    fig, axs = plt.subplots(1, 2)
    assert interp.plot_umatrix(ax=axs[0]) is axs[0] and interp.plot_class_map(ax=axs[1]) is axs[1]
    check_png(axs, tmp_path / 'both.png')


@pytest.mark.parametrize('topology,toroidal', [('rect', False), ('hex', False), ('hex', True)])
def test_every_plot_renders_from_learner(tmp_path, topology, toroidal):
    learn, df = mixed_learner((4, 6), topology, toroidal, epochs=2)
    interp = SomInterpretation.from_learner(learn)
    for name, obj in all_plots(interp): check_png(obj, tmp_path / f'{name}.png')


def test_plots_without_labels_and_options(tmp_path):
    som, x = trained((3, 7), 'hex')
    interp = SomInterpretation(som, x)
    for name, obj in all_plots(interp, labels=False): check_png(obj, tmp_path / f'{name}.png')
    with pytest.raises(ValueError, match='No labels'): interp.plot_class_map()
    with pytest.raises(ValueError, match="choose None, 'hits' or 'labels'"): interp.plot_umatrix('nope')
    ax = interp.plot_umatrix(cmap='magma', figsize=(4, 3), colorbar=False, title='U')
    assert tuple(ax.figure.get_size_inches()) == (4, 3) and ax.get_title() == 'U'
    assert ax.collections[0].get_cmap().name.startswith('magma')


# ---------------------------------------------------------------- geometry of the picture

@pytest.mark.parametrize('topology', ['rect', 'hex'])
def test_cells_tile_the_plane_without_overlap(topology):
    "Neighbouring cells share an edge; cell areas add up to the lattice's area (no overlaps, no gaps inside)"
    g = Grid(4, 5, topology)
    p = unit_polygons(g)
    x, y = p[..., 0], p[..., 1]
    area = .5 * np.abs((x * np.roll(y, -1, 1) - np.roll(x, -1, 1) * y).sum(1))  # shoelace
    cell = math.sqrt(3) / 2 if topology == 'hex' else 1.  # area of a hexagon of width 1, or a unit square
    assert np.allclose(area, cell)
    centres = p.mean(1)
    assert np.allclose(centres[:, ::-1], g.coords.numpy())
    ax = plot_lattice(g, np.arange(20.))
    y0, y1 = ax.get_ylim()
    assert y0 > y1  # row 0 drawn at the top
    assert ax.get_aspect() == 1


def test_stream_scores_read_a_shuffled_loader_in_order():
    "Labels are in the loader's row order: a shuffled training loader is read unshuffled, every row once"
    SomDataLoaders = pytest.importorskip('fastsom.data').SomDataLoaders
    x = np.r_[np.zeros(120), np.full(80, 10.)].astype(np.float32)[:, None]
    dls = SomDataLoaders.from_array(x, labels=np.r_[['a'] * 120, ['b'] * 80], bs=16, norm=None, seed=0, valid_pct=0)
    assert dls.train.shuffle
    sc = stream_scores(som_with([[0., 10.]]), dls.train)
    assert sc['unit_labels'].tolist() == [['a', 'b']] and sc['hits'].tolist() == [[120, 80]] and sc['rows'] == 200


@pytest.mark.parametrize('size', [(10, 10), (16, 20)])  # min, and the sliced minimum from 256 units
def test_tied_units_give_the_same_bmu_to_hits_and_stream(size):
    "Duplicate codebook vectors: the BMU of the two-nearest search (stream, TE) is the one-nearest search's"
    som = Som(size, 2)
    som.weights.zero_()
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(som.search(x, 2)[0][:, 0], som.search(x)[0][:, 0])
    assert torch.equal(stream_scores(som, [x])['hits'], SomInterpretation(som, x).activation_response())
