#!/usr/bin/env python3
"""Set up the project's virtual environment and run its main jobs.

    python3 dev.py demo    # create .venv, install one-next, run the demo on a sample data folder
    python3 dev.py test    # create .venv, install one-next with test tools, lint and run the
                           # tests, then build the documentation (mkdocs build --strict)
    python3 dev.py docs    # build the documentation into site/ (extra arguments go to mkdocs)

Extra arguments after ``test`` are passed to pytest.  Needs only Python 3.10+ and network access
to the package index.
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / '.venv'
PYTHON = VENV / ('Scripts/python.exe' if os.name == 'nt' else 'bin/python')


def _run(*cmd, **kwargs) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kwargs)


def ensure_venv() -> None:
    """Create .venv and (re)install the project when pyproject.toml has changed."""
    if sys.version_info < (3, 10):  # noqa: UP036 (dev.py may be run by an older Python)
        sys.exit(f'one-next needs Python 3.10 or newer, this is {sys.version.split()[0]}')
    if not PYTHON.exists():
        print('Creating the virtual environment in .venv ...', flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha1((ROOT / 'pyproject.toml').read_bytes()).hexdigest()[:12]
    stamp = VENV / f'.installed-{digest}'
    if not stamp.exists():
        print('Installing one-next and its dependencies ...', flush=True)
        if _run(PYTHON, '-m', 'pip', 'install', '--quiet', '-e', '.[test,docs]') != 0:
            sys.exit('installing one-next failed')
        for old in VENV.glob('.installed-*'):
            old.unlink()
        stamp.touch()


def build_docs(*args) -> int:
    """Build the MkDocs site; --strict turns a broken link or reference into a failure."""
    env = {**os.environ, 'NO_MKDOCS_2_WARNING': '1'}
    rc = _run(PYTHON, '-m', 'mkdocs', 'build', '--strict', '--quiet', *args, env=env)
    if rc != 0:
        print('the documentation does not build (see above)', file=sys.stderr)
    return rc


def main(argv: list) -> int:
    if not argv or argv[0] not in ('demo', 'test', 'docs'):
        print(__doc__)
        return 2
    ensure_venv()
    if argv[0] == 'demo':
        return _run(PYTHON, '-m', 'one.demo', *argv[1:])
    if argv[0] == 'docs':
        return build_docs(*argv[1:])
    rc = _run(PYTHON, '-m', 'ruff', 'check', '.')
    if rc != 0:
        print('ruff found problems (see above)', file=sys.stderr)
        return rc
    # pytest exits 5 when it collects no test: any non-zero code fails the run.
    rc = _run(PYTHON, '-m', 'pytest', *argv[1:])
    if rc != 0:
        return rc
    return build_docs()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
