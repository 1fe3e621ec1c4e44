"The docs' content is sound: every public name has a docstring and is shown (`show_doc`) in some notebook."
import inspect, json, re
from pathlib import Path
import pytest
import fastsom.all as fa

NBS = Path(__file__).parents[1] / 'nbs'


def notebook_text(kind):
    cells = [c for nb in NBS.glob('*.ipynb') for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == kind]
    return '\n'.join(''.join(c['source']) for c in cells)


SHOWN = set(re.findall(r'show_doc\(\s*([A-Za-z_][\w.]*)', notebook_text('code')))
MARKDOWN = notebook_text('markdown')


@pytest.mark.parametrize('name', fa.__all__)
def test_public_name_documented(name):
    obj = getattr(fa, name)
    if callable(obj):
        assert inspect.getdoc(obj), f"{name} has no docstring"
        assert name in SHOWN, f"{name} is not shown with show_doc in any notebook"
    else:  # a constant, e.g. the table of distance functions: explained in prose
        assert f'`{name}`' in MARKDOWN, f"{name} is not explained in any notebook"
