"Quality measures against independent references (scikit-learn, scipy, float64 numpy loops), MiniSom's accessors and decays"
import math, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from sklearn.manifold import trustworthiness as sk_trustworthiness
from sklearn.metrics import davies_bouldin_score, silhouette_score
import fastsom.quality as quality
from fastsom.quality import (combined_error, davies_bouldin, distortion, explained_variance,
                             neighbourhood_preservation, silhouette, topographic_product, trustworthiness)
from fastsom.som import Som, default_sigma, get_schedule, schedules
from conftest import blobs, som_with

LATTICES = [('rect', False), ('hex', False), ('rect', True), ('hex', True)]
IDS = ['rect', 'hex', 'rect-toroidal', 'hex-toroidal']


# --- independent references, in float64 numpy ---
def lattice_xy(rows, cols, topology):
    "(y, x) of each unit, row-major: hex rows sqrt(3)/2 apart, odd rows shifted right by half a step"
    r, c = np.divmod(np.arange(rows * cols), cols)
    if topology == 'hex': return np.stack([r * math.sqrt(3) / 2, c + .5 * (r % 2)], 1)
    return np.stack([r, c], 1).astype(float)


def lattice_dist(rows, cols, topology, toroidal):
    "(units, units) Euclidean lattice distances, each axis the shorter way round when toroidal"
    p = lattice_xy(rows, cols, topology)
    d = np.abs(p[:, None] - p[None])
    if toroidal:
        period = np.array([rows * (math.sqrt(3) / 2 if topology == 'hex' else 1.), cols])
        d = np.minimum(d, period - d)
    return np.sqrt((d ** 2).sum(-1))


def exact_ties(d, topology):
    "Lattice distances rounded to exact ties (squared distances are multiples of 1/4 on hex maps, integers on rect)"
    s = 4 if topology == 'hex' else 1
    return np.sqrt(np.round(d ** 2 * s) / s)


def bmus_np(x, w, k=1):
    "Indices of the k nearest codebook vectors, float64"
    return np.argsort(((x[:, None] - w[None]) ** 2).sum(-1), axis=1, kind='stable')[:, :k]


def trained(topology, toroidal, n=240, size=(6, 5), seed=0):
    "A map trained on blobs, with its data as float64 numpy"
    x = blobs(n, 4, seed=seed)
    som = Som(size, 4, topology, toroidal).fit(x, epochs=4, seed=seed)
    return som, x, som.weights.double().numpy(), x.double().numpy()


def venna_kaski_np(xn, dlat, k):
    "T(k) and M(k) by loops: map order (lattice distance, data distance, index), data order (data distance, index)"
    n = len(xn)
    dv = np.sqrt(((xn[:, None] - xn[None]) ** 2).sum(-1))
    t = m = 0
    for i in range(n):
        others = np.array([j for j in range(n) if j != i])
        data_order = others[np.lexsort((others, dv[i, others]))]
        map_order = others[np.lexsort((others, dv[i, others], dlat[i, others]))]
        r = {j: p + 1 for p, j in enumerate(data_order)}
        rhat = {j: p + 1 for p, j in enumerate(map_order)}
        t += sum(max(0, r[j] - k) for j in map_order[:k])
        m += sum(max(0, rhat[j] - k) for j in data_order[:k])
    z = 2 / (n * k * (2 * n - 3 * k - 1))
    return 1 - z * t, 1 - z * m


def topographic_product_np(w, dlat):
    "Bauer and Pawelzik's P by loops, ties broken by unit index (stable sorts)"
    m = len(w)
    dv = np.sqrt(((w[:, None] - w[None]) ** 2).sum(-1))
    total = 0.
    for j in range(m):
        nv = [u for u in np.argsort(dv[j], kind='stable') if u != j]
        na = [u for u in np.argsort(dlat[j], kind='stable') if u != j]
        prod = 0.
        for k in range(1, m):
            l = k - 1
            prod += math.log(dv[j, na[l]] / dv[j, nv[l]]) + math.log(dlat[j, na[l]] / dlat[j, nv[l]])
            total += prod / (2 * k)
    return total / (m * (m - 1))


# --- the module stays free of fastai ---
def test_import_does_not_load_fastai():
    code = ("import sys, fastsom.quality\n"
            "bad = [m for m in sys.modules if m == 'fastai' or m.startswith('fastai.')]\n"
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- trustworthiness and neighbourhood preservation ---
@pytest.mark.parametrize('k', [2, 4, 6])
def test_trustworthiness_is_sklearns_on_bmu_lattice_coordinates_chain(k):
    "One sample per unit of a 1 x 30 chain, k even: no tie decides the map's k nearest, so sklearn's own NN agree"
    w = torch.randn(30, 3, generator=torch.Generator().manual_seed(k))
    som = som_with(w[None])
    assert (som.bmu(w) == torch.arange(30)).all()
    y = lattice_xy(1, 30, 'rect')[som.bmu(w).numpy()]
    assert trustworthiness(som, w, k) == pytest.approx(sk_trustworthiness(w.numpy(), y, n_neighbors=k), abs=1e-12)


@pytest.mark.parametrize('k', [2, 4])
def test_trustworthiness_is_sklearns_on_a_ring(k):
    "A toroidal 1 x 24 chain is a ring: on a circle, Euclidean nearest neighbours are the ring's"
    t = torch.arange(24) * 2 * math.pi / 24  # data on a noisy circle, in the ring's order
    w = torch.stack([t.cos(), t.sin(), torch.zeros(24)], 1)
    w += .2 * torch.randn(24, 3, generator=torch.Generator().manual_seed(1))
    som = som_with(w[None], toroidal=True)
    a = 2 * math.pi * som.bmu(w).numpy() / 24
    y = np.stack([np.cos(a), np.sin(a)], 1)
    assert trustworthiness(som, w, k) == pytest.approx(sk_trustworthiness(w.numpy(), y, n_neighbors=k), abs=1e-12)
    # unwrapped, the chain tears the ring open: the neighbours across the cut are lost (continuity falls)
    assert neighbourhood_preservation(som_with(w[None]), w, k) < neighbourhood_preservation(som, w, k)


def composite(xn, dlat):
    "Distances that order samples by lattice distance first, then data distance: sqrt(L^2 dlat^2 + dv^2)"
    dv2 = ((xn[:, None] - xn[None]) ** 2).sum(-1)
    big = 1e3 * dv2.max() / .25  # lattice squared distances differ by at least 1/4 (hex), so L^2 * 1/4 >> dv^2
    return np.sqrt(big * dlat ** 2 + dv2), big


@pytest.mark.parametrize('topology,toroidal', LATTICES, ids=IDS)
@pytest.mark.parametrize('k', [3, 7])
def test_venna_kaski_against_sklearn_and_loops(topology, toroidal, k):
    som, x, _, xn = trained(topology, toroidal, n=160)
    b = som.bmu(x).numpy()
    assert len(np.unique(b)) < len(b)  # samples share BMUs: the ties are real
    dlat = exact_ties(lattice_dist(*som.size, topology, toroidal), topology)[b][:, b]
    t, m = trustworthiness(som, x, k), neighbourhood_preservation(som, x, k)
    assert (t, m) == pytest.approx(venna_kaski_np(xn, dlat, k), abs=1e-12)
    dc, big = composite(xn, dlat)
    # continuity is trustworthiness with the two spaces swapped; sklearn takes the map's distances precomputed
    assert m == pytest.approx(sk_trustworthiness(dc, xn, n_neighbors=k, metric='precomputed'), abs=1e-12)
    if not toroidal:  # sklearn finds the map's neighbours with Euclidean NN: an embedding exists off the torus
        y = np.hstack([math.sqrt(big) * lattice_xy(*som.size, topology)[b], xn])
        assert t == pytest.approx(sk_trustworthiness(xn, y, n_neighbors=k), abs=1e-12)
    assert .5 < t < 1 and .5 < m < 1


def test_venna_kaski_blocks_and_sample(monkeypatch):
    som, x, _, _ = trained('hex', True)
    full = trustworthiness(som, x, 5), neighbourhood_preservation(som, x, 5)
    monkeypatch.setattr(quality, '_block', 1000)  # 4 rows per block
    assert (trustworthiness(som, x, 5), neighbourhood_preservation(som, x, 5)) == pytest.approx(full, abs=1e-12)
    assert trustworthiness(som, x, 5, sample=len(x)) == full[0]
    s = [trustworthiness(som, x, 5, sample=100, seed=s) for s in (0, 0, 1)]
    assert s[0] == s[1] != s[2]


def test_venna_kaski_refuses_large_k():
    som, x, _, _ = trained('rect', False)
    with pytest.raises(ValueError, match="k=50 needs more than 100 samples, got 60"):
        trustworthiness(som, x, 50, sample=60)


# --- topographic product ---
@pytest.mark.parametrize('topology,toroidal', LATTICES, ids=IDS)
def test_topographic_product_against_loops(topology, toroidal, monkeypatch):
    som, _, w, _ = trained(topology, toroidal, size=(4, 5))
    dlat = exact_ties(lattice_dist(*som.size, topology, toroidal), topology)
    ref = topographic_product_np(w, dlat)
    assert topographic_product(som) == pytest.approx(ref, abs=1e-10)
    monkeypatch.setattr(quality, '_block', 40)  # 2 reference units per block
    assert topographic_product(som) == pytest.approx(ref, abs=1e-10)


def test_topographic_product_sign_and_sample():
    "A chain folded into 2-D data is too small for them (P < 0); a codebook equal to its lattice has P = 0"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 2, generator=g) * torch.tensor([10., 10.])
    chain = Som((1, 30), 2).fit(x, epochs=10, seed=0)
    assert topographic_product(chain) < -.01
    flat = Som((6, 6), 2)
    flat.weights.copy_(flat.grid.coords)
    assert topographic_product(flat) == 0
    assert topographic_product(flat, sample=10) == 0
    som, _, _, _ = trained('rect', False)
    assert topographic_product(som, sample=7, seed=0) == topographic_product(som, sample=7, seed=0)


# --- distortion and explained variance ---
@pytest.mark.parametrize('topology,toroidal', LATTICES, ids=IDS)
@pytest.mark.parametrize('neigh,sigma', [('gaussian', .5), ('gaussian', 2.), ('bubble', 1.5)])
def test_distortion_against_numpy(topology, toroidal, neigh, sigma, monkeypatch):
    som, x, w, xn = trained(topology, toroidal)
    som.neigh = {'gaussian': lambda d2, s: torch.exp(-d2 / (2 * s * s)),
                 'bubble': lambda d2, s: (d2 <= s * s).double()}[neigh]
    d2 = exact_ties(lattice_dist(*som.size, topology, toroidal), topology) ** 2
    h = np.exp(-d2 / (2 * sigma ** 2)) if neigh == 'gaussian' else (d2 <= sigma ** 2).astype(float)
    b = bmus_np(xn, w)[:, 0]
    ref = (h[b] * ((xn[:, None] - w[None]) ** 2).sum(-1)).sum(1).mean()
    assert distortion(som, x, sigma) == pytest.approx(ref, rel=1e-10)
    monkeypatch.setattr(quality, '_block', 30)  # one unit per block
    assert distortion(som, x, sigma) == pytest.approx(ref, rel=1e-10)


def test_distortion_default_sigma_and_limit():
    som, x, w, xn = trained('hex', False)
    assert distortion(som, x) == distortion(som, x, default_sigma(som.size)[1])  # the radius training ends at
    qe2 = (((xn - w[bmus_np(xn, w)[:, 0]]) ** 2).sum(1)).mean()
    assert distortion(som, x, 1e-3) == pytest.approx(qe2, rel=1e-10)


@pytest.mark.parametrize('topology,toroidal', LATTICES, ids=IDS)
def test_explained_variance_against_numpy(topology, toroidal):
    som, x, w, xn = trained(topology, toroidal)
    sse = ((xn - w[bmus_np(xn, w)[:, 0]]) ** 2).sum()
    ref = 1 - sse / ((xn - xn.mean(0)) ** 2).sum()
    assert explained_variance(som, x) == pytest.approx(ref, abs=1e-12)
    assert .5 < ref < 1


# --- combined error ---
def lattice_graph(rows, cols, topology, toroidal):
    "Adjacency from lattice distances: the 8-neighbourhood on rect maps (d <= sqrt 2), the 6 neighbours on hex (d = 1)"
    d = lattice_dist(rows, cols, topology, toroidal)
    reach = 1 + 1e-9 if topology == 'hex' else math.sqrt(2) + 1e-9
    return (d > 0) & (d <= reach)


@pytest.mark.parametrize('topology,toroidal', LATTICES, ids=IDS)
def test_combined_error_against_dijkstra(topology, toroidal, monkeypatch):
    som, x, w, xn = trained(topology, toroidal)
    som.weights[[3, 17]] = som.weights[[17, 3]]  # a fold, so that many second BMUs are far from the first
    w = som.weights.double().numpy()
    adj = lattice_graph(*som.size, topology, toroidal)
    cost = np.where(adj, np.sqrt(((w[:, None] - w[None]) ** 2).sum(-1)), 0)
    paths = dijkstra(csr_matrix(cost), directed=False)
    b = bmus_np(xn, w, 2)
    ref = (np.sqrt(((xn - w[b[:, 0]]) ** 2).sum(1)) + paths[b[:, 0], b[:, 1]]).mean()
    assert (~adj[b[:, 0], b[:, 1]]).sum() > 5
    assert combined_error(som, x) == pytest.approx(ref, rel=1e-10)
    monkeypatch.setattr(quality, '_block', 200)  # a few sources per block
    assert combined_error(som, x) == pytest.approx(ref, rel=1e-10)


def test_combined_error_needs_two_units():
    with pytest.raises(ValueError, match="at least 2 units"): combined_error(Som((1, 1), 2), torch.randn(5, 2))


# --- clustering indices ---
@pytest.mark.parametrize('topology,toroidal', LATTICES, ids=IDS)
def test_silhouette_and_davies_bouldin_are_sklearns(topology, toroidal, monkeypatch):
    som, x, w, xn = trained(topology, toroidal)
    labels = bmus_np(xn, w)[:, 0]
    assert silhouette(som, x) == pytest.approx(silhouette_score(xn, labels), abs=1e-12)
    assert davies_bouldin(som, x) == pytest.approx(davies_bouldin_score(xn, labels), abs=1e-12)
    monkeypatch.setattr(quality, '_block', 500)
    assert silhouette(som, x) == pytest.approx(silhouette_score(xn, labels), abs=1e-12)
    assert davies_bouldin(som, x) == pytest.approx(davies_bouldin_score(xn, labels), abs=1e-12)


def test_clustering_indices_with_singletons_and_few_units():
    som = som_with(torch.tensor([[0., 5., 20.]]))
    x = torch.tensor([[0.], [1.], [5.], [19.], [21.]])  # unit 1 holds one sample: its silhouette is 0
    labels = [0, 0, 1, 2, 2]
    assert silhouette(som, x) == pytest.approx(silhouette_score(x.double().numpy(), labels), abs=1e-12)
    assert davies_bouldin(som, x) == pytest.approx(davies_bouldin_score(x.double().numpy(), labels), abs=1e-12)
    with pytest.raises(ValueError, match="hit 1 unit"): davies_bouldin(som, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="hit 3 unit"): silhouette(som, torch.tensor([[0.], [5.], [20.]]))


# --- MiniSom's accessors, against MiniSom holding the same codebook ---
@pytest.fixture
def minisom_pair():
    from minisom import MiniSom
    som, x, w, xn = trained('rect', False, size=(4, 6))  # not square: a transposed axis would show
    ms = MiniSom(4, 6, 4, sigma=1.5, neighborhood_function='gaussian', random_seed=0)
    ms._weights = som.codebook.double().numpy().copy()
    return som, ms, x, xn


def test_quantization_and_activate_are_minisoms(minisom_pair):
    som, ms, x, xn = minisom_pair
    np.testing.assert_allclose(som.quantization(x).numpy(), ms.quantization(xn), rtol=1e-6)
    for i in (0, 17):
        np.testing.assert_allclose(som.activate(xn[i]).numpy(), ms.activate(xn[i]), rtol=1e-5, atol=1e-6)
    a = som.activate(x)
    assert a.shape == (len(x), 4, 6)
    np.testing.assert_allclose(a[17].numpy(), ms.activate(xn[17]), rtol=1e-5, atol=1e-6)


def test_distortion_measure_is_minisoms(minisom_pair):
    som, ms, x, xn = minisom_pair
    assert som.distortion_measure(x, sigma=1.5) == pytest.approx(ms.distortion_measure(xn), rel=1e-6)


@pytest.mark.parametrize('scaling', ['sum', 'mean'])
def test_distance_map_is_minisoms(minisom_pair, scaling):
    som, ms, _, _ = minisom_pair
    u = som.distance_map(scaling).double().numpy()
    np.testing.assert_allclose(u / u.max(), ms.distance_map(scaling=scaling), rtol=1e-6)


@pytest.mark.parametrize('topology,toroidal', LATTICES, ids=IDS)
def test_accessors_against_numpy(topology, toroidal):
    som, x, w, xn = trained(topology, toroidal)
    adj = lattice_graph(*som.size, topology, toroidal)
    dw = np.sqrt(((w[:, None] - w[None]) ** 2).sum(-1)) * adj
    np.testing.assert_allclose(som.distance_map('sum').numpy().ravel(), dw.sum(1), rtol=1e-5)
    np.testing.assert_allclose(som.distance_map().numpy().ravel(), dw.sum(1) / adj.sum(1), rtol=1e-5)
    d = np.sqrt(((xn[:, None] - w[None]) ** 2).sum(-1))
    np.testing.assert_allclose(som.activate(x).numpy().reshape(len(x), -1), d, rtol=1e-5, atol=1e-5)
    b = d.argmin(1)
    np.testing.assert_allclose(som.quantization(x).numpy(), w[b], rtol=1e-6)
    h = np.exp(-exact_ties(lattice_dist(*som.size, topology, toroidal), topology) ** 2 / (2 * 2. ** 2))
    assert som.distortion_measure(x, sigma=2.) == pytest.approx((h[b] * d).sum(), rel=1e-5)


# --- MiniSom's decays as schedules ---
LR_DECAYS = ['inverse_decay_to_zero', 'linear_decay_to_zero', 'asymptotic_decay']
SIGMA_DECAYS = ['asymptotic_decay', 'inverse_decay_to_one', 'linear_decay_to_one']


@pytest.mark.parametrize('name', sorted(set(LR_DECAYS + SIGMA_DECAYS)))
def test_decay_schedules_are_minisoms(name):
    from minisom import MiniSom
    ms = MiniSom(3, 3, 2)
    f = getattr(ms, f'_{name}')
    for start in (.5, 3., 7.):
        for t, T in [(0, 10), (3, 10), (9, 10), (250, 1000), (999, 1000)]:
            assert schedules[name](start, .1, t / T) == pytest.approx(f(start, t, T), rel=1e-12)
        assert get_schedule('sigma', (start, 1.), name)(.3) == pytest.approx(f(start, 3, 10), rel=1e-12)


def test_minisom_default_schedule_trains_and_lr_decays_refuse_sigma_zero():
    x = blobs(200, 3)
    som = Som((5, 5), 3).fit(x, epochs=2, schedule='asymptotic_decay', seed=0)
    assert som.quantization_error(x) < Som((5, 5), 3).init_codebook(x).quantization_error(x)
    with pytest.raises(ValueError, match="sigma must be a finite number > 0, got 0.0"):
        Som((5, 5), 3).fit(x, epochs=1, schedule='linear_decay_to_zero')
    # each hyper-parameter with its own MiniSom decay
    seen = []
    a = get_schedule('alpha', (.5, 0.), 'linear_decay_to_zero')
    s = get_schedule('sigma', (3., 1.), 'linear_decay_to_one')
    Som((5, 5), 3).fit(x, epochs=1, bs=50, alpha=lambda p: seen.append(p) or a(p), sigma=s, seed=0)
    assert [a(p) for p in seen[2:]] == pytest.approx([.5, .5 * 2 / 3, .5 / 3, 0.])  # after the two range checks


def test_learner_accepts_minisom_schedules():
    from fastsom.data import SomDataLoaders
    from fastsom.learner import som_learner
    dls = SomDataLoaders.from_tensor(blobs(80, 3), bs=20, valid_pct=.25, seed=0)
    learn = som_learner(dls, (4, 4), sched='asymptotic_decay', seed=0)
    learn.fit(1)
    n = len(dls.train)
    assert learn.recorder.hps['sigma'] == pytest.approx([2. / (1 + 2 * i / (n - 1)) for i in range(n)])
    assert learn.recorder.hps['lr'] == pytest.approx([.9 / (1 + 2 * i / (n - 1)) for i in range(n)])


# --- fastai metrics ---
def test_metrics_in_som_learner_fit():
    from fastsom.data import SomDataLoaders
    from fastsom.learner import som_learner
    from fastsom.metrics import (CombinedError, DaviesBouldin, Distortion, NeighbourhoodPreservation, Silhouette,
                                 TopographicProduct, Trustworthiness, VarianceExplained)
    dls = SomDataLoaders.from_tensor(blobs(300, 4), bs=64, valid_pct=.3, seed=0)
    mets = [Distortion(sigma=2.), VarianceExplained(), TopographicProduct(), Trustworthiness(k=4, sample=50),
            NeighbourhoodPreservation(k=4, sample=None), CombinedError(), Silhouette(), DaviesBouldin()]
    learn = som_learner(dls, (4, 6), 'hex', toroidal=True, metrics=mets, seed=0)
    learn.fit(2)
    som, xv = learn.model, dls.valid.x.numpy()
    got = dict(zip(learn.recorder.metric_names[3:-1], learn.recorder.values[-1][2:]))
    b = bmus_np(xv.astype(float), som.weights.double().numpy())[:, 0]
    assert got['silhouette'] == pytest.approx(silhouette_score(xv, b), abs=1e-6)
    assert got['davies_bouldin'] == pytest.approx(davies_bouldin_score(xv, b), abs=1e-6)
    assert got['distortion'] == distortion(som, xv, 2.)
    assert got['trustworthiness'] == trustworthiness(som, xv, 4, sample=50)
    assert got['neighbourhood_preservation'] == neighbourhood_preservation(som, xv, 4)
    for f in (explained_variance, combined_error): assert got[f.__name__] == f(som, xv)
    assert got['topographic_product'] == topographic_product(som)
    assert not hasattr(mets[3], 'k')  # `SomLearner` would ask the forward pass for that many nearest units
