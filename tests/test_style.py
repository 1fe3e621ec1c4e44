"The house style, checked: every public parameter has a docment; generated modules keep lines of at most 120 characters."
import inspect
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
            for attr, v in vars(obj).items():
                f = v.__func__ if isinstance(v, (classmethod, staticmethod)) else v
                if _ours(f) and (attr == '__init__' or not attr.startswith('_')): yield f'{name}.{attr}', f
        elif _ours(obj): yield name, obj


def missing_docments(f):
    "Parameters of `f` (but `self`/`cls`) without a docment."
    skip = {'self', 'cls'}
    sig = inspect.signature(f).parameters
    docs = docments(f)
    return [p for p, k in sig.items() if p not in skip and k.kind not in (k.VAR_POSITIONAL, k.VAR_KEYWORD)
            and not docs.get(p)]


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


def test_generated_lines_at_most_120_characters():
    long = [f'{p.name}:{i} ({len(l)})' for p in sorted(PKG.glob('*.py')) if p.name != '_modidx.py'
            for i, l in enumerate(p.read_text().splitlines(), 1) if len(l) > MAX_LINE]
    assert not long, f'{len(long)} lines over {MAX_LINE} characters: ' + ', '.join(long)
