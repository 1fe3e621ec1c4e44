"""Quality on defaults alone through each route (a script, not a timed test). Run from the repo root:

    python bench/defaults.py

For digits (20x20, 10 epochs), wine (10x10) and iris (a 150-row table, 8x8): QE and TE of
1. `Som.fit(x)` on the raw data, and on the z-scored data the loaders make (the learner's space);
2. `som_learner(SomDataLoaders.from_df(df, label_names=...)).fit()` with every default (z-score, valid_pct .1);
3. `fastsom train DATA.csv --label y` (the command's own choices: 20x20 hex map, 20 epochs; its metrics.json).
QE and TE are scored on all rows by the engine's measures, in the space each map was trained in.
"""
import json, subprocess, sys, tempfile, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from sklearn import datasets
from fastsom.all import *

CASES = dict(digits=(datasets.load_digits, (20, 20)), wine=(datasets.load_wine, (10, 10)), iris=(datasets.load_iris, (8, 8)))

def run(name):
    load, size = CASES[name]
    d = load(as_frame=True)
    df = d.frame.rename(columns={'target': 'y'})
    x = torch.tensor(d.data.values, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # digits' constant pixels
        dls = SomDataLoaders.from_df(df, label_names='y', seed=0)
        xz = dls.test_dl(df).x
    som = Som(size, x.shape[1]).fit(x, seed=0)
    somz = Som(size, x.shape[1]).fit(xz, seed=0)
    learn = som_learner(dls, size, seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit()
    res = {'Som.fit (raw)': (som, x), 'Som.fit (z-scored)': (somz, xz), 'som_learner (z-scored)': (learn.model, xz)}
    out = {k: (m.quantization_error(v), m.topographic_error(v)) for k, (m, v) in res.items()}
    with tempfile.TemporaryDirectory() as t:
        df.to_csv(f'{t}/{name}.csv', index=False)
        subprocess.run(['fastsom', 'train', f'{t}/{name}.csv', '--label', 'y', '-o', f'{t}/out'],
                       check=True, capture_output=True, cwd=t)
        m = json.loads(Path(f'{t}/out/metrics.json').read_text())
    out['fastsom train (z-scored, 20x20 hex, 20 epochs)'] = (m['qe'], m['te'])
    return out

if __name__ == '__main__':
    print('| data | route | QE | TE |\n|---|---|---:|---:|')
    for name in CASES:
        for route, (qe, te) in run(name).items(): print(f'| {name} | {route} | {qe:.4f} | {te:.4f} |', flush=True)
