"Precision and trust of the engine: exact BMUs at any offset and scale, finite codebooks, size checks before allocating."
import math, resource, subprocess, sys
import numpy as np, pandas as pd, pytest, torch
from hypothesis import given, settings, strategies as st
from fastsom.all import *


def ref_agreement(som, x):
    "Share of rows whose BMU is nearest in float64 numpy (ties count as agreeing), and the float64 QE"
    xs, w = np.asarray(x, dtype=np.float64), som.weights.double().numpy()
    d = ((xs[:, None] - w[None]) ** 2).sum(-1)
    got = som.bmu(x).numpy()
    return (d[np.arange(len(xs)), got] <= d.min(1) * (1 + 1e-9)).mean(), np.sqrt(d.min(1)).mean()


def gps(n=3000, seed=0):
    "GPS-like points: mean 45.5, spread 0.01"
    return torch.from_numpy(45.5 + .01 * np.random.default_rng(seed).standard_normal((n, 2)).astype(np.float32))


def test_gps_like_data_trains_and_searches_exactly():
    x = gps()
    som = Som((8, 8), 2).fit(x, epochs=5, seed=0)
    agree, qe64 = ref_agreement(som, x)
    assert agree >= .999
    assert som.quantization_error(x) == pytest.approx(qe64, rel=1e-4)
    assert 1e-3 < qe64 < 6e-3  # a real map of the data, not QE 0 (codebook spread 1e-2, data std 1e-2)


def test_training_is_translation_equivariant():
    x = gps() - 45.5
    a = Som((6, 6), 2).fit(x, epochs=4, seed=1)
    b = Som((6, 6), 2).fit(x + 45.5, epochs=4, seed=1)
    # the offset data sit on a float32 grid of step 45.5 * 2**-23 = 5e-6: the maps agree to that, far below the spread
    torch.testing.assert_close(b.codebook - 45.5, a.codebook, atol=2e-4, rtol=0)


@settings(max_examples=30, deadline=None)
@given(offset=st.sampled_from([0., 1., 1e2, 1e4, 1e6]), log_scale=st.integers(-30, 30), seed=st.integers(0, 1000))
def test_search_matches_float64_at_any_offset_and_scale(offset, log_scale, seed):
    "Offsets up to 1e6 times the spread; spreads 1e-30 to 1e30"
    scale = 10. ** log_scale
    g = np.random.default_rng(seed)
    x = ((offset + g.standard_normal((500, 3))) * scale).astype(np.float32)
    w = ((offset + g.standard_normal((30, 3))) * scale).astype(np.float32)
    som = Som((5, 6), 3)
    som.weights.copy_(torch.from_numpy(w))
    agree, qe64 = ref_agreement(som, torch.from_numpy(x))
    assert agree >= .999
    assert som.quantization_error(torch.from_numpy(x)) == pytest.approx(qe64, rel=1e-4)


@pytest.mark.parametrize('scale', [1e-30, 1e30])
def test_tiny_and_huge_scales_train(scale):
    x = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)) * scale
    som = Som((5, 5), 3).fit(x, epochs=3, seed=0)  # the PCA start is computed in float64: no LinAlgError at 1e30
    assert torch.isfinite(som.codebook).all()
    agree, qe64 = ref_agreement(som, x)
    assert agree >= .999 and som.quantization_error(x) == pytest.approx(qe64, rel=1e-4)
    assert (som.activation_response(x) > 0).sum() > 20  # the rows spread over the map, not all on one unit
    ref = Som((5, 5), 3).fit(x / scale, epochs=3, seed=0)  # the same map as at unit scale
    torch.testing.assert_close(som.codebook / scale, ref.codebook, atol=1e-4, rtol=1e-4)


def test_non_finite_update_is_refused_and_codebook_kept():
    x = torch.randn(200, 2) * 5e37  # near the float32 limit: a step of alpha 1e30 overflows
    som = Som((3, 3), 2, update='online')
    som.weights.copy_(torch.randn(9, 2))
    before = som.codebook.clone()
    with pytest.raises(ValueError, match="would put NaN or inf in the codebook, which is left as it was"):
        som.fit(x, epochs=1, bs=200, alpha=1e30, init=None)
    assert torch.equal(som.codebook, before)


def test_fit_accepts_a_numeric_dataframe():
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(300, 3)), columns=list('abc'))
    a, b = Som((4, 4), 3).fit(df, epochs=2, seed=0), Som((4, 4), 3).fit(torch.tensor(df.values, dtype=torch.float32), epochs=2, seed=0)
    assert torch.equal(a.codebook, b.codebook)
    with pytest.raises(TypeError, match=r"Column\(s\) \['c'\] are not numeric"): Som((4, 4), 3).fit(df.assign(c='x'))


@pytest.mark.parametrize('size,n_features', [((100_000, 100_000), 16), ((1000, 1000), 10**6), ((12_000, 12_000), 64)])
def test_huge_maps_fail_fast_without_allocating(size, n_features):
    code = (f"import resource, torch\nfrom fastsom.som import Som\ntry: Som({size}, {n_features})\n"
            "except ValueError as e: print(e)\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    msg, peak_kib = res.stdout.strip().splitlines()
    assert 'GB, more than the' in msg and 'use a smaller map or fewer features' in msg
    assert int(peak_kib) < 1_000_000  # under 1 GB: nothing of the map's size was allocated


def test_search_frame_at_the_float32_limit():
    "A codebook spread up to 2e38: the frame's power-of-two scale stays finite (2^128 would be inf)"
    som = Som((1, 8), 1)
    som.weights.copy_(torch.tensor([[0.], [1.], [2.], [3.], [4.], [5.], [6.], [2e38]]))
    i, d = som.search(torch.tensor([[2e38], [1.5e38]]))
    assert i[:, 0].tolist() == [7, 7] and torch.isfinite(d).all()
    np.testing.assert_allclose(d[:, 0].double().numpy(), [0., 5e37], rtol=1e-6)
