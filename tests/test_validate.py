"""`one validate`: the tree walker and the command line, on real folders."""
import subprocess
import sys
from pathlib import Path

import pytest

from one.alf._validate import validate_tree
from one.cli import main

SESSION = 'lab/Subjects/subj/2020-01-01/001'


def _touch(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        if rel.endswith('/'):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b'x')


def _problems(root: Path) -> dict:
    return {p.path: (p.kind, p.reason) for p in validate_tree(root).problems}


def test_valid_tree_has_no_problem(tmp_path):
    _touch(tmp_path,
           f'{SESSION}/alf/spikes.times.npy',
           f'{SESSION}/alf/probe00/#2024-01-01#/_ibl_trials.table.pqt',
           'subj2/2021-05-05/2/raw_ephys_data/_spikeglx_ephysData_g0_t0.imec0.lf.bin',
           'sessions.pqt', 'datasets.pqt', '.hidden/notes.txt')
    report = validate_tree(tmp_path)
    assert report.ok
    assert report.problems == []
    assert (report.sessions, report.datasets) == (2, 3)


def test_each_kind_of_problem_is_reported_with_its_reason(tmp_path):
    _touch(tmp_path,
           f'{SESSION}/alf/spikes.times.npy',
           f'{SESSION}/alf/bad-name.npy',
           f'{SESSION}/alf/obj.foo-bar.npy',
           f'{SESSION}/alf/#rev#/sub/spikes.times.npy',
           f'{SESSION}/bad folder/spikes.times.npy',
           'lab/Subjects/subj/2020-13-45/001/alf/spikes.times.npy',
           'lab/Subjects/subj/2020-01-02/0001/',
           'notes/deep/readme.txt',
           'readme.txt')
    problems = _problems(tmp_path)
    assert problems == {
        f'{SESSION}/alf/bad-name.npy':
            ('file', 'not an ALF dataset name: expected object.attribute.extension'),
        f'{SESSION}/alf/obj.foo-bar.npy': (
            'file', 'not an ALF dataset name: expected (_namespace_)object.attribute'
                    '(_timescale)(.extra).extension with word characters only'),
        f'{SESSION}/alf/#rev#/sub':
            ('folder', 'revision folder "#rev#" must be the last folder before the files'),
        f'{SESSION}/bad folder': ('folder', '"bad folder" is not a valid collection folder '
                                            'name (letters, digits, "_", "-" and "." only)'),
        'lab/Subjects/subj/2020-13-45/001':
            ('folder', '"2020-13-45" is not a real date, so this is not a session folder'),
        'lab/Subjects/subj/2020-01-02/0001':
            ('folder', 'session number "0001" has more than 3 digits'),
        'notes': ('folder', 'folder holds no session folder'),
        'readme.txt': ('file', 'file outside any session folder'),
    }
    report = validate_tree(tmp_path)
    assert not report.ok
    assert (report.sessions, report.datasets) == (1, 1)


def test_root_may_itself_be_a_session(tmp_path):
    session = tmp_path / 'subj' / '2020-01-01' / '001'
    _touch(session, 'alf/trials.intervals.npy', 'notALF.txt')
    report = validate_tree(session)
    assert report.sessions == 1
    assert [(p.path, p.kind) for p in report.problems] == [('notALF.txt', 'file')]


def test_revision_folder_must_be_well_formed(tmp_path):
    _touch(tmp_path, f'{SESSION}/alf/#bad rev#/spikes.times.npy')
    assert _problems(tmp_path) == {
        f'{SESSION}/alf/#bad rev#':
            ('folder', '"#bad rev#" is not a valid revision folder (expected #label#)')}


def test_missing_folder_raises(tmp_path):
    with pytest.raises(NotADirectoryError, match='nowhere'):
        validate_tree(tmp_path / 'nowhere')


def test_cli_exit_codes_and_output(tmp_path, capsys):
    _touch(tmp_path, f'{SESSION}/alf/spikes.times.npy')
    assert main(['validate', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert '1 sessions, 1 datasets, 0 invalid' in out

    _touch(tmp_path, f'{SESSION}/alf/bad-name.npy')
    assert main(['validate', str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f'invalid file   {SESSION}/alf/bad-name.npy: not an ALF dataset name' in captured.out
    assert '1 invalid' in captured.err

    assert main(['validate', str(tmp_path / 'nowhere')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('one validate: error: Not a folder:')
    assert len(err.strip().splitlines()) == 1


def test_cli_runs_as_a_program(tmp_path):
    _touch(tmp_path, f'{SESSION}/alf/spikes.times.npy', f'{SESSION}/alf/x.npy')
    result = subprocess.run([sys.executable, '-m', 'one', 'validate', str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f'{SESSION}/alf/x.npy' in result.stdout
    usage = subprocess.run([sys.executable, '-m', 'one', 'nonsense'],
                           capture_output=True, text=True)
    assert usage.returncode == 2
    assert 'invalid choice' in usage.stderr


def test_files_one_writes_are_valid(tmp_path):
    """Cache tables and their metadata (also in a tag's or a session's folder), the lists of
    loaded ids, aggregates, the experiment description and hidden files (lock, verified
    hashes, partial downloads, temporary files, the demo's marker)."""
    _touch(tmp_path,
           f'{SESSION}/alf/spikes.times.npy',
           f'{SESSION}/_ibl_experiment.description',
           f'{SESSION}/sessions.pqt', f'{SESSION}/datasets.pqt',  # the session indexed alone
           'sessions.pqt', 'datasets.pqt', 'insertions.pqt', 'cache_info.json',
           '2024-03-01T10-11-12_loaded_dataset_uuids.csv',
           '2024-03-01T10-11-13_loaded_session_uuids.csv', 'analysis.lock.json',
           '.one_access.jsonl', '.rest/abc.json',
           '2024_Q1/sessions.pqt', '2024_Q1/datasets.pqt', '2024_Q1/cache_info.json',  # a tag
           'aggregates/Subjects/lab/subj/_ibl_subjectTrials.table.pqt',
           'aggregates/Tags/2024_Q1/_ibl_brainwide.table.pqt',
           '.ONE.lock', '.one_verified.jsonl', '.one_demo',
           f'{SESSION}/alf/.spikes.times.npy.part', f'{SESSION}/alf/.x.npy.a1b2.tmp')
    report = validate_tree(tmp_path)
    assert report.problems == []
    assert (report.sessions, report.datasets) == (1, 3)
    # what is not ONE's is still reported
    _touch(tmp_path, 'notes.csv', f'{SESSION}/alf/experiment.description',
           'aggregates/Subjects/readme.txt', '2024_Q1/readme.txt')
    assert set(_problems(tmp_path)) == {'notes.csv', f'{SESSION}/alf/experiment.description',
                                        'aggregates/Subjects/readme.txt', '2024_Q1/readme.txt'}
