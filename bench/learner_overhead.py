"""fastai overhead of `SomLearner.fit` against the bare `Som.fit` loop, same data, schedule, batch size and codebook.

50,000 x 32 Gaussian blobs, 32 x 32 map, 5 epochs, bs 4096, alpha .9 -> .1 and sigma 16 -> 1 (exponential, per
epoch), both starting from the same PCA codebook. Three settings:

- `in order`: `valid_pct=0`, no shuffling: both see the same batches in the same order, so they must end with
  the same codebook (the max difference is printed);
- `shuffled`: `valid_pct=0`, shuffled (`SomDataLoader` and `Som.fit` draw different permutations: same work,
  not the same codebook);
- `with valid`: shuffled, 20% held out; the learner also computes QE, TE and units hit on it every epoch,
  `Som.fit` trains on the same 40,000 rows and validates nothing (so this ratio includes the metrics' cost).

The learner runs the whole fastai loop (callbacks, recorder, progress bar, metrics table; output swallowed).
Last, the fixed fastai cost per batch: the same loop on a 2 x 2 map, where the SOM work is negligible.
Each timing is repeated `--repeats` times (alternating learner and bare loop) after one warm-up; medians reported.
usage: python bench/learner_overhead.py [--repeats 3] [--threads N]
"""
import argparse, contextlib, io, math, os, statistics, time, warnings
warnings.simplefilter('ignore')
import torch
from fastsom.data import SomDataLoaders
from fastsom.learner import som_learner
from fastsom.som import Som

def blobs(n=50_000, d=32, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(k, d, generator=g) * 4
    return c[torch.randint(k, (n,), generator=g)] + torch.randn(n, d, generator=g)

def time_pair(x, valid_pct, shuffle, epochs, bs, size, seed=0):
    "One timed `learn.fit` and one timed `Som.fit` from the same codebook; returns (t_learn, t_som, max |diff|, last record)"
    dls = SomDataLoaders.from_tensor(x, bs=bs, valid_pct=valid_pct, shuffle=shuffle, seed=seed, norm=None)
    learn = som_learner(dls, size, seed=seed)
    xt = dls.train.x
    som = Som(size, x.shape[1])
    som.codebook.data.copy_(learn.codebook)
    with contextlib.redirect_stdout(io.StringIO()):  # the progress table, as a user would get it, but not shown
        t0 = time.perf_counter(); learn.fit(epochs); t1 = time.perf_counter()
    som.fit(xt, epochs, bs, alpha=(.9, .1), schedule='exp', shuffle=shuffle, seed=seed, init=None); t2 = time.perf_counter()
    return t1 - t0, t2 - t1, (learn.codebook - som.codebook).abs().max().item(), learn.recorder.values[-1]

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--epochs', type=int, default=5)
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    print(f"load average before: {os.getloadavg()}, torch threads: {torch.get_num_threads()}")
    x = blobs()
    for name, vp, shuffle in (('in order', 0., False), ('shuffled', 0., True), ('with valid', .2, True)):
        time_pair(x, vp, shuffle, 1, 4096, (32, 32))  # warm-up
        runs = [time_pair(x, vp, shuffle, a.epochs, 4096, (32, 32)) for _ in range(a.repeats)]
        tl, ts = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        last = [v if v is None else round(v, 4) for v in runs[-1][3]]
        same = f"; max |codebook diff| {max(r[2] for r in runs):.1e}" if not shuffle else ""
        print(f"{name:10s}: learn.fit {tl:.3f}s  Som.fit {ts:.3f}s  ratio {tl / ts:.2f}x  "
              f"(runs learn/Som: {', '.join(f'{r[0]:.2f}/{r[1]:.2f}' for r in runs)}){same}; "
              f"last epoch [train_loss, valid_loss, TE, units_hit] {last}")
    # fixed cost per batch, measured where the SOM work is negligible: a 2 x 2 map
    runs = [time_pair(x, 0., True, a.epochs, 4096, (2, 2)) for _ in range(a.repeats + 1)][1:]
    nb = a.epochs * math.ceil(len(x) / 4096)
    d = statistics.median((r[0] - r[1]) / nb * 1e3 for r in runs)
    print(f"fastai cost per batch (2 x 2 map, {nb} batches): {d:.2f} ms "
          f"(learn.fit {statistics.median(r[0] for r in runs):.3f}s, Som.fit {statistics.median(r[1] for r in runs):.3f}s)")
    print(f"load average after: {os.getloadavg()}")

if __name__ == '__main__': main()
