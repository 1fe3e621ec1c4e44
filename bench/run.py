"""Benchmark fastsom against the SOM libraries users would otherwise pick: one command reproduces the table.

    python bench/run.py --cases all --repeats 3

Each (library, case, repeat) trains in its own subprocess (bench/train.py) with the same thread count for every
library (OMP/MKL/OpenBLAS env and torch.set_num_threads), on the same data, map size and epochs. Every final codebook
is scored by bench/score.py. Raw results go to bench/results/; the table is printed as markdown and written into
bench/README.md. `--cases check` trains every library on a 2-D square on a 6 x 10 map: a wrong codebook layout
would show there as a high TE.
"""
import argparse, datetime, hashlib, json, os, platform, statistics, subprocess, sys, time
from importlib.metadata import version, PackageNotFoundError
from pathlib import Path
import numpy as np
from cases import CASES, RESULTS, save, load
from score import score

HERE = Path(__file__).parent
LIBS = ['fastsom', 'fastsom-learner', 'minisom-online', 'minisom-batch', 'xpysom', 'torchsom', 'somoclu', 'quicksom', 'quicksom-jax', 'simpsom']
PACKAGES = ['fastsom', 'torch', 'fastai', 'numpy', 'minisom', 'xpysom', 'torchsom', 'somoclu', 'quicksom', 'jax', 'simpsom', 'scikit-learn']

def env(threads):
    e = dict(os.environ, PYTHONWARNINGS='ignore')
    for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): e[v] = str(threads)
    e['XLA_FLAGS'] = (e.get('XLA_FLAGS', '') + f' --xla_cpu_multi_thread_eigen={str(threads > 1).lower()}'
                      f' intra_op_parallelism_threads={threads}').strip()  # jax (quicksom-jax) ignores OMP
    return e

def learner_available():
    return subprocess.run([sys.executable, '-c', 'from fastsom.learner import som_learner'], capture_output=True).returncode == 0

def importable(module):
    return subprocess.run([sys.executable, '-c', f'import {module}'], capture_output=True).returncode == 0

MODULES = {'minisom-online': 'minisom', 'minisom-batch': 'minisom', 'xpysom': 'xpysom', 'torchsom': 'torchsom',
           'somoclu': 'somoclu', 'quicksom': 'quicksom.som', 'quicksom-jax': 'quicksom.somax', 'simpsom': 'simpsom'}

def skip_reason(lib, case, has_learner, missing):
    if lib == 'fastsom-learner' and not has_learner: return 'not available (fastsom.learner missing)'
    if lib in missing: return f'not available (import {MODULES[lib]} fails: pip install -r bench/requirements.txt)'
    if lib == 'minisom-online' and case == 'large': return 'skipped: one Python-level update per sample (10^6 updates)'

def run_one(lib, case, seed, args):
    "Train in a fresh process; the record of that run"
    out = RESULTS / 'raw' / case / f'{lib}-{seed}'
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = dict(lib=lib, case=case, seed=seed, load1=os.getloadavg()[0])
    try:
        p = subprocess.run([sys.executable, str(HERE / 'train.py'), lib, case, str(seed), str(out)], env=env(args.threads),
                           capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired: return dict(rec, status=f'timeout > {args.timeout} s')
    if p.returncode: return dict(rec, status='error: ' + (p.stderr.strip().splitlines() or ['?'])[-1][:200])
    rec.update(json.load(open(f'{out}.json')), status='ok')
    cb = np.load(f'{out}.npy')
    if not np.isfinite(cb).all(): return dict(rec, status=f'diverged: {(~np.isfinite(cb)).mean():.0%} of the codebook not finite')
    if CASES[case][3]:
        x, y = load(case, labels=True)
        rec.update(score(x, cb, y, lattice=rec.get('lattice', 'rect')))
    return rec

def summarise(recs):
    "Median of every measure over the successful runs of each (case, lib)"
    rows = {}
    for r in recs:
        rows.setdefault((r['case'], r['lib']), []).append(r)
    out = []
    for (case, lib), rs in rows.items():
        ok = [r for r in rs if r['status'] == 'ok']
        row = dict(case=case, lib=lib, runs=len(ok), status=rs[-1]['status'] if not ok else 'ok')
        for k in ('fit_s', 'qe', 'te', 'hit', 'purity'):
            if ok and k in ok[0]: row[k] = statistics.median(r[k] for r in ok)
        out.append(row)
    return out

def table(summary):
    f = lambda v, fmt: '' if v is None else format(v, fmt)
    lines = ['| case (map, epochs) | library | fit s | time / fastsom | QE | QE / fastsom | TE | units hit | purity | runs |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    ref = {r['case']: r for r in summary if r['lib'] == 'fastsom' and r['runs']}
    for r in summary:
        c, base = CASES[r['case']], ref.get(r['case'], {})
        name = f"{r['case']} ({c[0]}x{c[1]}, {c[2]})"
        if not r['runs']:
            lines.append(f"| {name} | {r['lib']} | {r['status']} | | | | | | | 0 |"); continue
        tr = r['fit_s'] / base['fit_s'] if base else None
        qr = r['qe'] / base['qe'] if base and 'qe' in r else None
        lines.append(f"| {name} | {r['lib']} | {f(r['fit_s'], '.3g')} | {f(tr, '.2f')} | {f(r.get('qe'), '.4g')} | "
                     f"{f(qr, '.3f')} | {f(r.get('te'), '.3f')} | {f(r.get('hit'), '.2f')} | {f(r.get('purity'), '.3f')} | {r['runs']} |")
    return '\n'.join(lines)

def fastsom_hash():
    return hashlib.sha1(b''.join(p.read_bytes() for p in sorted((HERE.parent / 'fastsom').glob('*.py')))).hexdigest()[:10]

def machine(args, loads, src):
    cpu = next((l.split(':', 1)[1].strip() for l in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines()
                if l.startswith('Model name')), platform.processor())
    def v(p):
        try: return version(p)
        except PackageNotFoundError: return 'not installed'
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=HERE).stdout.strip()
    return (f"Machine: {cpu}, {os.cpu_count()} cores, {args.threads} threads per library; Python {platform.python_version()}; "
            + ', '.join(f'{p} {v(p)}' for p in PACKAGES) + f' (git {head} + working tree, fastsom/*.py sha1 {src}'
            + ('' if src == fastsom_hash() else f', CHANGED during the run to {fastsom_hash()}') + ')'
            + f".\nDate: {datetime.date.today()}. Load average (1 min) while timing: {min(loads):.2f} to {max(loads):.2f}"
            + f" (`uptime` at the end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}).\n"
            + f"Command: `python bench/run.py --cases {args.cases} --repeats {args.repeats} --threads {args.threads}"
            + (f' --libs {args.libs}' if args.libs != ','.join(LIBS) else '') + '`;'
            + f" medians of {args.repeats} runs, timeout {args.timeout} s per run.")

def write_readme(text):
    p, start, end = HERE / 'README.md', '<!-- results -->', '<!-- /results -->'
    s = p.read_text()
    p.write_text(s[:s.index(start) + len(start)] + '\n' + text + '\n' + s[s.index(end):])

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cases', default='all', help="comma-separated case names, 'all' or 'check'")
    ap.add_argument('--libs', default=','.join(LIBS), help='comma-separated libraries')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--timeout', type=int, default=600, help='seconds per training run')
    args = ap.parse_args()
    cases = [c for c in CASES if c != 'check'] if args.cases == 'all' else args.cases.split(',')
    has_learner, recs, src = learner_available(), [], fastsom_hash()
    missing = {lib for lib in args.libs.split(',') if lib in MODULES and not importable(MODULES[lib])}
    print(f'threads per library: {args.threads}; fastsom learner available: {has_learner}', flush=True)
    for case in cases:
        save(case)
        for lib in args.libs.split(','):
            if why := skip_reason(lib, case, has_learner, missing):
                recs.append(dict(lib=lib, case=case, status=why, load1=os.getloadavg()[0])); continue
            for seed in range(args.repeats):
                recs.append(run_one(lib, case, seed, args))
                r = recs[-1]
                print(f"{case:8s} {lib:16s} seed {seed}: {r['status']} {r.get('fit_s', 0):.3f} s"
                      f" QE {r.get('qe', float('nan')):.4f} TE {r.get('te', float('nan')):.3f} load {r['load1']:.2f}", flush=True)
                if r['status'] != 'ok': break
    stamp = time.strftime('%Y%m%d-%H%M%S')
    json.dump(recs, open(RESULTS / f'runs-{stamp}.json', 'w'), indent=1)
    text = machine(args, [r['load1'] for r in recs], src) + '\n\n' + table(summarise(recs))
    (RESULTS / f'table-{stamp}.md').write_text(text + '\n')
    if args.cases == 'all': write_readme(text)
    print('\n' + text)
