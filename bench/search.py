"""BMU-search throughput against torch's matmul ceiling (a script, not a timed test). Run from the repo root:

    python bench/search.py --threads 2 --repeats 5 [--label NAME]

For each shape (rows N, features D, units M) it times `Som.search(x)` (chunked, default budget) and torch's `addmm`
on the same chunks into a reused buffer (`out=`), which is the ceiling: GFLOP/s = 2 N M D / seconds. Only the public
`Som` API is used, so the same script measures any fastsom checkout (`PYTHONPATH=/path/to/checkout`). Data sit at an
offset of 100 from the origin, where a search in the origin's frame is inexact; the BMU agreement with a float64
numpy reference is printed beside the speed. Results are appended to bench/results/search.jsonl.
`mm` is torch's plain `mm` of the same chunks (no bias, no alpha: a lower bound of any distance tile's cost; on
this machine's torch `addmm(bias, alpha=-2)` takes about twice `mm`'s time). `ceiling` is also reported: the search against the fastest `addmm` over chunk budgets of 0.5, 1, 2 and 4 MiB.
"""
import argparse, json, os, sys, time
from pathlib import Path
ap = argparse.ArgumentParser()
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--repeats', type=int, default=5)
ap.add_argument('--label', default='')
args = ap.parse_args()
for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ[v] = str(args.threads)
import numpy as np, torch
import fastsom
from fastsom.som import Som
sys.path.insert(0, str(Path(__file__).parent))
from cases import medians
torch.set_num_threads(args.threads)
SHAPES = [(50_000, 32, 20), (50_000, 32, 32), (50_000, 32, 64), (200_000, 64, 20), (200_000, 64, 64), (100_000, 128, 32)]

def agreement(som, x):
    "Share of rows whose BMU is the float64 reference's nearest unit (ties counted as agreeing)"
    xs, w = x[:5000].double().numpy(), som.weights.double().numpy()
    d = ((xs[:, None] - w[None]) ** 2).sum(-1)
    got = som.bmu(x[:5000]).numpy()
    return float((d[np.arange(len(xs)), got] <= d.min(1) * (1 + 1e-12)).mean())

def run():
    out = []
    for n, d, side in SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, d, generator=g) + 100
        som = Som((side, side), d).init_codebook(x[:20_000], 'sample', seed=0)
        m, rows = side * side, som.chunk_size()
        w = som.weights
        w2, buf = (w * w).sum(1), w.new_empty(rows, m)
        def addmm(rows, buf):
            return lambda: [torch.addmm(w2, xc, w.T, alpha=-2, out=buf[:len(xc)]) for xc in x.split(rows)]
        mm = lambda: [torch.mm(xc, w.T, out=buf[:len(xc)]) for xc in x.split(rows)]
        other = [max(1, int(mb * 2**20 / (4 * m))) for mb in (.5, 1, 2, 4)]
        t_mm, t_s, t_plain, *t_other = medians(addmm(rows, buf), lambda: som.search(x), mm,
                                               *(addmm(r, w.new_empty(r, m)) for r in other), n=args.repeats)
        gf, best = 2 * n * m * d / 1e9, min([t_mm] + t_other)
        r = dict(n=n, d=d, units=m, addmm_gflops=gf / t_mm, search_gflops=gf / t_s, frac=t_mm / t_s, ceiling=best / t_s,
                 mm_gflops=gf / t_plain, frac_mm=t_plain / t_s,
                 chunk_rows=rows, agree=agreement(som, x))
        out.append(r)
        print(f"{n:>9,} x {d:>3} on {m:>4} units: addmm {r['addmm_gflops']:6.1f} GFLOP/s, search {r['search_gflops']:6.1f} "
              f"({r['frac']:.0%} of addmm on its chunks, {r['ceiling']:.0%} of the fastest addmm; plain mm "
              f"{r['mm_gflops']:6.1f}, search {r['frac_mm']:.0%} of it); BMUs agreeing with float64: "
              f"{r['agree']:.2%}", flush=True)
    return out

if __name__ == '__main__':
    print(f"fastsom at {Path(fastsom.__file__).parent}; threads {args.threads}; torch {torch.__version__}; "
          f"load average {os.getloadavg()}", flush=True)
    res = run()
    print(f"load average at the end: {os.getloadavg()}")
    (Path(__file__).parent / 'results').mkdir(exist_ok=True)
    with open(Path(__file__).parent / 'results' / 'search.jsonl', 'a') as f:
        for r in res: f.write(json.dumps(dict(r, label=args.label, threads=args.threads, load=os.getloadavg()[0],
                                              date=time.strftime('%F %T'))) + '\n')
