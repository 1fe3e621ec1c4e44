"Every fenced shell command of the README runs as written from the repo root (the two set-up commands are CI itself)."
import os, re, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).parents[1]
SETUP = {'pip install -e . && fastsom train', 'bash .ci/run'}  # what CI runs: covered by CI itself
COMMANDS = [l.split('#')[0].strip() for b in re.findall(r'```bash\n(.*?)```', (ROOT / 'README.md').read_text(), re.S)
            for l in b.splitlines() if l.strip() and not l.lstrip().startswith('#')]


def test_readme_has_the_two_setup_commands():
    assert SETUP <= set(COMMANDS)


@pytest.mark.parametrize('cmd', [c for c in COMMANDS if c not in SETUP])
def test_readme_command_runs(cmd):
    res = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, MPLBACKEND='Agg'))
    assert res.returncode == 0, res.stderr[-2000:]
