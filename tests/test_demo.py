"""The demo (`python -m one.demo`, `python3 dev.py demo`): its arguments, its own sample folder,
and a full run, as a real program."""
import re
import subprocess
import sys

import pytest

from one.demo import MARKER, sample_folder
from one.synthetic import make_dataset_folder


def run(*args, cwd):
    return subprocess.run([sys.executable, '-m', 'one.demo', *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_writes_nothing(tmp_path):
    result = run('--help', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('usage: python -m one.demo [-h] [folder]')
    assert list(tmp_path.iterdir()) == []  # no folder named '--help'
    bad = run('--no-such-option', cwd=tmp_path)
    assert bad.returncode == 2 and 'unrecognized arguments: --no-such-option' in bad.stderr
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_folder_that_is_not_its_sample(tmp_path):
    real = tmp_path / 'real_data'
    make_dataset_folder(real, n_subjects=1, n_sessions=1, seed=3)
    before = sorted(p.relative_to(real) for p in real.rglob('*'))
    result = run(real, cwd=tmp_path)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f'python -m one.demo: error: {real} already exists and is not a '
                               f'sample folder made by the demo (it has no {MARKER} marker)')
    assert sorted(p.relative_to(real) for p in real.rglob('*')) == before  # untouched
    (tmp_path / 'file').write_text('x')
    assert run(tmp_path / 'file', cwd=tmp_path).returncode == 2
    assert (tmp_path / 'file').read_text() == 'x'


def test_sample_folder_rules(tmp_path):
    assert sample_folder(tmp_path / 'new') == (tmp_path / 'new', True)
    (tmp_path / 'empty').mkdir()
    assert sample_folder(tmp_path / 'empty') == (tmp_path / 'empty', True)
    (tmp_path / 'sample').mkdir()
    (tmp_path / 'sample' / MARKER).write_text('{}')
    (tmp_path / 'sample' / 'datasets.pqt').write_text('')
    assert sample_folder(tmp_path / 'sample') == (tmp_path / 'sample', False)
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('x')
    with pytest.raises(ValueError, match='not a sample folder made by the demo'):
        sample_folder(tmp_path / 'other')


def test_full_run_then_reuse_and_validate(tmp_path):
    first = run(cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    sample = tmp_path / 'sample_data'
    assert (sample / MARKER).is_file() and (sample / 'datasets.pqt').is_file()
    assert 'made 12 sessions of 3 subjects' in first.stdout
    assert 'no files or folders outside the ALF convention' in first.stdout
    assert '5. Load the trials object' in first.stdout
    again = run('sample_data', cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert 'made 12 sessions' not in again.stdout  # reused
    # every file the demo (and the indexing, hashing and loading in it) wrote is valid
    validate = subprocess.run([sys.executable, '-m', 'one', 'validate', sample],
                              capture_output=True, text=True)
    assert validate.returncode == 0, validate.stdout
    assert re.fullmatch(rf'{re.escape(str(sample))}: 12 sessions, \d+ datasets, 0 invalid',
                        validate.stdout.strip())
