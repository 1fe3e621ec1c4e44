"""The one prepared GPU check of issue 17 (point 7). On a machine with a CUDA GPU, from the repo root:

    python bench/gpu_check.py                  # everything below, results printed and written to $OUT (or bench/results)
    python bench/gpu_check.py --dry-run        # tiny sizes, no installs, no full suite: checks the script itself
    python bench/gpu_check.py --build-wheels   # here, with the package index: fill bench/wheels (git-ignored)

1. Packages: imports what fastsom, its tests and torchsom need; each missing one that has a wheel in bench/wheels
   (pure-Python wheels, `py3-none-any`, built by --build-wheels from the versions installed here) is installed with
   `pip install --no-index --no-deps --find-links bench/wheels`; compiled ones (torch, numpy, pandas, scikit-learn,
   matplotlib, PyYAML) must be on the machine already, and the script says which are missing.
2. Tests: `pytest -x -q tests/test_device.py` (the engine, loaders and learner on every device, CUDA included,
   against float64 references), then the whole suite (`--suite` picks another pytest selection; `--suite none` skips).
3. Speed: `Som.fit` on N x 64 float32 Gaussian blobs (20 centres uniform in [-10, 10], std 1) on a 64 x 64 map for
   N in `--sizes` (1M and 10M), 1 and 5 epochs, default batch size, data already on the device: on the CPU (all its
   cores) and on CUDA with TF32 off and on (`torch.backends.cuda.matmul.allow_tf32`), each after a warm-up, with
   `torch.cuda.synchronize()` around the timer. The CPU's 5-epoch time on the largest N is estimated as 5 x its
   1-epoch time unless `--cpu-5` (it is minutes).
4. Precision: after the 1-epoch CUDA fit of the first size, the share of 200,000 rows whose BMU (TF32 off, TF32 on)
   is a float64 nearest unit (ties within 1e-6 count as agreeing), and max |codebook(cuda) - codebook(cpu)| after
   the same fit on both from the same PCA codebook and batches.
5. torchsom (its quick-start settings, as bench/train.py, but `device='cuda'`) on the first size, 1 epoch, in a
   subprocess with a `--peer-timeout` (its `fit` computes QE and TE every batch); skipped with the reason when it
   does not import.
"""
import argparse, importlib, json, os, subprocess, sys, time
from pathlib import Path
HERE = Path(__file__).parent
ROOT, WHEELS = HERE.parent, HERE / 'wheels'
# import name -> distribution, for what fastsom, its tests and torchsom import (see --build-wheels)
NEEDED = dict(fastcore='fastcore', fastprogress='fastprogress', fastdownload='fastdownload', fasttransform='fasttransform',
              fastai='fastai', plum='plum-dispatch', beartype='beartype', rich='rich', pygments='Pygments',
              fasthtml='python-fasthtml', starlette='starlette', anyio='anyio', sniffio='sniffio',
              itsdangerous='itsdangerous', python_multipart='python-multipart', cloudpickle='cloudpickle',
              requests='requests', urllib3='urllib3', idna='idna', certifi='certifi', charset_normalizer='charset-normalizer',
              packaging='packaging', typing_extensions='typing_extensions', tqdm='tqdm', dateutil='python-dateutil',
              six='six', pyparsing='pyparsing', cycler='cycler', joblib='joblib', threadpoolctl='threadpoolctl',
              narwhals='narwhals', opt_einsum='opt_einsum', pytest='pytest', pluggy='pluggy', iniconfig='iniconfig',
              hypothesis='hypothesis', attr='attrs', sortedcontainers='sortedcontainers', minisom='MiniSom',
              torchsom='torchsom', annotated_types='annotated-types', typing_inspection='typing-inspection')
COMPILED = ['torch', 'numpy', 'pandas', 'sklearn', 'scipy', 'matplotlib', 'yaml', 'PIL']  # must be there already

def build_wheels():
    "Download the pure-Python wheels of the installed versions of NEEDED into bench/wheels (run where pip has an index)"
    from importlib.metadata import version, PackageNotFoundError
    WHEELS.mkdir(exist_ok=True)
    pins = []
    for dist in sorted(set(NEEDED.values())):
        try: pins.append(f'{dist}=={version(dist)}')
        except PackageNotFoundError: pins.append(dist)  # e.g. torchsom, not installed here: the newest
    flags = ['--no-deps', '--only-binary=:all:', '--platform', 'any', '--implementation', 'py', '--abi', 'none',
             '-d', str(WHEELS)]
    for p in pins:  # one at a time, so one without a pure wheel does not stop the rest
        for py in ('3.10', '3.11', '3.12'):  # the oldest Python the pinned version accepts
            r = subprocess.run([sys.executable, '-m', 'pip', 'download', *flags, '--python-version', py, p],
                               capture_output=True, text=True)
            if r.returncode == 0: break
        else:  # only a source release: build its wheel here, kept when it is pure Python
            r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-w', str(WHEELS), p],
                               capture_output=True, text=True)
            for w in WHEELS.glob('*.whl'):
                if not w.name.endswith('-none-any.whl'): w.unlink()
        print(f"{p:32s} {'ok' if r.returncode == 0 else 'no pure wheel: ' + r.stderr.strip().splitlines()[-1][:80]}")
    print(f"{WHEELS}: {sum(f.stat().st_size for f in WHEELS.iterdir()) / 2**20:.1f} MiB in "
          f"{len(list(WHEELS.iterdir()))} wheels")

def missing_modules():
    return [m for m in NEEDED if importlib.util.find_spec(m) is None]

def ensure_packages(install:bool=True):
    "Install the missing pure-Python packages from bench/wheels (only report them when not `install`); what is missing"
    miss = missing_modules()
    if miss and WHEELS.is_dir() and install:
        dists = sorted({NEEDED[m] for m in miss})
        print(f"installing from {WHEELS}: {' '.join(dists)}", flush=True)
        for d in dists:  # one at a time: a missing wheel is reported, the others still install
            r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-index', '--no-deps', '--find-links',
                                str(WHEELS), d], capture_output=True, text=True)
            if r.returncode: print(f"  {d}: {r.stderr.strip().splitlines()[-1][:120]}")
        importlib.invalidate_caches()
    miss = [m for m in missing_modules() + [m for m in COMPILED if importlib.util.find_spec(m) is None]]
    if miss: print(f"still missing: {miss}", flush=True)
    return miss

def run_tests(suite):
    out = {}
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    for name, sel in [('device', ['tests/test_device.py'])] + ([] if suite == 'none' else [('suite', suite.split())]):
        t = time.perf_counter()
        r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *sel], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        tail = r.stdout.strip().splitlines()[-15:]
        out[name] = dict(rc=r.returncode, seconds=round(time.perf_counter() - t, 1), tail=tail)
        print(f"tests {' '.join(sel)}: rc {r.returncode} in {out[name]['seconds']} s\n  " + '\n  '.join(tail[-6:]),
              flush=True)
    return out

def blobs(n, d, device, seed=0):
    import torch
    g = torch.Generator(device=device).manual_seed(seed)
    c = torch.rand(20, d, generator=g, device=device) * 20 - 10
    x = torch.empty(n, d, device=device)
    for a in range(0, n, 1 << 20):  # in slices: a 10M x 64 draw at once would need several times the data's memory
        b = min(n, a + (1 << 20))
        x[a:b] = c[torch.randint(20, (b - a,), generator=g, device=device)]
        x[a:b] += torch.randn(b - a, d, generator=g, device=device)
    return x

def timed_fit(x, epochs, size, init_cb=None):
    "Seconds of `Som.fit(x, epochs, seed=0)` from the same PCA codebook `init_cb` (or its own), and the Som"
    import torch
    from fastsom.som import Som
    som = Som(size, x.shape[1]).to(x.device)
    if init_cb is None: som.init_codebook(x, seed=0)
    else: som.codebook.data.copy_(init_cb)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync(); t = time.perf_counter()
    som.fit(x, epochs, seed=0, init=None)
    sync()
    return time.perf_counter() - t, som

def agreement(som, x):
    "Share of rows whose BMU is a float64 nearest unit (ties within a relative 1e-6 agree)"
    import torch
    w = som.weights.detach().double().cpu()
    got = torch.cat([som.bmu(xc) for xc in x.split(1 << 14)]).cpu()
    ok = []
    for xc, gc in zip(x.cpu().double().split(4096), got.split(4096)):
        d = torch.cdist(xc, w) ** 2
        ok.append(d.gather(1, gc[:, None])[:, 0] <= d.min(1).values * (1 + 1e-6) + 1e-12)
    return torch.cat(ok).double().mean().item()

def speed(sizes, size, dry, cpu5):
    import torch
    from fastsom.som import Som
    res, cuda = [], torch.cuda.is_available()
    devs = ['cpu'] + (['cuda'] if cuda else [])
    warm = blobs(20_000, 64 if not dry else 16, 'cpu')
    for dev in devs: timed_fit(warm.to(dev), 1, size)  # warm-up: kernels, allocator, thread pools
    for i, n in enumerate(sizes):
        x = blobs(n, 64 if not dry else 16, 'cpu')
        init = Som(size, x.shape[1]).init_codebook(x, seed=0).codebook.detach().clone()
        row = dict(n=n, d=x.shape[1], map=list(size))
        for epochs in (1, 5):
            if epochs == 5 and i == len(sizes) - 1 and not cpu5 and not dry:
                row['cpu_5_s'] = 5 * row['cpu_1_s']; row['cpu_5_estimated'] = True
            else:
                row[f'cpu_{epochs}_s'], som_cpu = timed_fit(x, epochs, size, init)
                if epochs == 1: cpu1 = som_cpu
            print(f"{n:,} x {x.shape[1]}, {epochs} epoch(s), cpu: {row[f'cpu_{epochs}_s']:.2f} s", flush=True)
        if cuda:
            xc = x.cuda()
            for tf32 in (False, True):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                for epochs in (1, 5):
                    t, som = timed_fit(xc, epochs, size, init.cuda())
                    row[f'cuda_tf32_{"on" if tf32 else "off"}_{epochs}_s'] = t
                    print(f"{n:,} x {x.shape[1]}, {epochs} epoch(s), cuda TF32 {'on' if tf32 else 'off'}: {t:.3f} s "
                          f"({row[f'cpu_{epochs}_s'] / t:.1f}x the cpu)", flush=True)
                    if epochs == 1 and i == 0:
                        row[f'agree_tf32_{"on" if tf32 else "off"}'] = agreement(som, xc[:200_000])
                        if not tf32:
                            row['max_codebook_diff_cuda_cpu'] = (som.codebook.cpu() - cpu1.codebook).abs().max().item()
            torch.backends.cuda.matmul.allow_tf32 = False
            del xc; torch.cuda.empty_cache()
        res.append(row)
        print(json.dumps(row), flush=True)
    return res

def torchsom_time(n, size, timeout, dry):
    "torchsom's quick start (bench/train.py) on CUDA in a subprocess: seconds of fit, or the reason it did not run"
    code = f"""
import time, torch, sys
sys.path.insert(0, {str(HERE)!r})
from gpu_check import blobs
from torchsom import SOM
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
x = blobs({n}, {16 if dry else 64}, dev)
def run(x):
    som = SOM(x={size[0]}, y={size[1]}, num_features=x.shape[1], epochs=1, batch_size=16, learning_rate=0.95,
              sigma={max(size) / 2}, sigma_decay_function='sig_inverse_decay_to_one', initialization_mode='pca',
              search_backend='torch', device=dev, random_seed=0)
    som.initialize_weights(x, mode='pca'); som.fit(x, verbose=False)
run(x[:2000])
if dev == 'cuda': torch.cuda.synchronize()
t = time.perf_counter(); run(x)
if dev == 'cuda': torch.cuda.synchronize()
print(dev, time.perf_counter() - t)
"""
    try: r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired: return dict(status=f'timeout > {timeout} s')
    if r.returncode: return dict(status='did not run: ' + (r.stderr.strip().splitlines() or ['?'])[-1][:160])
    dev, secs = r.stdout.split()[-2:]
    return dict(status='ok', device=dev, seconds=float(secs))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--dry-run', action='store_true', help='tiny sizes (20,000 and 50,000 x 16 on 8 x 8)')
    ap.add_argument('--build-wheels', action='store_true')
    ap.add_argument('--sizes', default='1000000,10000000')
    ap.add_argument('--suite', default='tests/', help="pytest selection after tests/test_device.py, or 'none'")
    ap.add_argument('--cpu-5', action='store_true', help="time the CPU's 5 epochs on the largest size too")
    ap.add_argument('--peer-timeout', type=int, default=180)
    a = ap.parse_args()
    if a.build_wheels: return build_wheels()
    t0, out = time.perf_counter(), {}
    out['missing'] = ensure_packages(install=not a.dry_run)  # a dry run leaves this machine's packages alone
    import torch
    out['env'] = dict(torch=torch.__version__, cuda=torch.version.cuda, python=sys.version.split()[0],
                      gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, threads=torch.get_num_threads())
    print(json.dumps(out['env']), flush=True)
    sys.path.insert(0, str(ROOT))
    out['tests'] = run_tests('none' if a.dry_run else a.suite)
    sizes, size = ([20_000, 50_000], (8, 8)) if a.dry_run else ([int(s) for s in a.sizes.split(',')], (64, 64))
    out['speed'] = speed(sizes, size, a.dry_run, a.cpu_5)
    out['torchsom'] = torchsom_time(sizes[0], size, a.peer_timeout, a.dry_run)
    print(f"torchsom: {out['torchsom']}")
    out['seconds'] = round(time.perf_counter() - t0, 1)
    dest = Path(os.environ.get('OUT') or HERE / 'results')
    dest.mkdir(parents=True, exist_ok=True)
    (dest / 'gpu_check.json').write_text(json.dumps(out, indent=1))
    print(f"wrote {dest / 'gpu_check.json'} ({out['seconds']} s in all)")

if __name__ == '__main__': main()
