"""Progress bars: tqdm.auto everywhere (widgets in Jupyter), shown on a terminal or in a
notebook kernel by default."""
import re
import sys
import types
from pathlib import Path

from one._lib.files import in_notebook, show_progress

ROOT = Path(__file__).resolve().parents[1]


def test_every_tqdm_import_is_tqdm_auto():
    found = []
    benchmarks = [p for p in sorted((ROOT / 'benchmarks').rglob('*.py'))
                  if '_data' not in p.relative_to(ROOT).parts]  # generated data, ONE-api's venv
    for path in sorted((ROOT / 'one').rglob('*.py')) + benchmarks:
        for line in path.read_text(encoding='utf-8').splitlines():
            if re.match(r'\s*(from tqdm|import tqdm)', line):
                found.append((path.name, line.strip()))
    assert found, 'no tqdm import found: the test looks in the wrong place'
    assert all(line.startswith('from tqdm.auto import') for _, line in found), found


def test_shown_in_a_notebook_kernel(monkeypatch):
    class Stderr:  # not a terminal, as in a Jupyter kernel
        def isatty(self):
            return False

    monkeypatch.setattr(sys, 'stderr', Stderr())
    monkeypatch.delitem(sys.modules, 'IPython', raising=False)
    assert not in_notebook() and not show_progress(None)
    # A Jupyter kernel cannot run inside the test suite: stand in for IPython's module with
    # what a kernel shows (get_ipython() returning a shell that has a kernel).
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, 'IPython', types.SimpleNamespace(get_ipython=lambda: shell))
    assert in_notebook() and show_progress(None)
    assert not show_progress(False)
    # A plain IPython terminal shell has no kernel: its stderr decides
    shell = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, 'IPython', types.SimpleNamespace(get_ipython=lambda: shell))
    assert not in_notebook() and not show_progress(None)
