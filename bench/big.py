"""Big data streamed (issue 17, point 4): a memory-mapped .npy file trained on a 64 x 64 map for one epoch.

    nice python bench/big.py [--rows 10000000] [--dim 64] [--threads 1] [--routes npy,cli,memory] [--keep]

Writes `--rows` x `--dim` float32 Gaussian blobs (20 centres uniform in [-10, 10], std 1, as bench/cases.py's
'large') to bench/results/big_{rows}x{dim}.npy in chunks (refused when the disk has less than 3x its size free),
then trains, each route in a fresh process, with the same settings (z-score, no validation split, default batch
size, PCA init, seed 0):
- npy: `SomDataLoaders.from_npy(path, valid_pct=0, seed=0)` + `som_learner(dls, (64, 64), seed=0)` + `learn.fit(1)`;
- cli: the command, `fastsom train PATH --rows 64 --cols 64 --topology rect --epochs 1 --valid_pct 0 --quiet`
  (run in-process through `fastsom.cli.main`, the command's entry point, so its memory is measured from its start);
  it also scores every row (QE, TE, hit map) and writes its outputs;
- memory: the same rows read into RAM first (`np.load`), then `SomDataLoaders.from_tensor` + the same learner and fit.
For each: the seconds of `learn.fit` (and of the whole route: loader, init, fit, for cli the command end to end),
rows per second, and memory above the process's start (after imports; for memory, after the data is loaded): the
peak RSS (`ru_maxrss`, which counts the mapped file's pages as they are read) and the peak anonymous RSS (sampled
every 50 ms from /proc/self/status: what the process allocates, without the page cache of the mapped file).
Target: at most 1 GB above the start. The file is deleted at the end unless `--keep`.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path
HERE = Path(__file__).parent
RESULTS = HERE / 'results'

def status_kib(key):
    "A field of /proc/self/status in KiB (VmRSS, RssAnon, VmHWM)"
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ':'))

class Peak:
    "Samples RssAnon and VmRSS in a thread; `report()` gives the peaks above the values at construction, in GiB"
    def __init__(self):
        self.base_anon, self.base_rss = status_kib('RssAnon'), status_kib('VmRSS')
        self.anon, self.done = self.base_anon, False
        self.t = threading.Thread(target=self._run, daemon=True); self.t.start()
    def _run(self):
        while not self.done:
            self.anon = max(self.anon, status_kib('RssAnon')); time.sleep(.05)
    def report(self):
        self.done = True; self.t.join()
        self.anon = max(self.anon, status_kib('RssAnon'))
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        g = 2 ** 20
        return dict(base_rss_gib=self.base_rss / g, peak_rss_above_gib=(peak - self.base_rss) / g,
                    peak_anon_above_gib=(self.anon - self.base_anon) / g)

def make(path, rows, dim, seed=0, chunk=1 << 20):
    import numpy as np
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, (20, dim)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode='w+', dtype=np.float32, shape=(rows, dim))
    for a in range(0, rows, chunk):
        n = min(chunk, rows - a)
        out[a:a + n] = centres[rng.integers(20, size=n)] + rng.standard_normal((n, dim), dtype=np.float32)
    out.flush(); del out

def route(name, path, threads):
    "Run in a fresh process: one route, its timings and memory as JSON on stdout"
    import warnings; warnings.simplefilter('ignore')
    import numpy as np, torch
    torch.set_num_threads(threads)
    from fastsom.data import SomDataLoaders
    from fastsom.learner import som_learner
    import fastsom.cli
    res = dict(route=name)
    if name == 'memory':
        t = time.perf_counter(); x = torch.from_numpy(np.load(path)); res['load_s'] = time.perf_counter() - t
        res['data_gib'] = x.numel() * 4 / 2**30
    peak, t0 = Peak(), time.perf_counter()
    if name == 'cli':
        out = Path(tempfile.mkdtemp(dir=RESULTS)) / 'out'
        argv = ['train', str(path), '--rows', '64', '--cols', '64', '--topology', 'rect', '--epochs', '1',
                '--valid_pct', '0', '--quiet', '-o', str(out)]
        rc = fastsom.cli.main(argv)
        m = json.loads((out / 'metrics.json').read_text())
        res.update(rc=rc, fit_s=m['seconds'], rows=m['rows'], qe=m['qe'], te=m['te'])
        shutil.rmtree(out.parent)
    else:
        dls = (SomDataLoaders.from_npy(path, valid_pct=0, seed=0) if name == 'npy'
               else SomDataLoaders.from_tensor(x, valid_pct=0, seed=0))
        learn = som_learner(dls, (64, 64), seed=0)
        res['loader_init_s'] = time.perf_counter() - t0
        t = time.perf_counter()
        with learn.no_bar(), learn.no_logging(): learn.fit(1)
        res.update(fit_s=time.perf_counter() - t, rows=dls.train.n, bs=dls.train.bs,
                   qe=float(learn.recorder.values[-1][0]))  # the smooth training loss of the last batches
    res['total_s'] = time.perf_counter() - t0
    res.update(peak.report(), rows_per_s=res['rows'] / res['fit_s'], threads=torch.get_num_threads())
    print(json.dumps(res))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rows', type=int, default=10_000_000)
    ap.add_argument('--dim', type=int, default=64)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--routes', default='npy,cli,memory')
    ap.add_argument('--keep', action='store_true', help='keep the .npy file')
    ap.add_argument('--route', help=argparse.SUPPRESS)  # internal: run one route in this process
    ap.add_argument('--path', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.route: return route(a.route, a.path, a.threads)
    RESULTS.mkdir(exist_ok=True)
    path, size = RESULTS / f'big_{a.rows}x{a.dim}.npy', a.rows * a.dim * 4
    free = shutil.disk_usage(RESULTS).free
    print(f"load average {os.getloadavg()}; {a.rows:,} x {a.dim} float32 = {size / 1e9:.2f} GB; "
          f"disk free {free / 1e9:.1f} GB; RAM available {status_meminfo() / 1e9:.1f} GB", flush=True)
    if not path.exists():
        if free < 3 * size: raise SystemExit(f"Less than 3x {size / 1e9:.2f} GB free on the disk: not writing {path}.")
        t = time.perf_counter(); make(path, a.rows, a.dim); print(f"wrote {path} in {time.perf_counter() - t:.0f} s", flush=True)
    out = []
    try:
        for r in a.routes.split(','):
            p = subprocess.run([sys.executable, __file__, '--route', r, '--path', str(path), '--threads', str(a.threads)],
                               capture_output=True, text=True, env=dict(os.environ, **{v: str(a.threads) for v in
                               ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}))
            if p.returncode: print(f"{r}: failed: {p.stderr.strip().splitlines()[-3:]}", flush=True); continue
            res = json.loads(p.stdout.strip().splitlines()[-1])
            res['load1'] = os.getloadavg()[0]
            out.append(res)
            print(f"{r:6s}: fit {res['fit_s']:.1f} s ({res['rows_per_s']:,.0f} rows/s), whole route {res['total_s']:.1f} s; "
                  f"above the start: peak RSS +{res['peak_rss_above_gib']:.2f} GiB, peak anonymous RSS "
                  f"+{res['peak_anon_above_gib']:.2f} GiB (target <= 1 GB: "
                  f"{'met' if res['peak_anon_above_gib'] * 2**30 <= 1e9 else 'NOT met'} for the anonymous memory); "
                  f"load {res['load1']:.2f}", flush=True)
    finally:
        if not a.keep: path.unlink(missing_ok=True)
    mem = next((r for r in out if r['route'] == 'memory'), None)
    if mem:
        for r in out:
            if r is not mem: print(f"{r['route']}: fit time {r['fit_s'] / mem['fit_s']:.2f}x the in-memory fit's")
    with open(RESULTS / 'big.jsonl', 'a') as f:
        for r in out: f.write(json.dumps(dict(r, n=a.rows, d=a.dim, date=time.strftime('%F %T'))) + '\n')
    print(f"load average at the end: {os.getloadavg()}")

def status_meminfo():
    with open('/proc/meminfo') as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith('MemAvailable:'))

if __name__ == '__main__': main()
