"""The `one` command line, run as a real program on a generated data folder."""
import json
import shutil
import subprocess
import sys

import pytest

from one.synthetic import make_dataset_folder


def run(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'one', *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope='module')
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli_data')
    make_dataset_folder(root, n_subjects=2, n_sessions=3, seed=1)
    result = run('index', root, '--hash')
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('indexed 6 sessions, ')
    return root


def test_index_then_search(indexed):
    result = run('search', '-C', indexed, '--subject', 'KS001', '--dataset', 'spikes.times')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ['eid', 'subject', 'date', 'number', 'lab', 'task_protocol']
    assert all('KS001' in line for line in lines[1:]) and len(lines) > 1
    assert result.stderr.strip() == f'{len(lines) - 1} sessions'


def test_search_json_and_cwd_default(indexed):
    result = run('search', '--date', '2024-01-15', '--json', cwd=indexed)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r['subject'] for r in rows} == {'KS001', 'ZFM-002'}
    assert all(r['date'] == '2024-01-15' for r in rows)


def test_search_exit_codes(indexed, tmp_path):
    nothing = run('search', '-C', indexed, '--subject', 'nobody')
    assert nothing.returncode == 1
    assert nothing.stderr.strip() == 'one search: no session matches'
    no_tables = run('search', '-C', tmp_path)
    assert no_tables.returncode == 2
    assert 'run "one index' in no_tables.stderr
    bad = run('search', '-C', indexed, '--dataset-qc-lte', 'SUPERB')
    assert bad.returncode == 2
    assert 'SUPERB' in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    usage = run('search', '--no-such-option')
    assert usage.returncode == 2


def test_list(indexed):
    result = run('list', '-C', indexed, 'KS001/2024-01-15/001', '--collection', 'alf/probe00',
                 '--filename', 'spikes*')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        'alf/probe00/spikes.amps.npy', 'alf/probe00/spikes.clusters.npy',
        'alf/probe00/spikes.depths.npy', 'alf/probe00/spikes.times.npy']
    details = run('list', '-C', indexed, '2024-01-15_1_KS001', '--json',
                  '--filename', '_ibl_wheel.position.npy')
    rows = json.loads(details.stdout)
    assert len(rows) == 1 and rows[0]['rel_path'] == 'alf/_ibl_wheel.position.npy'
    assert rows[0]['file_size'] > 0 and len(rows[0]['hash']) == 32
    missing = run('list', '-C', indexed, 'nobody/2020-01-01/001')
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'one list: session not found: nobody/2020-01-01/001'


def test_load(indexed):
    result = run('load', '-C', indexed, 'KS001/2024-01-15/001', 'trials', '--collection', 'alf')
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows['intervals'] == ['(60,', '2)', 'float64']
    assert 'goCue_times' in rows
    only = run('load', '-C', indexed, 'KS001/2024-01-15/001', 'wheel', '--attribute',
               'position', '--json')
    assert [r['attribute'] for r in json.loads(only.stdout)] == ['position']
    missing = run('load', '-C', indexed, 'KS001/2024-01-15/001', 'nothing')
    assert missing.returncode == 1
    assert 'ALF object "nothing" not found' in missing.stderr
    assert 'Traceback' not in missing.stderr
    debug = run('load', '-C', indexed, 'KS001/2024-01-15/001', 'nothing', '--debug')
    assert 'Traceback' in debug.stderr


def test_info(indexed):
    result = run('info', '-C', indexed, 'KS001/2024-01-15/001', '--json')
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info['subject'] == 'KS001' and info['number'] == 1
    assert info['collections']['alf/probe00'] == 8
    assert info['datasets'] == sum(info['collections'].values())
    text = run('info', '-C', indexed, 'KS001/2024-01-15/001')
    assert 'collections:' in text.stdout and 'alf/probe00' in text.stdout


def test_index_bad_folder(tmp_path):
    result = run('index', tmp_path / 'nowhere')
    assert result.returncode == 2
    assert result.stderr.startswith('one index: error: not a folder')


# ---- errors that name the cause and the fix (issue 13) ---------------------------------------

SESSION = 'KS001/2024-01-15/001'


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert 'Traceback' not in stderr
    return lines[0]


def test_load_in_several_collections_says_to_choose_one(indexed):
    result = run('load', '-C', indexed, SESSION, 'spikes')
    assert result.returncode == 2
    assert _one_line(result.stderr) == (
        f'one load: error: "spikes" of session {SESSION} is in several collections: '
        'alf/probe00, alf/probe01; choose one with --collection, e.g. --collection alf/probe00')


def test_load_errors_name_the_attribute_and_the_collection(indexed):
    typo = run('load', '-C', indexed, SESSION, 'trials', '--attribute', 'choise')
    assert typo.returncode == 1
    line = _one_line(typo.stderr)
    assert line.startswith('one load: Attribute "choise" of ALF object "trials" not found')
    assert 'attributes present: choice, ' in line
    scoped = run('load', '-C', indexed, SESSION, 'wheel', '--collection', 'alf/probe00')
    assert scoped.returncode == 1
    assert _one_line(scoped.stderr).endswith('objects present: clusters, spikes')


def test_load_of_a_deleted_file_hints_to_reindex(indexed, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(indexed, root)
    (root / 'mainenlab/Subjects/ZFM-002/2024-01-15/001/alf/_ibl_wheel.position.npy').unlink()
    result = run('load', '-C', root, 'ZFM-002/2024-01-15/001', 'wheel', '--attribute',
                 'position')
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert 'not found on disk' in line and f're-index it: one index {root}' in line
    # a part of the object missing: loaded, with a warning saying what is missing and why
    partial = run('load', '-C', root, 'ZFM-002/2024-01-15/001', 'wheel')
    assert partial.returncode == 0, partial.stderr
    assert partial.stdout.split()[3] == 'timestamps'
    line = _one_line(partial.stderr)
    assert 'loaded without alf/_ibl_wheel.position.npy' in line and 'one index' in line


def test_debug_is_accepted_anywhere(indexed):
    for args in (('--debug', 'load', '-C', indexed, SESSION, 'nothing'),
                 ('load', '--debug', '-C', indexed, SESSION, 'nothing'),
                 ('load', '-C', indexed, SESSION, 'nothing', '--debug')):
        result = run(*args)
        assert result.returncode == 1, result.stderr
        assert 'Traceback' in result.stderr and 'ALFObjectNotFound' in result.stderr
    plain = run('--debug', 'search', '-C', indexed, '--subject', 'KS001')
    assert plain.returncode == 0, plain.stderr
    # the traceback comes with the same message and exit code
    usage = run('--debug', 'search', '-C', indexed / 'missing')
    assert usage.returncode == 2 and 'Traceback' in usage.stderr
    assert usage.stderr.strip().splitlines()[-1].startswith('one search: error: not a folder')


@pytest.mark.parametrize('args, option, why', [
    (('--number', 'abc'), '--number', "not a session number: 'abc'"),
    (('--number', '-1'), '--number', "not a session number: '-1'"),
    (('--subject', '['), '--subject', "not a valid regular expression: '['"),
    (('--dataset', 'spikes(('), '--dataset', 'not a valid regular expression'),
    (('--date', '2024-13-01'), '--date', "not a date: '2024-13-01' (expected YYYY-MM-DD"),
    (('--date-range', '2024-01-01', 'soon'), '--date-range', "not a date: 'soon'"),
    (('--dataset-qc-lte', 'SUPERB'), '--dataset-qc-lte', "not a QC level: 'SUPERB'"),
])
def test_bad_option_values_name_the_option(indexed, args, option, why):
    result = run('search', '-C', indexed, *args)
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith(f'one search: error: argument {option}: {why}'), line


def test_bad_data_folder_names_the_option(indexed, tmp_path):
    missing = run('search', '-C', tmp_path / 'missing', '--subject', 'KS001')
    assert missing.returncode == 2
    assert _one_line(missing.stderr) == \
        f'one search: error: not a folder: {tmp_path / "missing"} (-C/--cache-dir)'
    here = run('search', cwd=tmp_path)
    assert here.returncode == 2
    line = _one_line(here.stderr)
    assert f'no cache tables in {tmp_path} (the current folder' in line
    assert f'run "one index {tmp_path}"' in line


def test_closed_output_stops_quietly(indexed):
    """The reader closes its end before the output comes (``| head`` that has had enough)."""
    proc = subprocess.Popen([sys.executable, '-m', 'one', 'list', '-C', str(indexed), SESSION],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert stderr == b''
    # and in a shell pipeline, as typed
    result = subprocess.run(
        f'"{sys.executable}" -m one list -C "{indexed}" {SESSION} | head -1; '
        'exit ${PIPESTATUS[0]}', shell=True, executable='/bin/bash', capture_output=True,
        text=True)
    assert result.returncode == 0 and result.stderr == ''
    assert len(result.stdout.splitlines()) == 1


def test_index_explains_the_layout_it_expects(indexed, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(indexed, root, ignore=shutil.ignore_patterns('*.pqt'))
    session = root / 'cortexlab/Subjects/KS001/2024-01-15/001'
    inside = run('index', session / 'alf')
    assert inside.returncode == 1
    line = _one_line(inside.stderr)
    assert line.startswith(f'one index: no session folder found in {session / "alf"}')
    assert '<lab>/Subjects/<subject>/<yyyy-mm-dd>/<nnn>' in line
    assert f'is inside the session {session}: index that session, or the data root {root}' \
        in line
    subject = run('index', root / 'cortexlab/Subjects/KS001')
    assert subject.returncode == 1
    assert 'looks like a subject folder (it holds 2024-01-1' in subject.stderr
    assert f'index the data root above it, e.g. {root}' in subject.stderr
    assert not list(root.rglob('*.pqt'))  # nothing written for a wrong folder
    # the right folder: indexed, and the files skipped are counted (not the experiment
    # descriptions, which one validate accepts too)
    assert list(root.rglob('_ibl_experiment.description'))
    (session / 'alf' / 'notes.txt').write_text('x')
    result = run('index', root)
    assert result.returncode == 0, result.stderr
    line = _one_line(result.stderr)
    assert line == ('skipped 1 files of the sessions that are not named as ALF datasets, e.g. '
                    'cortexlab/Subjects/KS001/2024-01-15/001/alf/notes.txt (to list them all: '
                    f'one validate {root})')
    # links leading outside the folder are not followed (loads would refuse them), and counted
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'extra.data.npy').write_bytes(b'x')
    (session / 'linked').symlink_to(outside, target_is_directory=True)
    (session / 'alf' / 'extra.times.npy').symlink_to(outside / 'extra.data.npy')
    result = run('index', root)
    assert result.returncode == 0, result.stderr
    assert ('skipped 2 symbolic links leading outside '
            f'{root}, e.g. cortexlab/Subjects/KS001/2024-01-15/001/') in result.stderr
    listed = run('list', '-C', root, SESSION)
    assert 'extra' not in listed.stdout and 'linked' not in listed.stdout


def test_validate_accepts_what_one_writes(indexed):
    """The data folder after indexing, hashing and loading holds only accepted files."""
    load = run('load', '-C', indexed, SESSION, 'trials', '--collection', 'alf')
    assert load.returncode == 0, load.stderr
    written = {p.name for p in indexed.iterdir() if p.is_file()}
    assert {'sessions.pqt', 'datasets.pqt'} <= written
    result = run('validate', indexed)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith(', 0 invalid')
