"""How many requests each public call of OneAlyx makes (counts, never times), against the Alyx
replay server serving a generated database (tests/alyx_synthetic.py)."""
import os
import pickle
import time
from datetime import datetime, timedelta

import numpy as np
import pytest
from alyx_server import PASSWORD, USERNAME, AlyxTestServer
from alyx_synthetic import SyntheticAlyx

from one import webclient
from one._rest.cache import RestCache, cache_key
from one.api import OneAlyx


@pytest.fixture(scope='module')
def db(tmp_path_factory):
    return SyntheticAlyx.generate(tmp_path_factory.mktemp('synthetic'), n_sessions=12)


@pytest.fixture
def server(db):
    with AlyxTestServer(database=db) as server:
        yield server


def make_one(server, folder) -> OneAlyx:
    instance = OneAlyx(base_url=server.url, username=USERNAME, password=PASSWORD,
                       cache_dir=folder, silent=True)
    instance.alyx.rest_schemes  # noqa: B018 - the schema is read once per week
    return instance


@pytest.fixture
def one(server, tmp_path):
    instance = make_one(server, tmp_path / 'data')
    server.clear_log()
    return instance


S3_PROBE = 'GET /data-repository/aws_cortexlab'


def rest(server, s3_probe: bool = False) -> list[str]:
    """The REST requests received (not the data files), as 'METHOD /path?query'; without the
    question whether the database has an S3 repository (once per instance, see
    test_no_probe_per_download) unless `s3_probe`."""
    found = [f'{r.method} {r.path}' + (f'?{query}' if (query := _without_limit(r.query))
                                       else '')
             for r in server.requests if '/Subjects/' not in r.path]
    return found if s3_probe else [x for x in found if x != S3_PROBE]


def _without_limit(query: str) -> str:
    """A query string without its ``limit`` (the page size the client asks for)."""
    return '&'.join(p for p in query.split('&') if p and not p.startswith('limit='))


def data(server) -> int:
    return sum('/Subjects/' in r.path for r in server.requests)


def ephys_eid(db) -> str:
    return next(e for e, r in db.sessions.items() if len(r['probe_insertion']) == 2)


def test_session_read_once_and_reused(one, server, db):
    eid = ephys_eid(db)
    assert len(one.list_datasets(eid)) > 20
    assert rest(server) == [f'GET /sessions/{eid}']
    server.clear_log()
    trials = one.load_object(eid, 'trials')
    assert set(trials) >= {'intervals', 'choice'}
    one.load_object(eid, 'wheel')
    pids, labels = one.eid2pid(eid)
    assert labels == ['probe00', 'probe01']
    for label in labels:
        one.load_object(eid, 'spikes', collection=f'alf/{label}')
    details = one.get_details(eid)
    full = one.get_details(eid, full=True)
    assert full['id'] == eid and details['subject'] == full['subject']
    assert one.eid2path(eid) == details['local_path']
    one.load_dataset(eid, '_ibl_wheel.position.npy')
    one.load_collection(eid, 'alf/probe00', object='clusters')
    one.list_datasets(eid, collection='alf')
    assert rest(server) == []  # all from the session read above
    assert data(server) > 20
    # Records handed out are copies: changing them changes nothing here
    full['subject'] = 'changed'
    _, _, records = one.eid2pid(eid, details=True)
    records[0]['name'] = 'changed'
    assert one.get_details(eid, full=True)['subject'] == db.sessions[eid]['subject']
    assert one.eid2pid(eid)[1] == labels


def test_eid2pid_records(one, server, db):
    eid = ephys_eid(db)
    pids, labels, records = one.eid2pid(eid, details=True)
    assert rest(server) == [f'GET /insertions?session={eid}']  # nothing read yet: as ONE
    one.list_datasets(eid)
    server.clear_log()
    assert one.eid2pid(eid, details=True) == (pids, labels, records)
    assert rest(server) == []


def test_reuse_ends_when_the_rest_cache_entry_expires(server, db, tmp_path):
    """An instance reading a session from the REST cache another one filled earlier reuses it
    only until that cache entry expires, not for a whole expiry after its own read."""
    eid = ephys_eid(db)
    first, second = (make_one(server, tmp_path / 'data') for _ in range(2))
    for one in (first, second):
        one.alyx.default_expiry = timedelta(seconds=4)
    first.list_datasets(eid)
    entry = RestCache(second.alyx.rest_cache_dir).read(cache_key(f'/sessions/{eid}'))
    time.sleep(1.5)
    server.clear_log()
    second.list_datasets(eid)
    assert rest(server) == []  # from the REST cache, with 2.5 s of its 4 left
    time.sleep(max((entry.expiry - datetime.now()).total_seconds(), 0) + 0.05)
    second.load_object(eid, 'wheel')  # the entry expired: the session is read again
    assert rest(server) == [f'GET /sessions/{eid}']
    server.clear_log()
    second.load_object(eid, 'wheel')
    assert rest(server) == []  # within the new entry's expiry


def test_clearing_the_rest_cache_forgets_the_sessions_read(one, server, db):
    eid = ephys_eid(db)
    one.list_datasets(eid)
    one.alyx.clear_rest_cache()
    one.load_object(eid, 'wheel')
    assert rest(server) == [f'GET /sessions/{eid}'] * 2
    server.clear_log()
    one.alyx.logout()
    one.alyx.authenticate(USERNAME, PASSWORD)
    one.list_datasets(eid)
    assert rest(server) == ['POST /auth-token', f'GET /sessions/{eid}']  # logout cleared it


def test_no_reuse_without_the_rest_cache(one, server, db):
    eid = ephys_eid(db)
    with webclient.no_cache(one.alyx):
        one.list_datasets(eid)
        one.load_object(eid, 'wheel')
    assert rest(server) == [f'GET /sessions/{eid}'] * 2


def test_new_tables_forget_what_was_read(one, server, db):
    eid = ephys_eid(db)
    n = len(one.list_datasets(eid))
    one.load_cache()  # tables replaced: the session's datasets are gone from them
    one.alyx.clear_rest_cache()
    assert len(one.list_datasets(eid)) == n
    assert rest(server) == [f'GET /sessions/{eid}'] * 2


def test_search_details_reused(one, server, db):
    eid = ephys_eid(db)
    subject = db.sessions[eid]['subject']
    eids = one.search(subject=subject)
    assert rest(server) == [f'GET /sessions?subject={subject}']
    server.clear_log()
    details = one.get_details(eids[0])
    assert details['subject'] == subject and one.eid2path(eids[0]) == details['local_path']
    assert rest(server) == []


def test_no_probe_per_download(one, server, db):
    for eid in db.eids[:3]:
        one.load_object(eid, 'wheel')
    # one session read per session; the S3 repository is asked about once per instance
    assert sorted(rest(server, s3_probe=True)) == sorted(
        [f'GET /sessions/{e}' for e in db.eids[:3]] + [S3_PROBE])


def test_loaded_data_match_the_files(one, db):
    eid = ephys_eid(db)
    wheel = one.load_object(eid, 'wheel')
    url = next(d['data_url'] for d in db.sessions[eid]['data_dataset_session_related']
               if d['name'] == '_ibl_wheel.position.npy')
    expected = np.load(db.file(url.split('127.0.0.1:8001', 1)[1]))
    np.testing.assert_array_equal(wheel['position'], expected)


def test_details_of_many_sessions(one, server, db):
    eids = db.eids[:6]
    details = one.get_details(eids)
    assert [d['local_path'] for d in details] == [one.eid2path(e) for e in eids]
    assert [r.split('?')[0] for r in rest(server)] == ['GET /sessions']  # one batched query
    server.clear_log()
    full = one.get_details(eids[:2], full=True)
    assert [f['id'] for f in full] == eids[:2]
    assert rest(server) == [f'GET /sessions/{e}' for e in eids[:2]]


def test_memo_pickles_empty():
    from one._api.sessions import SessionMemo
    memo = SessionMemo()
    later = datetime.now() + timedelta(minutes=1)
    memo.add_record('a', {'id': 'a'}, later)
    memo.add_s3_files({'d': None}, later)
    assert memo.record('a') == {'id': 'a'} and memo.s3_files(['d', 'e']) == {'d': None}
    copy = pickle.loads(pickle.dumps(memo))
    assert copy.record('a') is None and len(copy) == 0 and copy.s3_files(['d']) == {}
    copy.add_datasets(['b'], later)
    copy.add_datasets(['c'], datetime.now())  # expired already
    copy.add_datasets(['d'], None)  # an answer that was not cached: not kept
    assert copy.has_datasets('b') and not copy.has_datasets('c')
    assert copy.stale(['a', 'b', 'c', 'd']) == ['a', 'c', 'd']


def test_pickled_after_reads(one, server, db):
    """A OneAlyx pickles after reading sessions (the background S3 look-up, the S3 client and
    the sessions read stay behind); the copy loads as the original."""
    eid = ephys_eid(db)
    one.list_datasets(eid)  # starts the S3 look-up in the background
    pickle.dumps(one)
    wheel = one.load_object(eid, 'wheel')
    one.list_datasets(db.eids[:4])  # batched: the datasets' S3 file records are kept
    one.prefetch(db.eids[4:6], 'wheel')
    one.get_details(eid, full=True)
    copy = pickle.loads(pickle.dumps(one))
    assert one._memo().s3_files(one.list_datasets(db.eids[0], details=True).index
                                .get_level_values('id').astype(str))
    assert not {'_s3_pending', '_s3_repository'} & set(vars(copy))
    assert len(copy._memo()) == 0
    server.clear_log()
    assert copy.list_datasets(eid) == one.list_datasets(eid)
    assert rest(server) == []  # the copy reads the session again, from the REST cache
    assert copy._memo().has_datasets(eid)
    np.testing.assert_array_equal(copy.load_object(eid, 'wheel')['position'],
                                  wheel['position'])
    assert data(server) == 0  # the files are there
    pickle.dumps(copy)


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_forked_child_does_not_wait_for_the_parents_s3_lookup(one, server, db):
    """The S3 look-up runs in a thread of the parent; a child forked meanwhile has no such
    thread: its first download looks the repository up itself instead of waiting for ever."""
    eid = db.eids[0]
    server.delay('/data-repository/aws_cortexlab', 30)  # the parent's look-up hangs
    one.list_datasets(eid)  # starts the look-up
    deadline = time.monotonic() + 10
    while not server.count('GET', '/data-repository/aws_cortexlab'):
        assert time.monotonic() < deadline, 'the S3 look-up never reached the server'
        time.sleep(0.01)
    pid = os.fork()
    if pid == 0:  # the child: load (S3 is looked up, then HTTP gives the files), then leave
        code = 1
        try:
            files = one.load_object(eid, 'wheel', download_only=True)
            code = 0 if files and all(f.exists() for f in files) else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail('the forked child hung waiting for the S3 look-up of its parent')
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert server.count('GET', '/data-repository/aws_cortexlab') == 2  # the child's own


def _settled(proxy, n_data: int) -> dict:
    """The proxy's counts once it has recorded `n_data` data requests (it records a request
    after sending its answer, so just after the client received it)."""
    deadline = time.monotonic() + 10
    while (stats := proxy.stats())['data'] < n_data and time.monotonic() < deadline:
        time.sleep(0.01)
    return stats


def test_connections_kept_alive_across_calls(db, tmp_path):
    """A sequence of calls (session reads, searches, downloads) through a server keeping
    connections alive: the REST requests share one connection, and the download streams keep
    theirs from one call to the next."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parents[1] / 'benchmarks'))
    from latency_proxy import LatencyProxy

    with AlyxTestServer(database=db) as server, \
            LatencyProxy(server.url, delay=0) as proxy:
        one = make_one(proxy, tmp_path / 'data')
        for eid in db.eids[:2]:
            one.list_datasets(eid)
            one.load_object(eid, 'wheel')
        first = _settled(proxy, 4)
        assert first['rest'] >= 3 and first['data'] == 4
        for eid in db.eids[2:8]:
            one.list_datasets(eid)
            one.load_object(eid, 'wheel')
            one.search(subject=db.sessions[eid]['subject'])
        stats = _settled(proxy, 16)
        assert stats['rest'] >= first['rest'] + 6 and stats['data'] == 16
        assert stats['errors'] == 1  # the S3 look-up: no such repository here
        # the S3 look-up thread's connection, the REST one and one per download stream
        assert stats['connections'] <= 2 + first['data_streams'], \
            {k: v for k, v in stats.items() if k != 'timeline'}
