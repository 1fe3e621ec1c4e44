"""Issue 16, missing values as a mask: map quality and imputation with holes, and the time of masked training.
Run from the repo root (nice: the machine is shared):

    nice python bench/missing.py --part quality             # digits, wine, breast cancer with 10/30/50% removed
    nice python bench/missing.py --part time --repeats 3    # blobs 50,000 x 32, 32 x 32 map, 5 epochs
    nice python bench/missing.py --part step --label NAME   # the unmasked step and fit alone, for any checkout

`quality`: each data set standardised with the complete data's mean and std (a constant column keeps std 1), then a
share p of its entries removed at random (seeds 0, 1, 2; a row left with no value keeps its first entry). Two maps
of the case's size (`cases.py`; breast cancer 12 x 10), 10 epochs, defaults otherwise: one trained on the complete
data, one on the data with holes with `missing='mask'`. QE on the observed entries is the masked distance (rescaled
by n_features / n_observed) of each row with holes to its BMU, the same measure for both maps; QE on the complete
data is the ordinary one. Imputation RMSE is over the removed entries, in standardised units: `Som.impute` of the
masked map, the column means of the observed values, and scikit-learn's `KNNImputer()` (5 neighbours, its
defaults). Means over the 3 seeds.
`time`: `Som.fit` on complete blobs, on blobs with 10% and 30% removed (`missing='mask'`), and with
`missing='mask'` on the complete blobs (which takes the unmasked step); medians of interleaved rounds.
`step`: the unmasked `Som.step` (bs 4096) and `Som.fit` on blobs, with the fastsom on PYTHONPATH, to compare a
checkout before missing values with this one. Results are appended to bench/results/missing.jsonl.
"""
import argparse, json, os, sys, time
from pathlib import Path
ap = argparse.ArgumentParser()
ap.add_argument('--part', choices=['quality', 'time', 'step'], default='quality')
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--repeats', type=int, default=3)
ap.add_argument('--label', default='')
args = ap.parse_args()
for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ[v] = str(args.threads)
import numpy as np, torch
import fastsom
from fastsom.som import Som
sys.path.insert(0, str(Path(__file__).parent))
from cases import CASES, make, medians
torch.set_num_threads(args.threads)
SHARES, SEEDS = (.1, .3, .5), (0, 1, 2)


def standardised(name):
    from sklearn import datasets
    x = make(name)[0] if name != 'breast_cancer' else datasets.load_breast_cancer().data
    x = np.asarray(x, np.float64)
    sd = x.std(0)
    return ((x - x.mean(0)) / np.where(sd > 0, sd, 1.)).astype(np.float32)


def punched(x, p, seed):
    "`x` with a share `p` of its entries removed at random; a row left with no value keeps its first entry"
    holes = np.random.default_rng(seed).random(x.shape) < p
    holes[holes.all(1), 0] = False
    return np.where(holes, np.nan, x).astype(np.float32), holes


def quality():
    from sklearn.impute import KNNImputer
    rows = []
    for name in ('digits', 'wine', 'breast_cancer'):
        x = standardised(name)
        r, c, epochs = (12, 10, 10) if name == 'breast_cancer' else CASES[name][:3]
        full = Som((r, c), x.shape[1]).fit(x, epochs=epochs, seed=0)
        for p in SHARES:
            acc = []
            for seed in SEEDS:
                xm, holes = punched(x, p, seed)
                som = Som((r, c), x.shape[1]).fit(xm, epochs=epochs, seed=0, missing='mask')
                rmse = lambda xi: float(np.sqrt(((np.asarray(xi) - x)[holes] ** 2).mean()))
                acc.append([som.quantization_error(xm, missing='mask'), full.quantization_error(xm, missing='mask'),
                            som.quantization_error(x), full.quantization_error(x), rmse(som.impute(xm)),
                            rmse(np.where(holes, np.nanmean(xm, 0), xm)), rmse(KNNImputer().fit_transform(xm))])
            m = np.mean(acc, 0)
            rows.append(dict(data=name, shape=list(x.shape), map=[r, c], removed=p, qe_obs_masked=m[0],
                             qe_obs_complete=m[1], qe_full_masked=m[2], qe_full_complete=m[3], rmse_som=m[4],
                             rmse_mean=m[5], rmse_knn=m[6]))
            print(f"{name:>13} {p:.0%}: QE observed entries: masked map {m[0]:.3f}, complete-data map {m[1]:.3f} | "
                  f"QE complete data: masked {m[2]:.3f}, complete {m[3]:.3f} | imputation RMSE: map {m[4]:.3f}, "
                  f"column means {m[5]:.3f}, KNNImputer {m[6]:.3f}", flush=True)
    return rows


def blobs_x():
    return torch.from_numpy(make('blobs')[0])


def timing():
    x = blobs_x()
    xs = {p: torch.from_numpy(punched(x.numpy(), p, 0)[0]) for p in (.1, .3)}
    fit = lambda data, missing=None: Som((32, 32), 32).fit(data, epochs=5, seed=0, missing=missing)
    t = medians(lambda: fit(x), lambda: fit(xs[.1], 'mask'), lambda: fit(xs[.3], 'mask'), lambda: fit(x, 'mask'),
                n=args.repeats)
    som = fit(x)
    ts = medians(lambda: som.search(x), lambda: som.search(xs[.1], missing='mask'), n=args.repeats)
    r = dict(unmasked=t[0], masked_10=t[1], masked_30=t[2], mask_on_complete=t[3], search=ts[0], search_masked=ts[1])
    print(f"blobs 50,000 x 32, 32 x 32, 5 epochs: unmasked {t[0]:.2f} s; masked, 10% removed {t[1]:.2f} s "
          f"({t[1] / t[0]:.2f}x); 30% removed {t[2]:.2f} s ({t[2] / t[0]:.2f}x); missing='mask' on complete data "
          f"{t[3]:.2f} s ({t[3] / t[0]:.2f}x). One search pass: {ts[0]:.3f} s, masked {ts[1]:.3f} s "
          f"({ts[1] / ts[0]:.2f}x)", flush=True)
    return [r]


def step():
    x = blobs_x()
    som = Som((32, 32), 32).init_codebook(x, seed=0)
    w0, xb = som.weights.clone(), x[:4096]
    def steps():
        som.weights.copy_(w0)
        for _ in range(20): som.step(xb, .5, 4.)
    t = medians(steps, lambda: Som((32, 32), 32).fit(x, epochs=5, seed=0), n=args.repeats)
    print(f"{args.label}: 20 unmasked steps (bs 4096, 32 x 32, D 32) {t[0] * 1e3:.1f} ms, "
          f"Som.fit blobs 5 epochs {t[1]:.3f} s", flush=True)
    return [dict(steps20=t[0], fit=t[1])]


if __name__ == '__main__':
    print(f"fastsom at {Path(fastsom.__file__).parent}; threads {args.threads}; torch {torch.__version__}; "
          f"load average {os.getloadavg()}", flush=True)
    res = dict(quality=quality, time=timing, step=step)[args.part]()
    print(f"load average at the end: {os.getloadavg()}")
    (Path(__file__).parent / 'results').mkdir(exist_ok=True)
    with open(Path(__file__).parent / 'results' / 'missing.jsonl', 'a') as f:
        for r in res: f.write(json.dumps(dict(r, part=args.part, label=args.label, threads=args.threads,
                                              load=os.getloadavg()[0], date=time.strftime('%F %T'))) + '\n')
