#!/usr/bin/env python
"""Render the docs site's pages to static HTML without Quarto: `python tools/build_docs.py [--out _site]`.

What Quarto would show, page by page:
1. nbdev's own processing of each notebook (`FilterDefaults`, what `nbdev-proc-nbs` and `nbdev-docs` run
   before Quarto): hidden and exported cells dropped, a `show_doc` entry after every exported name, the
   `show_doc` cells executed, backticked names linked to their API entry;
2. each processed notebook becomes one page, named as Quarto names it (the frontmatter's `output-file`):
   markdown with MathML for the TeX, highlighted code, the committed outputs (images embedded as data URIs),
   the Quarto cell options nbdev leaves (`echo`, `include`, `output`, `output: asis`, `code-fold`) honoured;
3. the sidebar nbdev would generate (`nbdev-sidebar`) and the navbar of `nbs/_quarto.yml` on every page.

Writes `OUT/*.html`, `OUT/site.css`, the files beside the notebooks (`styles.css`, images),
`OUT/pages.json` (per page: title, notebook, module, image count, error) and `OUT/errors.json`. Every
notebook that nbdev cannot process (its page is left empty), and every navbar or sidebar link to a missing
notebook, is listed at the end, and the exit status is 1.
"""
import argparse, html, json, os, re, shutil, sys, time, warnings
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
import yaml
from bs4 import BeautifulSoup
from fastcore.nbio import read_nb
from latex2mathml.converter import convert as tex2mathml
from nbconvert.filters import ansi2html, markdown2html
from nbdev.config import get_config
from nbdev.processors import FilterDefaults
from nbdev.quarto import nbdev_sidebar
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from run_nbs import overwrite_cr

SITE_CSS = Path(__file__).with_name('site.css')
MIMES = ['image/svg+xml', 'image/png', 'image/jpeg', 'text/html', 'text/markdown', 'text/latex', 'text/plain']
_opt_re = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_math_re = re.compile(r'\$\$(.+?)\$\$|(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])', re.S)


def notebooks(nbs:Path)->list:
    "The site's notebooks in the sidebar's order (nbdev's: `index` first, then by path), skipping `_*` and `.*`"
    return sorted((p for p in nbs.rglob('*.ipynb') if not any(s[0] in '_.' for s in p.relative_to(nbs).parts)),
                  key=lambda p: (p.parent.relative_to(nbs).parts, p.stem != 'index', p.name))


def process(nb_path:Path):
    "The notebook at `nb_path` after nbdev's docs processing, and the warnings nbdev gave"
    nb = read_nb(nb_path)
    os.environ['IN_TEST'] = '1'
    try:
        with warnings.catch_warnings(record=True) as caught, redirect_stdout(StringIO()):
            warnings.simplefilter('always')
            FilterDefaults()(nb)
    finally: del os.environ['IN_TEST']
    return nb, [str(w.message).strip() for w in caught if 'nbdev' in w.filename]


def frontmatter(nb)->dict:
    "The YAML frontmatter nbdev puts in the first raw cell"
    raw = [c for c in nb['cells'] if c.cell_type == 'raw' and c.source.lstrip().startswith('---')]
    return (yaml.safe_load(raw[0].source.strip().strip('-')) or {}) if raw else {}


def page_name(nb_path:Path, fm:dict)->str:
    "Quarto's output file: `output-file`, else the notebook's name without its number prefix"
    return fm.get('output-file') or re.sub(r'^\d+_', '', nb_path.stem) + '.html'


def cell_options(src:str):
    "The leading `#| key: value` Quarto options of a code cell, and the code after them"
    lines, opts = src.splitlines(), {}
    while lines and (m := _opt_re.match(lines[0])):
        opts[m[1]] = m[2].strip('"\'')
        lines.pop(0)
    return opts, '\n'.join(lines)


def render_md(md:str)->str:
    "Markdown to HTML; Pandoc link attributes (`[source](url){...}`) become a plain link"
    md = re.sub(r'\[source\]\(([^)\s]+)\)\{[^}]*\}', r'<a class="srclink" href="\1">source</a>', md)
    md = re.sub(r'(\]\([^)\s]+\))\{[^}]*\}', r'\1', md)
    return markdown2html(md)


def _text(v)->str: return ''.join(v) if isinstance(v, list) else str(v)


def _out(kind:str, inner:str)->str: return f'<div class="cell-output cell-output-{kind}">{inner}</div>'
def _pre(text_html:str)->str: return f'<pre><code>{text_html}</code></pre>'


def render_data(data:dict, asis:bool)->str:
    "One rich output, by the first MIME type of `MIMES` it has; `asis` markdown (show_doc's) is an API entry"
    mime = next((m for m in MIMES if m in data), None)
    if mime is None: return ''
    v = _text(data[mime])
    if mime in ('image/png', 'image/jpeg'):
        return _out('display', f'<img class="img-fluid" src="data:{mime};base64,{v.strip()}">')
    if mime == 'text/markdown':
        return f'<div class="doc-entry">{render_md(v)}</div>' if asis else _out('markdown', render_md(v))
    if mime == 'text/plain': return _out('display', _pre(html.escape(v)))
    if mime == 'text/latex': return _out('display', render_md(v))
    return _out('display', v)  # html, svg


def render_output(o:dict, asis:bool)->str:
    "One output of a code cell, with Quarto's class names (`cell-output-stdout`, `cell-output-error`, ...)"
    if o['output_type'] == 'stream': return _out(o['name'], _pre(ansi2html(overwrite_cr(_text(o['text'])))))
    if o['output_type'] == 'error':
        return _out('error', _pre(ansi2html('\n'.join(o.get('traceback') or [f'{o["ename"]}: {o["evalue"]}']))))
    return render_data(o.get('data', {}), asis)


def render_code(code:str, opts:dict)->str:
    "A code cell's source, highlighted; folded under `code-summary` when `code-fold` is set"
    code = highlight(code, PythonLexer(), HtmlFormatter(nowrap=True))
    src = f'<div class="sourceCode cell-code"><pre class="sourceCode python"><code>{code}</code></pre></div>'
    fold = opts.get('code-fold', 'false')
    if fold == 'false': return src
    summary = html.escape(opts.get('code-summary', 'Code'))
    return f'<details class="code-fold"{" open" if fold == "show" else ""}><summary>{summary}</summary>{src}</details>'


def render_cell(cell)->str:
    "One processed cell as HTML (empty when Quarto shows nothing of it)"
    if cell['cell_type'] == 'markdown': return render_md(cell.get('source', ''))
    if cell['cell_type'] != 'code': return ''
    opts, code = cell_options(cell.get('source', ''))
    if opts.get('include') == 'false': return ''
    outs = [] if opts.get('output') == 'false' else cell.get('outputs', [])
    body = render_code(code, opts) if code.strip() and opts.get('echo', 'true') != 'false' else ''
    body += ''.join(render_output(o, opts.get('output') == 'asis') for o in outs)
    return f'<div class="cell">{body}</div>' if body else ''


def pandoc_id(text:str)->str:
    "The identifier Pandoc (so Quarto) gives a heading: lower case, spaces to dashes, only `\\w`, `-`, `.`"
    s = re.sub(r'[^\w\-. ]', '', text.strip().lower()).replace(' ', '-')
    return re.sub(r'^[^a-z_]+', '', s) or 'section'


def add_math(soup):
    "TeX between `$`/`$$` in text (not in code) to MathML, which Chromium and Firefox draw natively"
    for node in list(soup.find_all(string=_math_re)):
        if node.find_parent(['code', 'pre', 'script', 'style', 'math']): continue
        def conv(m):
            tex, block = (m[1], True) if m[1] is not None else (m[2], False)
            try: return tex2mathml(tex, display='block' if block else 'inline')
            except Exception: return html.escape(m[0])
        node.replace_with(BeautifulSoup(_math_re.sub(conv, html.escape(str(node), quote=False)), 'html.parser'))


def fix_page(body:str, rel:str, hrefs:dict, site_url:str):
    "Pandoc heading ids, Quarto's classes, MathML; links in the site (`site-url/...`, `*.ipynb`) made relative"
    soup = BeautifulSoup(body, 'html.parser')
    for a in soup.select('a.anchor-link'): a.decompose()
    for d in soup.select('div.highlight'): d['class'] = d['class'] + ['sourceCode']  # as Quarto marks markdown code
    for h in soup.find_all(re.compile('^h[1-6]$')): h['id'] = pandoc_id(h.get_text())
    add_math(soup)
    for a in soup.find_all('a', href=True):
        href = a['href']
        if site_url and href.startswith(site_url + '/'): href = href[len(site_url) + 1:]
        path, _, frag = href.partition('#')
        if path in hrefs.values() or path in hrefs:
            a['href'] = os.path.relpath(hrefs.get(path, path), Path(rel).parent) + (f'#{frag}' if frag else '')
    return soup


def sidebar_contents(nbs:Path)->list:
    "The sidebar `nbdev-docs` renders: generated by nbdev (`custom_sidebar = false`) or `nbs/sidebar.yml`"
    if get_config().custom_sidebar: text = (nbs / 'sidebar.yml').read_text()
    else:
        with redirect_stdout(StringIO()) as f: nbdev_sidebar.__wrapped__(path=nbs, printit=True)
        text = f.getvalue()
    return yaml.safe_load(text)['website']['sidebar']['contents']


def nav_link(item, pages:dict, rel:str, errors:list)->str:
    "`<a>` for a navbar or sidebar entry: a notebook's path, or {text, href} / {icon, href}"
    if isinstance(item, str): item = {'href': item}
    href = item.get('href', '')
    if re.search(r'\.(ipynb|qmd)$', href):
        if href not in pages:
            errors.append(f'nbs/_quarto.yml or the sidebar links to {href}, which is not a notebook in nbs/')
            return ''
        text, href = item.get('text', pages[href]['title']), os.path.relpath(pages[href]['file'], Path(rel).parent)
    else: text = item.get('text') or item.get('icon', href)
    cur = ' class="active"' if href == Path(rel).name else ''
    return f'<a href="{html.escape(href)}"{cur}>{html.escape(str(text))}</a>'


def render_sidebar(contents:list, pages:dict, rel:str, errors:list)->str:
    "The sidebar: one link per page, sections as nested lists"
    def entry(o):
        if isinstance(o, dict) and 'section' in o:
            head = (nav_link({'text': o['section'], 'href': o['href']}, pages, rel, errors) if 'href' in o
                    else html.escape(o['section']))
            inner = render_sidebar(o.get('contents', []), pages, rel, errors)
            return f'<li class="section"><span>{head}</span>{inner}</li>'
        return f'<li>{nav_link(o, pages, rel, errors)}</li>'
    return '<ul>' + ''.join(entry(o) for o in contents) + '</ul>'


def render_navbar(navbar:dict, pages:dict, rel:str, errors:list)->str:
    "The navbar's left and right items of `_quarto.yml`; a menu opens on hover or focus"
    def item(o):
        if 'menu' in o:
            links = ''.join(nav_link(m, pages, rel, errors) for m in o['menu'])
            text = html.escape(o.get('text', ''))
            return f'<div class="menu" tabindex="0"><span>{text} ▾</span><div class="menu-items">{links}</div></div>'
        return nav_link(o, pages, rel, errors)
    side = lambda k: ''.join(item(o) for o in navbar.get(k, []))
    return f'{side("left")}<span class="spacer"></span>{side("right")}'


def page_html(p:dict, body, cfg:dict, nav:str, sidebar:str)->str:
    "The whole page: navbar, sidebar, title block, content, table of contents"
    root = os.path.relpath('.', Path(p['file']).parent)
    toc = ''.join(f'<li><a href="#{h["id"]}">{html.escape(h.get_text())}</a></li>' for h in body.find_all('h2'))
    desc = f'<div class="description">{render_md(p["description"])}</div>' if p['description'] else ''
    return f'''<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(p["title"])} – {html.escape(cfg["title"])}</title>
<link rel="stylesheet" href="{root}/site.css"><link rel="stylesheet" href="{root}/styles.css"></head>
<body><header class="navbar"><a class="brand" href="{root}/index.html">{html.escape(cfg["title"])}</a>{nav}</header>
<div class="layout"><nav class="sidebar">{sidebar}</nav>
<main class="content"><header id="title-block-header"><h1 class="title">{html.escape(p["title"])}</h1>{desc}</header>
{body}</main><nav class="toc"><h2>On this page</h2><ul>{toc}</ul></nav></div></body></html>
'''


def copy_resources(nbs:Path, out:Path):
    "The files Quarto would carry over: everything in nbs/ but notebooks, YAML and `_*`/`.*` entries"
    for f in nbs.rglob('*'):
        rel = f.relative_to(nbs)
        if f.is_file() and f.suffix not in ('.ipynb', '.yml', '.yaml') and not any(s[0] in '_.' for s in rel.parts):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out / rel)


def site_config(nbs:Path)->dict:
    "Site title, URL and navbar from `nbs/_quarto.yml` and `nbs/nbdev.yml`, as Quarto merges them"
    q = yaml.safe_load((nbs / '_quarto.yml').read_text()) or {}
    n = yaml.safe_load((nbs / 'nbdev.yml').read_text()) if (nbs / 'nbdev.yml').exists() else {}
    web = {**(q.get('website') or {}), **((n or {}).get('website') or {})}
    return dict(title=web.get('title', get_config().lib_name), site_url=web.get('site-url', '').rstrip('/'),
                navbar=(q.get('website') or {}).get('navbar') or {})


def _default_exp(nb_path:Path):
    "The module the notebook exports (`#| default_exp`), or None"
    cells = json.loads(nb_path.read_text())['cells']
    src = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'code')
    m = re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M)
    return m[1] if m else None


def build(out='_site', nbs=None)->tuple:
    "Render every notebook of `nbs` (the project's `nbs/`) into `out`: (pages, errors)"
    nbs, out = Path(nbs or get_config().nbs_path), Path(out)
    if out.exists() and any(out.iterdir()) and not (out / 'pages.json').is_file():  # never another folder
        raise SystemExit(f"{out} exists and is not a site built by tools/build_docs.py (no pages.json): "
                         "pass another --out, or remove it yourself.")
    cfg, pages, bodies, errors = site_config(nbs), {}, {}, []
    for nb_path in notebooks(nbs):
        rel = str(nb_path.relative_to(nbs))
        nb, warns, err = dict(cells=[]), [], None
        try: nb, warns = process(nb_path)
        except Exception as e:
            err = f'{rel}: nbdev cannot process it for the docs (so neither can `nbdev-docs`): {e}'
            errors.append(err)
        for w in warns: print(f'WARNING {rel}: {w}', file=sys.stderr)
        fm = frontmatter(nb)
        pages[rel] = dict(notebook=rel, file=str(Path(rel).parent / page_name(nb_path, fm)),
                          title=fm.get('title', nb_path.stem), description=fm.get('description', ''),
                          module=_default_exp(nb_path), error=err)
        bodies[rel] = ''.join(render_cell(c) for c in nb['cells'])
    if out.exists(): shutil.rmtree(out)  # a site this tool built: checked first
    out.mkdir(parents=True)
    copy_resources(nbs, out)
    css = HtmlFormatter(style='friendly').get_style_defs(['.sourceCode', '.highlight']) + '\n' + SITE_CSS.read_text()
    (out / 'site.css').write_text(css)
    hrefs = {k: p['file'] for k, p in pages.items()}
    contents = sidebar_contents(nbs)
    for rel, p in pages.items():
        body = fix_page(bodies[rel], p['file'], hrefs, cfg['site_url'])
        p['images'] = len(body.find_all('img'))
        nav = render_navbar(cfg['navbar'], pages, p['file'], errors)
        side = render_sidebar(contents, pages, p['file'], errors)
        (out / p['file']).parent.mkdir(parents=True, exist_ok=True)
        (out / p['file']).write_text(page_html(p, body, cfg, nav, side))
    errors = list(dict.fromkeys(errors))
    (out / 'pages.json').write_text(json.dumps(list(pages.values()), indent=1))
    (out / 'errors.json').write_text(json.dumps(errors, indent=1))
    return list(pages.values()), errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='_site', help='folder to write the site to (replaced)')
    ap.add_argument('--nbs', default=None, help="notebooks folder (default: the project's nbs/)")
    a = ap.parse_args()
    t = time.perf_counter()
    pages, errors = build(a.out, a.nbs)
    for p in pages: print(f"{p['file']:32} {p['images']:3d} images  {p['title']}")
    print(f'{len(pages)} pages in {a.out}/ in {time.perf_counter() - t:.1f} s')
    for e in errors: print('ERROR', e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == '__main__': main()
