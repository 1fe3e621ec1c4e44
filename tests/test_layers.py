"The fastai line: the engine, its preprocessing, model files, drawing and distributed engine import without fastai"
import json, subprocess, sys
import pytest

FASTAI_FREE = ['checks', 'grid', 'functions', 'som', 'quality', 'preprocess', 'modelfile', 'plot', 'distributed']


@pytest.mark.parametrize('mod', FASTAI_FREE)
def test_imports_without_fastai(mod):
    code = (f"import sys, json, fastsom.{mod}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('fastai', 'fastprogress'))))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == []


def test_fastai_side_does_import_fastai():
    "The check above can fail: the learner side does import fastai"
    code = "import sys, fastsom.data; print('fastai' in sys.modules)"
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout.split()[-1] == 'True'
