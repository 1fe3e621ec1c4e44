"""Batches per second of `SomDataLoaders` against bare loops over the same tensor.

usage: python bench/data_speed.py [--rows 1000000] [--cols 32] [--bs 1024] [--repeats 5] [--threads N]

Iterates one full epoch per repeat and reports the best and median rate. The issue's target: the
loader within 1.5x of a bare Python loop that slices the tensor. Unshuffled, the loader yields views
(`torch.split`), so it is compared with a slicing loop; shuffled, every batch is a gather, so it is
also compared with a bare gather loop over the same permutation.
"""
import argparse, statistics, time, warnings
warnings.filterwarnings('ignore')
import torch
from fastsom.data import SomDataLoaders


def rate(epoch, repeats):
    "Batches per second of `epoch()` (which returns its batch count): best and median over `repeats`"
    res = []
    for _ in range(repeats):
        t = time.perf_counter()
        k = epoch()
        res.append(k / (time.perf_counter() - t))
    return max(res), statistics.median(res)


def count(it):
    k = 0
    for b in it: k += 1
    return k


def main(rows, cols, bs, repeats):
    torch.manual_seed(0)
    x = torch.randn(rows, cols)
    t = time.perf_counter()
    dls = SomDataLoaders.from_tensor(x, valid_pct=0, norm=None, bs=bs, seed=0)
    build = time.perf_counter() - t
    t = time.perf_counter()
    SomDataLoaders.from_tensor(x, valid_pct=0.2, bs=bs, seed=0)
    build_z = time.perf_counter() - t
    plain = dls.train.new(shuffle=False)

    def bare_slice():
        k = 0
        for i in range(0, rows, bs):
            b = x[i:i + bs]; k += 1
        return k

    def bare_gather():
        k, perm = 0, torch.randperm(rows)  # a fresh shuffle every epoch, like the loader
        for p in perm.split(bs):
            b = x.index_select(0, p); k += 1
        return k

    res = {
        'bare loop, slicing x[i:i+bs]': rate(bare_slice, repeats),
        'SomDataLoaders, shuffle=False': rate(lambda: count(plain), repeats),
        'bare loop, randperm + x.index_select(0, perm[i:i+bs])': rate(bare_gather, repeats),
        'SomDataLoaders, shuffle=True (default)': rate(lambda: count(dls.train), repeats),
    }
    print(f"{rows:,} x {cols} float32, bs {bs}, {len(dls.train)} batches/epoch, torch threads {torch.get_num_threads()}")
    print(f"build from_tensor(valid_pct=0, norm=None): {build:.2f} s; from_tensor(valid_pct=0.2, norm='zscore'): {build_z:.2f} s")
    base = res['bare loop, slicing x[i:i+bs]'][0]
    for k, (best, med) in res.items():
        print(f"{k:55s} best {best:12,.0f}  median {med:12,.0f} batches/s   ({base / best:5.2f}x the slicing loop's time)")
    s, g = res['SomDataLoaders, shuffle=True (default)'][0], res['bare loop, randperm + x.index_select(0, perm[i:i+bs])'][0]
    print(f"shuffled loader vs bare gather loop: {g / s:.2f}x the time")


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--rows', type=int, default=1_000_000)
    p.add_argument('--cols', type=int, default=32)
    p.add_argument('--bs', type=int, default=1024)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch\'s)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    main(a.rows, a.cols, a.bs, a.repeats)
