"Reliability of the engine: bad input, numerics, resume, determinism."
import math
import pytest, torch
from hypothesis import given, settings, strategies as st
from fastsom.all import *


@pytest.mark.parametrize('make,message', [
    (lambda: Som((0, 3), 2), "`rows` must be a positive integer"),
    (lambda: Som((3, -2), 2), "`cols` must be a positive integer"),
    (lambda: Som((3, 3), 0), "n_features must be a positive integer"),
    (lambda: Som((3, 3), 2, topology='hexa'), "Unknown topology 'hexa'"),
    (lambda: Som((3, 3), 2, dist='euclid'), "Unknown distance 'euclid'"),
    (lambda: Som((3, 3), 2, neigh='gauss'), "Unknown neighbourhood 'gauss'"),
    (lambda: Som((3, 3), 2, update='sgd'), "Unknown update rule 'sgd'"),
    (lambda: Som((3, 3), 2).init_codebook(torch.randn(5, 2), init='kmeans'), "Unknown init 'kmeans'"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), schedule='cosine'), "Unknown schedule 'cosine'"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), sigma=(3., 0.)), "An exponential schedule needs sigma start and end > 0"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), sigma=0.), "sigma must be a finite number > 0, got 0.0"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), alpha=-.1), "alpha must be a finite number in [0, 1], got -0.1"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), alpha=math.inf), "alpha must be a finite number in [0, 1], got inf"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), alpha=1e9), "alpha must be a finite number in [0, 1], got 1000000000.0"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), sigma='2'), "sigma must be a number, a (start, end) pair or a callable"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), epochs=-1), "epochs must be a positive integer, got -1"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), epochs=2.5), "epochs must be a positive integer, got 2.5"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), bs=-1), "bs must be a positive integer, got -1"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), bs=0), "bs must be a positive integer, got 0"),
    (lambda: Som((3, 3), 2).fit(None), "Got None instead of data"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 2), start_epoch=-1), "start_epoch must be an integer >= 0"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5)), "Expected 2-D data"),
    (lambda: Som((3, 3), 2).fit(torch.randn(5, 3)), "Data has 3 features but the map has 2"),
    (lambda: Som((3, 3), 2).fit(torch.zeros(0, 2)), "Got no samples"),
    (lambda: Som((3, 3), 2).fit(torch.tensor([[1., math.inf]])), "NaN or inf in feature column(s) [1]"),
    (lambda: Som((3, 3), 2).fit(torch.tensor([[True, False]])), "Expected numeric data"),
    (lambda: Som((3, 3), 2).search(torch.randn(4, 2), k=10), "k must be between 1 and the number of units"),
    (lambda: Som((1, 1), 2).topographic_error(torch.randn(4, 2)), "undefined on a map with a single unit"),
])
def test_bad_input_names_the_problem(make, message):
    with pytest.raises((ValueError, TypeError)) as e: make()
    assert message in str(e.value)


@pytest.mark.parametrize('dtype', [torch.int64, torch.int32, torch.float64, torch.float16, torch.uint8])
def test_dtypes_are_converted(dtype):
    x = (torch.rand(40, 3) * 10).to(dtype)
    som = Som((3, 3), 3).fit(x, epochs=2, bs=8, seed=0)
    assert som.codebook.dtype == torch.float32 and torch.isfinite(som.codebook).all()


def test_one_by_one_map_trains():
    som = Som((1, 1), 2).fit(torch.randn(30, 2) + 5, epochs=3, bs=10, seed=0)
    assert som.quantization_error(torch.randn(30, 2) + 5) > 0 and torch.isfinite(som.codebook).all()


@pytest.mark.parametrize('update', update_rules)
@pytest.mark.parametrize('neigh', ['gaussian', 'bubble', 'triangle'])
def test_tiny_sigma_is_finite(update, neigh):
    x = torch.randn(200, 3)
    som = Som((4, 4), 3, neigh=neigh, update=update).fit(x, epochs=2, bs=50, sigma=1e-8, seed=0)
    assert torch.isfinite(som.codebook).all()


def test_cosine_with_zero_vectors():
    x = torch.cat([torch.zeros(10, 3), torch.randn(50, 3)])
    som = Som((3, 3), 3, dist='cosine').fit(x, epochs=3, bs=20, seed=0)
    assert torch.isfinite(som.codebook).all() and math.isfinite(som.quantization_error(x))
    som.weights.zero_()
    assert torch.isfinite(som.search(x)[1]).all()


@pytest.mark.parametrize('scale', [1e-12, 1e-6, 1e6, 1e12])
def test_huge_and_tiny_scales(scale):
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0)) * scale
    som = Som((4, 5), 4).init_codebook(x, 'random', seed=0)
    qe0 = som.quantization_error(x)
    som.fit(x, epochs=4, bs=64, seed=0, init=None)
    qe = som.quantization_error(x)
    assert torch.isfinite(som.codebook).all() and math.isfinite(qe) and qe < qe0


@settings(max_examples=30, deadline=None)
@given(topology=st.sampled_from(topologies), toroidal=st.booleans(), dist=st.sampled_from(list(distances)),
       neigh=st.sampled_from(list(neighbourhoods)), update=st.sampled_from(update_rules), init=st.sampled_from(inits),
       seed=st.integers(0, 1000))
def test_random_configurations_train_without_nan_and_lower_qe(topology, toroidal, dist, neigh, update, init, seed):
    if neigh == 'mexican_hat': update = 'online'
    x = torch.randn(120, 3, generator=torch.Generator().manual_seed(seed)) + 2
    som = Som((4, 5), 3, topology, toroidal, dist, neigh, update).init_codebook(x, init, seed=seed)
    som.weights.mul_(-1).sub_(x.std(0) * 3)  # start away from the data in every distance (a shift alone keeps angles)
    qe0 = som.quantization_error(x)
    som.fit(x, epochs=4, bs=30, alpha=(.9, .5) if update != 'online' else (1., .5), sigma=(1.5, .5), seed=seed, init=None)
    assert torch.isfinite(som.codebook).all()
    assert som.quantization_error(x) < qe0


@pytest.mark.parametrize('update', update_rules)
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, update):
    x = torch.randn(700, 5, generator=torch.Generator().manual_seed(1))
    kw = dict(epochs=5, bs=64, seed=7, alpha=(.9, .1) if update != 'online' else (5., 1.))
    full = Som((5, 6), 5, 'hex', update=update).fit(x, **kw)
    save = lambda som, e: torch.save({'codebook': som.codebook.clone(), 'epoch': e}, tmp_path / f'ckpt{e}.pt') if e == 1 else None
    Som((5, 6), 5, 'hex', update=update).fit(x, after_epoch=save, **kw)  # "interrupted" after epoch 1
    ckpt = torch.load(tmp_path / 'ckpt1.pt', weights_only=True)
    resumed = Som((5, 6), 5, 'hex', update=update)
    resumed.codebook.data.copy_(ckpt['codebook'])
    resumed.fit(x, init=None, start_epoch=ckpt['epoch'] + 1, **kw)
    torch.testing.assert_close(resumed.codebook.data, full.codebook.data, atol=0, rtol=0)


def test_same_seed_same_codebook_and_different_seed_differs():
    x = torch.randn(500, 4)
    a, b, c = (Som((6, 6), 4).fit(x, epochs=3, bs=50, seed=s, init='sample') for s in (1, 1, 2))
    assert torch.equal(a.codebook, b.codebook) and not torch.equal(a.codebook, c.codebook)


MEMORY_SCRIPT = """
import resource, torch
from fastsom.all import Som
torch.manual_seed(0)
x = torch.randn(5000, 8)
som = Som((100, 100), 8, chunk_mb=16).init_codebook(x, seed=0)
som.search(x[:10])  # warm up allocator and kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
som.fit(x, epochs=1, bs=2048, seed=0, init=None)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_memory_is_bounded_for_large_maps():
    "100 x 100 map: the separable kernel and the chunked search never build units x units or samples x units x features."
    import subprocess, sys
    res = subprocess.run([sys.executable, '-c', MEMORY_SCRIPT], capture_output=True, text=True, check=True)
    growth = int(res.stdout.strip().splitlines()[-1])
    assert growth < 150 * 2**20, growth  # a dense 10,000^2 kernel alone would be 400 MB, 2048 x 10,000 x 8 floats 655 MB


def test_learner_resumed_from_checkpoint_equals_uninterrupted(tmp_path):
    from fastai.callback.core import Callback, CancelFitException
    from fastai.callback.tracker import SaveModelCallback

    class Interrupt(Callback):
        order = 100  # after SaveModelCallback has saved the epoch
        def after_epoch(self):
            if self.epoch == 1: raise CancelFitException()

    x = torch.randn(600, 4, generator=torch.Generator().manual_seed(2))
    def make():
        learn = som_learner(SomDataLoaders.from_tensor(x, bs=64, valid_pct=.2, seed=5), (5, 6), seed=0, path=tmp_path)
        learn.remove_cb(learn.progress); learn.logger = lambda *a: None
        return learn
    full = make(); full.fit(5)
    part = make(); part.fit(5, cbs=[SaveModelCallback(every_epoch=True, fname='ckpt'), Interrupt()])
    assert not torch.equal(part.codebook, full.codebook)
    resumed = make(); resumed.load('ckpt_1'); resumed.fit(5, start_epoch=2)
    torch.testing.assert_close(resumed.codebook, full.codebook, atol=1e-6, rtol=1e-6)


def test_data_check_is_exact_when_the_sum_overflows():
    "The NaN/inf check of `prep` reads the float32 sum first: finite values whose sum overflows still pass"
    x = torch.full((4, 2), 3e38)
    assert not torch.isfinite(x.sum()) and torch.equal(Som((2, 2), 2).prep(x), x)
    x[2, 1] = math.nan
    with pytest.raises(ValueError, match=r"NaN or inf in feature column\(s\) \[1\]"): Som((2, 2), 2).prep(x)
