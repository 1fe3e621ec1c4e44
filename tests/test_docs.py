"""The docs' content is sound: every public name has a docstring; constants are explained in prose.

Each name's API entry on its module's page is checked on the rendered site (tests/test_site.py)."""
import inspect, json, re
from pathlib import Path
import pytest
import fastsom.all as fa

NBS = Path(__file__).parents[1] / 'nbs'


def notebook_text(kind):
    cells = [c for nb in NBS.glob('*.ipynb') for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == kind]
    return '\n'.join(''.join(c['source']) for c in cells)


MARKDOWN = notebook_text('markdown')


@pytest.mark.parametrize('name', fa.__all__)
def test_public_name_documented(name):
    obj = getattr(fa, name)
    if callable(obj):
        assert inspect.getdoc(obj), f"{name} has no docstring"
    else:  # a constant, e.g. the table of distance functions: explained in prose
        assert f'`{name}`' in MARKDOWN, f"{name} is not explained in any notebook"
