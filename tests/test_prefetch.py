"""Tests of many sessions in few requests: batched dataset listing (one/_api/batch.py),
`list_datasets` on many sessions and `prefetch` (one/_api/prefetch.py), against the Alyx replay
server serving a generated database (tests/alyx_synthetic.py), and on a local folder."""
import logging
import warnings
from pathlib import Path
from urllib.parse import parse_qs
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
from alyx_server import PASSWORD, USERNAME, AlyxTestServer
from alyx_synthetic import SyntheticAlyx

import one._api.batch as batch
from one._api.prefetch import dataset_specs, select_datasets
from one.alf.exceptions import ALFWarning
from one.alf.path import ALFPath
from one.api import ONE, One


@pytest.fixture(scope='module')
def db(tmp_path_factory):
    return SyntheticAlyx.generate(tmp_path_factory.mktemp('synthetic'), n_sessions=24)


@pytest.fixture
def server(db):
    with AlyxTestServer(database=db) as server:
        yield server


def make_one(server, folder) -> ONE:
    ONE.cache_clear()
    one = ONE(base_url=server.url, username=USERNAME, password=PASSWORD, cache_dir=folder,
              silent=True)
    one.alyx.rest_schemes  # noqa: B018 - read once a week, not counted below
    return one


@pytest.fixture
def one(server, tmp_path):
    instance = make_one(server, tmp_path / 'data')
    server.clear_log()
    yield instance
    ONE.cache_clear()


def rest(server) -> list:
    return [r for r in server.requests if '/Subjects/' not in r.path and
            r.path != '/data-repository/aws_cortexlab']


def data(server) -> int:
    return sum('/Subjects/' in r.path for r in server.requests)


# ---- batches ---------------------------------------------------------------------------------

def test_plan_batches():
    eids = [f'{i:036d}' for i in range(250)]
    batches = batch.plan_batches(eids, 36, 1000)
    assert [len(b) for b in batches] == [25] * 10 and sum(batches, []) == eids
    assert [len(b) for b in batch.plan_batches(eids, 1, 1000)] == [84, 83, 83]  # URL length
    assert [len(b) for b in batch.plan_batches(eids[:5], None, 1000)] == [5]
    assert [len(b) for b in batch.plan_batches(eids[:3], 5000, 1000)] == [1, 1, 1]
    assert batch.plan_batches([], 10, 1000) == []


def test_batched_listing_equals_per_session_listing(one, server, db, tmp_path):
    eids = db.eids
    batched = one.list_datasets(eids)
    queries = rest(server)
    assert len(queries) < len(eids) / 4
    assert {q.path for q in queries} == {'/datasets', '/sessions'}
    for q in queries:  # batches sized to fit a page: each answered by one page
        assert 'limit' in parse_qs(q.query)
    other = make_one(server, tmp_path / 'other')
    server.clear_log()
    single = [other.list_datasets(e) for e in eids]
    assert len(rest(server)) == len(eids)  # one session read each
    assert batched == single and sum(map(len, batched)) > 20 * len(eids)
    details = one.list_datasets(eids, details=True)
    expected = [other.list_datasets(e, details=True) for e in eids]
    for a, b in zip(details, expected):
        pd.testing.assert_frame_equal(a, b)
    # Filters apply to each session; the tables are the same afterwards
    assert one.list_datasets(eids[:3], collection='alf/probe00') == \
        [other.list_datasets(e, collection='alf/probe00') for e in eids[:3]]
    pd.testing.assert_frame_equal(one._cache['sessions'].sort_index(),
                                  other._cache['sessions'].sort_index())
    pd.testing.assert_frame_equal(one._cache['datasets'].sort_index(),
                                  other._cache['datasets'].sort_index())


def _datasets_query_sessions(server) -> list[int]:
    """The number of sessions of each /datasets query received; -n for a page after the first."""
    out = []
    for q in rest(server):
        if q.path == '/datasets':
            query = parse_qs(q.query)
            n = query['django'][0].count(',')  # 'session__in,[...]': one comma per session
            out.append(-n if 'offset' in query else n)
    return out


def _expected_listing(db, eids) -> list[int]:
    return [sum(1 for d in db.datasets if d['session'].endswith(e) and d['file_records']
                and d['qc'] != 'CRITICAL') for e in eids]


def test_batches_split_to_fit_a_page(server, db, tmp_path):
    """A server granting short pages: a batch whose announced count exceeds the page is split
    by that count, so that each query is answered by one page (no page is followed)."""
    eids = db.eids[:6]
    per_session = [sum(1 for d in db.datasets if d['session'].endswith(e)) for e in eids]
    server.max_limit = max(per_session)  # each session fits in a page, two do not
    one = make_one(server, tmp_path / 'a')
    server.clear_log()
    listed = one.list_datasets(eids, details=True)
    queries = _datasets_query_sessions(server)
    assert all(n > 0 for n in queries) and queries[0] == 6 and len(queries) > 2
    assert [len(f) for f in listed] == _expected_listing(db, eids)
    assert all(f.index.is_unique for f in listed)
    # A session with more datasets than a page: only its own query follows pages
    server.max_limit = min(per_session) - 1
    other = make_one(server, tmp_path / 'b')
    server.clear_log()
    assert [len(f) for f in other.list_datasets(eids, details=True)] == \
        _expected_listing(db, eids)
    assert all(n > 0 or n == -1 for n in _datasets_query_sessions(server))
    assert -1 in _datasets_query_sessions(server)


@pytest.mark.parametrize('forget', ['clear_rest_cache', 'load_cache'])
def test_s3_file_records_of_listings_are_forgotten(one, server, db, forget):
    """The S3 file records of the datasets listed in batches spare a query per download only
    while the listing is fresh: not once the REST cache was cleared or the tables replaced."""
    server.add_response('GET', '/data-repository/aws_cortexlab', {  # a bucket, no key
        'name': 'aws_cortexlab', 'repository_type': 'AWS', 'json': {'bucket_name': 'b'}})
    eids = db.eids[:2]
    one.list_datasets(eids)
    server.clear_log()
    one.load_object(eids[0], 'wheel')  # no request but the files: none of them is on S3
    assert rest(server) == [] and data(server) == 2
    assert server.count('GET', '/data-repository/aws_cortexlab') == 0
    getattr(one.alyx if forget == 'clear_rest_cache' else one, forget)()
    server.clear_log()
    one.load_object(eids[1], 'wheel')  # the session read again; S3 records asked for
    assert [q.path for q in rest(server)] == [f'/sessions/{eids[1]}', '/datasets']
    assert 'id__in' in parse_qs(rest(server)[1].query)['django'][0]
    assert data(server) == 2  # not on S3: over HTTP


def test_list_many_sessions_locally(one, db):
    eids = db.eids[:4]
    one.list_datasets(eids)
    with pytest.warns(UserWarning, match='No cache tables'):
        local = One(cache_dir=one.cache_dir, mode='local')  # tables not saved: empty
    assert local.list_datasets(eids) == [[]] * 4
    one.save_cache()
    local = One(cache_dir=one.cache_dir, mode='local')
    assert local.list_datasets(eids) == [local.list_datasets(e) for e in eids]
    assert local.list_datasets(eids)[0]


# ---- prefetch --------------------------------------------------------------------------------

def test_prefetch_then_loads_make_no_request(one, server, db):
    eids = db.eids[:20]
    files = one.prefetch(eids, 'trials')
    queries = rest(server)
    assert len(queries) <= 3 and data(server) == sum(len(f) for f in files.values())
    # the listed records show no file on S3: the bucket is not asked for
    assert server.count('GET', '/data-repository/aws_cortexlab') == 0
    assert list(files) == [UUID(e) for e in eids]
    for paths in files.values():
        assert paths and all(isinstance(p, ALFPath) and p.exists() for p in paths)
        assert all(p.parts[-2] in ('alf', '#2024-06-01#') for p in paths)
        assert [p.relative_to_session().as_posix() for p in paths] == sorted(
            p.relative_to_session().as_posix() for p in paths)
    server.clear_log()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ALFWarning)  # revised sessions: Multiple revisions
        for eid, paths in files.items():
            trials = one.load_object(eid, 'trials')
            assert set(trials) >= {'intervals', 'choice', 'stimOn_times'}
            assert sorted(one.load_object(eid, 'trials', download_only=True)) == sorted(paths)
            one.load_dataset(eid, '_ibl_trials.choice.npy')
            one.list_datasets(eid)
    assert server.requests == []
    # A second prefetch of the same files asks nothing either
    assert one.prefetch(eids, 'trials') == files
    assert server.requests == []


def test_prefetch_data_identical_to_loads(one, server, db, tmp_path):
    eid = next(e for e, r in db.sessions.items() if r['probe_insertion'])
    loaded = one.prefetch([eid], ['spikes', '_ibl_wheel.position'], collection=['alf',
                          'alf/probe00'], download_only=False)
    contents = loaded[UUID(eid)]
    assert set(contents) == {'alf/_ibl_wheel.position.npy', 'alf/probe00/spikes.times.npy',
                             'alf/probe00/spikes.clusters.npy', 'alf/probe00/spikes.amps.npy',
                             'alf/probe00/spikes.depths.npy'}
    other = make_one(server, tmp_path / 'other')
    spikes = other.load_object(eid, 'spikes', collection='alf/probe00')
    for attribute, values in spikes.items():
        np.testing.assert_array_equal(contents[f'alf/probe00/spikes.{attribute}.npy'], values)


def test_prefetch_revision_and_qc(one, db):
    revised = next(e for e, r in db.sessions.items()
                   if any(d['revision'] for d in r['data_dataset_session_related']))
    default = one.prefetch(revised, '_ibl_trials.choice')[UUID(revised)]
    assert [p.relative_to_session().as_posix() for p in default] == \
        ['alf/#2024-06-01#/_ibl_trials.choice.npy']
    original = one.prefetch(revised, '_ibl_trials.choice', revision='2024-01-01')
    assert [p.relative_to_session().as_posix() for p in original[UUID(revised)]] == \
        ['alf/_ibl_trials.choice.npy']
    # CRITICAL datasets are left out, as by the loads
    critical = next(d['session'][-36:] for d in db.datasets if d['qc'] == 'CRITICAL')
    files = one.prefetch(critical, '_ibl_leftCamera.*')[UUID(critical)]
    assert [p.name for p in files] == ['_ibl_leftCamera.features.metadata.json',
                                       '_ibl_leftCamera.features.npy']


def test_prefetch_unknown_session(one, db):
    unknown = '00000000-0000-4000-8000-000000000000'
    with pytest.warns(ALFWarning, match='1 session.*not found.*00000000'):
        files = one.prefetch([db.eids[0], unknown], 'wheel')
    assert files[UUID(unknown)] == [] and len(files[UUID(db.eids[0])]) == 2
    with pytest.raises(ValueError, match='Invalid experiment ID'):
        one.prefetch(['not-an-id'])


def test_prefetch_repairs_bad_files(one, server, db, caplog):
    eid = db.eids[1]
    paths = one.prefetch(eid, 'wheel')[UUID(eid)]
    good = paths[0].read_bytes()
    paths[0].write_bytes(b'x' * len(good))  # same size, wrong content
    paths[1].unlink()
    server.clear_log()
    caplog.set_level(logging.WARNING)
    again = one.prefetch(eid, 'wheel')[UUID(eid)]
    assert again == paths and paths[0].read_bytes() == good and paths[1].exists()
    assert data(server) == 2 and 'md5 mismatch' in caplog.text


def test_prefetch_local_one(one, db, caplog):
    eids = db.eids[:3]
    expected = one.prefetch(eids, 'wheel')
    one.save_cache()
    local = One(cache_dir=one.cache_dir, mode='local')
    assert local.prefetch(eids, 'wheel') == expected
    missing = expected[UUID(eids[0])][0]
    missing.unlink()
    caplog.set_level(logging.WARNING)
    files = local.prefetch(eids, 'wheel')
    assert missing not in files[UUID(eids[0])] and len(files[UUID(eids[1])]) == 2
    assert '1 of 6 datasets' in caplog.text


def test_dataset_specs():
    assert dataset_specs('trials', wildcards=True) == [{'object': 'trials'}]
    assert dataset_specs(['_ibl_trials.choice', 'spikes.times.npy'], wildcards=True) == \
        ['_ibl_trials.choice.*', 'spikes.times.npy']
    assert dataset_specs('_ibl_trials.choice', wildcards=False) == ['_ibl_trials.choice']
    assert dataset_specs({'object': 'wheel'}, wildcards=True) == [{'object': 'wheel'}]
    with pytest.raises(ValueError, match='empty'):
        dataset_specs([], wildcards=True)
    with pytest.raises(TypeError, match='datasets'):
        dataset_specs([3], wildcards=True)


def test_select_datasets():
    index = pd.MultiIndex.from_tuples(
        [(e, f'{e}-{i}') for e in ('a', 'b') for i in range(3)], names=['eid', 'id'])
    table = pd.DataFrame({
        'rel_path': ['alf/_ibl_trials.choice.npy', 'alf/#2024-06-01#/_ibl_trials.choice.npy',
                     'alf/_ibl_wheel.position.npy'] * 2,
        'default_revision': [False, True, True, True, False, True],
        'qc': ['NOT_SET'] * 6}, index=index)
    chosen = select_datasets(table, 'trials')
    assert chosen.index.tolist() == [('a', 'a-1'), ('b', 'b-0')]  # the default of each
    chosen = select_datasets(table, ['trials', 'wheel'], revision='2024-01-01')
    assert chosen.index.tolist() == [('a', 'a-0'), ('a', 'a-2'), ('b', 'b-0'), ('b', 'b-2')]
    assert select_datasets(table, 'spikes').empty
    assert len(select_datasets(table)) == 4


def test_prefetch_paths_in_cache_dir(one, db):
    files = one.prefetch(db.eids[:2], 'wheel')
    root = Path(one.cache_dir)
    assert all(p.is_relative_to(root) for paths in files.values() for p in paths)


# ---- remote search with several dataset names --------------------------------------------------

def test_search_several_dataset_names(one, server, db):
    both = one.search(dataset=['trials.choice', 'spikes.times'])
    queries = rest(server)
    assert queries[0].path == '/sessions' and len(queries) <= 4
    trials = set(one.search(dataset='trials.choice'))
    spikes = set(one.search(dataset='spikes.times'))
    assert set(both) == trials & spikes and 0 < len(both) < len(trials)
    expected = {e for e, r in db.sessions.items() if r['probe_insertion']}
    assert {str(e) for e in both} == expected
    eids, details = one.search(dataset=['trials', 'spikes'], details=True)
    assert [str(e) for e in eids] == [d['id'] for d in details] and 'date' in details[0]
    # the sessions' datasets were listed: loading from them needs no request
    server.clear_log()
    one.load_object(eids[0], 'spikes', collection='alf/probe00')
    assert rest(server) == []
    assert list(one.search(dataset=['trials', 'nosuchdataset'])) == []
    with pytest.raises(ValueError, match='empty'):
        one.search(dataset=[])


def test_rel_path_of_url_as_alf_paths(db):
    """The string operations giving the relative path of a data URL (fast, for tables of
    thousands of datasets) agree with the ALF path functions."""
    import json

    from one.converters import _alf_path_from_url, _rel_path_of_url, _relative_to_session
    fixtures = Path(__file__).parent / 'fixtures' / 'alyx'
    urls = []
    for name in ('datasets_list_session.json', 'datasets_list_revision_session.json'):
        urls += [f['data_url'] for r in json.loads((fixtures / name).read_text())['results']
                 for f in r['file_records'] if f['data_url']]
    synthetic = [f['data_url'] for d in db.datasets for f in d['file_records']]
    urls += [u.replace('http://127.0.0.1:8001', 'https://data.org:8080/some%20path/files')
             for u in synthetic]  # quoted folders, revisions, a data server below a path
    urls += [u.replace('2024-01-', '2024-13-') for u in synthetic[:5]]  # not a session date
    urls += ['https://data.org/lab/Subjects/s/2024-01-01/001/alf/obj.attr.npy',
             'https://data.org/s/2024-01-01/1/obj.attr.b7e3e9c4-9a8f-4d3e-8c1a-2f6b7a9d0e1f.npy',
             'https://data.org/aggregates/x/obj.attr.npy']
    assert len(urls) > 50
    for url in urls:
        assert _rel_path_of_url(url) == _relative_to_session(_alf_path_from_url(url)), url
