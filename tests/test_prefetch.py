"""Tests of many sessions in few requests: batched dataset listing (one/_remote_batch.py),
`list_datasets` on many sessions and `prefetch` (one/_prefetch.py), against the Alyx replay
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

import one._remote_batch as batch
from one._prefetch import dataset_specs, select_datasets
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


def test_page_limit():
    class Client:
        pass
    client = Client()
    assert batch.page_limit(client) == batch.DEFAULT_PAGE_LIMIT
    client.max_page_size = 400
    assert batch.page_limit(client) == 400


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


def test_batches_follow_pages(one, server, db):
    """Batches larger than a page are read page after page; nothing is lost or repeated."""
    server.max_limit = 40  # the server grants pages of 40 records at most
    listed = one.list_datasets(db.eids[:6], details=True)
    assert len(rest(server)) > 3
    for eid, frame in zip(db.eids[:6], listed):
        n = sum(1 for d in db.datasets if d['session'].endswith(eid) and d['file_records']
                and d['qc'] != 'CRITICAL')
        assert len(frame) == n and frame.index.is_unique


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


def test_dataset_table_as_datasets2records(db):
    import json

    from one.converters import datasets2records
    fixtures = Path(__file__).parent / 'fixtures' / 'alyx'
    for name in ('datasets_list_session.json', 'datasets_list_revision_session.json'):
        records = json.loads((fixtures / name).read_text())['results']
        pd.testing.assert_frame_equal(batch.dataset_table(records), datasets2records(records))
    # URLs with a quoted folder, a revision, a data server below a path
    records = json.loads(json.dumps(db.datasets).replace(
        'http://127.0.0.1:8001', 'https://data.org:8080/some%20path/files'))
    pd.testing.assert_frame_equal(batch.dataset_table(records), datasets2records(records))
    # Paths without a session folder are handled like datasets2records does
    odd = json.loads(json.dumps(records[:3]))
    for r in odd:
        r['file_records'][0]['data_url'] = r['file_records'][0]['data_url'].replace(
            '2024-01-', '2024-13-')
    pd.testing.assert_frame_equal(batch.dataset_table(odd), datasets2records(odd))
    assert batch.dataset_table([]).empty
