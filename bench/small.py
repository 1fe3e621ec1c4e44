"""Small data (issue 17, point 1): fit times of the engine and of xpysom on wine, digits and iris.

    python bench/small.py [--repeats 20] [--rev PATH]
    python bench/small.py --quality       # QE and TE of fastsom at larger batch sizes than the default (3 seeds)
    python bench/small.py --floor         # the least a step of ~20 torch ops costs on wine's shapes

Cases: scikit-learn's wine (178 x 13, standardised) on 10 x 10, digits (1,797 x 64, raw 0-16) on 20 x 20, iris
(150 x 4, raw) on 8 x 8, 10 epochs each. fastsom: `Som(size, D).fit(x, 10, seed=0)` at its defaults (PCA init,
`default_bs`: 64, 112 and 64 rows, so 3, 17 and 3 updates an epoch); xpysom: `XPySom(r, c, D, xp=numpy)` with
`pca_weights_init` and `train(x, 10)` at its defaults (batch SOM: one update an epoch). Each library runs in its own
process with one thread, two interleaved rounds, 3 warm-up fits, then `--repeats` timed fits (construction, init
and training); the better median of the two rounds is kept. `--rev PATH` adds the fastsom checkout at PATH
(e.g. a `git worktree` of an older commit) as a third column. `--quality` answers "why not fewer, larger batches,
as xpysom": QE and TE (mean of seeds 0-2) at `default_bs`, n / 4, n / 2 and n rows per batch. `--floor` times a
bare step written for this one shape (64 rows x 13 features on 10 x 10, Gaussian, mini-batch rule; no frame, no
checks, no general lattice): what torch's per-op cost alone leaves, against the engine's `Som.step` on the same batch.
"""
import argparse, json, os, statistics, subprocess, sys, time

def cases():
    import numpy as np
    from sklearn import datasets
    d = datasets.load_wine()
    return dict(wine=(((d.data - d.data.mean(0)) / d.data.std(0)).astype(np.float32), 10),
                digits=(datasets.load_digits().data.astype(np.float32), 20),
                iris=(datasets.load_iris().data.astype(np.float32), 8))

def child(lib, repeats):
    "One library on every case in this process: median and min ms of `repeats` fits, as JSON"
    import numpy as np, torch
    torch.set_num_threads(1)
    out = {}
    for name, (x, side) in cases().items():
        if lib == 'xpysom':
            from xpysom import XPySom
            def f():
                s = XPySom(side, side, x.shape[1], xp=np, random_seed=0); s.pca_weights_init(x); s.train(x, 10)
        else:
            from fastsom.som import Som
            t = torch.from_numpy(x)
            f = lambda: Som((side, side), x.shape[1]).fit(t, 10, seed=0)
        for _ in range(3): f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
        out[name] = (statistics.median(ts) * 1e3, min(ts) * 1e3)
    print(json.dumps(out))

def quality():
    import numpy as np, torch
    from fastsom.som import Som
    torch.set_num_threads(1)
    for name, (x, side) in cases().items():
        t = torch.from_numpy(x)
        for bs in (None, len(t) // 4, len(t) // 2, len(t)):
            soms = [Som((side, side), x.shape[1]).fit(t, 10, bs=bs, seed=s) for s in range(3)]
            qe, te = (np.mean([f(s, t) for s in soms]) for f in (Som.quantization_error, Som.topographic_error))
            print(f"{name:7s} bs {bs or 'default':>7}: QE {qe:.4f}, TE {te:.4f}")

def floor(n=3000):
    import torch
    from fastsom.som import Som
    torch.set_num_threads(1)
    x = torch.from_numpy(cases()['wine'][0][:64])
    som = Som((10, 10), 13).init_codebook(x)
    w, u, f = som.weights.clone(), 100, 13
    d2 = (torch.arange(10.)[:, None] - torch.arange(10.)[None]) ** 2
    def bare(alpha=.5, sigma=2.):
        wa = torch.cat([-2 * w, (w * w).sum(1, keepdim=True)], 1)
        bmu = torch.cat([x, x.new_ones(len(x), 1)], 1).mm(wa.T).argmin(1)
        st = x.new_zeros(u, f + 1).index_add_(0, bmu, torch.cat([x, x.new_ones(len(x), 1)], 1))
        k = torch.exp(d2 / (-2 * sigma * sigma))
        v = (k @ (k @ st.view(10, -1)).view(10, 10, -1)).view(u, -1)
        t = torch.where(v[:, -1:] > 1e-30, v[:, :f] / v[:, -1:].clamp(min=1e-30), w)
        w.add_(alpha * (t - w))
    res = {}
    with torch.inference_mode():
        for name, g in dict(bare=bare, engine=lambda: som.step(x, .5, 2.)).items():
            for _ in range(200): g()
            t0 = time.perf_counter()
            for _ in range(n): g()
            res[name] = (time.perf_counter() - t0) / n * 1e6
    print(f"one step on 64 x 13, 10 x 10: bare {res['bare']:.0f} us, Som.step {res['engine']:.0f} us; the 30 steps of a "
          f"default wine fit: bare {30 * res['bare'] / 1e3:.2f} ms, Som.step {30 * res['engine'] / 1e3:.2f} ms")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--repeats', type=int, default=20)
    ap.add_argument('--rev', help='another fastsom checkout to time beside this one')
    ap.add_argument('--quality', action='store_true', help='QE and TE at larger batch sizes instead of times')
    ap.add_argument('--floor', action='store_true', help='the cost of a bare step on wine\'s shapes')
    ap.add_argument('--child', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quality: return quality()
    if a.floor: return floor()
    if a.child: return child(a.child, a.repeats)
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    libs = dict(fastsom={}, xpysom={}, **({'fastsom@rev': dict(PYTHONPATH=a.rev)} if a.rev else {}))
    print(f"load average {os.getloadavg()}; one thread; median (min) ms of {a.repeats} fits after 3 warm-ups", flush=True)
    res = {}
    for _ in range(2):
        for lib, extra in libs.items():
            p = subprocess.run([sys.executable, __file__, '--child', lib.split('@')[0], '--repeats', str(a.repeats)],
                               env=dict(env, **extra), capture_output=True, text=True, check=True)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            res[lib] = {k: min(v, res.get(lib, {}).get(k, v)) for k, v in r.items()}
    for case in cases():
        cols = '  '.join(f"{lib} {res[lib][case][0]:7.2f} ({res[lib][case][1]:.2f})" for lib in libs)
        ratios = ', '.join(f"{lib}/xpysom {res[lib][case][0] / res['xpysom'][case][0]:.2f}x"
                           for lib in libs if lib != 'xpysom')
        print(f"{case:7s} {cols}  |  {ratios}")
    print(f"load average at the end {os.getloadavg()}")

if __name__ == '__main__': main()
