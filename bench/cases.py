"The benchmark cases: data (generated or bundled with scikit-learn, never downloaded), map size, epochs."
import statistics, time
from pathlib import Path
import numpy as np

RESULTS = Path(__file__).parent / 'results'
DATA = RESULTS / 'data'

# name: (map rows, map cols, epochs, scored?)
CASES = {
    'colours': (20, 20, 10, True),  # 10,000 x 3 uniform in [0, 1]
    'digits':  (20, 20, 10, True),  # scikit-learn digits, 1,797 x 64, raw pixels 0-16
    'wine':    (10, 10, 10, True),  # scikit-learn wine, 178 x 13, standardised
    'blobs':   (32, 32, 5, True),   # 50,000 x 32, 10 Gaussian blobs (std 1)
    'large':   (64, 64, 1, False),  # 1,000,000 x 64, 20 Gaussian blobs: time only
    'check':   (6, 10, 10, True),   # 2,000 x 2 uniform in a square: a wrong codebook layout shows as a high TE
}

def make(case, seed=0):
    "Data (n, d) float32 and labels (n,) or None for `case`"
    from sklearn import datasets
    rng = np.random.default_rng(seed)
    if case == 'colours': return rng.random((10_000, 3), dtype=np.float32), None
    if case == 'check': return rng.random((2_000, 2), dtype=np.float32), None
    if case == 'digits':
        d = datasets.load_digits()
        return d.data.astype(np.float32), d.target
    if case == 'wine':
        d = datasets.load_wine()
        x = (d.data - d.data.mean(0)) / d.data.std(0)
        return x.astype(np.float32), d.target
    n, dim, k = {'blobs': (50_000, 32, 10), 'large': (1_000_000, 64, 20)}[case]
    centres = rng.uniform(-10, 10, (k, dim)).astype(np.float32)
    y = rng.integers(k, size=n)
    return centres[y] + rng.standard_normal((n, dim), dtype=np.float32), y

def save(case):
    "Write the case's data to bench/results/data (once), so every library reads the same bytes"
    DATA.mkdir(parents=True, exist_ok=True)
    if (DATA / f'{case}_x.npy').exists(): return
    x, y = make(case)
    np.save(DATA / f'{case}_x.npy', x)
    if y is not None: np.save(DATA / f'{case}_y.npy', y)

def load(case, labels=False):
    x = np.load(DATA / f'{case}_x.npy')
    if not labels: return x
    p = DATA / f'{case}_y.npy'
    return x, (np.load(p) if p.exists() else None)


def medians(*fs, n=3):
    "Median seconds of each function, timed in `n` interleaved rounds after one warm-up call each"
    for f in fs: f()
    ts = [[] for _ in fs]
    for _ in range(n):
        for f, t in zip(fs, ts):
            t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in ts]
