"""``one release`` and the ``--url`` option of search, list, load and info: the real program on
a synthetic folder served by http.server on 127.0.0.1."""
import json
import subprocess
import sys

import pytest
from static_server import StaticServer

from one.synthetic import make_dataset_folder


def run(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'one', *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope='module')
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli_release')
    make_dataset_folder(root, n_subjects=2, n_sessions=2, seed=2)
    for description in root.rglob('_ibl_experiment.description'):  # one per session folder
        (description.parent / 'not_alf.txt').write_text('not an ALF name')
    refused = run('release', root)
    assert refused.returncode == 1
    assert 'break the ALF layout' in refused.stderr and 'not_alf.txt' in refused.stderr
    assert not (root / 'cache_info.json').exists()
    result = run('release', root, '--tag', 'v1', '--zip', '--skip-invalid', '--origin', 'lab')
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('release v1 of 4 sessions, ')
    assert 'cache_info.json, sessions.pqt, datasets.pqt, cache.zip' in result.stdout
    assert 'warning: 4 file(s)' in result.stderr
    with StaticServer(root) as server:
        yield root, server


def test_release_description(published):
    root, _ = published
    info = json.loads((root / 'cache_info.json').read_text())
    assert (info['tag'], info['origin'], info['counts']['sessions']) == ('v1', 'lab', 4)
    assert info['archive']['file'] == 'cache.zip'


@pytest.mark.parametrize('command', [
    ['search', '--subject', 'KS001', '--json'],
    ['list', 'KS001/2024-01-15/001', '--collection', 'alf'],
    ['info', 'KS001/2024-01-15/001', '--json'],
    ['load', 'KS001/2024-01-15/001', 'wheel', '--json'],
])
def test_url_answers_as_folder(published, command, tmp_path):
    root, server = published
    local = run(*command, '-C', root)
    remote = run(*command, '--url', server.url, '-C', tmp_path / 'copy')
    assert local.returncode == remote.returncode == 0, remote.stderr
    if command[0] == 'info':  # the path differs: the session folder of each copy
        local_info, remote_info = json.loads(local.stdout), json.loads(remote.stdout)
        assert local_info.pop('path').endswith('KS001/2024-01-15/001')
        assert remote_info.pop('path').startswith(str(tmp_path / 'copy'))
        assert local_info == remote_info
    else:
        assert remote.stdout == local.stdout


def test_url_errors(published, tmp_path):
    root, server = published
    with StaticServer(tmp_path) as empty:
        result = run('search', '--url', empty.url, '-C', tmp_path / 'copy')
    assert result.returncode == 1
    assert result.stderr.startswith('one search: No release at ') and \
        len(result.stderr.strip().splitlines()) == 1
    bad = run('search', '--url', 'ftp://host/x', '-C', tmp_path / 'copy')
    assert bad.returncode == 2 and 'Not a release URL' in bad.stderr


def test_release_usage_errors(tmp_path):
    result = run('release', tmp_path / 'missing')
    assert result.returncode == 2 and 'Not a folder' in result.stderr
    make_dataset_folder(tmp_path, n_subjects=1, n_sessions=1)
    result = run('release', tmp_path, '--skip-invalid', '--files-url', 'ftp://x/y')
    assert result.returncode == 2 and 'files.url' in result.stderr
