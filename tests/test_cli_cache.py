"""`one cache ...` run as a program: on a database's data folder filled through the Alyx replay
server, and on a folder indexed from its own files."""
import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from alyx_server import PASSWORD, USERNAME
from cli_helpers import one_env, run, run_tty

from one._api.lock import DatasetNotLocked
from one._lib.access_log import RECORD_NAME, AccessLog
from one.api import ONE, OneAlyx
from one.synthetic import make_dataset_folder

EID = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'
EID_12 = 'c25ba874-0eb1-4921-b6e3-976877429206'  # 2024-03-12, not loaded by the fixture
SESSION = 'testlab/Subjects/ZFM-01935/2024-03-14/001'
SERVED = Path(__file__).parent / 'fixtures' / 'alyx' / 'files'


def served_file(rel: str) -> Path:
    """The file the replay server serves for a dataset path (its name holds the UUID)."""
    path = SERVED / rel
    return next(path.parent.glob(path.stem + '.*' + path.suffix))


def snapshot(root: Path) -> dict:
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            out[path.relative_to(root).as_posix()] = path.lstat().st_size
    return out


@pytest.fixture
def cache(alyx_server, tmp_path):
    """A database's data folder: set up and logged in with the command, then trials and the
    wheel position of one session loaded (with record_loaded) and the tables saved."""
    env = one_env(tmp_path / 'home')
    data = tmp_path / 'data'
    assert run('setup', '--base-url', alyx_server.url, '--username', USERNAME, '--cache-dir',
               data, '--data-server', alyx_server.url, env=env).returncode == 0
    assert run('login', '--password-stdin', env=env, stdin=PASSWORD).returncode == 0
    ONE.cache_clear()
    one = OneAlyx(base_url=alyx_server.url, silent=True)
    assert one.cache_dir == data
    one.record_loaded = True
    one.load_object(EID, 'trials')
    one.load_dataset(EID, '_ibl_wheel.position.npy')
    one.save_cache()
    lock = one.save_lock(tmp_path / 'analysis.lock.json')
    yield {'env': env, 'data': data, 'server': alyx_server, 'one': one, 'lock': lock}
    ONE.cache_clear()


def test_ls_and_du(cache):
    env, data = cache['env'], cache['data']
    on_disk = sorted(p.relative_to(data).as_posix() for p in (data / SESSION).rglob('*.npy'))
    assert set(on_disk) <= set(AccessLog(data).last_loaded())  # each load was recorded
    result = run('cache', 'ls', '--json', env=env)  # the default database's folder
    assert result.returncode == 0, result.stderr
    sessions = json.loads(result.stdout)
    assert len(sessions) == 1 and sessions[0]['eid'] == EID
    assert sessions[0]['session'] == SESSION
    assert sessions[0]['datasets'] == len(on_disk)
    assert sessions[0]['listed'] > len(on_disk)  # the tables list datasets never downloaded
    assert sessions[0]['bytes'] == sum((data / p).stat().st_size for p in on_disk)
    files = json.loads(run('cache', 'ls', '--datasets', '--json', env=env).stdout)
    assert sorted(f['path'] for f in files) == on_disk
    text = run('cache', 'ls', '-C', data, 'ZFM-01935/2024-03-14/1', env=env)
    assert text.returncode == 0 and SESSION in text.stdout
    missing = run('cache', 'ls', 'nobody/2020-01-01/001', env=env)
    assert missing.returncode == 1 and 'session not found' in missing.stderr

    usage = json.loads(run('cache', 'du', '--json', env=env).stdout)
    assert usage['folder'] == str(data)
    assert usage['datasets'] == {'files': len(on_disk), 'bytes': sessions[0]['bytes']}
    assert usage['REST cache']['files'] > 0
    assert usage['total']['bytes'] == sum(snapshot(data).values())
    text = run('cache', 'du', env=env).stdout
    assert 'partial downloads' in text and 'total' in text

    nothing = run('cache', 'ls', '-C', data / SESSION, env=env)
    assert nothing.returncode == 2 and 'no cache tables' in nothing.stderr


def test_verify_finds_and_repairs_a_tampered_and_a_missing_file(cache):
    env, data, server = cache['env'], cache['data'], cache['server']
    ok = run('cache', 'verify', env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout == '' and ' 0 missing, 0 bad' in ok.stderr
    tampered = data / SESSION / 'alf' / '_ibl_trials.choice.npy'
    deleted = data / SESSION / 'alf' / '_ibl_trials.goCue_times.npy'
    content = bytearray(tampered.read_bytes())
    content[-1] ^= 0xFF  # same size, another md5
    tampered.write_bytes(bytes(content))
    deleted.unlink()

    result = run('cache', 'verify', env=env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith(f'bad md5  {SESSION}/alf/_ibl_trials.choice.npy: expected ')
    assert lines[1] == f'missing  {SESSION}/alf/_ibl_trials.goCue_times.npy'
    assert '1 missing, 1 bad' in result.stderr
    # Only this session: the same; another name: not found
    assert run('cache', 'verify', EID, env=env).stdout == result.stdout
    assert run('cache', 'verify', 'nobody/2020-01-01/001', env=env).returncode == 1

    server.clear_log()
    repaired = run('cache', 'verify', '--repair', env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert 'repaired 2 of 2 datasets' in repaired.stderr
    for file in (tampered, deleted):
        assert file.read_bytes() == served_file(file.relative_to(data).as_posix()).read_bytes()
    fetched = [r.path for r in server.requests if r.path.endswith('.npy')]
    assert sorted(Path(p).name.split('.')[1] for p in fetched) == ['choice', 'goCue_times']
    assert run('cache', 'verify', env=env).returncode == 0


def test_verify_needs_a_database_to_repair(tmp_path):
    env = one_env(tmp_path / 'home')
    root = tmp_path / 'local'
    make_dataset_folder(root, n_subjects=1, n_sessions=1, seed=3)
    assert run('index', root, '--hash', env=env).returncode == 0
    victim = next(root.rglob('_ibl_wheel.position.npy'))
    victim.unlink()
    result = run('cache', 'verify', env={**env, 'ONE_CACHE_DIR': root})  # the folder from env
    assert result.returncode == 1  # a folder indexed from its files must hold them all
    assert result.stdout.strip().startswith('missing ') and '_ibl_wheel.position.npy' in \
        result.stdout
    repair = run('cache', 'verify', '-C', root, '--repair', env=env)
    assert repair.returncode == 2 and 'not the data folder of a configured database' in \
        repair.stderr


def test_lock_round_trip(cache, tmp_path):
    env, data, server, lock = cache['env'], cache['data'], cache['server'], cache['lock']
    text = lock.read_text()
    locked = json.loads(text)
    assert locked['database'] == server.url
    assert set(locked['sessions'].values()) == {SESSION}
    rel_paths = {d['rel_path'] for d in locked['datasets']}
    assert 'alf/_ibl_wheel.position.npy' in rel_paths and 'alf/_ibl_trials.choice.npy' in \
        rel_paths
    assert run('cache', 'verify', '--lock', lock, env=env).returncode == 0

    # Loads under the lock: what it lists works, anything else is refused before downloading
    ONE.cache_clear()
    one = ONE(base_url=server.url, silent=True, lock=lock)
    assert one.load_dataset(EID, '_ibl_wheel.position.npy').size > 0
    server.clear_log()
    with pytest.raises(DatasetNotLocked, match='alf/_ibl_wheel.timestamps.npy'):
        one.load_dataset(EID, '_ibl_wheel.timestamps.npy')
    assert not [r for r in server.requests if 'timestamps' in r.path]
    assert not (data / SESSION / 'alf' / '_ibl_wheel.timestamps.npy').exists()

    # verify --lock checks the locked files against the lock's md5 and sizes
    position = data / SESSION / 'alf' / '_ibl_wheel.position.npy'
    good = position.read_bytes()
    position.write_bytes(good[:-8])
    bad = run('cache', 'verify', '--lock', lock, env=env)
    assert bad.returncode == 1
    assert bad.stdout.startswith(f'bad size {SESSION}/alf/_ibl_wheel.position.npy')
    fixed = run('cache', 'verify', '--lock', lock, '--repair', env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert position.read_bytes() == good
    broken = tmp_path / 'broken.json'
    broken.write_text('{}')
    usage = run('cache', 'verify', '--lock', broken, env=env)
    assert usage.returncode == 2 and 'not a lock file' in usage.stderr


def _flock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _listed(result) -> set:
    return {line.split()[2] for line in result.stdout.splitlines()}


def test_prune_removes_only_what_it_listed(cache, tmp_path):
    env, data = cache['env'], cache['data']
    alf = data / SESSION / 'alf'
    free_part = alf / '.spikes.times.npy.part'
    free_part.write_bytes(b'half a file')
    busy_part = alf / '.clusters.depths.npy.part'
    busy_part.write_bytes(b'being written')
    extra = alf / 'notes.analysis.txt'  # in a session folder, in no table
    extra.write_text('mine')
    outside = tmp_path / 'outside.txt'
    outside.write_text('not in the cache')
    link = alf / 'link.to.txt'
    link.symlink_to(outside)
    new = alf / 'new.analysis.txt'  # in no table, but just written: a download may be running
    new.write_text('new')
    top = data / 'README.txt'  # outside session folders: never pruned
    top.write_text('keep')
    old = time.time() - 2 * 3600
    for path in (extra, outside):
        os.utime(path, (old, old))
    fd = _flock(busy_part)  # a download is writing this one
    try:
        before = snapshot(data)
        # By default only partial downloads (and only those no download holds)
        dry = run('cache', 'prune', '--dry-run', env=env)
        assert dry.returncode == 0, dry.stderr
        assert _listed(dry) == {f'{SESSION}/alf/{free_part.name}'}, dry.stdout
        assert 'keeping 3 files that no table lists' in dry.stderr and '--unlisted' in \
            dry.stderr
        # Files no table lists only on request, and not those changed in the last hour
        dry = run('cache', 'prune', '--unlisted', '--dry-run', env=env)
        assert dry.returncode == 0, dry.stderr
        assert snapshot(data) == before  # nothing removed
        expected = {f'{SESSION}/alf/{p.name}' for p in (free_part, extra, link)}
        assert _listed(dry) == expected, dry.stdout
        assert 'would remove 3 files' in dry.stderr
        assert 'keeping 1 file no table lists, changed in the last 1 h' in dry.stderr

        # Not on a terminal, without --yes: refused, nothing removed
        refused = run('cache', 'prune', '--unlisted', env=env)
        assert refused.returncode == 2 and 'add --yes' in refused.stderr
        assert snapshot(data) == before
        real = run('cache', 'prune', '--unlisted', '--yes', env=env)
        assert real.returncode == 0, real.stderr
        assert real.stdout == dry.stdout
        after = snapshot(data)
        assert set(before) - set(after) == expected  # exactly what was listed
        assert busy_part.exists() and top.exists() and new.exists()
        assert outside.read_text() == 'not in the cache'
    finally:
        os.close(fd)
    assert _listed(run('cache', 'prune', '--dry-run', env=env)) == \
        {f'{SESSION}/alf/{busy_part.name}'}  # free now


def test_prune_keeps_files_loaded_but_not_in_the_saved_tables(cache):
    """A remote load without save_cache: the file is in no table on disk, but the load record
    knows it, so no prune removes it (SAVE_ON_DELETE is off, as in ONE-api)."""
    env, data, one = cache['env'], cache['data'], cache['one']
    file = one.load_dataset(EID_12, '_ibl_trials.choice.npy', collection='alf',
                            revision='2024-06-01', download_only=True)
    rel = file.relative_to(data).as_posix()
    assert rel.startswith('testlab/Subjects/ZFM-01935/2024-03-12/001/')
    assert rel in AccessLog(data).last_loaded()
    old = time.time() - 2 * 3600
    os.utime(file, (old, old))  # older than the grace period: the record alone protects it
    for flags in ([], ['--unlisted']):
        result = run('cache', 'prune', *flags, '--yes', env=env)
        assert result.returncode == 0, result.stderr
        assert rel not in result.stdout and file.exists()
    assert 'keeping 1 file loaded from the database but not in the saved tables' in \
        result.stderr
    usage = json.loads(run('cache', 'du', '--json', env=env).stdout)
    assert usage['loaded, not in the tables'] == {'files': 1, 'bytes': file.stat().st_size}
    # ... but it is a dataset for the least-recently-used rules
    dry = run('cache', 'prune', '--max-size', '0', '--dry-run', env=env)
    assert rel in _listed(dry) and f'{SESSION}/alf/_ibl_wheel.position.npy' in _listed(dry)


def test_prune_forgets_files_deleted_by_hand(cache):
    env, data = cache['env'], cache['data']
    deleted = data / SESSION / 'alf' / '_ibl_trials.goCue_times.npy'
    deleted.unlink()
    rel = deleted.relative_to(data).as_posix()
    verify = run('cache', 'verify', env=env)
    assert verify.returncode == 1 and f'missing  {rel}' in verify.stdout
    dry = run('cache', 'prune', '--dry-run', env=env)
    assert dry.returncode == 0 and rel in dry.stderr and 'forget 1' in dry.stderr
    assert rel in AccessLog(data).last_loaded()
    real = run('cache', 'prune', '--yes', env=env)
    assert real.returncode == 0 and 'forgot 1 file' in real.stderr, real.stderr
    assert rel not in AccessLog(data).last_loaded()
    assert run('cache', 'verify', env=env).returncode == 0  # no longer "missing"


def test_prune_least_recently_used(cache):
    env, data = cache['env'], cache['data']
    files = sorted((data / SESSION).rglob('*.npy'))
    old = time.time() - 40 * 86400
    for i, f in enumerate(files):
        os.utime(f, (old + i, old + i))  # oldest first, all 40 days old
    (data / RECORD_NAME).unlink()
    recent = files[0]
    AccessLog(data).touch([recent], when=time.time() - 3600)  # loaded an hour ago
    rel = [f.relative_to(data).as_posix() for f in files]

    dry = run('cache', 'prune', '--older-than', '30d', '--dry-run', env=env)
    assert dry.returncode == 0, dry.stderr
    listed = [line.split()[2] for line in dry.stdout.splitlines()]
    assert sorted(listed) == sorted(rel[1:])  # all but the recently loaded one

    sizes = [f.stat().st_size for f in files]
    limit = sum(sizes) - sizes[1] - sizes[2]  # the two least recently used must go
    result = run('cache', 'prune', '--max-size', str(limit), '--yes', env=env)
    assert result.returncode == 0, result.stderr
    removed = [line.split()[2] for line in result.stdout.splitlines()]
    assert removed == sorted(rel[1:3])
    assert not files[1].exists() and not files[2].exists()
    assert all(f.exists() for f in files[3:]) and recent.exists()
    # Removed files are forgotten by the load record: verify does not call them missing
    assert run('cache', 'verify', env=env).returncode == 0
    bad = run('cache', 'prune', '--older-than', 'soon', env=env)
    assert bad.returncode == 2 and 'not an age' in bad.stderr
    bad = run('cache', 'prune', '--max-size', '12X', env=env)
    assert bad.returncode == 2 and 'not a size' in bad.stderr


def test_prune_asks_on_a_terminal(cache):
    env, data = cache['env'], cache['data']
    part = data / SESSION / 'alf' / '.x.npy.part'
    part.write_bytes(b'x')
    code, shown = run_tty('cache', 'prune', env=env, answers=[('Remove these 1 file', 'n')])
    assert code == 1 and 'nothing removed' in shown and part.exists()
    code, shown = run_tty('cache', 'prune', env=env, answers=[('Remove these 1 file', 'y')])
    assert code == 0 and not part.exists(), shown


def test_prune_in_a_folder_indexed_from_its_files(tmp_path):
    env = one_env(tmp_path / 'home')
    root = tmp_path / 'local'
    make_dataset_folder(root, n_subjects=1, n_sessions=1, seed=3)
    assert run('index', root, env=env).returncode == 0
    session = next(root.rglob('alf')).parent
    new = session / 'alf' / 'new.data.npy'
    np.save(new, np.arange(3))
    part = session / 'alf' / '.old.data.npy.part'
    part.write_bytes(b'x')
    result = run('cache', 'prune', '-C', root, '--yes', env=env)
    assert result.returncode == 0
    assert not part.exists() and new.exists()  # may be new data: kept
    assert 'keeping' in result.stderr and 'one index' in result.stderr
    refused = run('cache', 'prune', '-C', root, '--older-than', '1d', env=env)
    assert refused.returncode == 2 and 'may be the only copy' in refused.stderr
    refused = run('cache', 'prune', '-C', root, '--unlisted', '--dry-run', env=env)
    assert refused.returncode == 2 and 'may be the only copy' in refused.stderr


def test_clear_rest(cache):
    env, data = cache['env'], cache['data']
    count = len(list((data / '.rest').iterdir()))
    assert count > 0
    dry = run('cache', 'clear-rest', '--dry-run', env=env)
    assert dry.returncode == 0 and f'{count} cached REST responses' in dry.stderr
    assert len(list((data / '.rest').iterdir())) == count
    refused = run('cache', 'clear-rest', env=env)  # not on a terminal, no --yes
    assert refused.returncode == 2 and 'add --yes' in refused.stderr
    assert len(list((data / '.rest').iterdir())) == count
    real = run('cache', 'clear-rest', '--yes', env=env)
    assert real.returncode == 0 and f'removed {count} files' in real.stderr
    assert not list((data / '.rest').iterdir())
    assert (data / 'datasets.pqt').exists()


def test_clear_rest_refuses_a_rest_folder_outside_the_folder(tmp_path):
    root = tmp_path / 'data'
    root.mkdir()
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    (elsewhere / 'response').write_bytes(b'[]')
    (root / '.rest').symlink_to(elsewhere)  # a link out of the data folder
    refused = run('cache', 'clear-rest', '-C', root, '--yes', env=one_env(tmp_path / 'home'))
    assert refused.returncode == 1 and 'not inside' in refused.stderr
    assert (elsewhere / 'response').exists()


def test_remove_refuses_paths_outside_the_folder(tmp_path):
    from one.cli._cache_admin import DiskFile, remove

    root = tmp_path / 'data'
    (root / 'a').mkdir(parents=True)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    (elsewhere / 'x.npy').write_bytes(b'1')
    (root / 'a' / 'linked').symlink_to(elsewhere)  # a folder link out of the cache
    with pytest.raises(ValueError, match='not inside'):
        remove(root, [DiskFile('a/linked/x.npy', 1, 0, 0)])
    with pytest.raises(ValueError, match='not inside'):
        remove(root, [DiskFile('../elsewhere/x.npy', 1, 0, 0)])
    assert (elsewhere / 'x.npy').exists()


def test_verify_lock_checks_files_the_tables_no_longer_list(cache):
    from one.alf.cache import load_tables, save_tables

    env, data, lock = cache['env'], cache['data'], cache['lock']
    tables = load_tables(data)
    datasets = tables['datasets']
    keep = ~datasets['rel_path'].astype(str).eq('alf/_ibl_wheel.position.npy').to_numpy()
    tables['datasets'] = datasets[keep]  # the tables were refreshed: the row is gone
    save_tables(tables, data, clobber=True)
    position = data / SESSION / 'alf' / '_ibl_wheel.position.npy'
    assert position.exists()

    ok = run('cache', 'verify', '--lock', lock, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr  # present and as locked: not "missing"
    good = position.read_bytes()
    position.write_bytes(good[:-8])
    bad = run('cache', 'verify', '--lock', lock, '--json', env=env)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert [(p['path'], p['problem']) for p in report['problems']] == \
        [(f'{SESSION}/alf/_ibl_wheel.position.npy', 'size')]
    assert report['problems'][0]['found'] == len(good) - 8
    assert report['checked'] == len(json.loads(lock.read_text())['datasets'])

    # No tables at all: the lock names every file
    for name in ('datasets.pqt', 'sessions.pqt'):
        (data / name).rename(data / f'{name}.aside')
    position.write_bytes(good)
    assert run('cache', 'verify', '--lock', lock, env=env).returncode == 0
    assert run('cache', 'verify', '--lock', lock, '2024-03-14_1_ZFM-01935',
               env=env).returncode == 0
    other = run('cache', 'verify', '--lock', lock, 'ZFM-01935/2024-03-12/001', env=env)
    assert other.returncode == 1 and 'session not in the lock file' in other.stderr
    position.unlink()
    missing = run('cache', 'verify', '--lock', lock, 'ZFM-01935/2024-03-14/1', env=env)
    assert missing.returncode == 1
    assert missing.stdout == f'missing  {SESSION}/alf/_ibl_wheel.position.npy\n'
    fixed = run('cache', 'verify', '--lock', lock, '--repair', env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert position.read_bytes() == good


def test_sessions_are_named_as_for_the_other_commands(cache):
    env, data = cache['env'], cache['data']
    by_eid = run('cache', 'ls', EID, '--json', env=env)
    assert by_eid.returncode == 0, by_eid.stderr
    for name in ('2024-03-14_1_ZFM-01935', str(data / SESSION), 'ZFM-01935/2024-03-14/001',
                 f'{SESSION}/alf'):
        result = run('cache', 'ls', name, '--json', env=env)
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout == by_eid.stdout
    assert run('cache', 'verify', '2024-03-14_1_ZFM-01935', env=env).returncode == 0


def test_verify_json(cache):
    env, data = cache['env'], cache['data']
    ok = run('cache', 'verify', '--json', env=env)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report['problems'] == [] and report['checked'] > 0 and report['folder'] == str(data)
    (data / SESSION / 'alf' / '_ibl_trials.goCue_times.npy').unlink()
    bad = run('cache', 'verify', '--json', '--repair', env=env)
    assert bad.returncode == 0, bad.stderr
    report = json.loads(bad.stdout)  # only JSON on stdout
    assert [p['problem'] for p in report['problems']] == ['missing']
    assert report['repaired'] == 1 and report['still'] == []
