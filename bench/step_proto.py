"""Prototype of a leaner engine step and BMU search (issue 17, points 1 and 3), applied by monkeypatching `Som`.

    python bench/step_proto.py small [--repeats 20]    # wine, digits, iris fit times: engine now, prototype, xpysom
    python bench/step_proto.py search [--repeats 5]    # search throughput against addmm (bench/search.py's shapes)
    python bench/step_proto.py check                   # prototype vs engine: same BMUs, same codebooks

`python bench/search.py` measures any checkout; `PROTO=1` in the environment makes `import fastsom` here go through
`apply()`, so `PROTO=1 python bench/step_proto.py ...` and the engine's own run differ only by the patch. Each
library and variant runs in its own process (after a warm-up fit) with one thread.

What the prototype changes (same results: the BMUs and codebooks are checked against the engine's by `check`):
- `_search`: the codebook's frame (centre `c`, power-of-two scale `s`) in 5 ops instead of 8 (`frexp`: any power of
  two leaves float32 rounding unchanged, so `s` needs no `round`); the norms folded into one matmul (`[x/s - c/s, 1]
  @ [-2 w/s, |w/s|^2]^T`, no separate bias pass over the (rows x units) tile); `min(1)` instead of the sliced
  argmin below 256 units (one pass, and no padding); no `split`/`cat` when the batch is one chunk.
- `neighbourhood_sums` (Gaussian): the lattice's squared axis distances computed once per map, not per step; no
  scatter into and gather out of the virtual hex lattice on rectangular maps (its slots are the units).
- `update_from_stats`: in-place arithmetic for the target and the blend (the same rounding as the engine's), and
  the finiteness check as `(new * 0).sum() == 0` (NaN
  exactly when some value is not finite) instead of `isfinite(new).all()` (10x faster on a 4096 x 64 codebook).
"""
import math, os, sys
import torch
from torch import Tensor

SMALL = 256  # units below which torch's one-pass `min(1)` beats the sliced argmin
CHUNK_MB = 4.  # the engine's budget: 1 and 2 MiB (the tile in a core's 2 MiB L2) measured no better here

def _frame(w:Tensor):
    "Centre (D,) and power-of-two scale (0-d) of codebook `w`: |w - c| / s < 1"
    c = w.mean(0)
    wc = w - c
    s = torch.frexp(wc.abs().amax()).exponent.to(w.dtype).exp2()  # frexp(0) = (0, 0): s = 1 for a flat codebook
    return c, wc, s

def _search(self, x:Tensor, k:int=1)->tuple:
    from fastsom.som import _argmin_rows, _smallest, _width, euclidean, sqeuclidean
    w, rows = self.weights, self.chunk_size()
    if len(x) == 0: return x.new_zeros(0, k, dtype=torch.long), x.new_zeros(0, k)
    if self.dist not in (euclidean, sqeuclidean):
        d, i = zip(*(_smallest(self.dist(xc, w), k) for xc in x.split(rows)))
        return torch.cat(i), torch.cat(d)
    c, w, s = _frame(w)
    w = w / s
    sliced = k == 1 and len(w) >= SMALL
    pad = -len(w) % _width if sliced else 0
    D = w.shape[1]
    wa = w.new_empty(len(w) + pad, D + 1)  # rows [-2 w/s, |w/s|^2]; padding units at infinite distance
    torch.mul(w, -2, out=wa[:len(w), :D]); torch.sum(w * w, 1, out=wa[:len(w), D])
    if pad: wa[len(w):, :D] = 0; wa[len(w):, D] = math.inf
    n = min(rows, len(x))
    buf, xa = w.new_empty(n, len(wa)), x.new_empty(n, D + 1)
    xa[:, D] = 1
    idx, dst = [], []
    for xc in (x.split(rows) if len(x) > rows else (x,)):
        xs = xa[:len(xc)]
        torch.sub(xc, c, out=xs[:, :D]); xs[:, :D].div_(s)
        d = torch.mm(xs, wa.T, out=buf[:len(xc)])
        d, i = _argmin_rows(d) if sliced else _smallest(d, k)
        x2 = xs[:, :D].square().sum(1, keepdim=True)
        d = d.add_(x2).clamp_(min=0)
        d = d.sqrt_().mul_(s) if self.dist is euclidean else d.mul_(s * s)
        idx.append(i); dst.append(d)
    return (idx[0], dst[0]) if len(idx) == 1 else (torch.cat(idx), torch.cat(dst))

def _axis_d2(self):
    "The lattice's squared distances along y and along the x slots, computed once per map and device"
    from fastsom.grid import axis_d2
    key = (self._ys.device, self._ys.dtype)
    cache = self.__dict__.setdefault('_proto_d2', {})
    if key not in cache:
        py, px = self.grid.periods
        ident = len(self._ys) * len(self._xs) == self.n_units and bool(
            (self._slot == torch.arange(self.n_units, device=self._slot.device)).all())
        cache[key] = (axis_d2(self._ys[:, None], self._ys[None], py), axis_d2(self._xs[:, None], self._xs[None], px),
                      ident)
    return cache[key]

def neighbourhood_sums(self, stats:Tensor, sigma:float)->Tensor:
    from fastsom.functions import gaussian
    if self.neigh is not gaussian: return _orig['neighbourhood_sums'](self, stats, sigma)
    d2y, d2x, ident = _axis_d2(self)
    ky, kx = torch.exp(d2y / (-2 * sigma * sigma)), torch.exp(d2x / (-2 * sigma * sigma))
    ny, nx, ch = len(self._ys), len(self._xs), stats.shape[1]
    v = stats if ident else stats.new_zeros(ny * nx, ch).index_copy_(0, self._slot, stats)
    v = (ky @ v.view(ny, -1)).view(ny, nx, ch)
    v = (kx @ v).view(-1, ch)
    return v if ident else v[self._slot]

def update_from_stats(self, hits, sums, alpha, sigma, origin=None):
    alpha, sigma = self.check_hypers(alpha, sigma)
    nd = self.neighbourhood_sums(torch.cat([sums, hits[:, None]], 1), sigma)
    num, den, w = nd[:, :-1], nd[:, -1:], self.weights
    c = self.origin() if origin is None else origin
    if self.update == 'online': new = w + alpha * (num - den * (w - c)) / hits.sum().clamp(min=1)
    else:
        target = torch.where(den > 1e-30, num.div_(den.clamp(min=1e-30)).add_(c), w)
        new = target if self.update == 'batch' else (target - w).mul_(alpha).add_(w)
    if not bool((new * 0).sum() == 0):  # NaN exactly when some value is not finite
        raise ValueError(f"The {self.update} update at alpha={alpha:g}, "
                         f"sigma={sigma:g} would put NaN or inf in the codebook, which is left as it was: lower alpha, "
                         "or normalise the data (values near the float32 limit overflow).")
    w.copy_(new)

def chunk_size(self)->int:
    return max(1, int(CHUNK_MB * 2**20 / (4 * self.n_units)))

_orig = {}
def apply():
    "Patch `Som` with the prototype (idempotent)"
    from fastsom.som import Som
    if _orig: return
    for name, f in dict(_search=_search, neighbourhood_sums=neighbourhood_sums, update_from_stats=update_from_stats,
                        chunk_size=chunk_size).items():
        _orig[name] = getattr(Som, name); setattr(Som, name, f)

# ---------------------------------------------------------------------------------------------------------- harness
def _small_child(lib, repeats):
    "One library (or variant) on wine, digits and iris in this process: median and min ms of `repeats` fits"
    import json, time, statistics, numpy as np
    from sklearn import datasets
    torch.set_num_threads(1)
    d = datasets.load_wine()
    cases = dict(wine=(((d.data - d.data.mean(0)) / d.data.std(0)).astype(np.float32), 10, 10),
                 digits=(datasets.load_digits().data.astype(np.float32), 20, 10),
                 iris=(datasets.load_iris().data.astype(np.float32), 8, 10))
    if lib == 'proto': apply()
    out = {}
    for name, (x, side, ep) in cases.items():
        if lib == 'xpysom':
            from xpysom import XPySom
            def f():
                s = XPySom(side, side, x.shape[1], xp=np, random_seed=0); s.pca_weights_init(x); s.train(x, ep)
        else:
            from fastsom.som import Som
            t = torch.from_numpy(x)
            f = lambda: Som((side, side), x.shape[1]).fit(t, ep, seed=0)
        for _ in range(3): f()  # warm-up
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
        out[name] = (statistics.median(ts) * 1e3, min(ts) * 1e3)
    print(json.dumps(out))

def small(repeats):
    import json, subprocess
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    print(f"load average {os.getloadavg()}; one thread; median (min) ms of {repeats} fits after a warm-up, "
          "each library in its own process, runs interleaved", flush=True)
    res = {}
    for rnd in range(2):  # two interleaved rounds; the better median of each is kept
        for lib in ('engine', 'proto', 'xpysom'):
            p = subprocess.run([sys.executable, __file__, '_small', lib, str(repeats)], env=env, capture_output=True,
                               text=True, check=True)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            res[lib] = {k: min(v, res.get(lib, {}).get(k, v)) for k, v in r.items()}
    for case in ('wine', 'digits', 'iris'):
        e, p, x = (res[l][case] for l in ('engine', 'proto', 'xpysom'))
        print(f"{case:7s} engine {e[0]:7.2f} ({e[1]:.2f})  prototype {p[0]:7.2f} ({p[1]:.2f})  xpysom {x[0]:7.2f} "
              f"({x[1]:.2f})  |  engine/xpysom {e[0] / x[0]:.2f}x, prototype/xpysom {p[0] / x[0]:.2f}x, "
              f"prototype/engine {p[0] / e[0]:.2f}x")
    print(f"load average at the end {os.getloadavg()}")

def check():
    "The prototype against the engine: BMUs of searches, and codebooks after fits, on several shapes and options"
    from fastsom.som import Som
    g = torch.Generator().manual_seed(0)
    worst = 0.
    for (rows, cols, D, n, topo, tor) in [(8, 8, 4, 150, 'rect', False), (20, 20, 64, 1797, 'rect', False),
                                          (32, 32, 32, 20_000, 'rect', False), (7, 9, 5, 600, 'hex', False),
                                          (6, 8, 3, 500, 'hex', True), (64, 64, 16, 30_000, 'rect', True)]:
        x = torch.randn(n, D, generator=g) * 3 + 50
        a = Som((rows, cols), D, topo, tor).init_codebook(x, seed=0)
        i0, d0 = a.search(x); i0k, d0k = a.search(x, 3)
        a.fit(x, 3, seed=0, init=None)
        apply()
        b = Som((rows, cols), D, topo, tor).init_codebook(x, seed=0)
        i1, d1 = b.search(x); i1k, d1k = b.search(x, 3)
        b.fit(x, 3, seed=0, init=None)
        for k, v in list(_orig.items()): setattr(Som, k, v)
        _orig.clear()
        diff = (a.codebook - b.codebook).abs().max().item()
        worst = max(worst, diff)
        print(f"{rows}x{cols} {topo}{' toroidal' if tor else ''}, {n} x {D}: BMUs equal {(i0 == i1).float().mean():.4%},"
              f" top-3 equal {(i0k == i1k).float().mean():.4%}, max |dist diff| {(d0 - d1).abs().max():.1e}; "
              f"codebooks after 3 epochs: max |diff| {diff:.1e}")
    print(f"worst codebook difference {worst:.1e}")

if __name__ == '__main__':
    cmd = sys.argv[1] if len(sys.argv) > 1 else 'small'
    if cmd == '_small': _small_child(sys.argv[2], int(sys.argv[3]))
    elif cmd == 'small': small(int(sys.argv[sys.argv.index('--repeats') + 1]) if '--repeats' in sys.argv else 20)
    elif cmd == 'check': check()
    elif cmd == 'search':
        os.environ['PROTO'] = '1'
        print("run: PROTO=1 python bench/search.py ... (bench/search.py applies the prototype when PROTO=1)")
