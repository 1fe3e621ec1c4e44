"""The engine, the loaders and the learner on each device torch sees (the CPU, and CUDA when there is one), against
float64 numpy references: what bench/gpu_check.py runs on a GPU machine."""
import numpy as np, pytest, torch
from fastsom.all import Som, SomDataLoaders, som_learner
from conftest import blobs

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request): return request.param


def nearest(x, w):
    "float64 squared distances (n, m), and for each row the units within a relative 1e-6 of its nearest (ties)"
    d = ((np.asarray(x, np.float64)[:, None] - np.asarray(w, np.float64)[None]) ** 2).sum(-1)
    return d, d <= d.min(1, keepdims=True) * (1 + 1e-6) + 1e-12


def test_search_agrees_with_float64(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 16, generator=g) + 100  # off the origin, where a search in the origin's frame is inexact
    som = Som((12, 14), 16).init_codebook(x, 'sample', seed=0).to(device)
    i, dist = som.search(x.to(device), 2)
    assert i.device.type == dist.device.type == device
    d, near = nearest(x, som.weights.cpu())
    i, dist = i.cpu().numpy(), dist.cpu().double().numpy()
    assert near[np.arange(len(x)), i[:, 0]].all()
    np.testing.assert_allclose(dist[:, 0], np.sqrt(d.min(1)), rtol=1e-4, atol=1e-2)  # 0 at rows drawn as units: sqrt of float32 cancellation
    assert (dist[:, 1] >= dist[:, 0]).all() and (i[:, 1] != i[:, 0]).all()


def test_step_matches_float64_reference(device):
    "One mini-batch step from the definition: Gaussian weights of each sample's BMU, weighted mean, blend by alpha"
    g = torch.Generator().manual_seed(1)
    som = Som((5, 7), 3)
    som.weights.copy_(torch.randn(35, 3, generator=g))
    x = torch.randn(200, 3, generator=g)
    w0 = som.weights.double().numpy()
    som.to(device).step(x.to(device), alpha=.4, sigma=2.)
    d, _ = nearest(x, w0)
    yx = np.stack(np.divmod(np.arange(35), 7), 1).astype(np.float64)  # (row, col) of each unit
    h = np.exp(-((yx[d.argmin(1)][:, None] - yx[None]) ** 2).sum(-1) / (2 * 2. ** 2))  # (n, units)
    target = h.T @ x.double().numpy() / h.sum(0)[:, None]
    np.testing.assert_allclose(som.weights.cpu().double().numpy(), w0 + .4 * (target - w0), atol=1e-4)


def test_learner_trains_and_predicts_on_device(device):
    x = blobs(400, 5)
    dls = SomDataLoaders.from_tensor(x, bs=64, valid_pct=.25, seed=0, norm=None, device=device)
    learn = som_learner(dls, (4, 5), seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    assert learn.model.codebook.device.type == device
    xv = dls.valid.x.cpu()
    d, near = nearest(xv, learn.model.weights.cpu())
    assert learn.recorder.values[-1][1] == pytest.approx(np.sqrt(d.min(1)).mean(), rel=1e-4)  # valid QE
    with learn.no_bar(): (bmu, dist), _ = learn.get_preds()
    assert near[np.arange(len(xv)), bmu.cpu().numpy()].all()
    np.testing.assert_allclose(dist.cpu().double().numpy(), np.sqrt(d.min(1)), rtol=1e-4, atol=1e-2)


def test_npy_rows_stream_to_device(tmp_path, device):
    x = blobs(300, 4).numpy()
    np.save(tmp_path / 'x.npy', x)
    dls = SomDataLoaders.from_npy(tmp_path / 'x.npy', bs=50, valid_pct=0, seed=0, norm=None, device=device)
    assert {b[0].device.type for b in dls.train} == {device}
    learn = som_learner(dls, (3, 3), seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    _, near = nearest(x, learn.model.weights.cpu())
    assert near[np.arange(len(x)), learn.bmus(torch.from_numpy(x), preprocess=False).cpu().numpy()].all()
