"The house style, checked: every public parameter has a docment; generated modules keep lines of at most 120 characters."
import ast, inspect
from pathlib import Path
from fastcore.docments import docments
import fastsom
import fastsom.all as fa

MAX_LINE = 120
PKG = Path(fastsom.__file__).parent


def _ours(f):
    "Is `f` a function written in fastsom (not inherited from torch, fastai, ...)?"
    return inspect.isfunction(f) and f.__module__.startswith('fastsom')


def public_callables():
    "(qualified name, function) for every public function, class constructor and public method of fastsom."
    for name in fa.__all__:
        obj = getattr(fa, name)
        if inspect.isclass(obj):
            if not obj.__module__.startswith('fastsom'): continue
            for attr in vars(obj):
                f = getattr(obj, attr)
                f = getattr(f, '__func__', f)  # a classmethod (`@patch(cls_method=True)` included): its function
                if _ours(f) and (attr == '__init__' or not attr.startswith('_')): yield f'{name}.{attr}', f
        elif _ours(obj): yield name, obj


def missing_docments(f):
    "Parameters of `f` (but a method's `self`/`cls`, and `*args`/`**kwargs`) without a docment."
    params = list(inspect.signature(f).parameters.values())
    if params and params[0].name in ('self', 'cls'): params = params[1:]
    docs = docments(f)
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and not docs.get(p.name)]


def test_collects_the_public_api():
    names = dict(public_callables())
    for n in ('Som.__init__', 'Som.fit', 'Grid.dist2_from', 'SomDataLoaders.from_df', 'som_learner', 'save_som'):
        assert n in names, f'{n} not collected'
    assert 'load_learner' not in names  # fastai's own, documented there


def test_docments_catch_an_undocumented_parameter():
    def f(a,  # documented
          b): ...
    assert missing_docments(f) == ['b']


def test_every_public_parameter_has_a_docment():
    missing = [f'{n}({p})' for n, f in public_callables() for p in missing_docments(f)]
    assert not missing, f'{len(missing)} public parameters without a docment: ' + ', '.join(missing)


def nbdev_lines(src):
    "Line numbers nbdev writes itself: the module docstring (the notebook's one-line description) and `__all__`"
    mod = ast.parse(src)
    return {i for o in mod.body[:1] + [o for o in mod.body if isinstance(o, ast.Assign)
                                       and any(getattr(t, 'id', None) == '__all__' for t in o.targets)]
            if isinstance(o, (ast.Expr, ast.Assign)) for i in range(o.lineno, o.end_lineno + 1)}


def generated_modules():
    "The modules nbdev exports from the notebooks (`all.py` is written by hand, `_modidx.py` is nbdev's index)"
    return [p for p in sorted(PKG.glob('*.py')) if '# %% ../nbs/' in p.read_text()]


def test_generated_lines_at_most_120_characters():
    assert {p.name for p in generated_modules()} >= {'grid.py', 'som.py', 'data.py', 'learner.py', 'cli.py'}
    long = [f'{p.name}:{i} ({len(l)})' for p in generated_modules() for src in [p.read_text()]
            for skip in [nbdev_lines(src)] for i, l in enumerate(src.splitlines(), 1)
            if len(l) > MAX_LINE and i not in skip]
    assert not long, f'{len(long)} lines over {MAX_LINE} characters: ' + ', '.join(long)
