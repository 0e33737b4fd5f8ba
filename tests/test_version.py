"""The two versions: the one-next distribution's, and the ONE API level (`one.__version__`)."""
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import one
from one.api import ONE

REPO = Path(__file__).resolve().parents[1]


def test_one_version_is_the_one_api_level():
    assert one.__version__ == '3.6.1'  # what Alyx's minimum-version checks compare
    assert ONE.version == one.__version__


def test_distribution_has_its_own_version():
    assert re.fullmatch(r'\d+\.\d+\.\d+', one.__distribution_version__)
    assert one.__distribution_version__ != one.__version__
    assert importlib.metadata.version('one-next') == one.__distribution_version__
    pyproject = (REPO / 'pyproject.toml').read_text()
    assert 'version = { attr = "one._version.DISTRIBUTION_VERSION" }' in pyproject


def test_command_line_version_says_both():
    out = subprocess.run([sys.executable, '-m', 'one', '--version'], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout.strip()
    assert out == f'one-next {one.__distribution_version__} (ONE API {one.__version__})'
