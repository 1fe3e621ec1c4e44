#!/usr/bin/env python
"""Execute notebooks in place, keeping their outputs, with small pictures: `python tools/run_nbs.py [NB ...]`.

Each notebook (default: every notebook of nbs/) runs in a fresh process, in its own folder, the way
`nbdev-test` runs it (execnb's `CaptureShell`; cells flagged with a `tst_flags` flag such as `#| slow` are
left as they are unless `--flags slow`), with matplotlib drawing PNGs at `RC` (FIG_DPI dpi, FIG_SIZE inches).
Progress bars in the outputs are collapsed to their last state and PNGs re-encoded with a 256-colour palette.
A notebook is written back only when no cell raised and every PNG output is at most MAX_PNG_KB; then
`nbdev-clean` cleans it. Last, the whole of nbs/ must stay under MAX_NBS_MB. Exit status 1 on any failure,
naming the notebook, the cell and what to do.
"""
import argparse, base64, io, json, os, subprocess, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

MAX_PNG_KB = 150  # one picture in a notebook
MAX_NBS_MB = 5    # the whole of nbs/, notebooks with their outputs and every file beside them
FIG_DPI, FIG_SIZE = 80, (6.0, 4.5)
RC = {'figure.dpi': FIG_DPI, 'figure.figsize': FIG_SIZE, 'savefig.dpi': FIG_DPI}


def _cell_ref(name:str, i:int, cell:dict)->str: return f"{name} cell {i} (id {cell.get('id', '?')})"


def output_problems(nb:dict, name:str, max_png_kb:float=MAX_PNG_KB)->list:
    "What is wrong with the outputs of notebook `nb` (its JSON): error outputs, tracebacks, PNGs over `max_png_kb`"
    res = []
    for i, c in enumerate(nb.get('cells', [])):
        for o in c.get('outputs', []):
            text = ''.join(o.get('text', '')) if o.get('output_type') == 'stream' else ''
            if o.get('output_type') == 'error':
                res.append(f"{_cell_ref(name, i, c)}: raised {o.get('ename')}: {o.get('evalue')}")
            elif 'Traceback (most recent call last)' in text: res.append(f'{_cell_ref(name, i, c)}: prints a traceback')
            png = (o.get('data') or {}).get('image/png')
            if png and (kb := len(base64.b64decode(''.join(png))) / 1024) > max_png_kb:
                res.append(f'{_cell_ref(name, i, c)}: a {kb:.0f} KB PNG (at most {max_png_kb} KB): draw it smaller '
                           f'(figsize) or at a lower dpi; the tool draws at {FIG_DPI} dpi unless the code sets one')
    return res


def overwrite_cr(text:str)->str:
    "Stream text as a terminal (and Jupyter) shows it: each `\\r` returns to the line's start and overwrites it"
    def line(l):
        buf = ''
        for seg in l.split('\r'): buf = seg + buf[len(seg):]
        return buf.rstrip()
    return '\n'.join(line(l) for l in text.split('\n'))


def small_png(b64:str)->str:
    "The PNG `b64` with a palette of 256 colours, which plots need, when that is smaller (about 3x for a map)"
    from PIL import Image
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    if im.mode == 'RGBA' and im.getextrema()[3][0] < 255:  # see-through somewhere: keep the alpha
        q = im.quantize(256, Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    else: q = im.convert('RGB').quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    q.save(buf, 'PNG', optimize=True)
    new = base64.b64encode(buf.getvalue()).decode()
    return new if len(new) < len(b64) else b64


def tidy_outputs(nb:dict)->dict:
    "Progress bars in streams collapsed to their last state (empty streams dropped), PNGs made smaller (`small_png`)"
    for c in nb['cells']:
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream': o['text'] = overwrite_cr(''.join(o['text'])).splitlines(True)
            if png := (o.get('data') or {}).get('image/png'):
                o['data']['image/png'] = small_png(''.join(png).strip()) + '\n'
        if 'outputs' in c: c['outputs'] = [o for o in c['outputs'] if o.get('output_type') != 'stream' or o['text']]
    return nb


def folder_mb(path:Path)->float:
    "Size of every file under `path`, in MB"
    return sum(f.stat().st_size for f in Path(path).rglob('*') if f.is_file()) / 2**20


def execute(nb_path:str, flags:tuple=(), timeout:int=600):
    "Run the notebook at `nb_path` in a `CaptureShell` as `nbdev-test` does; the notebook with outputs, or the error"
    import matplotlib
    from execnb.shell import CaptureShell
    from fastcore.foundation import working_directory
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell
    p, cfg = Path(nb_path).absolute(), get_config()
    os.environ['IN_TEST'] = '1'  # as under nbdev-test, so what CI checks is what is shown
    nb = NBProcessor(p, rm_directives=False, process=True).nb
    skip = _skip_cell(nb, set(cfg.tst_flags.split()) - set(flags))
    shell = CaptureShell(p, mpl_format='png', profile=bool(cfg.exec_profile))
    matplotlib.rcParams.update(RC)
    with working_directory(p.parent):
        try: shell.run_all(nb, exc_stop=True, preproc=skip, cell_timeout=timeout)
        except BaseException as e: return None, shell.prettytb(fname=p) or f'{type(e).__name__}: {e}'
    return nb, None


def run_one(nb_path:str, flags:tuple=(), max_png_kb:float=MAX_PNG_KB)->list:
    "Execute one notebook; write it back and `nbdev-clean` it when it ran cleanly with small pictures; its problems"
    from fastcore.nbio import write_nb
    t = time.perf_counter()
    nb, err = execute(nb_path, flags)
    if err: return [f'{nb_path}: a cell raised (notebook left unchanged):\n{err}']
    fd, tmp = tempfile.mkstemp(prefix=f'.{Path(nb_path).name}.', suffix='.tmp', dir=Path(nb_path).parent)  # ours alone
    os.close(fd)
    tmp = Path(tmp)
    try:
        write_nb(nb, tmp)
        nb = tidy_outputs(json.loads(tmp.read_text()))
        if probs := output_problems(nb, nb_path, max_png_kb): return [p + ' (notebook left unchanged)' for p in probs]
        tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
        os.chmod(tmp, os.stat(nb_path).st_mode & 0o777)  # the notebook keeps its mode (mkstemp's is 0o600)
        tmp.replace(nb_path)
    finally: tmp.unlink(missing_ok=True)
    subprocess.run(['nbdev-clean', '--fname', str(nb_path)], check=True)
    print(f'{nb_path}: ran in {time.perf_counter() - t:.1f} s, {os.path.getsize(nb_path) / 1024:.0f} KB', flush=True)
    return []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', help="notebooks to run (default: every notebook of the project's nbs/)")
    ap.add_argument('--flags', nargs='*', default=[], help='`tst_flags` cells to run too, e.g. slow')
    ap.add_argument('--n-workers', type=int, default=2, help='notebooks run at once, each in its own process')
    ap.add_argument('--max-png-kb', type=float, default=MAX_PNG_KB)
    ap.add_argument('--max-nbs-mb', type=float, default=MAX_NBS_MB)
    a = ap.parse_args(argv)
    from nbdev.config import get_config
    nbs = Path(get_config().nbs_path)
    paths = a.notebooks or [str(p) for p in sorted(nbs.glob('*.ipynb')) if not p.name.startswith(('_', '.'))]
    with ProcessPoolExecutor(a.n_workers, mp_context=get_context('spawn'), max_tasks_per_child=1) as ex:
        n = len(paths)
        probs = [q for r in ex.map(run_one, paths, [tuple(a.flags)] * n, [a.max_png_kb] * n) for q in r]
    if (mb := folder_mb(nbs)) > a.max_nbs_mb:
        probs.append(f'{nbs} holds {mb:.1f} MB (at most {a.max_nbs_mb} MB): make the largest pictures smaller')
    for q in probs: print('ERROR', q, file=sys.stderr)
    print(f'{len(paths)} notebook(s), {len(probs)} problem(s); {nbs} holds {mb:.2f} MB')
    return 1 if probs else 0


if __name__ == '__main__': sys.exit(main())
