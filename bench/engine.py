"""Engine measurements of issue 2 (a script, not a timed test). Run from the repo root:

    python bench/engine.py --parts a,c --threads 2 --repeats 3

a) 50,000 x 32 blobs, 32 x 32 map, 5 epochs: fastsom's `Som.fit` and xpysom's numpy batch SOM side by side, their
   time ratio and QE (bench/score.py). Targets: ours <= 1/2 of xpysom's time, QE <= 1.02 x xpysom's.
b) BMU search throughput against torch's matmul: see bench/search.py.
c) Peak memory (max RSS) of one epoch of `Som.fit` on 1,000,000 x 64 rows on a 64 x 64 map, in a fresh process,
   minus the RSS after loading the data (an upper bound of what the fit adds); and its time. Target: at most 1 GiB
   above the data.
Timings are medians of `--repeats` runs after a warm-up. Results are printed and appended to bench/results/engine.jsonl.
"""
import argparse, json, os, resource, subprocess, sys, time
ap = argparse.ArgumentParser()
ap.add_argument('--parts', default='a,b,c')
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--repeats', type=int, default=3)
ap.add_argument('--mem', action='store_true', help='internal: run part c in this (fresh) process')
args = ap.parse_args()
for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ[v] = str(args.threads)

import numpy as np, torch
from fastsom.som import Som
from cases import RESULTS, make, save, load, medians as _medians
from score import score
torch.set_num_threads(args.threads)

def medians(*fs): return _medians(*fs, n=args.repeats)

def part_a():
    from xpysom import XPySom
    x, _ = make('blobs')
    t = torch.from_numpy(x)
    ours, theirs = Som((32, 32), 32), XPySom(32, 32, 32, xp=np, random_seed=0)
    def xp_fit():
        theirs.pca_weights_init(x); theirs.train(x, 5)
    t_ours, t_xp = medians(lambda: ours.fit(t, epochs=5, seed=0), xp_fit)
    qe_ours, qe_xp = (score(x, c)['qe'] for c in (ours.codebook.numpy(), np.asarray(theirs.get_weights())))
    res = dict(part='a', fastsom_s=t_ours, xpysom_s=t_xp, time_ratio=t_ours / t_xp, fastsom_qe=qe_ours, xpysom_qe=qe_xp,
               qe_ratio=qe_ours / qe_xp, met=t_ours <= t_xp / 2 and qe_ours <= 1.02 * qe_xp)
    print(f"a) blobs 50,000 x 32, 32 x 32, 5 epochs: fastsom {t_ours:.3f} s, xpysom {t_xp:.3f} s, ratio {t_ours / t_xp:.2f} "
          f"(target <= 0.5); QE {qe_ours:.4f} vs {qe_xp:.4f}, ratio {qe_ours / qe_xp:.4f} (target <= 1.02): "
          f"{'met' if res['met'] else 'NOT met'}")
    return [res]


def part_c():
    "Run in a fresh process (--mem): RSS after loading the data, then max RSS after one epoch of Som.fit"
    x = torch.from_numpy(load('large'))
    base = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 2**20  # KiB -> GiB
    t = time.perf_counter()
    Som((64, 64), 64).fit(x, epochs=1, seed=0)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(dict(part='c', data_gib=x.numel() * 4 / 2**30, baseline_gib=base, peak_gib=peak, extra_gib=peak - base,
                          fit_s=secs, met=peak - base <= 1)))

if __name__ == '__main__':
    if args.mem: part_c(); sys.exit()
    print(f'threads: {args.threads}; torch {torch.__version__}; load average {os.getloadavg()}', flush=True)
    res = []
    if 'a' in args.parts: res += part_a()
    if 'c' in args.parts:
        save('large')
        p = subprocess.run([sys.executable, __file__, '--mem', '--threads', str(args.threads)], capture_output=True, text=True, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        res.append(r)
        print(f"c) 1,000,000 x 64 on 64 x 64, 1 epoch: {r['fit_s']:.1f} s; data {r['data_gib']:.2f} GiB, RSS {r['baseline_gib']:.2f} GiB "
              f"after loading, max RSS {r['peak_gib']:.2f} GiB after fit: +{r['extra_gib']:.2f} GiB (target <= 1): {'met' if r['met'] else 'NOT met'}")
    print(f'load average at the end: {os.getloadavg()}')
    with open(RESULTS / 'engine.jsonl', 'a') as f:
        for r in res: f.write(json.dumps(dict(r, threads=args.threads, load=os.getloadavg()[0], date=time.strftime('%F %T'))) + '\n')
