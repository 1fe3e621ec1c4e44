"""The docs site as a reader gets it: built by the README's docs command (`tools/build_docs.py`, nbdev's processing
without Quarto) and opened page by page in headless Chromium. Every page has its title, no output holds an error
or a traceback, every image loads, every link inside the site reaches its page and anchor (but a private name's,
which nbdev links and never shows), and each module's page lists every public name of the module's `__all__`,
each API entry once. The committed notebooks hold no
error output and only small pictures (the limits of `tools/run_nbs.py`), so the site stays light."""
import importlib, inspect, json, os, re, shutil, subprocess, sys
from pathlib import Path
from urllib.parse import unquote, urlparse
import pytest

ROOT = Path(__file__).parents[1]
NBS, SITE = ROOT / 'nbs', ROOT / '_site'
sys.path.insert(0, str(ROOT / 'tools'))
import run_nbs  # noqa: E402  (tools/ is not a package)

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync']  # this machine has no network: Chromium must not try


def notebooks()->list:
    "The site's notebooks, found as nbdev finds them (not `_*`, not `.*`), relative to nbs/"
    return sorted(str(p.relative_to(NBS)) for p in NBS.rglob('*.ipynb')
                  if not any(s[0] in '_.' for s in p.relative_to(NBS).parts))


def docs_command()->str:
    "The command the README's Docs section gives for building the site"
    docs = re.search(r'^## Docs\n(.*?)(?=^## |\Z)', (ROOT / 'README.md').read_text(), re.S | re.M)
    assert docs, 'README.md has no "## Docs" section'
    return re.search(r'```bash\n(.*?)\n', docs[1])[1].split('#')[0].strip()


def _fresh(site:Path)->bool:
    "Was `site` built after the last change to nbs/, tools/ and fastsom/ (by the README test of this run, say)?"
    if not (site / 'pages.json').exists(): return False
    srcs = [f for d in ('nbs', 'tools', 'fastsom') for f in (ROOT / d).rglob('*')
            if f.is_file() and '__pycache__' not in f.parts]
    return (site / 'pages.json').stat().st_mtime > max(f.stat().st_mtime for f in srcs)


@pytest.fixture(scope='module')
def pages()->dict:
    "notebook -> its page's entry in `_site/pages.json`, after building the site with the README's command"
    cmd = docs_command()
    assert '_site' in cmd or '--out' not in cmd, cmd
    if not _fresh(SITE):
        res = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, MPLBACKEND='Agg'))
        assert (SITE / 'errors.json').exists(), f'`{cmd}` failed:\n{res.stderr[-6000:]}'
    return {p['notebook']: p for p in json.loads((SITE / 'pages.json').read_text())}


def test_site_builds(pages):
    errors = json.loads((SITE / 'errors.json').read_text())
    assert not errors, '\n\n'.join(errors)


def built(pages:dict, nb:str)->dict:
    "The page of `nb`, failing the test (see `test_site_builds`) when nbdev could not process the notebook"
    if pages[nb]['error']: pytest.fail(f'{nb}: no page, nbdev cannot process the notebook (test_site_builds says why)')
    return pages[nb]


@pytest.fixture(scope='module')
def browser():
    if not CHROMIUM:
        if os.environ.get('CI'): pytest.fail('Chromium is missing on CI, where .ci/run installs it')
        pytest.skip('Chromium is not installed (apt-get install chromium, as .ci/run does): no browser test')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_every_notebook_has_a_page(pages):
    assert sorted(pages) == notebooks()
    files = [p['file'] for p in pages.values()]
    assert len(set(files)) == len(files), f'two notebooks give the same page: {files}'
    assert 'index.html' in files


def test_sidebar_yml_is_what_nbdev_generates():
    "nbdev-docs rewrites nbs/sidebar.yml from the notebooks; the committed one should not lag behind (renames)"
    from contextlib import redirect_stdout
    from io import StringIO
    import yaml
    from nbdev.quarto import nbdev_sidebar
    with redirect_stdout(StringIO()) as f: nbdev_sidebar.__wrapped__(path=NBS, printit=True)
    assert yaml.safe_load((NBS / 'sidebar.yml').read_text()) == yaml.safe_load(f.getvalue()), 'run nbdev-sidebar'


def notebook_title(nb:str)->str:
    "The notebook's own title: its first markdown heading `# ...`, which nbdev makes the page title"
    cells = json.loads((NBS / nb).read_text())['cells']
    heads = [m[1] for c in cells if c['cell_type'] == 'markdown'
             for m in [re.search(r'^#\s+(.+)$', ''.join(c['source']), re.M)] if m]
    return heads[0].strip() if heads else ''


JS_PAGE = """() => ({
  title: document.title,
  h1: document.querySelector('h1.title')?.innerText.trim(),
  errors: [...document.querySelectorAll('.cell-output')]
          .filter(e => e.classList.contains('cell-output-error') ||
                       /Traceback \\(most recent call last\\)|^\\w*(Error|Exception): /m.test(e.innerText))
          .map(e => e.innerText.slice(0, 300)),
  images: document.images.length,
  broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 100)),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => h.startsWith('file:')),
  entries: [...document.querySelectorAll('.doc-entry')].map(d => d.querySelector('h2, h3, h4')?.innerText.trim()),
  codes: [...document.querySelectorAll('code')].map(c => c.innerText.trim()),
})"""


@pytest.fixture(scope='module')
def seen(pages, browser)->dict:
    "What Chromium shows of every page: notebook -> the facts of `JS_PAGE`"
    res, page = {}, browser.new_page()
    for nb, p in pages.items():
        page.goto((SITE / p['file']).as_uri(), wait_until='load')
        res[nb] = page.evaluate(JS_PAGE)
    page.close()
    return res


@pytest.mark.parametrize('nb', notebooks())
def test_page_has_its_title(nb, pages, seen):
    built(pages, nb)
    title = notebook_title(nb)
    assert title, f'{nb} has no "# Title" markdown heading'
    assert (seen[nb]['h1'], seen[nb]['title']) == (title, f'{title} – fastsom')


@pytest.mark.parametrize('nb', notebooks())
def test_page_shows_no_error(nb, pages, seen):
    built(pages, nb)
    assert not seen[nb]['errors'], f'{nb}: ' + '\n---\n'.join(seen[nb]['errors'])


@pytest.mark.parametrize('nb', notebooks())
def test_page_images_load(nb, pages, seen):
    built(pages, nb)
    assert not seen[nb]['broken'], f'{nb}: images that do not load: {seen[nb]["broken"]}'
    assert seen[nb]['images'] == pages[nb]['images']


def _ids(html_file:Path)->set: return set(re.findall(r'\bid="([^"]+)"', html_file.read_text()))


@pytest.mark.parametrize('nb', notebooks())
def test_page_links_reach_their_target(nb, pages, seen):
    built(pages, nb)
    bad = []
    for href in seen[nb]['links']:
        u = urlparse(href)
        target = Path(unquote(u.path))
        if not target.is_file(): bad.append(href)
        elif (frag := unquote(u.fragment)) and target.suffix == '.html' and frag not in _ids(target) \
                and not frag.split('.')[-1].startswith('_'): bad.append(href)  # nbdev links private names, shows none
    assert not bad, f'{nb}: links to missing pages or anchors: {bad}'


def module_pages()->list:
    "(notebook, module) for every notebook that exports a module (`#| default_exp`)"
    res = []
    for nb in notebooks():
        cells = json.loads((NBS / nb).read_text())['cells']
        src = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'code')
        if m := re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M): res.append((nb, m[1]))
    return res


@pytest.mark.parametrize('nb,module', module_pages())
def test_api_page_lists_every_public_name(nb, module, pages, seen):
    built(pages, nb)
    mod = importlib.import_module(f'fastsom.{module}')
    entries, codes = seen[nb]['entries'], set(seen[nb]['codes'])
    missing = [n for n in mod.__all__ if entries.count(n) != 1 and not
               (not (inspect.isclass(getattr(mod, n)) or inspect.isfunction(getattr(mod, n))) and n in codes)]
    assert not missing, (f'{nb}: names of fastsom.{module}.__all__ without exactly one API entry (functions, classes) '
                         f'or a mention in code (constants): {missing}')


@pytest.mark.parametrize('nb', [nb for nb, _ in module_pages()])
def test_api_entries_appear_once(nb, pages, seen):
    built(pages, nb)
    entries = seen[nb]['entries']
    twice = sorted({e for e in entries if entries.count(e) > 1})
    assert not twice, (f'{nb}: API entries shown twice: {twice}. nbdev adds a show_doc after every exported '
                       'definition (patched methods included); drop the hand-written show_doc of these')


@pytest.mark.parametrize('nb', notebooks())
def test_committed_notebook_holds_no_error_output(nb):
    assert not run_nbs.output_problems(json.loads((NBS / nb).read_text()), nb)


def test_notebooks_folder_stays_small():
    assert run_nbs.folder_mb(NBS) <= run_nbs.MAX_NBS_MB


def _nb(path:Path, *cells:str)->bytes:
    "Write a notebook of code cells `cells` (a first markdown title) at `path`; its bytes"
    import nbformat
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[md('# Fixture')] + [code(c) for c in cells])
    nbformat.write(nb, path)
    return path.read_bytes()


def test_run_nbs_keeps_outputs_and_refuses_errors_and_big_pictures(tmp_path):
    imp = 'import numpy as np, matplotlib.pyplot as plt'
    good = tmp_path / 'good.ipynb'
    _nb(good, imp, "print('epoch 1\\repoch 2')", 'plt.imshow(np.arange(12.).reshape(3, 4)); plt.axis("off");', '6 * 7')
    bad, big = tmp_path / 'bad.ipynb', tmp_path / 'big.ipynb'
    bad_src = _nb(bad, 'x = 1', '1 / 0', 'print("never")')
    big_src = _nb(big, imp, 'plt.figure(figsize=(12, 12)); plt.imshow(np.random.default_rng(0).random((600, 600, 3)));')
    res = subprocess.run([sys.executable, 'tools/run_nbs.py', str(good), str(bad), str(big)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert f'{bad}: a cell raised' in res.stderr and 'ZeroDivisionError' in res.stderr
    assert f'{big} cell 2 (id' in res.stderr and 'KB PNG (at most 150 KB)' in res.stderr
    assert bad.read_bytes() == bad_src and big.read_bytes() == big_src  # refused: left as they were
    cells = json.loads(good.read_text())['cells']
    outs = [c.get('outputs', []) for c in cells]
    assert outs[2] == [{'name': 'stdout', 'output_type': 'stream', 'text': ['epoch 2\n']}]  # as a terminal shows it
    assert outs[4][0]['data']['text/plain'] == ['42']
    png = run_nbs.base64.b64decode(outs[3][0]['data']['image/png'])
    from PIL import Image
    import io
    w, h = Image.open(io.BytesIO(png)).size
    assert 0 < w <= run_nbs.FIG_SIZE[0] * run_nbs.FIG_DPI and 0 < h <= run_nbs.FIG_SIZE[1] * run_nbs.FIG_DPI
    assert all(c.get('execution_count') is None for c in cells)  # nbdev-clean ran
    assert not run_nbs.output_problems(json.loads(good.read_text()), 'good')


def test_build_refuses_an_out_folder_it_did_not_build(tmp_path):
    "The site build replaces only a folder it built itself (one holding its pages.json), never a user's folder"
    import build_docs
    out = tmp_path / 'mine'
    out.mkdir(); (out / 'keep.txt').write_text('mine')
    with pytest.raises(SystemExit, match='is not a site built by tools/build_docs.py'): build_docs.build(out)
    assert (out / 'keep.txt').read_text() == 'mine'
