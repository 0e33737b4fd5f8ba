"""Snapshots of a query (one/_api/snapshot.py, `OneAlyx.snapshot`, ``one snapshot``) from the Alyx
replay server serving a generated database (tests/alyx_synthetic.py), then used without it."""
import json
import warnings
from uuid import UUID

import pandas as pd
import pytest
from alyx_server import PASSWORD, USERNAME, AlyxTestServer
from alyx_synthetic import SyntheticAlyx
from cli_helpers import one_env, run

from one._release.info import parse_info
from one.alf.cache import load_tables
from one.alf.exceptions import ALFWarning
from one.api import ONE, One, OneAlyx


@pytest.fixture(scope='module')
def db(tmp_path_factory):
    return SyntheticAlyx.generate(tmp_path_factory.mktemp('synthetic'), n_sessions=12)


@pytest.fixture
def server(db, monkeypatch):
    with AlyxTestServer(database=db) as server:
        monkeypatch.setenv('ONE_HTTP_DATA_SERVER', server.url)  # files: the replay server
        yield server


def connect(server, folder, **kwargs) -> OneAlyx:
    ONE.cache_clear()
    one = OneAlyx(base_url=server.url, username=USERNAME, password=PASSWORD, cache_dir=folder,
                  silent=True, **kwargs)
    one.alyx.rest_schemes  # noqa: B018 - read once a week, not counted below
    return one


def n_datasets(db, eids) -> int:
    """Datasets of these sessions with an existing file (those a cache table holds)."""
    return sum(1 for d in db.datasets if d['session'][-36:] in eids and d['file_records'])


def test_snapshot_of_a_search_then_local_mode(server, db, tmp_path):
    one = connect(server, tmp_path / 'data')
    server.clear_log()
    info = one.snapshot(tmp_path / 'snap', subject='SYN-00')
    snap = tmp_path / 'snap'
    found = [r['id'] for r in db.sessions.values() if 'SYN-00' in r['subject']]
    assert 0 < len(found) < len(db.sessions)
    # a few batched queries, whatever the number of sessions
    assert sorted(r.path for r in server.requests) == ['/datasets', '/insertions', '/sessions']
    expected = {'sessions': len(found), 'datasets': n_datasets(db, found),
                'insertions': sum(1 for p in db.insertions if p['session'] in found)}
    assert info['counts'] == expected
    written = json.loads((snap / 'cache_info.json').read_text())
    assert written == json.loads(json.dumps(info, default=str))
    assert written['database'] == server.url and written['origin'] == server.url
    assert written['query'] == {'search': {'subject': 'SYN-00'}, 'eids': None,
                                'sessions': len(found)}
    assert len(written['history']) == 1 and written['date_created']
    release_view = parse_info(written)  # the schema of Alyx's and releases' cache_info.json
    assert {t: v.nrecs for t, v in release_view.tables.items()} == expected
    tables = load_tables(snap)
    assert tables['_meta']['raw']['datasets']['origin'] == {server.url}
    # no database needed: a local One answers as the database does
    remote = {eid: one.list_datasets(eid) for eid in found}
    server.clear_log()
    local = ONE(mode='local', tables_dir=snap, cache_dir=tmp_path / 'local')
    assert isinstance(local, One) and sorted(map(str, local.search())) == sorted(found)
    assert {eid: local.list_datasets(eid) for eid in found} == remote
    assert server.requests == []


@pytest.mark.filterwarnings('ignore:Multiple revisions')
def test_instances_start_from_a_snapshot_then_local_loads(server, db, tmp_path):
    one = connect(server, tmp_path / 'data')
    eids = db.eids[:4]
    one.snapshot(tmp_path / 'snap', eids=eids)
    server.clear_log()
    # 'auto': the tables of the snapshot answer; the files are downloaded
    auto = connect(server, tmp_path / 'data', mode='auto', tables_dir=tmp_path / 'snap')
    server.clear_log()
    trials = {e: auto.load_object(e, 'trials') for e in eids}
    rest = [r.path for r in server.requests if '/Subjects/' not in r.path]
    assert set(rest) <= {'/data-repository/aws_cortexlab'}  # no session or dataset query
    assert sum('/Subjects/' in r.path for r in server.requests) > 10
    # 'remote': the snapshot's tables are there before any query; sessions read when used
    remote = connect(server, tmp_path / 'data', mode='remote', tables_dir=tmp_path / 'snap')
    server.clear_log()
    assert sorted(map(str, remote.search(query_type='local'))) == sorted(eids)
    assert server.requests == []
    assert remote.list_datasets(eids[0]) == auto.list_datasets(eids[0])
    server.stop()  # no database, no file server
    local = One(mode='local', tables_dir=tmp_path / 'snap', cache_dir=tmp_path / 'data')
    for eid in eids:
        loaded = local.load_object(eid, 'trials')
        assert sorted(loaded) == sorted(trials[eid])
        pd.testing.assert_series_equal(pd.Series(loaded['choice']),
                                       pd.Series(trials[eid]['choice']))


def test_snapshot_by_eids(server, db, tmp_path):
    one = connect(server, tmp_path / 'data')
    unknown = '00000000-0000-4000-8000-000000000000'
    with pytest.warns(ALFWarning, match=f'1 session.*not found.*{unknown}'):
        info = one.snapshot(tmp_path / 'snap', eids=[db.eids[2], UUID(db.eids[5]), unknown])
    assert info['counts']['sessions'] == 2 and info['query']['eids'] == 3
    with pytest.raises(ValueError, match="Not a session UUID: 'KS001'"):
        one.snapshot(tmp_path / 'snap', eids=['KS001'])
    with pytest.raises(ValueError, match='not both'):
        one.snapshot(tmp_path / 'snap', eids=db.eids[:1], subject='SYN')
    with pytest.warns(ALFWarning, match='No session found'):
        empty = one.snapshot(tmp_path / 'none', subject='nobody')
    assert empty['counts']['sessions'] == 0 and not (tmp_path / 'none').exists()
    one.mode = 'local'
    with pytest.raises(NotImplementedError, match='local mode'):
        one.snapshot(tmp_path / 'snap', eids=db.eids[:1])


def test_snapshot_update(tmp_path, monkeypatch):
    db = SyntheticAlyx.generate(tmp_path / 'src', n_sessions=5)
    with AlyxTestServer(database=db) as server:
        monkeypatch.setenv('ONE_HTTP_DATA_SERVER', server.url)
        one = connect(server, tmp_path / 'data')
        snap = tmp_path / 'snap'
        first, later = db.eids[:3], db.eids[3:]
        one.snapshot(snap, eids=first)
        before = load_tables(snap)
        # the database changes: a QC is set, a dataset is deleted, a session is added
        changed = next(d for d in db.datasets if d['session'][-36:] == first[0]
                       and d['file_records'] and d['qc'] != 'FAIL')
        changed['qc'] = 'FAIL'
        deleted = next(d for d in db.datasets if d['session'][-36:] == first[1]
                       and d['file_records'])
        db.datasets.remove(deleted)
        # and a session's protocol, an insertion renamed, another one removed
        db.sessions[first[0]]['task_protocol'] = 'changed_protocol'
        renamed, removed = [p for p in db.insertions if p['session'] == first[1]][:2]
        renamed['name'] = 'probe09'
        db.insertions.remove(removed)
        assert len(before['insertions']) > 2
        info = one.snapshot(snap, eids=first[:2] + later)
        after = load_tables(snap)
    assert sorted(map(str, after['sessions'].index)) == sorted(db.eids)  # first[2] kept
    assert info['counts']['sessions'] == 5 and info['query']['sessions'] == 4
    datasets = after['datasets']
    changed_id = (UUID(first[0]), UUID(changed['url'][-36:]))
    assert datasets.loc[changed_id, 'qc'] == 'FAIL'
    assert (UUID(first[1]), UUID(deleted['url'][-36:])) not in datasets.index
    kept = before['datasets'].xs(UUID(first[2]), level='eid', drop_level=False)
    pd.testing.assert_frame_equal(datasets.xs(UUID(first[2]), level='eid', drop_level=False),
                                  kept)
    assert len(datasets) == n_datasets(db, db.eids)
    assert datasets.index.is_unique
    sessions, insertions = after['sessions'], after['insertions']
    assert sessions.loc[UUID(first[0]), 'task_protocol'] == 'changed_protocol'
    assert sessions.loc[UUID(first[2]), 'task_protocol'] == \
        before['sessions'].loc[UUID(first[2]), 'task_protocol']
    assert insertions.loc[(UUID(first[1]), UUID(renamed['id'])), 'name'] == 'probe09'
    assert (UUID(first[1]), UUID(removed['id'])) not in insertions.index
    expected = {(p['session'], p['id']) for p in db.insertions}
    assert {(str(e), str(i)) for e, i in insertions.index} == expected
    written = json.loads((snap / 'cache_info.json').read_text())
    assert [h['sessions'] for h in written['history']] == [3, 4]
    assert written['counts'] == {'sessions': 5, 'datasets': len(datasets),
                                 'insertions': len(after['insertions'])}


def test_cli_snapshot(server, db, tmp_path):
    env = one_env(tmp_path / 'home', ONE_HTTP_DATA_SERVER=server.url)
    connect(server, tmp_path / 'data')  # set up and logged in (token saved)
    out = tmp_path / 'snap'
    result = run('snapshot', out, '--base-url', server.url, '--subject', 'SYN_', env=env)
    assert result.returncode == 0, result.stderr
    found = sum('SYN_' in r['subject'] for r in db.sessions.values())
    assert result.stdout.startswith(f'snapshot of {found} sessions from {server.url}')
    assert 'tables_dir' in result.stderr
    eids_file = tmp_path / 'eids.txt'
    eids_file.write_text(f'# two sessions\n{db.eids[0]}\n\n{db.eids[1]}  # the second\n')
    result = run('snapshot', out, '--base-url', server.url, '--eids', eids_file, '--json',
                 env=env)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info['query']['eids'] == 2 and len(info['history']) == 2
    bad = tmp_path / 'bad.txt'
    bad.write_text(f'{db.eids[0]}\nKS001/2024-01-01/001\n')
    result = run('snapshot', out, '--base-url', server.url, '--eids', bad, env=env)
    assert result.returncode == 2 and 'not a session UUID' in result.stderr \
        and 'KS001' in result.stderr
    result = run('snapshot', out, '--base-url', server.url, '--eids', eids_file,
                 '--subject', 'x', env=env)
    assert result.returncode == 2 and 'no search option' in result.stderr
    result = run('snapshot', tmp_path / 'none', '--base-url', server.url, '--subject',
                 'nobody', env=env)
    assert result.returncode == 1 and 'no session matches' in result.stderr
    # the database's search terms are plain text (not regular expressions, as locally)
    result = run('snapshot', tmp_path / 'none', '--base-url', server.url, '--subject', 'SYN[',
                 env=env)
    assert result.returncode == 1 and 'no session matches' in result.stderr
    result = run('snapshot', out, '--base-url', 'http://127.0.0.1:9', env=env)
    assert result.returncode == 2 and 'one setup' in result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        one = connect(server, tmp_path / 'data')
    one.alyx.logout()
    result = run('snapshot', out, '--base-url', server.url, '--subject', 'SYN', env=env)
    assert result.returncode == 2 and 'one login' in result.stderr


def _age(folder, hours):
    """Date the tables of a folder `hours` ago (as a snapshot made then)."""
    from datetime import datetime, timedelta

    from one.alf.cache import _load_tables, _timestamp, _write_tables
    cache = _load_tables(folder)
    names = [n for n in ('sessions', 'datasets', 'insertions') if n in cache]
    for name in names:
        cache['_meta']['raw'][name]['date_created'] = _timestamp(
            datetime.now() - timedelta(hours=hours))
    _write_tables(cache, folder, names, clobber=True)


def test_auto_mode_keeps_an_expired_snapshot(server, db, tmp_path):
    """A snapshot older than cache_expiry is not replaced by the database's cache tables in
    'auto' (or 'refresh') mode: it is the sessions of a query; a warning says how to update."""
    one = connect(server, tmp_path / 'data')
    snap = tmp_path / 'snap'
    one.snapshot(snap, eids=db.eids[:3])
    _age(snap, hours=25)
    files = {p.name: p.read_bytes() for p in snap.iterdir() if p.is_file()}
    server.clear_log()
    with pytest.warns(ALFWarning, match=r'snapshot of a query .* run the snapshot again'):
        auto = connect(server, tmp_path / 'data', mode='auto', tables_dir=snap)
    assert auto.mode == 'auto' and auto._tables['_meta']['expired']
    assert sorted(map(str, auto.search())) == sorted(db.eids[:3])
    auto.load_cache()  # reloading, as 'auto' does after a day, does not replace them either
    assert not any('cache' in r.path for r in server.requests)
    assert {p.name: p.read_bytes() for p in snap.iterdir() if p.is_file()} == files
    # a folder that is not a snapshot is still refreshed from the database when expired
    assert connect(server, tmp_path / 'other', mode='auto')._tables_dir == tmp_path / 'other'
    assert any(r.path.startswith('/cache') for r in server.requests)


def test_a_run_killed_while_writing_leaves_the_folder_as_it_was(server, db, tmp_path,
                                                                 monkeypatch):
    """A crash between two table writes cannot be produced for real inside the test process:
    the second write raises instead (an injected fault)."""
    import one._tables.parquet as parquet
    one = connect(server, tmp_path / 'data')
    snap = tmp_path / 'snap'
    one.snapshot(snap, eids=db.eids[:2])
    before = {p.name: p.read_bytes() for p in snap.iterdir() if p.is_file()}
    real, calls = parquet.save, []

    def crash_on_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError('No space left on device (injected)')
        return real(*args, **kwargs)

    monkeypatch.setattr(parquet, 'save', crash_on_second)
    with pytest.raises(OSError, match='injected'):
        one.snapshot(snap, eids=db.eids[2:5])
    monkeypatch.setattr(parquet, 'save', real)
    assert {p.name: p.read_bytes() for p in snap.iterdir() if p.is_file()} == before
    assert [p.name for p in snap.iterdir() if p.is_dir()] == []
    (snap / '.snapshot-killed').mkdir()  # as left by a run killed (SIGKILL) while writing
    info = one.snapshot(snap, eids=db.eids[2:5])
    assert info['counts']['sessions'] == 5
    assert [p.name for p in snap.iterdir() if p.is_dir()] == []
    assert sorted(map(str, load_tables(snap)['sessions'].index)) == sorted(db.eids[:5])


def test_concurrent_runs_into_one_folder(server, db, tmp_path):
    import threading
    one = connect(server, tmp_path / 'data')
    snap = tmp_path / 'snap'
    sets = [db.eids[:5], db.eids[3:9]]  # overlapping
    errors = []

    def run(eids):
        try:
            one.snapshot(snap, eids=eids)
        except Exception as ex:  # noqa: BLE001 - reported below
            errors.append(ex)

    threads = [threading.Thread(target=run, args=(eids,)) for eids in sets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    tables = load_tables(snap)
    union = sorted(set(sets[0]) | set(sets[1]))
    assert sorted(map(str, tables['sessions'].index)) == union
    assert len(tables['datasets']) == n_datasets(db, union) and tables['datasets'].index.is_unique
    written = json.loads((snap / 'cache_info.json').read_text())
    assert sorted(h['eids'] for h in written['history']) == [5, 6]
    assert written['counts']['sessions'] == len(union)


def test_a_run_waits_for_the_folder_before_asking_the_database(server, db, tmp_path):
    """While another run holds the folder, a run asks nothing: what it writes last is what
    it fetched last (a change made on the database meanwhile is in the snapshot)."""
    import threading
    import time

    from one._lib.locks import file_lock
    from one.alf.cache import LOCK_NAME
    one = connect(server, tmp_path / 'data')
    snap = tmp_path / 'snap'
    eid = db.eids[0]
    one.snapshot(snap, eids=[eid])
    dataset = next(d for d in db.datasets if d['session'][-36:] == eid and d['file_records']
                   and d['qc'] != 'FAIL')
    server.clear_log()
    with file_lock(snap / LOCK_NAME):  # as another run writing
        runner = threading.Thread(target=one.snapshot, args=(snap,), kwargs={'eids': [eid]})
        runner.start()
        deadline = time.monotonic() + 1.0
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.requests == []  # waiting for the folder, not fetching
        dataset['qc'] = 'FAIL'  # the database changes meanwhile
    runner.join(60)
    assert not runner.is_alive()
    datasets = load_tables(snap)['datasets']
    assert datasets.loc[(UUID(eid), UUID(dataset['url'][-36:])), 'qc'] == 'FAIL'
