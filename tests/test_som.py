"Engine tests: lattice geometry, known QE/TE, update rules against a per-sample reference, BMU search, MiniSom, properties."
import math
import numpy as np, pytest, torch
from hypothesis import given, settings, strategies as st
from fastsom.all import *
from conftest import som_with


def all_pairs(g): return torch.arange(g.n_units)[:, None], torch.arange(g.n_units)[None]


def interior(g):
    return ((g.row > 0) & (g.row < g.rows - 1) & (g.col > 0) & (g.col < g.cols - 1)).nonzero().flatten()


def test_hex_interior_units_have_six_neighbours_at_distance_one():
    g = Grid(7, 8, 'hex')
    d = g.dist2(*all_pairs(g)).sqrt()[interior(g)]
    near = (d > 0) & (d < 1.5)
    assert (near.sum(1) == 6).all()
    assert torch.allclose(d[near], torch.ones(near.sum()), atol=1e-6)
    assert (d[(d > 0) & ~near] >= math.sqrt(3) - 1e-6).all()  # the next ring


def test_rect_interior_units_have_four_at_one_and_four_at_sqrt2():
    g = Grid(6, 5)
    d = g.dist2(*all_pairs(g)).sqrt()[interior(g)]
    assert (((d - 1).abs() < 1e-6).sum(1) == 4).all()
    assert (((d - math.sqrt(2)).abs() < 1e-6).sum(1) == 4).all()


@pytest.mark.parametrize('topology', ['rect', 'hex'])
def test_toroidal_opposite_corners_adjacent(topology):
    g = Grid(6, 8, topology, toroidal=True)
    assert g.adjacent(0, g.n_units - 1)
    assert not Grid(6, 8, topology).adjacent(0, g.n_units - 1)
    # on a torus every unit has a full neighbourhood
    assert (g.neighbours()[1].sum(1) == (6 if topology == 'hex' else 8)).all()


def test_toroidal_hex_needs_even_rows():
    with pytest.raises(ValueError, match='even number of rows'): Grid(5, 4, 'hex', toroidal=True)


def test_bad_grid_arguments():
    with pytest.raises(ValueError, match='positive integer'): Grid(0, 3)
    with pytest.raises(ValueError, match='positive integer'): Som((3, -1), 2)
    with pytest.raises(ValueError, match="choose one of \\['rect', 'hex'\\]|choose one of \\('rect', 'hex'\\)"): Grid(3, 3, 'hexagonal')


@pytest.mark.parametrize('topology', ['rect', 'hex'])
def test_codebook_on_its_own_lattice_has_zero_qe_and_te(topology):
    "Codebook vectors = unit positions: a sample on a unit has QE 0 and its second BMU is a lattice neighbour."
    g = Grid(5, 6, topology)
    som = som_with(g.coords.view(5, 6, 2), topology)
    x = g.coords
    assert som.quantization_error(x) == pytest.approx(0, abs=1e-3)
    assert som.topographic_error(x) == 0
    # shifted by a known amount: QE is exactly that amount
    assert som.quantization_error(x + torch.tensor([.1, 0.])) == pytest.approx(.1, abs=1e-4)


@pytest.mark.parametrize('topology', ['rect', 'hex'])
def test_scrambled_codebook_has_te_one(topology):
    "Units placed in data space so that each sample's two nearest units are far apart on the lattice."
    g = Grid(4, 4, topology)
    pos = torch.zeros(16, 1)
    pos[0], pos[15], pos[3], pos[12] = 0., 1., 10., 11.  # 0/15 and 3/12 are opposite corners
    pos[[1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14]] = torch.arange(12.)[:, None] + 100
    som = som_with(pos.view(4, 4, 1), topology)
    x = torch.tensor([[0.], [1.], [10.], [11.]])
    assert som.topographic_error(x) == 1
    assert som.quantization_error(x) == pytest.approx(0, abs=1e-6)
    assert som.quantization_error(x + .25) == pytest.approx(.25, abs=1e-6)


@pytest.mark.parametrize('topology', ['rect', 'hex'])
def test_wrap_makes_seam_neighbours_adjacent(topology):
    "Codebook on a circle along the columns: near unit 0, the second BMU is the last column, adjacent only with wrap."
    rows, cols = 2, 8
    ang = 2 * math.pi * torch.arange(cols) / cols
    circle = torch.stack([ang.cos(), ang.sin()], -1)
    cb = torch.cat([circle, torch.zeros(cols, 1)], 1)[None].repeat(rows, 1, 1)
    cb[1, :, 2] = 10.  # the second row far away in data space
    x = torch.stack([torch.tensor([math.cos(a), math.sin(a), 0.]) for a in (-.3, -.2)])  # between unit 0 and unit 7, nearer 0
    assert som_with(cb, topology, toroidal=True).topographic_error(x) == 0
    assert som_with(cb, topology, toroidal=False).topographic_error(x) == 1


def test_one_unit_map_te_is_undefined():
    som = Som((1, 1), 2)
    with pytest.raises(ValueError, match='single unit'): som.topographic_error(torch.zeros(3, 2))


def reference_step(w, x, alpha, sigma, rule, grid, neigh):
    "Per-sample, loop-based update straight from the definitions (independent of the engine's hits/sums path)."
    w = w.clone().double(); x = x.double()
    bmu = torch.cdist(x, w).argmin(1)
    h = torch.stack([neigh(grid.dist2(b, torch.arange(grid.n_units)).double(), sigma) for b in bmu])  # (n, units)
    if rule == 'online': return w + alpha * sum(h[i][:, None] * (x[i] - w) for i in range(len(x))) / len(x)
    target = (h.T @ x) / h.sum(0)[:, None]
    return target if rule == 'batch' else w + alpha * (target - w)


@pytest.mark.parametrize('rule', update_rules)
@pytest.mark.parametrize('topology,toroidal,neigh', [('rect', False, 'gaussian'), ('hex', False, 'gaussian'),
                                                     ('hex', True, 'gaussian'), ('rect', True, 'triangle'),
                                                     ('hex', False, 'bubble')])
def test_update_rules_match_per_sample_reference(rule, topology, toroidal, neigh):
    g = torch.Generator().manual_seed(0)
    som = Som((4, 6), 3, topology, toroidal, neigh=neigh, update=rule)
    som.weights.copy_(torch.randn(24, 3, generator=g))
    x = torch.randn(50, 3, generator=g)
    expected = reference_step(som.weights, x, .3, 2.5, rule, som.grid, som.neigh)
    som.step(x, alpha=.3, sigma=2.5)
    torch.testing.assert_close(som.weights.double(), expected, atol=1e-4, rtol=1e-4)


def test_mexican_hat_only_with_online_rule():
    with pytest.raises(ValueError, match="update='online'"): Som((3, 3), 2, neigh='mexican_hat')
    som = Som((3, 3), 2, neigh='mexican_hat', update='online').init_codebook(torch.randn(20, 2), seed=0)
    som.step(torch.randn(20, 2), .5, 1.)
    assert torch.isfinite(som.weights).all()


@pytest.mark.parametrize('dist', ['euclidean', 'sqeuclidean', 'cosine', 'manhattan', 'chebyshev'])
@pytest.mark.parametrize('chunk_mb', [64, 1e-3])
@pytest.mark.parametrize('size', [(9, 11), (17, 19)])  # 323 units: the sliced minimum over padded 64-unit slices
def test_bmu_search_equals_brute_force(dist, chunk_mb, size):
    g = torch.Generator().manual_seed(1)
    som = Som(size, 7, dist=dist, chunk_mb=chunk_mb)
    som.weights.copy_(torch.randn(som.n_units, 7, generator=g))
    x = torch.randn(2000, 7, generator=g)
    diff = x[:, None] - som.weights[None]
    ref = dict(euclidean=diff.norm(dim=-1), sqeuclidean=(diff ** 2).sum(-1), manhattan=diff.abs().sum(-1),
               chebyshev=diff.abs().amax(-1),
               cosine=1 - torch.nn.functional.cosine_similarity(x[:, None], som.weights[None], dim=-1))[dist]
    if dist == 'euclidean': assert torch.equal(ref.argmin(1), torch.cdist(x, som.weights).argmin(1))
    idx, d = som.search(x, 2)
    rv, ri = ref.topk(2, largest=False)
    assert (idx == ri).float().mean() > .999  # float ties aside
    torch.testing.assert_close(d, rv, atol=2e-4, rtol=1e-4)


def test_qe_no_worse_than_minisom_on_digits():
    "An independent reference: MiniSom trained on the same scaled digits, same map, comparable settings."
    from minisom import MiniSom
    from sklearn.datasets import load_digits
    x = load_digits().data.astype(np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    ms = MiniSom(10, 10, x.shape[1], sigma=3., learning_rate=.5, random_seed=0)
    ms.pca_weights_init(x)
    ms.train(x, 10 * len(x), random_order=True)
    ref_qe = ms.quantization_error(x)
    som = Som((10, 10), x.shape[1]).fit(torch.from_numpy(x), epochs=10, bs=256, sigma=(5., 1.), seed=0)
    qe = som.quantization_error(torch.from_numpy(x))
    # the scorer is independent of both: mean distance to the nearest codebook vector
    ind = torch.cdist(torch.from_numpy(x), som.weights).min(1).values.mean().item()
    assert qe == pytest.approx(ind, rel=1e-4)
    assert qe <= 1.1 * ref_qe, (qe, ref_qe)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(2, 6), topology=st.sampled_from(['rect', 'hex']),
       toroidal=st.booleans(), n_features=st.integers(1, 5), n=st.integers(2, 80),
       update=st.sampled_from(update_rules), init=st.sampled_from(inits), seed=st.integers(0, 2**16))
def test_properties(rows, cols, topology, toroidal, n_features, n, update, init, seed):
    if topology == 'hex' and toroidal and rows % 2: rows += 1
    x = torch.randn(n, n_features, generator=torch.Generator().manual_seed(seed)) * 3
    make = lambda: Som((rows, cols), n_features, topology, toroidal, update=update)
    som = make().init_codebook(x, init, seed=seed)
    idx, d = som(x)
    assert idx.shape == d.shape == (n,) and som.codebook.shape == (rows, cols, n_features)
    assert som.quantization_error(x) >= 0 and 0 <= som.topographic_error(x) <= 1
    # from a codebook away from the data, training lowers QE
    som = make()
    som.weights.copy_(x.max(0).values + x.std(0) + 1)
    qe0 = som.quantization_error(x)
    alpha = (.9, .5) if update != 'online' else (1., .5)
    som.fit(x, epochs=3, bs=16, alpha=alpha, sigma=(1., .3), seed=seed, init=None)
    assert torch.isfinite(som.codebook).all()
    assert som.quantization_error(x) <= qe0 + 1e-4
    # same seed, same codebook
    a, b = (make().fit(x, epochs=3, bs=16, seed=seed, init=init) for _ in range(2))
    assert torch.equal(a.codebook, b.codebook)


def test_state_dict_holds_codebook_and_moves_with_module():
    som = Som((3, 4), 2).init_codebook(torch.randn(30, 2), seed=0)
    sd = som.state_dict()
    assert list(sd) == ['codebook', '_extra_state'] and sd['codebook'].shape == (3, 4, 2)
    assert sd['_extra_state'] == dict(size=[3, 4], topology='rect', toroidal=False)
    other = Som((3, 4), 2)
    other.load_state_dict(sd)
    assert torch.equal(other.codebook, som.codebook)
    assert not som.codebook.requires_grad


def test_bad_step_leaves_codebook_unchanged():
    som = Som((3, 3), 2).init_codebook(torch.randn(30, 2), seed=0)
    before = som.codebook.clone()
    for args in [(torch.tensor([[0., float('nan')]]), .5, 1.), (torch.randn(4, 2), .5, 0.), (torch.randn(4, 2), -1., 1.),
                 (torch.randn(4, 3), .5, 1.)]:
        with pytest.raises(ValueError): som.step(*args)
    assert torch.equal(som.codebook, before)


@pytest.mark.parametrize('topology', ['rect', 'hex'])
def test_neighbourhood_sums_of_non_contiguous_stats(topology):
    "A transposed (non-contiguous) statistics tensor gives K @ stats, K built by hand in float64"
    som = Som((4, 6), 3, topology)
    stats = torch.randn(4, 24, generator=torch.Generator().manual_seed(0)).T
    d2 = som.grid.dist2(torch.arange(24)[:, None], torch.arange(24)[None]).double()
    ref = torch.exp(-d2 / 2) @ stats.double()
    torch.testing.assert_close(som.neighbourhood_sums(stats, 1.).double(), ref, atol=1e-5, rtol=1e-5)
