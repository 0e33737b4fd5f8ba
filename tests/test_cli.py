"""The `one` command line, run as a real program on a generated data folder."""
import json
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
