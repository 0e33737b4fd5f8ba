"""How many requests each public call of OneAlyx makes (counts, never times), against the Alyx
replay server serving a generated database (tests/alyx_synthetic.py)."""
from datetime import timedelta

import numpy as np
import pytest
from alyx_server import PASSWORD, USERNAME, AlyxTestServer
from alyx_synthetic import SyntheticAlyx

from one import webclient
from one.api import ONE


@pytest.fixture(scope='module')
def db(tmp_path_factory):
    return SyntheticAlyx.generate(tmp_path_factory.mktemp('synthetic'), n_sessions=12)


@pytest.fixture
def server(db):
    with AlyxTestServer(database=db) as server:
        yield server


@pytest.fixture
def one(server, tmp_path):
    ONE.cache_clear()
    instance = ONE(base_url=server.url, username=USERNAME, password=PASSWORD,
                   cache_dir=tmp_path / 'data', silent=True)
    instance.alyx.rest_schemes  # noqa: B018 - the schema is read once per week
    server.clear_log()
    yield instance
    ONE.cache_clear()


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


def test_reuse_ends_with_the_rest_cache_expiry(one, server, db):
    eid = ephys_eid(db)
    clock = [1000.0]
    one._sessions_read._clock = lambda: clock[0]
    one.alyx.default_expiry = timedelta(minutes=10)
    one.list_datasets(eid)
    one.load_object(eid, 'wheel')
    assert rest(server) == [f'GET /sessions/{eid}']
    clock[0] += 9 * 60
    one.alyx.clear_rest_cache()  # (the REST cache on disk has its own clock)
    one.load_object(eid, 'wheel')
    assert len(rest(server)) == 1
    clock[0] += 2 * 60  # now older than the expiry: read again
    one.load_object(eid, 'wheel')
    assert rest(server) == [f'GET /sessions/{eid}'] * 2


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
    import pickle

    from one._remote_sessions import SessionMemo
    memo = SessionMemo()
    memo.add_record('a', {'id': 'a'})
    assert memo.record('a', 60) == {'id': 'a'}
    copy = pickle.loads(pickle.dumps(memo))
    assert copy.record('a', 60) is None and len(copy) == 0
    copy.add_datasets(['b'])
    assert copy.has_datasets('b', 60) and not copy.has_datasets('b', 0)
    assert copy.stale(['a', 'b'], 60) == ['a']
