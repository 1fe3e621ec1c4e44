"""fastai overhead of `SomLearner.fit` against the bare `Som.fit` loop: same data, codebook, schedule and batches.

    python bench/learner_overhead.py [--repeats 5] [--threads 1] [--cases colours,blobs]

Cases (issue 17's targets: learn.fit at most 1.3x Som.fit on colours, 1.1x on blobs):
- colours: 10,000 x 3 uniform in [0, 1] (bench/cases.py), 20 x 20 map, 10 epochs;
- blobs: 50,000 x 32 Gaussian blobs (bench/cases.py), 32 x 32 map, 5 epochs.
Both with the defaults: batch size `default_bs(n)`, alpha .9 -> .1 and sigma max(size)/2 -> 1, exponential per
mini-batch, from the same PCA codebook. `SomDataLoaders.from_tensor(x, valid_pct=0, norm=None, seed=0)` and
`Som.fit(x, seed=0)` draw the same permutation each epoch, so both see the same batches and must end with the same
codebook (the max difference is printed). The learner runs the whole fastai loop with its default callbacks, the
progress bar and table switched off as `bench/train.py` does (`no_bar`, `no_logging`).
`--valid` adds a second setting per case, 20% held out, where the learner also computes QE, TE and units hit on it
every epoch and `Som.fit` trains on the same rows and validates nothing (so that ratio includes the metrics' cost).
Last, the fixed fastai cost per batch: the same loop on a 2 x 2 map, where the SOM work is negligible.
Each timing is the minimum and median of `--repeats` alternating runs after one warm-up.
"""
import argparse, os, statistics, sys, time, warnings
from pathlib import Path
warnings.simplefilter('ignore')
ap = argparse.ArgumentParser()
ap.add_argument('--repeats', type=int, default=5)
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--cases', default='colours,blobs')
ap.add_argument('--valid', action='store_true')
args = ap.parse_args()
for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ[v] = str(args.threads)
import torch
sys.path.insert(0, str(Path(__file__).parent))
from cases import make
from fastsom.data import SomDataLoaders
from fastsom.learner import som_learner
from fastsom.som import Som
torch.set_num_threads(args.threads)
CASES = dict(colours=((20, 20), 10, 1.3), blobs=((32, 32), 5, 1.1))  # map, epochs, target ratio

def time_pair(x, size, epochs, valid_pct=0.):
    "One timed `learn.fit` and one timed `Som.fit` from the same codebook: (t_learn, t_som, max |codebook diff|)"
    dls = SomDataLoaders.from_tensor(x, valid_pct=valid_pct, norm=None, seed=0)
    learn = som_learner(dls, size, seed=0)
    som = Som(size, x.shape[1])
    som.codebook.data.copy_(learn.codebook)
    with learn.no_bar(), learn.no_logging():
        t0 = time.perf_counter(); learn.fit(epochs); t1 = time.perf_counter()
    som.fit(dls.train.x, epochs, dls.train.bs, seed=0, init=None); t2 = time.perf_counter()
    return t1 - t0, t2 - t1, (learn.codebook - som.codebook).abs().max().item(), len(dls.train)

def runs(x, size, epochs, valid_pct=0.):
    time_pair(x, size, 1, valid_pct)  # warm-up
    rs = [time_pair(x, size, epochs, valid_pct) for _ in range(args.repeats)]
    tl, ts = [r[0] for r in rs], [r[1] for r in rs]
    return min(tl), min(ts), statistics.median(tl), statistics.median(ts), max(r[2] for r in rs), rs[0][3]

def main():
    print(f"fastsom at {Path(__import__('fastsom').__file__).parent}; torch threads {torch.get_num_threads()}; "
          f"load average before {os.getloadavg()}", flush=True)
    for case in args.cases.split(','):
        (size, epochs, target), x = CASES[case], torch.from_numpy(make(case)[0])
        for vp in (0., .2) if args.valid else (0.,):
            tl, ts, ml, ms, diff, nb = runs(x, size, epochs, vp)
            same = f"same batches, max |codebook diff| {diff:.1e}" if vp == 0 else "20% held out, validated by the learner"
            print(f"{case} ({size[0]}x{size[1]}, {epochs} epochs, {nb} batches/epoch, {same}): learn.fit {tl:.4f} s, "
                  f"Som.fit {ts:.4f} s (min of {args.repeats}): ratio {tl / ts:.2f}x (medians {ml:.4f} / {ms:.4f}: "
                  f"{ml / ms:.2f}x)" + (f"; target <= {target}x: {'met' if tl / ts <= target else 'NOT met'}"
                                        if vp == 0 else ''), flush=True)
    x = torch.from_numpy(make('colours')[0])
    tl, ts, _, _, _, nb = runs(x, (2, 2), 10)
    print(f"fastai cost per batch (colours on a 2 x 2 map, {10 * nb} batches): {(tl - ts) / (10 * nb) * 1e3:.3f} ms "
          f"(learn.fit {tl:.4f} s, Som.fit {ts:.4f} s)")
    print(f"load average after: {os.getloadavg()}")

if __name__ == '__main__': main()
