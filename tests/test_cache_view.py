"""``one._cache`` behaves as ONE-api's, and every change made through it is seen by the API.

The tables handed out by ``one._cache`` are indexed by `uuid.UUID` objects, with plain string
columns; reading them, editing cells in place with ``.loc``, replacing a table, merging records
(`merge_tables`) and saving (`One.save_cache`) work as in ONE-api, and the next search, listing
and load answer from the tables as edited.

Views of the tables must notice in-place edits in both ways pandas makes them: pandas 3 copies
a column that something else references (copy-on-write); pandas 2.2 writes in place.  The
``mode`` fixture runs the tests both ways in any pandas: 'pandas' as the installed version does,
'in place' with the views comparing raw values (`one._tables.column_watch` without copy-on-write),
which in pandas 3 also makes writes happen in place (the views then hold no reference).
"""
import json
import logging
import shutil
import sys
import threading
import time
import uuid
from uuid import UUID

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from one_calls import answers, differences

from one._tables import column_watch
from one.alf import exceptions as alferr
from one.alf.cache import TableFormatError, load_tables, make_parquet_db, merge_tables
from one.api import One
from one.converters import datasets2records
from one.synthetic import make_dataset_folder


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('view_data')
    make_dataset_folder(root, n_subjects=3, n_sessions=4, seed=2)
    make_parquet_db(root, hash_files=True)
    return root


@pytest.fixture(params=['pandas', 'in place'])
def mode(request, monkeypatch):
    if request.param == 'in place':
        monkeypatch.setattr(column_watch, 'copy_on_write', lambda: False)
    return request.param


@pytest.fixture
def one(data_root, mode):
    return One(cache_dir=data_root)


@pytest.fixture
def own_root(tmp_path, data_root):
    root = tmp_path / 'data'
    shutil.copytree(data_root, root)
    return root


def _session(one, subject='KS001', day='2024-01-15', number=1) -> UUID:
    eids = one.search(subject=subject, date=day, number=number)
    assert len(eids) == 1
    return eids[0]


def _row(one, eid, rel_path) -> tuple:
    """The (eid, id) index of a dataset of the handed-out table."""
    table = one._cache['datasets']
    rows = table.loc[eid]
    return eid, rows.index[rows['rel_path'] == rel_path][0]


# ---- reading ----------------------------------------------------------------------------------

def test_cache_reads_as_one_api(one):
    eid = _session(one)
    cache = one._cache
    sessions, datasets = cache.sessions, cache.datasets
    assert sessions is cache['sessions'] and datasets is cache['datasets']
    assert sessions.index.name == 'id' and datasets.index.names == ['eid', 'id']
    assert all(isinstance(x, UUID) for x in sessions.index)
    assert all(isinstance(x, UUID) for level in datasets.index.levels for x in level)
    assert sessions.loc[eid, 'subject'] == 'KS001'  # an eid from search() is a key
    session_rows = datasets.loc[eid]
    assert len(session_rows) == len(one.list_datasets(eid, qc='CRITICAL'))
    did = session_rows.index[0]
    assert datasets.loc[(eid, did), 'rel_path'] == session_rows['rel_path'].iloc[0]
    assert not isinstance(datasets['rel_path'].dtype, pd.CategoricalDtype)
    assert isinstance(datasets['rel_path'].iloc[0], str)
    assert datasets.index.is_monotonic_increasing and datasets.index.is_unique
    assert one._cache is cache  # converted once, then the same tables
    # ids found in the table answer the API
    assert one.get_details(sessions.index[0])['subject'] == sessions['subject'].iloc[0]
    assert one.load_dataset_from_id(did, download_only=True).name == \
        session_rows['rel_path'].iloc[0].rsplit('/', 1)[-1]


def test_answers_are_the_same_before_and_after_the_first_read(data_root, mode):
    one = One(cache_dir=data_root)
    before = answers(one, data_root)
    one._cache  # noqa: B018  (hands the tables out)
    after = answers(one, data_root)
    assert not differences(before, after)
    fresh = One(cache_dir=data_root)
    fresh._cache  # noqa: B018
    assert not differences(before, answers(fresh, data_root))  # views built after the read


# ---- editing in place -------------------------------------------------------------------------

def test_qc_edit_changes_the_row_and_is_seen(one):
    eid = _session(one)
    key = _row(one, eid, 'alf/_ibl_wheel.position.npy')
    datasets = one._cache.datasets
    n = len(datasets)
    assert 'alf/_ibl_wheel.position.npy' in one.list_datasets(eid)
    assert eid in one.search(dataset='_ibl_wheel.position')
    datasets.loc[key, 'qc'] = 'CRITICAL'
    assert len(one._cache.datasets) == n and one._cache.datasets.loc[key, 'qc'] == 'CRITICAL'
    assert 'alf/_ibl_wheel.position.npy' not in one.list_datasets(eid)
    assert 'alf/_ibl_wheel.position.npy' in one.list_datasets(eid, qc='CRITICAL')
    assert eid not in one.search(dataset='_ibl_wheel.position')
    assert eid in one.search(dataset='_ibl_wheel.position', dataset_qc_lte='CRITICAL')
    with pytest.raises(alferr.ALFObjectNotFound):
        one.load_dataset(eid, '_ibl_wheel.position.npy')
    assert 'alf/_ibl_wheel.position.npy' in one.list_datasets(qc='CRITICAL')
    # edited back: seen again
    one._cache.datasets.loc[key, 'qc'] = 'PASS'
    assert one.load_dataset(eid, '_ibl_wheel.position.npy').ndim == 1
    assert eid in one.search(dataset='_ibl_wheel.position', dataset_qc_lte='PASS')
    assert one.list_datasets(eid, qc='PASS', ignore_qc_not_set=True) == \
        ['alf/_ibl_wheel.position.npy']


def test_rel_path_edit_is_seen_by_listings_searches_and_loads(one):
    eid = _session(one)
    key = _row(one, eid, 'alf/_ibl_wheel.timestamps.npy')
    collections = one.list_collections()
    one._cache.datasets.loc[key, 'rel_path'] = 'extra/_ibl_wheel.stamps.npy'  # a new path
    assert 'extra/_ibl_wheel.stamps.npy' in one.list_datasets(eid)
    assert 'alf/_ibl_wheel.timestamps.npy' not in one.list_datasets(eid)
    assert one.search(dataset='_ibl_wheel.stamps') == [eid]
    assert one.search(datasets='_ibl_wheel.stamps.npy') == [eid]
    assert 'extra/_ibl_wheel.stamps.npy' in one.list_datasets()
    assert one.list_collections() == collections + ['extra']
    assert one.list_collections(eid, collection='extra') == ['extra']
    with pytest.raises(alferr.ALFObjectNotFound, match='not found on disk'):
        one.load_dataset(eid, '_ibl_wheel.stamps.npy')  # the table says so; the file is not
    assert eid not in one.search(dataset='_ibl_wheel.timestamps')


def test_exists_edit_is_seen_by_search(one):
    eid = _session(one, 'ZFM-002', '2024-01-16')
    rows = one._cache.datasets.loc[eid]
    keys = [(eid, i) for i in rows.index[rows['rel_path'].str.contains('leftCamera')]]
    assert eid in one.search(dataset='leftCamera')
    one._cache.datasets.loc[keys, 'exists'] = False
    assert eid not in one.search(dataset='leftCamera')
    one._cache.datasets.loc[keys[:1], 'exists'] = True
    assert eid in one.search(dataset='leftCamera')


def test_session_edits_are_seen(one, data_root):
    eid = _session(one)
    sessions = one._cache.sessions
    sessions.loc[eid, 'subject'] = 'renamed'
    assert one.search(subject='renamed') == [eid]
    assert eid not in one.search(subject='KS001')
    assert 'renamed' in one.list_subjects()
    sessions.loc[eid, 'date'] = pd.Timestamp('2030-05-06').date()
    assert one.search(date_range='2030-05-06') == [eid]
    assert one.search()[0] == eid  # the most recent first
    sessions.loc[eid, 'lab'] = 'otherlab'
    assert one.eid2path(eid) == data_root / 'otherlab/Subjects/renamed/2030-05-06/001'
    assert one.get_details(eid)['lab'] == 'otherlab'
    with pytest.raises(alferr.ALFObjectNotFound, match='not found on disk'):
        one.load_object(eid, 'trials')  # the files are where the old record says


def test_in_place_edit_of_a_whole_column(one):
    eid = _session(one)
    datasets = one._cache.datasets
    datasets['qc'] = pd.Categorical(['CRITICAL'] * len(datasets), dtype=datasets['qc'].dtype)
    assert one.search(dataset='trials') == []
    assert one.list_datasets(eid) == [] and one.list_datasets() == []
    datasets.iloc[:, datasets.columns.get_loc('qc')] = 'PASS'
    assert eid in one.search(dataset='trials', dataset_qc_lte='PASS')


def test_edits_before_the_views_exist_and_after_a_search(data_root, mode):
    """Edits made right after the first read, before any query built its views."""
    one = One(cache_dir=data_root)
    eid = _session(one)
    fresh = One(cache_dir=data_root)
    fresh._cache.datasets.loc[fresh._cache.datasets.index.get_level_values('eid') == eid,
                              'exists'] = False
    assert eid not in fresh.search(dataset='trials')
    assert eid in one.search(dataset='trials')


# ---- replacing tables, merging records ---------------------------------------------------------

def test_replacing_a_table(one):
    eid = _session(one)
    other = _session(one, 'SWC_003', '2024-01-17')
    datasets = one._cache['datasets']
    one._cache['datasets'] = datasets[datasets.index.get_level_values('eid') != eid].copy()
    assert one.list_datasets(eid) == []
    assert eid not in one.search(dataset='trials') and other in one.search(dataset='trials')
    with pytest.raises(alferr.ALFObjectNotFound):
        one.load_object(eid, 'trials')
    one._cache['datasets'] = datasets
    assert eid in one.search(dataset='trials') and len(one.load_object(eid, 'trials'))
    # a table with string ids (e.g. read with pandas) works too
    strings = datasets.copy()
    strings.index = pd.MultiIndex.from_arrays(
        [[str(x) for x in strings.index.get_level_values(i)] for i in range(2)],
        names=['eid', 'id'])
    one._cache['datasets'] = strings
    assert eid in one.search(dataset='trials') and len(one.load_object(eid, 'trials'))
    sessions = one._cache['sessions']
    one._cache['sessions'] = sessions.drop(index=eid)
    assert eid not in one.search()
    with pytest.raises(alferr.ALFObjectNotFound):
        one.get_details(eid)


def _order_free_answers(one) -> dict:
    """Answers that do not depend on the order of the tables' rows."""
    out = {}
    for eid in one.search():
        details = one.list_datasets(eid, details=True)
        out[eid] = (one.list_datasets(eid), one.eid2path(eid), one.get_details(eid)['subject'],
                    sorted(map(str, details.index)),
                    sorted(one.load_dataset_from_id(did, download_only=True)
                           for did in details.index))
    out['searches'] = [one.search(subject=s) for s in ('KS001', 'ZFM', 'SWC_003')] + \
        [one.search(dataset=d) for d in ('trials', 'wheel', 'spikes')]
    return out


@pytest.mark.parametrize('name', ['datasets', 'sessions'])
def test_a_table_replaced_by_a_reordered_copy_of_the_same_length(one, name):
    """Views are kept only for the same index object: a table of as many rows, in another
    order, is a new table."""
    before = _order_free_answers(one)
    table = one._cache[name]
    one._cache[name] = table.sort_index(ascending=False)
    assert len(one._cache[name]) == len(table)
    assert _order_free_answers(one) == before


def test_two_session_ids_swapped_in_place(one, data_root):
    """The session folders of ids are found again when the index changes, columns alike."""
    a, b = _session(one), _session(one, 'SWC_003', '2024-01-17')
    sessions = one._cache.sessions
    paths = {eid: one.eid2path(eid) for eid in one.search()}
    wheel = {e: one.load_dataset(e, '_ibl_wheel.position.npy', download_only=True)
             for e in (a, b)}  # the session folders of loads are kept by the views
    assert wheel[a].is_relative_to(paths[a])
    ids = list(sessions.index)
    i, j = ids.index(a), ids.index(b)
    ids[i], ids[j] = ids[j], ids[i]
    sessions.index = pd.Index(ids, dtype=object, name='id')
    assert one.eid2path(a) == paths[b] and one.eid2path(b) == paths[a]
    for eid, other in ((a, b), (b, a)):
        assert one.load_dataset(eid, '_ibl_wheel.position.npy', download_only=True) == \
            wheel[other]
    assert one.get_details(a)['subject'] == 'SWC_003'
    assert a in one.search(subject='SWC_003') and b not in one.search(subject='SWC_003')
    assert {e: one.eid2path(e) for e in paths if e not in (a, b)} == \
        {e: p for e, p in paths.items() if e not in (a, b)}


def test_threads_querying_while_another_reads_the_cache(data_root):
    """Queries of one instance in several threads, while another thread hands the tables out
    (the first read of ``_cache``), answer as a single thread does, without errors."""
    reference = One(cache_dir=data_root)
    eid = _session(reference)
    queries = {  # the first of each per instance builds a part of the views
        'subject': lambda one: one.search(subject='KS'),
        'lab': lambda one: one.search(laboratory='cortex'),
        'dataset': lambda one: one.search(dataset='wheel'),
        'listing': lambda one: one.list_datasets(eid),
        'details': lambda one: one.get_details(eid)['subject'],
    }
    expected = {name: query(reference) for name, query in queries.items()}
    wrong = []

    def ask(one, start):
        start.wait()
        for name, query in queries.items():
            try:
                answer = query(one)
            except Exception as ex:  # noqa: BLE001 (every error is a wrong answer)
                wrong.append((name, repr(ex)))
            else:
                if answer != expected[name]:
                    wrong.append((name, answer))

    def read(one, start, delay):
        start.wait()
        time.sleep(delay)  # somewhere during the first queries
        one._cache  # noqa: B018

    rng = np.random.default_rng(0)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for _ in range(100):
            one, start = One(cache_dir=data_root), threading.Barrier(4)
            threads = [threading.Thread(target=ask, args=(one, start)) for _ in range(3)]
            threads.append(threading.Thread(target=read, args=(one, start,
                                                               rng.uniform(0, .002))))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong, wrong[:5]


def test_threads_querying_while_the_tables_are_loaded_again(data_root):
    """A query running while another thread reloads the tables answers from the old or the
    new tables, never from the empty ones in between."""
    one = One(cache_dir=data_root)
    eid = _session(one)
    expected = one.search(subject='KS'), one.get_details(eid)['subject']
    wrong, asked, stop = [], [], threading.Event()

    def ask():
        while not stop.is_set():
            asked.append(1)
            try:
                answer = one.search(subject='KS'), one.get_details(eid)['subject']
            except Exception as ex:  # noqa: BLE001 (every error is a wrong answer)
                answer = repr(ex)
            if answer != expected:
                wrong.append(answer)
            # a pause between queries: a thread querying without pause slows the reload in
            # the other thread by orders of magnitude (it keeps giving up the GIL while
            # reading the files, and waiting to get it back)
            time.sleep(0.001)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    try:
        loads = 0
        while loads < 10 or (len(asked) < 200 and loads < 2000):  # queries all along
            one.load_cache()
            loads += 1
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert len(asked) >= 200
    assert not wrong, wrong[:3]


def test_setting_the_whole_cache(one, data_root):
    eid = _session(one)
    tables = load_tables(data_root)
    tables['sessions'] = tables['sessions'].drop(index=eid)
    one._cache = tables
    assert one._cache is tables
    assert eid not in one.search() and len(one.search()) == 11


def _alyx_records(one, eid, rel_paths, sizes) -> list[dict]:
    """Alyx datasets endpoint records of files of a session (wire format)."""
    path = one.eid2path(eid).relative_to(one.cache_dir).as_posix()
    records = []
    for rel_path, size in zip(rel_paths, sizes):
        did = uuid.uuid4()
        stem, ext = rel_path.rsplit('.', 1)
        records.append({
            'url': f'https://alyx.example.org/datasets/{did}',
            'name': rel_path.rsplit('/', 1)[-1], 'session': f'https://alyx.example.org/'
                                                               f'sessions/{eid}',
            'file_size': size, 'hash': None, 'qc': 'PASS', 'default_dataset': True,
            'file_records': [{
                'data_url': f'https://data.example.org/{path}/{stem}.{did}.{ext}',
                'exists': True}],
        })
    return records


def test_merge_tables_into_the_cache_as_in_one_api_docs(one, own_root, mode):
    """``merge_tables(one._cache, datasets=datasets2records(records))``, then queries."""
    one = One(cache_dir=own_root)
    eid = _session(one)
    session = one.eid2path(eid)
    (session / 'alf' / 'extra').mkdir()
    np.save(session / 'alf' / 'extra' / 'new.values.npy', np.arange(5))
    size = (session / 'alf' / 'extra' / 'new.values.npy').stat().st_size
    records = _alyx_records(one, eid, ['alf/extra/new.values.npy'], [size])
    n = len(one._cache['datasets'])
    merge_tables(one._cache, datasets=datasets2records(records), origin='alyx')
    datasets = one._cache['datasets']
    assert len(datasets) == n + 1
    assert all(isinstance(x, UUID) for level in datasets.index.levels for x in level)
    assert 'alf/extra/new.values.npy' in one.list_datasets(eid)
    assert one.list_collections(eid, collection='alf/extra') == ['alf/extra']
    assert one.search(dataset='new.values') == [eid]
    assert one.load_object(eid, 'new', collection='alf/extra')['values'].tolist() == \
        list(range(5))
    did = UUID(records[0]['url'][-36:])
    assert one.load_dataset_from_id(did).tolist() == list(range(5))
    # records with string ids, then with UUIDs again: the index keeps one form
    strings = datasets2records(_alyx_records(one, eid, ['alf/extra/b.values.npy'], [1]))
    strings.index = pd.MultiIndex.from_tuples([tuple(map(str, strings.index[0]))],
                                              names=['eid', 'id'])
    merge_tables(one._cache, datasets=strings)
    merge_tables(one._cache, datasets=datasets2records(
        _alyx_records(one, eid, ['alf/extra/c.values.npy'], [1])))
    datasets = one._cache['datasets']
    assert len(datasets) == n + 3
    assert all(isinstance(x, UUID) for level in datasets.index.levels for x in level)
    assert {'alf/extra/b.values.npy', 'alf/extra/c.values.npy'} <= set(one.list_datasets(eid))
    # an existing row given again is updated, not appended
    again = datasets.loc[[(eid, did)]].assign(qc='CRITICAL')
    merge_tables(one._cache, datasets=again)
    assert len(one._cache['datasets']) == n + 3
    assert one.search(dataset='new.values') == []


def test_loc_with_new_key_appends_like_pandas(one):
    """A key not in the table appends a row (pandas' rule), which the API then lists."""
    eid = _session(one)
    datasets = one._cache.datasets
    row = datasets.loc[eid].iloc[0]
    new_id = uuid.uuid4()
    n = len(datasets)
    datasets.loc[(eid, new_id), :] = row.to_numpy()
    table = one._cache.datasets  # .loc appended in place
    assert table is datasets and len(table) == n + 1 and (eid, new_id) in table.index
    rel_paths = one.list_datasets(eid)
    assert rel_paths.count(row['rel_path']) == 2  # the same path twice now
    assert one.list_datasets(eid, details=True).index.isin([new_id]).any()


# ---- a table without ONE's index ----------------------------------------------------------------

@pytest.mark.filterwarnings('ignore:The inplace keyword')  # deprecated in pandas 3.1
def test_reset_index_in_place_is_indexed_again(one, own_root, caplog):
    """After ``reset_index(inplace=True)`` the instance sets ONE's index again (from the id
    columns) instead of answering nothing; saving works too."""
    eid = _session(one)
    before = _order_free_answers(one)
    datasets = one._cache.datasets
    datasets.reset_index(inplace=True)
    one._cache.sessions.reset_index(inplace=True)
    with caplog.at_level(logging.WARNING, logger='one.api'):
        assert _order_free_answers(one) == before
    assert "one._cache['datasets'] had the index [None]" in caplog.text
    assert one._cache.datasets.index.names == ['eid', 'id']
    assert len(one._cache.datasets.loc[eid]) == len(one.list_datasets(eid, qc='CRITICAL'))
    # saving a table whose index was reset
    one = One(cache_dir=own_root)
    before = _order_free_answers(one)
    one._cache.datasets.reset_index(inplace=True)
    one.save_cache(force=True)
    assert _order_free_answers(One(cache_dir=own_root)) == before


def test_a_table_with_a_range_index_and_no_ids_raises(one, own_root):
    eid = _session(one)
    datasets = one._cache.datasets
    one._cache['datasets'] = datasets.reset_index(drop=True)  # the ids are gone
    for call in (lambda: one.search(dataset='trials'), lambda: one.list_datasets(eid)):
        with pytest.raises(TableFormatError, match=r"one\._cache\['datasets'\].*eid"):
            call()
    one = One(cache_dir=own_root)
    one._cache['sessions'] = one._cache.sessions.reset_index(drop=True)
    with pytest.raises(TableFormatError, match="the sessions table.*'id'"):
        one.save_cache(force=True)
    assert One(cache_dir=own_root).search() == One(cache_dir=own_root).search()  # intact
    assert len(One(cache_dir=own_root).search()) == 12


# ---- saving -----------------------------------------------------------------------------------

def test_save_cache_round_trip_in_one_api_layout(own_root, mode):
    one = One(cache_dir=own_root)
    eid = _session(one)
    key = _row(one, eid, 'alf/_ibl_wheel.position.npy')
    one._cache.datasets.loc[key, 'qc'] = 'FAIL'
    one._cache.sessions.loc[eid, 'task_protocol'] = 'edited'
    one._cache['_meta']['modified_time'] = pd.Timestamp.now().to_pydatetime()
    before = answers(one, own_root)
    one.save_cache()
    for name, index in (('sessions', ['id']), ('datasets', ['eid', 'id'])):
        schema = pq.read_schema(own_root / f'{name}.pqt')
        assert json.loads(schema.metadata[b'pandas'])['index_columns'] == index
        assert all(str(schema.field(i).type) == 'string' for i in index)  # ids as strings
        table = pq.read_table(own_root / f'{name}.pqt')
        value = table.column(index[-1])[0].as_py()
        assert str(UUID(value)) == value  # canonical UUID strings
    assert str(pq.read_schema(own_root / 'datasets.pqt').field('rel_path').type) == 'string'
    reloaded = One(cache_dir=own_root)
    assert reloaded.search(task_protocol='edited') == [eid]
    assert reloaded.list_datasets(eid, qc='WARNING').count('alf/_ibl_wheel.position.npy') == 0
    assert not differences(before, answers(reloaded, own_root))


def test_load_cache_hands_out_new_tables(data_root, mode):
    one = One(cache_dir=data_root)
    old = one._cache
    eid = _session(one)
    old.sessions.loc[eid, 'subject'] = 'changed'
    one.load_cache()  # new tables, as ONE-api: the edits made to the old ones are gone
    assert one._cache is not old and one.search(subject='changed') == []
    assert isinstance(one._cache.sessions.index[0], UUID)
    assert eid in one.search(subject='KS001')


def test_prefetch_after_the_first_read(one):
    """Internal code working over several sessions on the handed-out tables (UUID ids)."""
    eids = one.search(subject='KS001')[:2]
    before = one.prefetch(eids, 'trials', download_only=True)
    one._cache  # noqa: B018
    after = one.prefetch(eids, 'trials', download_only=True)
    assert after == before and all(len(files) for files in after.values())
    assert set(after) == set(eids)
