"""Tests for one.alf.cache: schema, load/save, legacy patching, merging, indexing, safety."""
import datetime
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from one._tables import align, parquet, row_match, string_arrays, upsert, uuid_index
from one.alf import cache as alf_cache
from one.alf.cache import (
    DATASETS_COLUMNS,
    EMPTY_DATASETS_FRAME,
    EMPTY_SESSIONS_FRAME,
    QC_TYPE,
    SESSIONS_COLUMNS,
    cast_index_object,
    default_cache,
    load_tables,
    make_parquet_db,
    merge_tables,
    patch_tables,
    read_tables,
    remove_missing_datasets,
    remove_table_files,
    save_tables,
)
from one.alf.exceptions import ALFWarning

FIXTURES = Path(__file__).parent / 'fixtures' / 'alyx'
NS = uuid.UUID('0b6f6a52-5cc0-4b8a-9d7e-3f1a2c4d5e6f')


def _is_str_dtype(dtype) -> bool:
    """object (pandas 2) or str (pandas 3)."""
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


def _uid(*parts) -> str:
    return str(uuid.uuid5(NS, '/'.join(map(str, parts))))


def _sessions(n, tag='s', start=0) -> pd.DataFrame:
    ids = [_uid(tag, i) for i in range(start, start + n)]
    return pd.DataFrame({
        'lab': ['lab'] * n,
        'subject': [f'{tag}{i}' for i in range(start, start + n)],
        'date': [datetime.date(2024, 1, 1) + datetime.timedelta(days=i)
                 for i in range(start, start + n)],
        'number': np.arange(1, n + 1, dtype=np.uint16),
        'task_protocol': ['proto'] * n,
        'projects': ['a,b'] * n,
    }, index=pd.Index(ids, name='id'))


def _datasets(eids, per=2, tag='d') -> pd.DataFrame:
    rows = [(e, _uid(tag, e, j), f'alf/obj{j}.attr.npy') for e in eids for j in range(per)]
    n = len(rows)
    return pd.DataFrame({
        'rel_path': [r[2] for r in rows],
        'file_size': pd.array(np.arange(n), dtype='UInt64'),
        'hash': ['0' * 32] * n,
        'exists': [True] * n,
        'qc': pd.Categorical(['PASS'] * n, dtype=QC_TYPE),
    }, index=pd.MultiIndex.from_tuples([r[:2] for r in rows], names=['eid', 'id']))


def _cache_with(sessions=None, datasets=None, origin='test'):
    cache = default_cache(origin)
    if sessions is not None:
        cache['sessions'] = sessions
    if datasets is not None:
        cache['datasets'] = datasets
    return cache


def _touch(root: Path, rel: str, data: bytes = b'') -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------------------------ schema

def test_qc_type_is_ordered():
    assert list(QC_TYPE.categories) == ['NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL']
    assert QC_TYPE.ordered
    s = pd.Series(['FAIL', 'PASS', 'CRITICAL', 'NOT_SET', 'WARNING'], dtype=QC_TYPE)
    assert s[s.le('WARNING')].tolist() == ['PASS', 'NOT_SET', 'WARNING']


def test_column_constants_and_empty_frames():
    assert list(SESSIONS_COLUMNS) == ['id', 'lab', 'subject', 'date', 'number', 'task_protocol',
                                      'projects']
    assert list(DATASETS_COLUMNS) == ['eid', 'id', 'rel_path', 'file_size', 'hash', 'exists',
                                      'qc']
    assert EMPTY_SESSIONS_FRAME.index.name == 'id'
    assert list(EMPTY_SESSIONS_FRAME.columns) == list(SESSIONS_COLUMNS)[1:]
    assert EMPTY_SESSIONS_FRAME['number'].dtype == np.uint16
    assert EMPTY_DATASETS_FRAME.index.names == ['eid', 'id']
    assert list(EMPTY_DATASETS_FRAME.columns) == list(DATASETS_COLUMNS)[2:]
    assert str(EMPTY_DATASETS_FRAME['file_size'].dtype) == 'UInt64'
    assert EMPTY_DATASETS_FRAME['exists'].dtype == bool
    assert EMPTY_DATASETS_FRAME['qc'].dtype == QC_TYPE


def test_default_cache():
    cache = default_cache()
    assert set(cache) == {'datasets', 'sessions', '_meta'}
    assert cache.datasets is not EMPTY_DATASETS_FRAME and cache.datasets.empty
    meta = cache['_meta']
    assert all(meta[k] is None for k in ('created_time', 'loaded_time', 'modified_time',
                                         'saved_time'))
    assert meta['raw']['datasets']['origin'] == set()
    datetime.datetime.fromisoformat(meta['raw']['sessions']['date_created'])
    meta['raw']['datasets']['origin'].add('x')  # independent copies
    assert meta['raw']['sessions']['origin'] == set()
    assert default_cache('alyx')['_meta']['raw']['sessions']['origin'] == {'alyx'}


def test_metadata_helper(tmp_path):
    meta = alf_cache._metadata(tmp_path)
    assert meta['origin'] == str(tmp_path)
    created = datetime.datetime.strptime(meta['date_created'], '%Y-%m-%d %H:%M')
    assert abs(datetime.datetime.now() - created) < datetime.timedelta(minutes=2)


def test_cast_index_object_round_trip():
    ses = _sessions(3)
    dsets = _datasets(ses.index, per=2)
    cast_index_object(dsets)
    assert isinstance(dsets.index[0][0], uuid.UUID) and isinstance(dsets.index[0][1], uuid.UUID)
    assert dsets.index.names == ['eid', 'id']
    cast_index_object(dsets, str)
    assert dsets.index[0][0] == ses.index[0]
    ses.index = pd.Index([ses.index[0], None, ses.index[2]], name='id')
    out = cast_index_object(ses)
    assert out is ses and out.index.name == 'id'
    assert isinstance(out.index[0], uuid.UUID) and pd.isna(out.index[1])


# ------------------------------------------------------------------------- save / load tables

def test_save_load_round_trip_all_dtypes(tmp_path):
    ses = _sessions(4)
    dsets = _datasets(ses.index, per=3)
    dsets['file_size'] = dsets['file_size'].astype(object).where(
        np.arange(len(dsets)) != 1, None).astype('UInt64')
    dsets['hash'] = [''] * 2 + ['f' * 32] * (len(dsets) - 2)
    dsets['exists'] = np.arange(len(dsets)) % 2 == 0
    dsets['qc'] = pd.Categorical(['CRITICAL', 'NOT_SET', 'WARNING'] * 4, dtype=QC_TYPE)
    dsets['default_revision'] = True
    cache = _cache_with(ses, dsets, origin='somewhere')
    files = save_tables(cache, tmp_path / 'tables')
    assert [f.name for f in files] == ['sessions.pqt', 'datasets.pqt']

    # One's own loader: ids stay str, rel_path categorical (sorted categories)
    fast = read_tables(tmp_path / 'tables')
    pd.testing.assert_frame_equal(fast.sessions, ses.sort_index(), check_dtype=False,
                                  check_index_type=False)
    d = fast.datasets
    assert isinstance(d['rel_path'].dtype, pd.CategoricalDtype)
    assert d['rel_path'].cat.categories.is_monotonic_increasing
    pd.testing.assert_frame_equal(d.assign(rel_path=d['rel_path'].astype(object)),
                                  dsets.sort_index().assign(rel_path=lambda x: x['rel_path']
                                                            .astype(object)),
                                  check_dtype=False, check_index_type=False)
    assert isinstance(fast.sessions.index[0], str) and isinstance(d.index[0][1], str)
    # the public loader: ONE-api's shape, UUID ids and plain strings, the same values
    loaded = load_tables(tmp_path / 'tables')
    s, d = loaded.sessions, loaded.datasets
    pd.testing.assert_frame_equal(s, cast_index_object(ses.sort_index(), uuid.UUID),
                                  check_dtype=False, check_index_type=False)
    pd.testing.assert_frame_equal(d, cast_index_object(dsets.sort_index(), uuid.UUID),
                                  check_dtype=False, check_index_type=False)
    assert not isinstance(d['rel_path'].dtype, pd.CategoricalDtype)
    assert _is_str_dtype(d['rel_path'].dtype)
    assert s.index.name == 'id' and d.index.names == ['eid', 'id']
    assert isinstance(s.index[0], uuid.UUID) and isinstance(d.index[0][1], uuid.UUID)
    assert d.index.is_monotonic_increasing
    assert all(_is_str_dtype(s[c].dtype) for c in ('lab', 'subject', 'task_protocol',
                                                   'projects'))
    assert isinstance(s['date'].iloc[0], datetime.date) and s['number'].dtype == np.uint16
    assert str(d['file_size'].dtype) == 'UInt64' and d['file_size'].isna().sum() == 1
    assert d['exists'].dtype == bool and d['default_revision'].dtype == bool
    assert d['qc'].dtype == QC_TYPE
    assert d['hash'].tolist().count('') == 2
    meta = loaded['_meta']
    assert meta['raw']['sessions']['origin'] == {'somewhere'}
    assert meta['loaded_time'] is not None
    assert meta['created_time'] == datetime.datetime.fromisoformat(
        cache['_meta']['raw']['sessions']['date_created'])
    assert cache['_meta']['saved_time'] is not None


def test_saved_files_have_one_layout(tmp_path):
    """Index levels as str columns, origin as a list, keys ONE-api reads."""
    ses = _sessions(2)
    cache = _cache_with(ses, _datasets(ses.index), origin='here')
    cache['_meta']['modified_time'] = datetime.datetime(2024, 5, 6, 7, 8, 9)
    save_tables(cache, tmp_path)
    for name, index in (('sessions', ['id']), ('datasets', ['eid', 'id'])):
        schema = pq.read_schema(tmp_path / f'{name}.pqt')
        pandas_meta = json.loads(schema.metadata[b'pandas'])
        assert pandas_meta['index_columns'] == index
        assert all(schema.field(i).type == pa.string() for i in index)
        meta = json.loads(schema.metadata[b'one_metadata'])
        assert meta['origin'] == ['here']
        assert meta['date_modified'] == '2024-05-06 07:08'
        datetime.datetime.strptime(meta['date_created'], '%Y-%m-%d %H:%M')
    assert pq.read_schema(tmp_path / 'sessions.pqt').field('date').type == pa.date32()
    assert pq.read_schema(tmp_path / 'sessions.pqt').field('number').type == pa.uint16()


def test_load_tables_missing_or_empty_dir(tmp_path):
    for folder in (tmp_path / 'missing', tmp_path):
        cache = load_tables(folder)
        assert cache.sessions.empty and cache.datasets.empty
        assert cache['_meta']['loaded_time'] is None and cache['_meta']['created_time'] is None


def test_load_tables_skips_tables_without_date_created(tmp_path, caplog):
    parquet.save(tmp_path / 'sessions.pqt', _sessions(2), {'origin': 'x'})
    with caplog.at_level(logging.WARNING, logger='one.alf.cache'):
        cache = load_tables(tmp_path)
    assert 'does not appear to be a valid table. Skipping' in caplog.text
    assert cache.sessions.empty
    assert cache['_meta']['raw']['sessions'] == {'origin': 'x'}
    assert cache['_meta']['loaded_time'] is None


def test_load_tables_any_table_name_and_origin_default(tmp_path):
    ins = pd.DataFrame({'name': ['probe00', 'probe01']}, index=pd.MultiIndex.from_tuples(
        [(_uid('e', 1), _uid('p', 2)), (_uid('e', 0), _uid('p', 1))], names=['eid', 'id']))
    parquet.save(tmp_path / 'insertions.pqt', ins, {'date_created': '2020-01-01 00:00'})
    cache = load_tables(tmp_path)
    assert cache.insertions.index.is_monotonic_increasing
    key = (uuid.UUID(_uid('e', 1)), uuid.UUID(_uid('p', 2)))
    assert cache.insertions.loc[key, 'name'] == 'probe00'
    assert cache['_meta']['raw']['insertions']['origin'] == {'unknown'}
    assert cache['_meta']['created_time'] == datetime.datetime(2020, 1, 1)


def test_load_tables_sets_index_from_id_columns(tmp_path):
    ses = _sessions(3).reset_index()
    dsets = _datasets(ses['id'], per=2).reset_index()
    parquet.save(tmp_path / 'sessions.pqt', ses.iloc[::-1], {'date_created': '2024-01-01'})
    parquet.save(tmp_path / 'datasets.pqt', dsets, {'date_created': '2024-01-01'})
    cache = load_tables(tmp_path)
    assert cache.sessions.index.name == 'id'
    assert cache.sessions.index.is_monotonic_increasing
    assert cache.datasets.index.names == ['eid', 'id']
    parquet.save(tmp_path / 'bad.pqt', pd.DataFrame({'x': [1]}), {'date_created': '2024-01-01'})
    with pytest.raises(KeyError, match='Failed to set index'):
        load_tables(tmp_path)


def test_load_tables_casts_qc_strings(tmp_path):
    dsets = _datasets([_uid('e')], per=2)
    dsets['qc'] = ['FAIL', 'PASS']
    parquet.save(tmp_path / 'datasets.pqt', dsets, {'date_created': '2024-01-01'})
    d = load_tables(tmp_path).datasets
    assert d['qc'].dtype == QC_TYPE
    assert sorted(d['qc'].tolist()) == ['FAIL', 'PASS']


# ----------------------------------------------------------------------------- legacy tables

def _int_pair(u: str) -> tuple:
    low, high = np.frombuffer(uuid.UUID(u).bytes, dtype='<i8')
    return int(low), int(high)


def _write_legacy_tables(folder: Path):
    """Tables as written by ONE < 1.13: int64-pair ids, 'project', float sizes, no qc."""
    eids = [_uid('legacy', i) for i in range(2)]
    dids = [_uid('legacy-d', i) for i in range(3)]
    ses = pa.table({
        'id_0': [_int_pair(e)[0] for e in eids], 'id_1': [_int_pair(e)[1] for e in eids],
        'lab': ['mainenlab', 'cortexlab'], 'subject': ['ZFM-01935', 'KS005'],
        'date': [datetime.date(2021, 2, 5), datetime.date(2019, 4, 2)],
        'number': pa.array([1, 4], pa.int64()), 'task_protocol': ['', 'habituation'],
        'project': ['ibl_neuropixel_brainwide_01', ''],
    })
    dset_eids = [eids[0], eids[0], eids[1]]
    dsets = pa.table({
        'eid_0': [_int_pair(e)[0] for e in dset_eids],
        'eid_1': [_int_pair(e)[1] for e in dset_eids],
        'id_0': [_int_pair(d)[0] for d in dids], 'id_1': [_int_pair(d)[1] for d in dids],
        'session_path': ['mainenlab/Subjects/ZFM-01935/2021-02-05/001'] * 2 +
                        ['cortexlab/Subjects/KS005/2019-04-02/004'],
        'rel_path': ['alf/probe00/_phy_spikes_subset.waveforms.npy', 'alf/a.b.npy',
                     'alf/_ibl_wheel.position.npy'],
        'file_size': [1024.0, None, 12.0], 'hash': ['a' * 32, None, 'b' * 32],
        'exists': [True, True, False],
    })
    meta = json.dumps({'date_created': '2021-05-13 20:38', 'origin': 'ibl_test'}).encode()
    pq.write_table(ses.replace_schema_metadata({b'one_metadata': meta}),
                   folder / 'sessions.pqt')
    pq.write_table(dsets.replace_schema_metadata({b'one_metadata': meta}),
                   folder / 'datasets.pqt')
    return eids, dids


def test_load_legacy_tables(tmp_path):
    eids, dids = _write_legacy_tables(tmp_path)
    cache = load_tables(tmp_path)
    ses, dsets = cache.sessions, cache.datasets
    eids, dids = [uuid.UUID(x) for x in eids], [uuid.UUID(x) for x in dids]
    assert ses.index.name == 'id' and sorted(ses.index) == sorted(eids)
    assert 'projects' in ses.columns and 'project' not in ses.columns
    assert ses.loc[eids[0], 'projects'] == 'ibl_neuropixel_brainwide_01'
    assert dsets.index.names == ['eid', 'id']
    assert set(dsets.index) == {(eids[0], dids[0]), (eids[0], dids[1]), (eids[1], dids[2])}
    assert 'session_path' not in dsets.columns
    assert dsets['qc'].dtype == QC_TYPE and set(dsets['qc']) == {'NOT_SET'}
    assert str(dsets['file_size'].dtype) == 'UInt64'
    assert dsets.loc[(eids[0], dids[0]), 'file_size'] == 1024
    assert pd.isna(dsets.loc[(eids[0], dids[1]), 'file_size'])
    assert cache['_meta']['raw']['datasets']['origin'] == {'ibl_test'}
    assert cache['_meta']['created_time'] == datetime.datetime(2021, 5, 13, 20, 38)


def test_cache_int2str_known_pair():
    u = 'd3372b15-f696-4279-9be5-98f15783b5bb'
    low, high = _int_pair(u)
    df = pd.DataFrame({'x': [1]}, index=pd.MultiIndex.from_arrays(
        [[low], [high]], names=['id_0', 'id_1']))
    out = alf_cache._cache_int2str(df)
    assert out.index.name == 'id' and out.index[0] == u
    # other levels are kept in place and a table without pairs is returned unchanged
    df2 = pd.DataFrame({'x': [1]}, index=pd.MultiIndex.from_arrays(
        [[low], [high], ['k']], names=['eid_0', 'eid_1', 'key']))
    assert list(alf_cache._cache_int2str(df2).index[0]) == [u, 'k']
    plain = _sessions(1)
    assert alf_cache._cache_int2str(plain) is plain


def test_patch_tables_versions():
    df = pd.DataFrame({'project': ['p'], 'session_path': ['x']}, index=pd.Index(['a'],
                                                                               name='id'))
    patched = patch_tables(df, '1.12.9', 'datasets')
    assert list(patched.columns) == ['projects', 'qc']
    assert patched['qc'].tolist() == ['NOT_SET']
    assert list(patch_tables(df, '1.13.0', 'datasets').columns) == ['project', 'qc']
    # '2.10' is newer than 2.7 (numeric, not string, comparison): no qc added
    assert list(patch_tables(df, '2.10', 'datasets').columns) == ['project']
    assert list(patch_tables(df, None, 'sessions').columns) == ['projects', 'session_path']


# ---------------------------------------------------------------------- recorded Alyx tables

def _alyx_cache_dir(tmp_path) -> Path:
    with zipfile.ZipFile(FIXTURES / 'cache_zip.zip') as z:
        z.extractall(tmp_path / 'alyx')
    return tmp_path / 'alyx'


def test_recorded_alyx_cache_loads_with_rest_values(tmp_path):
    cache = load_tables(_alyx_cache_dir(tmp_path))
    ses, dsets = cache.sessions, cache.datasets
    rest = json.loads((FIXTURES / 'sessions_list_all.json').read_text())['results']
    assert sorted(ses.index) == sorted(uuid.UUID(r['id']) for r in rest)
    for r in rest:
        row = ses.loc[uuid.UUID(r['id'])]
        assert row['subject'] == r['subject'] and row['lab'] == r['lab']
        assert row['number'] == r['number'] and row['task_protocol'] == r['task_protocol']
        assert row['date'] == datetime.date.fromisoformat(r['start_time'][:10])
        assert row['projects'] == ','.join(r['projects'])
    counts = {str(k): v for k, v in dsets.groupby(level='eid').size().to_dict().items()}
    assert counts == {
        '75b7248d-4a93-4d90-814f-6ed5892cdb8f': 18, 'c25ba874-0eb1-4921-b6e3-976877429206': 33,
        'f3956a1d-b81d-4cc4-bc6a-520fa96051a6': 18, '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33': 25,
        'db74744d-cff4-4ca3-a8ac-6a249585a1d0': 18, '6bae27ed-da06-4ac4-915d-39ae53966935': 25}
    assert dsets['qc'].dtype == QC_TYPE and str(dsets['file_size'].dtype) == 'UInt64'
    assert dsets['exists'].all() and dsets.index.is_monotonic_increasing
    assert ses.index.is_monotonic_increasing  # stored unsorted, sorted on load
    meta = cache['_meta']
    assert meta['raw']['datasets']['origin'] == {'alyx'}
    assert meta['raw']['datasets']['min_api_version'] == '2.10'
    assert meta['created_time'] == datetime.datetime(2026, 11, 23, 19, 46)


@pytest.mark.parametrize('fixture', ['sessions_read.json',
                                     'sessions_read_with_revision_2probes.json'])
def test_recorded_alyx_datasets_match_session_records(tmp_path, fixture):
    dsets = load_tables(_alyx_cache_dir(tmp_path)).datasets
    record = json.loads((FIXTURES / fixture).read_text())
    expected = record['data_dataset_session_related']
    table = dsets.loc[uuid.UUID(record['id'])]
    assert len(table) == len(expected)
    for d in expected:
        row = table.loc[uuid.UUID(d['id'])]
        # the REST 'revision' is the revision's id: take the relative path from the file URL
        rel_path = d['data_url'].split(f"/{record['number']:03d}/", 1)[1]
        assert row['rel_path'] == rel_path.replace(f".{d['id']}", '')
        assert row['rel_path'].startswith(d['collection'] + '/')
        assert row['rel_path'].endswith('/' + d['name'])
        assert ('#' in row['rel_path']) == bool(d['revision'])
        assert row['file_size'] == d['file_size'] and row['hash'] == d['hash']
        assert row['default_revision'] == (d['default_revision'] == 'True')
        assert row['qc'] == d['qc']


def test_recorded_alyx_revision_dataset(tmp_path):
    dsets = load_tables(_alyx_cache_dir(tmp_path)).datasets
    revised = dsets[dsets['rel_path'].str.contains('#')]
    assert revised.index.get_level_values('eid').tolist() == [
        uuid.UUID('c25ba874-0eb1-4921-b6e3-976877429206')]
    assert revised['rel_path'].tolist() == ['alf/#2024-06-01#/_ibl_trials.choice.npy']
    assert revised['default_revision'].iloc[0]  # the revision is the default
    original = dsets[dsets['rel_path'] == 'alf/_ibl_trials.choice.npy'].loc[
        uuid.UUID('c25ba874-0eb1-4921-b6e3-976877429206')]
    assert original.index.tolist() == [uuid.UUID('9772712a-b91b-44fa-b9e4-4adbb8fd7c2d')]
    assert not original['default_revision'].iloc[0]
    assert dsets['default_revision'].sum() == len(dsets) - 1


def test_recorded_alyx_cache_resaved_keeps_values(tmp_path):
    original = load_tables(_alyx_cache_dir(tmp_path))
    save_tables(original, tmp_path / 'copy')
    copy = load_tables(tmp_path / 'copy')
    pd.testing.assert_frame_equal(copy.datasets, original.datasets)
    pd.testing.assert_frame_equal(copy.sessions, original.sessions)
    assert copy['_meta']['raw']['datasets']['min_api_version'] == '2.10'
    assert copy['_meta']['raw']['datasets']['origin'] == {'alyx'}


# ------------------------------------------------------------------------------ merge_tables

def test_merge_tables_updates_and_inserts():
    ses = _sessions(3)
    cache = _cache_with(ses, _datasets(ses.index))
    before = cache['datasets'].copy()
    new = _datasets([_uid('new')], per=2)
    changed = before.iloc[[0]].assign(hash='c' * 32, qc='FAIL')
    t = merge_tables(cache, datasets=pd.concat([new, changed]), origin='remote')
    assert isinstance(t, datetime.datetime) and cache['_meta']['modified_time'] == t
    d = cache['datasets']
    assert len(d) == len(before) + 2 and d.index.is_monotonic_increasing
    assert d.loc[before.index[0], 'hash'] == 'c' * 32 and d.loc[before.index[0], 'qc'] == 'FAIL'
    assert d.loc[before.index[1], 'hash'] == '0' * 32
    assert d.dtypes.to_dict() == before.dtypes.to_dict()
    assert cache['_meta']['raw']['datasets']['origin'] == {'test', 'remote'}
    assert len(before) == 6  # the previous frame was not modified
    assert (before['hash'] == '0' * 32).all()


def test_merge_tables_into_loaded_read_only_table(tmp_path):
    ses = _sessions(2)
    save_tables(_cache_with(ses, _datasets(ses.index)), tmp_path)
    cache = load_tables(tmp_path)
    rec = cache['datasets'].iloc[:1].assign(file_size=99)
    merge_tables(cache, datasets=rec)
    assert cache['datasets'].iloc[0]['file_size'] == 99
    assert str(cache['datasets']['file_size'].dtype) == 'UInt64'


def test_merge_tables_series():
    ses = _sessions(2)
    cache = _cache_with(ses, _datasets(ses.index))
    row = ses.iloc[0].copy()
    row['subject'] = 'renamed'
    row.name = _uid('series-session')
    merge_tables(cache, sessions=row)
    s = cache['sessions']
    assert s.loc[row.name, 'subject'] == 'renamed' and len(s) == 3
    assert s['number'].dtype == np.uint16 and s.index.name == 'id'
    drow = cache['datasets'].iloc[0].copy()
    drow['rel_path'] = 'alf/x.y.npy'
    drow.name = (ses.index[0], _uid('series-dataset'))
    merge_tables(cache, datasets=drow)
    d = cache['datasets']
    assert d.loc[drow.name, 'rel_path'] == 'alf/x.y.npy'
    assert d.index.names == ['eid', 'id'] and d['qc'].dtype == QC_TYPE


def test_merge_tables_duplicates_keep_first():
    cache = default_cache()
    ses = _sessions(1)
    dup = pd.concat([ses, ses.assign(subject='second')])
    merge_tables(cache, sessions=dup)
    assert len(cache['sessions']) == 1 and cache['sessions']['subject'].iloc[0] == 's0'


def test_merge_tables_strict_and_columns():
    ses = _sessions(1)
    cache = _cache_with(ses, _datasets(ses.index).assign(default_revision=True, exists_aws=True))
    rec = _datasets([_uid('other')], per=2).assign(extra='dropped')
    rec['exists'] = [True, False]
    with pytest.raises(AssertionError):
        merge_tables(cache, strict=True, datasets=rec)
    merge_tables(cache, datasets=rec)
    d = cache['datasets']
    # as ONE-api: a record column the table lacks is dropped
    assert list(d.columns) == ['rel_path', 'file_size', 'hash', 'exists', 'qc',
                               'default_revision', 'exists_aws']
    added = d.loc[_uid('other')]
    assert added['exists_aws'].tolist() == added['exists'].tolist()  # copied from 'exists'
    assert sorted(added['exists_aws'].tolist()) == [False, True]
    # as ONE-api: an exists_* column the records lack becomes a nullable boolean
    assert d['exists_aws'].dtype == 'boolean'
    assert d.loc[ses.index[0], 'exists_aws'].all()
    assert not added['default_revision'].any()  # False: not marked as the default
    assert d['default_revision'].dtype == bool
    assert d.loc[ses.index[0], 'default_revision'].all()
    # strict with matching columns works
    same = d.iloc[:1].assign(hash='1' * 32)
    merge_tables(cache, strict=True, datasets=same)
    assert cache['datasets']['hash'].iloc[0] == '1' * 32


def test_merge_tables_drops_record_columns_but_default_revision():
    """As ONE-api: record columns the table lacks are dropped, except default_revision (from
    Alyx into a table without it: old rows False, bool)."""
    ses = _sessions(1)
    old = _datasets(ses.index)
    old['exists'] = [True, False]
    cache = _cache_with(ses, old)
    rec = _datasets([_uid('alyx')], per=2).assign(
        default_revision=[True, False], exists_aws=[False, True], tag='new',
        count=np.array([3, 4], dtype=np.int64))
    before = cache['datasets']
    merge_tables(cache, datasets=rec)
    d = cache['datasets']
    assert list(d.columns) == ['rel_path', 'file_size', 'hash', 'exists', 'qc',
                               'default_revision']
    assert 'default_revision' not in before.columns  # the input table is not modified
    assert d['default_revision'].dtype == bool
    assert d.loc[rec.index, 'default_revision'].tolist() == [True, False]
    assert not d.loc[ses.index[0], 'default_revision'].any()  # not marked default
    # the sessions table too; strict mode refuses other columns and changes nothing
    merge_tables(cache, sessions=_sessions(1, tag='t').assign(extra=1.5))
    assert 'extra' not in cache['sessions'].columns and len(cache['sessions']) == 2
    table = cache['datasets']
    with pytest.raises(AssertionError):
        merge_tables(cache, strict=True, datasets=rec.drop(columns='tag'))
    assert cache['datasets'] is table


def test_merge_tables_keeps_date_created():
    """merge_tables adds date_created to a table's metadata when missing, never overwrites it
    (issue 13: a planted overwrite went unnoticed)."""
    ses = _sessions(2)
    cache = _cache_with(ses.iloc[:1], _datasets(ses.index[:1]))
    raw = cache['_meta']['raw']
    raw['sessions']['date_created'] = '2020-01-02 03:04'
    raw['datasets'] = {'origin': {'x'}}  # no date_created
    merge_tables(cache, sessions=ses.iloc[1:], datasets=_datasets(ses.index[1:]),
                 origin='alyx')
    assert raw['sessions']['date_created'] == '2020-01-02 03:04'
    assert raw['sessions']['origin'] == {'test', 'alyx'}
    created = datetime.datetime.fromisoformat(raw['datasets']['date_created'])
    assert abs(created - datetime.datetime.now()) < datetime.timedelta(minutes=2)
    # merged again later: still the first date_created
    merge_tables(cache, datasets=_datasets(ses.index[1:], tag='again'))
    assert raw['datasets']['date_created'] == created.isoformat(sep=' ', timespec='minutes')
    assert raw['sessions']['date_created'] == '2020-01-02 03:04'


def test_loaded_rel_path_is_categorical_and_merges_widen_it(tmp_path):
    ses = _sessions(2)
    dsets = _datasets(ses.index, per=3)
    dsets['rel_path'] = ['alf/b.x.npy', 'alf/a.x.npy', 'alf/c.x.npy'] * 2
    save_tables(_cache_with(ses, dsets), tmp_path)
    cache = read_tables(tmp_path)  # One's own loader
    d = cache['datasets']
    assert isinstance(d['rel_path'].dtype, pd.CategoricalDtype)
    assert d['rel_path'].cat.categories.tolist() == ['alf/a.x.npy', 'alf/b.x.npy', 'alf/c.x.npy']
    # behaves as strings
    assert (d['rel_path'] == 'alf/a.x.npy').sum() == 2
    assert d['rel_path'].str.startswith('alf/a').sum() == 2
    assert d['rel_path'].isin(['alf/c.x.npy']).sum() == 2
    assert isinstance(d['rel_path'].iloc[0], str) and isinstance(d['rel_path'].tolist()[0], str)

    # new paths (plain strings, or another categorical) are added to the categories
    rec = _datasets([_uid('new')], per=2)
    rec['rel_path'] = ['alf/0.first.npy', 'alf/b.x.npy']
    merge_tables(cache, datasets=rec)
    update = cache['datasets'].iloc[[0]].assign(
        rel_path=pd.Categorical(['zz/last.one.npy']))
    merge_tables(cache, datasets=update)
    d = cache['datasets']
    assert isinstance(d['rel_path'].dtype, pd.CategoricalDtype)
    categories = d['rel_path'].cat.categories.tolist()
    assert categories == sorted(categories) and 'alf/0.first.npy' in categories
    assert d.loc[(_uid('new'), rec.index[0][1]), 'rel_path'] == 'alf/0.first.npy'
    assert d.loc[update.index[0], 'rel_path'] == 'zz/last.one.npy'
    assert d['rel_path'].isna().sum() == 0 and len(d) == 8

    # saving writes the plain string column ONE-api reads; merging with disk keeps it all
    other = load_tables(tmp_path)
    merge_tables(other, datasets=_datasets([_uid('other')], per=1).assign(
        rel_path=['raw/other.file.bin']))
    save_tables(other, tmp_path)
    save_tables(cache, tmp_path)
    schema = pq.read_schema(tmp_path / 'datasets.pqt')
    assert schema.field('rel_path').type == pa.string()
    column = next(c for c in json.loads(schema.metadata[b'pandas'])['columns']
                  if c['name'] == 'rel_path')
    assert column['pandas_type'] in ('unicode', 'object', 'str')
    final = load_tables(tmp_path).datasets
    assert len(final) == 9
    assert set(final['rel_path']) == {'alf/a.x.npy', 'alf/b.x.npy', 'alf/c.x.npy',
                                      'alf/0.first.npy', 'zz/last.one.npy',
                                      'raw/other.file.bin'}


def _random_uuids(rng, n) -> list:
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]


def _merge_both_ways(monkeypatch, cache, records):
    """merge_tables into a copy of the cache by the general path, then by the fast one."""
    general = {**cache, '_meta': {}}
    with monkeypatch.context() as m:
        m.setattr(upsert, '_upsert_sorted', lambda table, records: None)
        merge_tables(general, datasets=records)
    merge_tables(cache, datasets=records)
    return general['datasets'], cache['datasets']


@pytest.mark.parametrize('loader', [read_tables, load_tables], ids=['str ids', 'UUIDs'])
def test_merge_into_loaded_table_matches_general_path(tmp_path, monkeypatch, loader):
    """Records found by binary search and inserted between slices: same table as sorting.
    The ids of the table are strings (One's loader) or UUIDs (ONE-api's shape); the records
    give them in both forms."""
    rng = np.random.default_rng(7)
    eids = sorted(_random_uuids(rng, 30))
    ses = _sessions(30).set_axis(pd.Index(eids, name='id'))
    rows = [(e, i, f'alf/obj{rng.integers(0, 5)}.attr.npy')
            for e in eids[::2] for i in _random_uuids(rng, 6)]
    dsets = _datasets(eids[:1], per=len(rows)).set_axis(
        pd.MultiIndex.from_tuples([r[:2] for r in rows], names=['eid', 'id']))
    dsets['rel_path'] = [r[2] for r in rows]
    dsets['default_revision'] = True
    save_tables(_cache_with(ses, dsets.sort_index()), tmp_path)  # sorted, as Alyx writes it
    cache = loader(tmp_path)
    as_uuid = loader is load_tables
    monkeypatch.setattr(upsert, '_MAX_CHUNKS', 4)  # join chunks often
    for step in range(12):
        table = cache['datasets']
        assert upsert._sorted_row_order_index(table.index) is not None
        existing = table.iloc[rng.choice(len(table), 3, replace=False)]
        known = [(e, i) for e in rng.choice(eids, 4) for i in _random_uuids(rng, 2)]
        new = pd.DataFrame({
            'rel_path': [f'new/path{step}.{j}.npy' for j in range(len(known))],
            'file_size': pd.array(np.arange(len(known)), dtype='UInt64'),
            'hash': ['a' * 32] * len(known), 'exists': True,
            'qc': pd.Categorical(['FAIL'] * len(known), dtype=QC_TYPE),
            'default_revision': False,
        }, index=pd.MultiIndex.from_tuples(known, names=['eid', 'id']))
        outside = _datasets([_uid('zzz', step), '0' + _uid('aaa', step)[1:]], per=1)
        records = pd.concat([existing.assign(hash='b' * 32, exists=False), new,
                             outside.assign(default_revision=True)]).sample(frac=1,
                                                                           random_state=step)
        general, fast = _merge_both_ways(monkeypatch, cache, records)
        pd.testing.assert_frame_equal(fast, general)
        assert fast.index.is_monotonic_increasing and fast.index.is_unique
        assert fast.loc[existing.index, 'hash'].eq('b' * 32).all()
        assert len(fast) == len(table) + len(new) + 2
        kind = uuid.UUID if as_uuid else str  # the table's form is kept
        assert all(isinstance(x, kind) for level in fast.index.levels for x in level)
        if as_uuid:  # the strings recorded for the id level are those of its UUIDs
            strings = uuid_index.strings_of(fast.index.levels[1])
            assert strings is not None
            assert list(strings) == [str(x) for x in fast.index.levels[1]]
    rel = cache['datasets']['rel_path']
    if as_uuid:
        assert 'new/path11.0.npy' in set(rel)
    else:
        assert isinstance(rel.dtype, pd.CategoricalDtype)
        assert 'new/path11.0.npy' in rel.cat.categories


@pytest.mark.parametrize('loader', [read_tables, load_tables], ids=['str ids', 'UUIDs'])
def test_merge_with_an_id_of_another_session_takes_the_general_path(tmp_path, monkeypatch,
                                                                   loader):
    ses = _sessions(2)
    save_tables(_cache_with(ses, _datasets(ses.index, per=3).sort_index()), tmp_path)
    cache = loader(tmp_path)
    table = cache['datasets']
    eid, dataset_id = table.index[0]
    other = [e for e in table.index.levels[0] if e != eid][0]
    record = table.iloc[[0]].set_axis(pd.MultiIndex.from_tuples([(other, dataset_id)],
                                                                names=['eid', 'id']))
    table, aligned = align.align(table, record)
    assert upsert._upsert_sorted(table, aligned) is None
    general, fast = _merge_both_ways(monkeypatch, cache, record)
    pd.testing.assert_frame_equal(fast, general)
    assert len(fast) == 7 and (fast.index.get_level_values('id') == dataset_id).sum() == 2


def test_merge_tables_exists_columns_default_true_without_exists():
    cache = _cache_with(_sessions(1).assign(exists_flatiron=False))
    rec = _sessions(1, tag='t')
    merge_tables(cache, sessions=rec)
    assert cache['sessions'].loc[rec.index[0], 'exists_flatiron']
    assert cache['sessions']['exists_flatiron'].dtype == 'boolean'
    assert cache['sessions']['exists_flatiron'].tolist() == [False, True]


def test_merge_tables_nothing_to_merge_keeps_modified_time():
    cache = default_cache()
    cache['_meta']['modified_time'] = stamp = datetime.datetime(2024, 1, 1)
    assert merge_tables(cache, sessions=None, datasets=EMPTY_DATASETS_FRAME) is None
    assert cache['_meta']['modified_time'] == stamp  # Q11: not reset to None
    with pytest.raises(KeyError, match='Table "insertions" not in cache'):
        merge_tables(cache, insertions=_sessions(1))


def test_merge_tables_new_table_meta_and_uuid_ids():
    cache = default_cache()
    cache['insertions'] = pd.DataFrame(
        {'name': pd.Series([], dtype=object)},
        index=pd.MultiIndex.from_arrays([[], []], names=['eid', 'id']))
    eid, pid = uuid.uuid4(), uuid.uuid4()
    rec = pd.DataFrame({'name': ['probe00']},
                       index=pd.MultiIndex.from_tuples([(eid, pid)], names=['eid', 'id']))
    merge_tables(cache, insertions=rec, origin='https://alyx.example.org')
    assert cache['insertions'].index[0] == (eid, pid)  # an empty table takes the records' ids
    raw = cache['_meta']['raw']['insertions']
    assert raw['origin'] == {'https://alyx.example.org'} and 'date_created' in raw
    # records with string ids into a table of UUIDs: stored as UUIDs (and the reverse)
    pid2 = uuid.uuid4()
    merge_tables(cache, insertions=pd.DataFrame(
        {'name': ['probe01']}, index=pd.MultiIndex.from_tuples([(str(eid), str(pid2))],
                                                               names=['eid', 'id'])))
    assert sorted(cache['insertions'].index) == sorted([(eid, pid), (eid, pid2)])
    assert {type(x) for level in cache['insertions'].index.levels for x in level} == \
        {uuid.UUID}
    strings = default_cache()
    strings['sessions'] = _sessions(2)
    merge_tables(strings, sessions=_sessions(1, tag='x').set_axis(
        pd.Index([uuid.uuid4()], name='id')))
    assert len(strings['sessions']) == 3
    assert all(isinstance(x, str) for x in strings['sessions'].index)


# ------------------------------------------------------------------------------ save_tables

def test_save_tables_merges_with_disk(tmp_path):
    ses_a, ses_b = _sessions(3, 'a'), _sessions(2, 'b')
    first = _cache_with(ses_a, _datasets(ses_a.index), origin='one')
    first['_meta']['raw']['sessions']['date_created'] = '2020-01-01 00:00'
    save_tables(first, tmp_path)
    second = _cache_with(pd.concat([ses_b, ses_a.iloc[[0]].assign(subject='changed')]),
                         _datasets(ses_b.index), origin='two')
    save_tables(second, tmp_path)
    loaded = read_tables(tmp_path)
    s = loaded.sessions
    assert set(s.index) == set(ses_a.index) | set(ses_b.index)
    assert s.loc[ses_a.index[0], 'subject'] == 'changed'  # memory wins
    assert s.loc[ses_a.index[1], 'subject'] == 'a1'  # disk-only rows kept
    assert len(loaded.datasets) == 10
    raw = loaded['_meta']['raw']['sessions']
    assert raw['origin'] == {'one', 'two'}
    assert raw['date_created'] == '2020-01-01 00:00'  # the earlier of the two
    assert second['_meta']['raw']['sessions']['date_created'] == '2020-01-01 00:00'
    assert len(second['sessions']) == 3  # the in-memory table is not modified


def _uuid_tables(rng, n_sessions=12, per=5):
    """Sessions and datasets with random UUIDs (sorted, as loaded), `default_revision` set."""
    eids = sorted(_random_uuids(rng, n_sessions))
    ses = _sessions(n_sessions).set_axis(pd.Index(eids, name='id'))
    dsets = _datasets(eids, per=per)
    dsets.index = pd.MultiIndex.from_arrays(
        [dsets.index.get_level_values(0), _random_uuids(rng, len(dsets))], names=['eid', 'id'])
    return ses, dsets.sort_index().assign(default_revision=True)


def _save_both_ways(monkeypatch, tmp_path, disk: dict, memory: dict) -> dict:
    """Save `memory` over a folder holding `disk`, by the general path then by the fast one.

    Asserts that both give the same files and that the fast path answered every merge.
    Returns the tables saved.
    """
    folders = []
    for name in ('general', 'fast'):
        folder = tmp_path / name
        save_tables(_cache_with(**disk), folder, clobber=True)
        folders.append(folder)
    with monkeypatch.context() as m:
        m.setattr(row_match, 'rows_not_in', lambda index, other: None)
        save_tables(_cache_with(**memory), folders[0])
    answers = []
    rows_not_in = row_match.rows_not_in

    def spy(index, other):
        answers.append(rows_not_in(index, other))
        expected = ~index.isin(other)
        assert answers[-1] is not None and np.array_equal(answers[-1], expected)
        return answers[-1]
    with monkeypatch.context() as m:
        m.setattr(row_match, 'rows_not_in', spy)
        save_tables(_cache_with(**memory), folders[1])
    assert len(answers) == len(memory)
    for table in memory:
        general, fast = (pq.read_table(f / f'{table}.pqt') for f in folders)
        assert fast.equals(general), table
    return read_tables(folders[1])


def test_save_over_an_equal_table_keeps_it(tmp_path, monkeypatch):
    """The same rows on disk and in memory: the memory's values and the disk's columns."""
    ses, dsets = _uuid_tables(np.random.default_rng(1))
    save_tables(_cache_with(ses, dsets.assign(exists_aws=False)), tmp_path / 'loaded')
    loaded = read_tables(tmp_path / 'loaded')
    a, b = (row_match._index_bytes(loaded['datasets'].index) for _ in range(2))
    assert row_match._same_rows(a, b)
    memory = {'sessions': loaded['sessions'].assign(subject='new'),
              'datasets': loaded['datasets'].drop(columns='exists_aws').assign(hash='f' * 32)}
    same_rows, seen = row_match._same_rows, []
    monkeypatch.setattr(row_match, '_same_rows', lambda a, b: seen.append(same_rows(a, b))
                        or seen[-1])
    saved = _save_both_ways(monkeypatch, tmp_path, {'sessions': ses, 'datasets': dsets.assign(
        exists_aws=False)}, memory)
    assert (saved['sessions']['subject'] == 'new').all()
    assert (saved['datasets']['hash'] == 'f' * 32).all()
    assert len(saved['datasets']) == len(dsets)
    # a column only on disk is kept, filled as merge_tables fills it (from ``exists``)
    assert (saved['datasets']['exists_aws'] == saved['datasets']['exists']).all()
    assert seen == [True, True]  # nothing was compared row by row


@pytest.mark.parametrize('case', ['disk', 'memory', 'both'])
def test_save_merges_extra_rows_as_the_general_path(tmp_path, monkeypatch, case):
    """Rows only on disk are kept, rows only in memory added, shared rows take memory values."""
    rng = np.random.default_rng(['disk', 'memory', 'both'].index(case))
    ses, dsets = _uuid_tables(rng, n_sessions=20, per=6)
    # a few rows of existing sessions, and whole sessions, on one side only
    only = rng.choice(len(dsets), 9, replace=False)
    whole = dsets.index.get_level_values(0).isin(ses.index[[3, 11]])
    one_side = np.zeros(len(dsets), dtype=bool)
    one_side[only] = True
    one_side |= whole
    shared_ses, shared = ses.drop(index=ses.index[[3, 11]]), dsets[~one_side]
    changed = shared.assign(hash='c' * 32, exists=False)
    if case == 'disk':
        disk, memory = {'sessions': ses, 'datasets': dsets}, \
            {'sessions': shared_ses, 'datasets': changed}
    elif case == 'memory':
        disk, memory = {'sessions': shared_ses, 'datasets': shared}, \
            {'sessions': ses, 'datasets': pd.concat([changed, dsets[one_side]]).sort_index()}
    else:
        half = np.flatnonzero(one_side)
        disk_rows, memory_rows = dsets.iloc[half[::2]], dsets.iloc[half[1::2]]
        disk = {'sessions': ses, 'datasets': pd.concat([shared, disk_rows]).sort_index()}
        memory = {'sessions': shared_ses.assign(lab='other'),
                  'datasets': pd.concat([changed, memory_rows]).sort_index()}
    saved = _save_both_ways(monkeypatch, tmp_path, disk, memory)
    assert len(saved['datasets']) == len(dsets) and len(saved['sessions']) == len(ses)
    assert (saved['datasets'].loc[shared.index, 'hash'] == 'c' * 32).all()
    assert (saved['datasets'].drop(index=shared.index)['hash'] == '0' * 32).all()


def test_save_with_an_id_in_two_sessions(tmp_path, monkeypatch):
    """(eid, id) pairs are compared whole: the same id under another session is another row."""
    ses, dsets = _uuid_tables(np.random.default_rng(5), n_sessions=4, per=3)
    eid, dataset_id = dsets.index[0]
    other = ses.index[2]
    moved = dsets.iloc[[0]].set_axis(pd.MultiIndex.from_tuples([(other, dataset_id)],
                                                               names=['eid', 'id']))
    memory = {'sessions': ses, 'datasets': pd.concat([dsets.iloc[1:], moved]).sort_index()}
    saved = _save_both_ways(monkeypatch, tmp_path, {'sessions': ses, 'datasets': dsets}, memory)
    assert len(saved['datasets']) == len(dsets) + 1
    ids = saved['datasets'].index.get_level_values('id')
    assert (ids == dataset_id).sum() == 2


def test_rows_not_in_is_exact_when_keys_collide(monkeypatch):
    """Keys only narrow the search: rows sharing a key are told apart on the strings."""
    rng = np.random.default_rng(9)
    _, dsets = _uuid_tables(rng, n_sessions=6, per=8)
    index = dsets.index
    other = index[rng.permutation(len(index))[:30]].append(index[:5])  # duplicates too
    other = other.append(pd.MultiIndex.from_arrays(
        [index.get_level_values(0)[:3], _random_uuids(rng, 3)], names=['eid', 'id']))
    expected = ~index.isin(other)
    assert np.array_equal(row_match.rows_not_in(index, other), expected)
    bytes_keys = string_arrays.bytes_keys
    monkeypatch.setattr(string_arrays, 'bytes_keys',
                        lambda fixed: bytes_keys(fixed) % np.uint64(3))
    assert np.array_equal(row_match.rows_not_in(index, other), expected)
    flat = pd.Index(index.get_level_values(1))
    assert np.array_equal(row_match.rows_not_in(flat, flat[::2]), ~flat.isin(flat[::2]))
    monkeypatch.setattr(row_match, '_MAX_SHARED_KEYS', 2)
    assert row_match.rows_not_in(index, other) is None  # too many shared keys: pandas


def test_rows_not_in_declines_other_indices():
    ses = _sessions(3)  # ids of uuid5: 36 characters
    assert row_match.rows_not_in(ses.index, ses.index[:1]).tolist() == [False, True, True]
    short = pd.Index(['a', 'b'], name='id')
    assert row_match.rows_not_in(short, short) is None
    dsets = _datasets(ses.index)
    assert row_match.rows_not_in(dsets.index, ses.index) is None  # levels differ
    assert row_match.rows_not_in(ses.index, ses.index.rename('eid')) is None


@pytest.mark.parametrize('clobber', [False, True])
def test_save_tables_drops_duplicate_rows(tmp_path, clobber):
    """As ONE-api, saving drops duplicate rows: the first row of an index value is kept."""
    ses = _sessions(3)
    dsets = _datasets(ses.index)
    changed = dsets.iloc[[1]].assign(hash='f' * 32)
    cache = _cache_with(pd.concat([ses, ses.iloc[[0]].assign(subject='copy')]),
                        pd.concat([dsets, changed, dsets.iloc[[4]]]))
    save_tables(_cache_with(ses.iloc[:1], dsets.iloc[:1]), tmp_path)
    save_tables(cache, tmp_path, clobber=clobber)
    saved_ses = pd.read_parquet(tmp_path / 'sessions.pqt')
    saved = pd.read_parquet(tmp_path / 'datasets.pqt')
    assert saved_ses.index.is_unique and len(saved_ses) == 3
    assert saved_ses.loc[ses.index[0], 'subject'] == ses['subject'].iloc[0]
    assert saved.index.is_unique and len(saved) == len(dsets)
    assert saved.loc[dsets.index[1], 'hash'] == dsets['hash'].iloc[1]
    assert len(cache['datasets']) == len(dsets) + 2  # the tables in memory are not changed


def test_save_tables_clobber_replaces(tmp_path):
    save_tables(_cache_with(_sessions(3, 'a')), tmp_path)
    save_tables(_cache_with(_sessions(1, 'b')), tmp_path, clobber=True)
    assert load_tables(tmp_path).sessions['subject'].tolist() == ['b0']


def test_save_tables_keeps_disk_only_columns(tmp_path):
    ses = _sessions(1)
    save_tables(_cache_with(ses, _datasets(ses.index).assign(default_revision=True)), tmp_path)
    other = _datasets([_uid('x')], per=1)
    save_tables(_cache_with(ses, other), tmp_path, tables=['datasets'])
    d = read_tables(tmp_path).datasets
    assert len(d) == 3 and 'default_revision' in d.columns
    assert d.loc[ses.index[0], 'default_revision'].all()
    assert d.loc[(_uid('x'), other.index[0][1]), 'default_revision'] is np.False_
    assert d['default_revision'].dtype == bool


def test_save_tables_empty_or_small_memory_keeps_disk(tmp_path):
    ses = _sessions(5)
    save_tables(_cache_with(ses, _datasets(ses.index)), tmp_path)
    before = load_tables(tmp_path)
    save_tables(default_cache(), tmp_path)  # an empty cache never wipes the tables
    after = load_tables(tmp_path)
    pd.testing.assert_frame_equal(after.datasets, before.datasets)
    pd.testing.assert_frame_equal(after.sessions, before.sessions)
    # a few records with a column the disk lacks: merged in, the column kept
    small = default_cache()
    rec = before.datasets.iloc[[1]].assign(hash='e' * 32, exists_aws=False)
    merge_tables(small, datasets=_datasets([_uid('new')], per=1))
    # string ids and UUIDs (from load_tables) mixed in one table: saved all the same
    small['datasets'] = pd.concat([small['datasets'].assign(exists_aws=True), rec])
    save_tables(small, tmp_path)
    d = read_tables(tmp_path).datasets
    key = tuple(map(str, rec.index[0]))
    assert len(d) == 11 and d.loc[key, 'hash'] == 'e' * 32
    assert not d.loc[key, 'exists_aws']
    old_rows = d.drop(index=[key, *_datasets([_uid('new')], per=1).index])
    assert len(old_rows) == 9
    assert (old_rows['exists_aws'] == old_rows['exists']).all()  # filled from 'exists'
    assert d['qc'].dtype == QC_TYPE and str(d['file_size'].dtype) == 'UInt64'


def test_save_tables_uuid_index_and_tables_arg(tmp_path):
    ses = cast_index_object(_sessions(2))
    cache = _cache_with(ses)
    with pytest.raises(KeyError, match='nope'):
        save_tables(cache, tmp_path, tables=['nope'])
    assert save_tables(cache, tmp_path / 'new', tables=['sessions']) == [
        tmp_path / 'new' / 'sessions.pqt']
    assert pq.read_schema(tmp_path / 'new' / 'sessions.pqt').field('id').type == pa.string()
    assert isinstance(ses.index[0], uuid.UUID)  # caller's frame untouched
    assert (tmp_path / 'new' / '.ONE.lock').exists()


def test_save_tables_replaces_unreadable_table_and_cleans_temps(tmp_path, caplog):
    (tmp_path / 'sessions.pqt').write_bytes(b'not parquet')
    stale = tmp_path / '.sessions.pqt.0123456789ab.tmp'
    stale.write_bytes(b'half')
    with caplog.at_level(logging.WARNING, logger='one.alf.cache'):
        save_tables(_cache_with(_sessions(2)), tmp_path)
    assert 'unreadable table' in caplog.text
    assert len(load_tables(tmp_path).sessions) == 2
    assert not stale.exists()


def _save_records_worker(tables_dir, worker, n_records, batch, start):
    """Child process: save `n_records` new sessions and datasets, `batch` at a time."""
    start.wait(60)
    for b in range(0, n_records, batch):
        cache = default_cache(origin=f'worker{worker}')
        ses = _sessions(batch, tag=f'w{worker}-', start=b)
        merge_tables(cache, sessions=ses, datasets=_datasets(ses.index, per=1, tag=f'w{worker}'))
        save_tables(cache, tables_dir, timeout=120)


def test_concurrent_savers_lose_no_records(tmp_path):
    """4 processes save 200 records each into the same tables at once: all 800 are kept."""
    ctx = multiprocessing.get_context('spawn')
    start = ctx.Event()
    procs = [ctx.Process(target=_save_records_worker, args=(tmp_path, w, 200, 20, start))
             for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * 4
    cache = read_tables(tmp_path)
    expected = {_uid(f'w{w}-', i) for w in range(4) for i in range(200)}
    assert set(cache.sessions.index) == expected
    assert len(cache.datasets) == 800
    assert set(cache.datasets.index.get_level_values('eid')) == expected
    assert cache['_meta']['raw']['sessions']['origin'] == {f'worker{w}' for w in range(4)}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


_PAUSING_WRITER = textwrap.dedent("""
    import datetime, os, sys
    import pyarrow.parquet as pq
    from one.alf.cache import load_tables, save_tables
    folder, pause_table, stage = sys.argv[1:]
    real_write_table, pause = pq.write_table, False

    def write_table(table, where, *args, **kwargs):
        # The pause point: the temporary file of `pause_table` is being written ('partial':
        # half its rows, no footer yet) or is written ('written': not yet renamed).
        if pause and os.path.basename(str(where)).startswith(f'.{pause_table}.pqt.'):
            if stage == 'partial':
                writer = pq.ParquetWriter(where, table.schema)
                writer.write_table(table.slice(0, table.num_rows // 2))
            else:
                real_write_table(table, where, *args, **kwargs)
            print('paused', where, flush=True)
            sys.stdin.readline()  # until killed
            raise SystemExit('not killed')
        return real_write_table(table, where, *args, **kwargs)

    pq.write_table = write_table
    cache = load_tables(folder)
    for version, clobber in (('v1', True), ('v2', False)):
        pause = version == 'v2'
        cache['sessions'] = cache['sessions'].assign(task_protocol=version)
        cache['datasets'] = cache['datasets'].assign(hash=version)
        cache['_meta']['modified_time'] = datetime.datetime.now()
        save_tables(cache, folder, clobber=clobber)
        print('saved', version, flush=True)
""")


@pytest.mark.skipif(os.name == 'nt', reason='SIGKILL: POSIX only')
@pytest.mark.parametrize('table, stage', [
    ('sessions', 'partial'), ('sessions', 'written'),
    ('datasets', 'partial'), ('datasets', 'written')])
def test_writer_killed_mid_save_leaves_readable_tables(tmp_path, table, stage):
    """SIGKILL a process while it writes a table (its temporary file proven present, half
    written or written but not renamed): every table loads, whole, old or new."""
    n_ses, per = 50, 20
    ses = _sessions(n_ses)
    ids = [str(uuid.UUID(int=i)) for i in range(n_ses * per)]
    dsets = pd.DataFrame({
        'rel_path': [f'alf/obj{j}.attr.npy' for j in range(per)] * n_ses,
        'file_size': pd.array(np.arange(n_ses * per), dtype='UInt64'),
        'hash': 'v0', 'exists': True,
        'qc': pd.Categorical.from_codes(np.zeros(n_ses * per, dtype=np.int8), dtype=QC_TYPE),
    }, index=pd.MultiIndex.from_arrays([np.repeat(ses.index, per), ids], names=['eid', 'id']))
    save_tables(_cache_with(ses.assign(task_protocol='v0'), dsets), tmp_path)
    proc = subprocess.Popen([sys.executable, '-c', _PAUSING_WRITER, str(tmp_path), table, stage],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ['saved', 'v1']
        word, where = proc.stdout.readline().split()
        assert word == 'paused'
        temp = Path(where)
        assert temp.parent == tmp_path and temp.name.startswith(f'.{table}.pqt.')
        assert temp.name.endswith('.tmp') and temp.exists()  # the kill lands mid-write
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait(60)
    cache = load_tables(tmp_path)
    s, d = cache.sessions, cache.datasets
    assert len(s) == n_ses and len(d) == n_ses * per
    # sessions are saved first: killed in the datasets, the sessions are new already
    expected = ('v2' if table == 'datasets' else 'v1', 'v1')
    assert (s['task_protocol'].unique().tolist(), d['hash'].unique().tolist()) == \
        ([expected[0]], [expected[1]])
    # the dead writer's lock does not block; its temporary file is cleaned up
    assert temp.exists()
    save_tables(cache, tmp_path, clobber=True, timeout=30)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


# ------------------------------------------------------------------------ remove_table_files

def test_remove_table_files(tmp_path, caplog):
    save_tables(_cache_with(_sessions(1)), tmp_path)
    (tmp_path / 'cache_info.json').write_text('{}')
    with caplog.at_level(logging.WARNING, logger='one.alf.cache'):
        removed = remove_table_files(tmp_path)
    assert sorted(p.name for p in removed) == ['cache_info.json', 'datasets.pqt',
                                              'sessions.pqt']
    assert not (tmp_path / 'sessions.pqt').exists()
    assert caplog.text == ''
    with caplog.at_level(logging.WARNING, logger='one.alf.cache'):
        assert remove_table_files(tmp_path, ['insertions']) == []
    assert 'cache_info.json not found' in caplog.text and 'insertions.pqt not found' in \
        caplog.text


# ---------------------------------------------------------------------------- make_parquet_db

TREE = {
    'mylab/Subjects/KS001/2024-01-15/001': [
        'alf/_ibl_trials.intervals.npy', 'alf/_ibl_trials.choice.npy',
        'alf/#2024-06-01#/_ibl_trials.choice.npy', 'alf/probe00/spikes.times.npy',
        'raw_behavior_data/_iblrig_taskSettings.raw.json', 'spikes.times.npy',
    ],
    'mylab/Subjects/KS001/2024-01-15/002': ['alf/_ibl_trials.intervals.npy'],
    'KS002/2024-02-01/001': ['alf/_ibl_trials.intervals.npy', 'alf/wheel.position.npy'],
}
INVALID = ['alf/bad-name.a.b', 'alf/spike_train.npy', 'alf/.hidden.times.npy',
           'alf/#rev#/sub/x.y.npy', 'notes.txt', 'alf/with space.times.npy']


def _make_tree(root: Path, invalid=True) -> dict:
    sizes = {}
    for ses, datasets in TREE.items():
        for i, rel in enumerate(datasets):
            data = f'{ses}/{rel}'.encode() * (i + 1)
            _touch(root, f'{ses}/{rel}', data)
            sizes[(ses, rel)] = data
        if invalid:
            for rel in INVALID:
                _touch(root, f'{ses}/{rel}', b'junk')
    _touch(root, 'mylab/Subjects/KS001/notasession/001/alf/a.b.npy')
    _touch(root, 'loose.times.npy')
    return sizes


def test_make_parquet_db_indexes_valid_datasets(tmp_path):
    contents = _make_tree(tmp_path)
    files = make_parquet_db(tmp_path)
    assert files == (tmp_path / 'sessions.pqt', tmp_path / 'datasets.pqt')
    cache = read_tables(tmp_path)
    ses, dsets = cache.sessions, cache.datasets
    assert len(ses) == 3 and ses.index.name == 'id'
    by_subject = ses.reset_index().set_index(['subject', 'number'])
    assert by_subject.loc[('KS001', 1), 'lab'] == 'mylab'
    assert by_subject.loc[('KS002', 1), 'lab'] == ''
    assert by_subject.loc[('KS001', 2), 'date'] == datetime.date(2024, 1, 15)
    assert ses['number'].dtype == np.uint16
    assert (ses['task_protocol'] == '').all() and (ses['projects'] == '').all()
    expected = sorted(rel for datasets in TREE.values() for rel in datasets)
    assert sorted(dsets['rel_path']) == expected  # invalid names are not indexed
    assert dsets['exists'].all() and (dsets['hash'] == '').all()
    assert set(dsets['qc']) == {'NOT_SET'} and dsets['qc'].dtype == QC_TYPE
    for (eid, _), row in dsets.iterrows():
        assert row['file_size'] == len(contents[(_folder(ses.loc[eid]), row['rel_path'])])
    for eid in ses.index:
        assert uuid.UUID(eid).version == 3 and str(uuid.UUID(eid)) == eid
    meta = cache['_meta']['raw']['datasets']
    assert meta['origin'] == {str(tmp_path.resolve())}
    # unlike ONE's make_parquet_db, the latest revision of each dataset is marked default
    assert dsets['default_revision'].dtype == bool
    stems = dsets['rel_path'].str.replace(r'#[^/]+#/', '', regex=True)
    revisions = dsets['rel_path'].str.extract(r'#([^/]+)#/', expand=False).fillna('')
    for _, group in dsets.assign(stem=stems, rev=revisions).groupby(
            [dsets.index.get_level_values('eid'), stems]):
        assert group['default_revision'].sum() == 1
        assert group.loc[group['default_revision'], 'rev'].item() == group['rev'].max()


def test_make_parquet_db_ids_stable_and_unique(tmp_path):
    _make_tree(tmp_path / 'a', invalid=False)
    make_parquet_db(tmp_path / 'a')
    first = read_tables(tmp_path / 'a')
    make_parquet_db(tmp_path / 'a')
    second = read_tables(tmp_path / 'a')
    assert list(first.datasets.index) == list(second.datasets.index)
    assert list(first.sessions.index) == list(second.sessions.index)
    # the same relative path in different sessions gets different ids (Q2)
    d = first.datasets
    same = d[d['rel_path'] == 'alf/_ibl_trials.intervals.npy']
    assert len(same) == 3 and same.index.get_level_values('id').nunique() == 3
    assert d.index.get_level_values('id').is_unique
    # ids are derived from (lab/)subject/date/number and session uuid + rel_path
    key = 'mylab/KS001/2024-01-15/001'
    eid = str(uuid.uuid3(alf_cache.ID_NAMESPACE, key))
    assert eid in first.sessions.index
    did = str(uuid.uuid3(alf_cache.ID_NAMESPACE, f'{eid}/alf/_ibl_trials.choice.npy'))
    assert d.loc[(eid, did), 'rel_path'] == 'alf/_ibl_trials.choice.npy'
    # another root holding the same session gives the same ids
    _make_tree(tmp_path / 'b', invalid=False)
    make_parquet_db(tmp_path / 'b', out_dir=tmp_path)
    assert list(read_tables(tmp_path).datasets.index) == list(d.index)


def _folder(ses_row) -> str:
    lab = f"{ses_row['lab']}/Subjects/" if ses_row['lab'] else ''
    return f"{lab}{ses_row['subject']}/{ses_row['date']}/{ses_row['number']:03d}"


@pytest.mark.parametrize('hash_ids', [True, False])
def test_make_parquet_db_rows_sorted_by_path(tmp_path, hash_ids):
    """As ONE-api: sessions by folder; datasets by session folder, then relative path."""
    _make_tree(tmp_path, invalid=False)
    make_parquet_db(tmp_path, hash_ids=hash_ids)
    ses = pd.read_parquet(tmp_path / 'sessions.pqt').reset_index()
    dsets = pd.read_parquet(tmp_path / 'datasets.pqt').reset_index()
    folders = [_folder(row) for _, row in ses.iterrows()]
    assert folders == sorted(TREE)
    folder_of = dict(zip(ses['id'], folders))
    rows = [(folder_of[e], r) for e, r in zip(dsets['eid'], dsets['rel_path'])]
    assert rows == sorted((f, r) for f, datasets in TREE.items() for r in datasets)
    if hash_ids:  # in memory, sorted by id
        assert load_tables(tmp_path).datasets.index.is_monotonic_increasing


def test_make_parquet_db_hash_files(tmp_path):
    _make_tree(tmp_path, invalid=False)
    _touch(tmp_path, 'KS002/2024-02-01/001/raw_ephys_data/_spikeglx_ephysData.ap.cbin',
           os.urandom(3 * 1024 * 1024 + 5))
    make_parquet_db(tmp_path, hash_files=True)
    cache = load_tables(tmp_path)
    d = cache.datasets
    assert len(d) == 10
    for (eid, _), row in d.iterrows():
        data = (tmp_path / _folder(cache.sessions.loc[eid]) / row['rel_path']).read_bytes()
        assert row['hash'] == hashlib.md5(data).hexdigest()


def test_make_parquet_db_without_hash_ids(tmp_path):
    _make_tree(tmp_path, invalid=False)
    make_parquet_db(tmp_path, hash_ids=False)
    raw, _ = parquet.load(tmp_path / 'datasets.pqt')
    assert isinstance(raw.index, pd.RangeIndex)  # saved without index
    cache = load_tables(tmp_path)
    assert set(cache.sessions.index) == {'mylab/KS001/2024-01-15/001',
                                         'mylab/KS001/2024-01-15/002', 'KS002/2024-02-01/001'}
    assert cache.datasets.index.names == ['eid', 'id']
    assert ('KS002/2024-02-01/001', 'alf/wheel.position.npy') in cache.datasets.index


def test_make_parquet_db_lab_option(tmp_path):
    _touch(tmp_path, 'root/KS002/2024-02-01/001/alf/a.b.npy')
    make_parquet_db(tmp_path / 'root', lab='newlab')
    assert load_tables(tmp_path / 'root').sessions['lab'].tolist() == ['newlab']
    _make_tree(tmp_path / 'tree', invalid=False)
    make_parquet_db(tmp_path / 'tree', lab='mylab')  # existing labs equal the option: fine
    assert set(load_tables(tmp_path / 'tree').sessions['lab']) == {'mylab'}
    with pytest.raises(AssertionError, match='mylab'):
        make_parquet_db(tmp_path / 'tree', lab='lab')  # Q3: not the literal 'lab'


def test_make_parquet_db_warnings_and_out_dir(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.warns(RuntimeWarning) as record:
        files = make_parquet_db(tmp_path / 'empty')
    assert {str(w.message) for w in record} == {'No sessions found', 'No datasets found'}
    cache = load_tables(tmp_path / 'empty')
    assert all(f.exists() for f in files) and cache.sessions.empty
    assert cache['_meta']['loaded_time'] is not None
    _touch(tmp_path, 'nodata/KS002/2024-02-01/001/notes.txt')
    with pytest.warns(RuntimeWarning, match='No datasets found'):
        make_parquet_db(tmp_path / 'nodata')
    assert len(load_tables(tmp_path / 'nodata').sessions) == 1
    with pytest.raises(AssertionError, match='does not exist'):
        make_parquet_db(tmp_path / 'nodata', out_dir=tmp_path / 'missing')


def test_make_parquet_db_unpadded_number_and_root_session(tmp_path):
    _touch(tmp_path, 'KS002/2024-02-01/1/alf/a.b.npy')
    with pytest.warns(ALFWarning, match='zero-padded'):
        make_parquet_db(tmp_path)
    assert load_tables(tmp_path).sessions['number'].tolist() == [1]
    session = tmp_path / 'KS003' / '2024-03-01' / '002'
    _touch(session, 'alf/c.d.npy')
    make_parquet_db(session)
    cache = load_tables(session)
    assert cache.sessions['subject'].tolist() == ['KS003']
    assert cache.datasets['rel_path'].tolist() == ['alf/c.d.npy']


def test_make_parquet_db_symlink_loop_terminates(tmp_path):
    _touch(tmp_path, 'KS002/2024-02-01/001/alf/a.b.npy')
    os.symlink(tmp_path, tmp_path / 'KS002' / 'loop')  # would find the session twice
    os.symlink(tmp_path / 'KS002', tmp_path / 'KS002/2024-02-01/001/alf/loop')
    _touch(tmp_path, 'elsewhere/alf/c.d.npy')
    os.symlink(tmp_path / 'elsewhere/alf/', tmp_path / 'elsewhere/alf/self')  # outside loop
    os.symlink(tmp_path / 'elsewhere/alf', tmp_path / 'KS002/2024-02-01/001/linked')
    _touch(tmp_path, 'KS002/2024-02-02/001/.keep')
    os.symlink(tmp_path / 'elsewhere/alf', tmp_path / 'KS002/2024-02-02/001/linked')
    make_parquet_db(tmp_path)
    cache = load_tables(tmp_path)
    d = cache.datasets
    assert sorted(d['rel_path']) == ['alf/a.b.npy', 'linked/c.d.npy', 'linked/c.d.npy']
    assert d.index.get_level_values('eid').nunique() == 2  # the shared folder is in both


def test_make_parquet_db_duplicate_sessions_skipped(tmp_path):
    _touch(tmp_path, 'a/KS002/2024-02-01/001/alf/a.b.npy')
    _touch(tmp_path, 'b/KS002/2024-02-01/001/alf/a.b.npy')
    with pytest.warns(ALFWarning, match='same session'):
        make_parquet_db(tmp_path)
    cache = load_tables(tmp_path)
    assert len(cache.sessions) == 1 and len(cache.datasets) == 1


def test_private_table_builders(tmp_path):
    _make_tree(tmp_path, invalid=False)
    info = alf_cache._get_session_info('mylab/Subjects/KS001/2024-01-15/002')
    assert info == {'id': 'mylab/KS001/2024-01-15/002', 'lab': 'mylab', 'subject': 'KS001',
                    'date': datetime.date(2024, 1, 15), 'number': 2, 'task_protocol': '',
                    'projects': ''}
    assert alf_cache._get_session_info(Path('KS002/2024-02-01/001'))['lab'] == ''
    with pytest.raises(ValueError, match='Invalid session path'):
        alf_cache._get_session_info('KS002/2024-02-01')
    ses = alf_cache._make_sessions_df(tmp_path)
    assert isinstance(ses.index, pd.RangeIndex) and list(ses.columns) == list(SESSIONS_COLUMNS)
    dsets = alf_cache._make_datasets_df(tmp_path, hash_files=True)
    assert list(dsets.columns) == list(DATASETS_COLUMNS)
    assert set(dsets['eid']) == set(ses['id'])
    assert (dsets['id'] == dsets['rel_path']).all() and dsets['hash'].str.len().eq(32).all()
    ses_u, dsets_u = alf_cache._ids_to_uuid(ses, dsets)
    assert set(dsets_u['eid']) == set(ses_u['id'])
    assert dsets_u['id'].is_unique
    assert ses['id'].str.count('/').ge(2).all()  # inputs untouched
    make_parquet_db(tmp_path)
    assert set(ses_u['id']) == set(read_tables(tmp_path).sessions.index)


# ------------------------------------------------------------------- remove_missing_datasets

def test_remove_missing_datasets(tmp_path, capsys):
    tmp_path = tmp_path.resolve()  # paths are returned resolved
    _make_tree(tmp_path, invalid=False)
    make_parquet_db(tmp_path)
    _touch(tmp_path, 'mylab/Subjects/KS001/2024-01-15/001/alf/new.times.npy')
    _touch(tmp_path, 'mylab/Subjects/KS001/2024-01-15/001/alf/extra/new.data.npy')
    _touch(tmp_path, 'mylab/Subjects/KS001/2024-01-15/001/alf/readme.txt')
    _touch(tmp_path, 'orphan/2024-05-05/001/alf/x.y.npy')
    (tmp_path / 'KS002' / '2024-03-03' / '001').mkdir(parents=True)  # empty, not in table
    ses_001 = tmp_path / 'mylab/Subjects/KS001/2024-01-15/001'
    expected = sorted([
        ses_001 / 'alf/new.times.npy', ses_001 / 'alf/extra/new.data.npy',
        tmp_path / 'orphan/2024-05-05/001', tmp_path / 'orphan/2024-05-05/001/alf/x.y.npy',
        tmp_path / 'KS002/2024-03-03/001'])
    dry = remove_missing_datasets(tmp_path)
    assert dry == expected
    assert 'would be removed' in capsys.readouterr().out
    assert (ses_001 / 'alf/new.times.npy').exists()  # dry: nothing removed

    assert remove_missing_datasets(tmp_path, dry=False) == expected
    assert not (ses_001 / 'alf/new.times.npy').exists()
    assert not (ses_001 / 'alf/extra').exists()  # emptied collection folder removed
    assert (ses_001 / 'alf/readme.txt').exists()  # non-ALF files are never removed
    assert not (tmp_path / 'orphan').exists()  # empty parents removed too
    assert not (tmp_path / 'KS002/2024-03-03').exists()
    assert (tmp_path / 'KS002/2024-02-01/001/alf/wheel.position.npy').exists()
    assert (tmp_path / 'sessions.pqt').exists() and tmp_path.exists()
    assert remove_missing_datasets(tmp_path, dry=True) == []


def test_remove_missing_datasets_tables_arg_and_keep_sessions(tmp_path):
    tmp_path = tmp_path.resolve()  # paths are returned resolved
    _make_tree(tmp_path, invalid=False)
    make_parquet_db(tmp_path)
    cache = load_tables(tmp_path)
    ses = cache.sessions
    keep = ses[ses['subject'] == 'KS002']
    tables = {'sessions': ses, 'datasets': cache.datasets.loc[keep.index]}
    out = remove_missing_datasets(tmp_path, tables=tables, remove_empty_sessions=False,
                                  dry=False)
    assert len(out) == len(TREE['mylab/Subjects/KS001/2024-01-15/001']) + 1
    # sessions in the table are never removed, even emptied
    assert (tmp_path / 'mylab/Subjects/KS001/2024-01-15/002').is_dir()
    assert not (tmp_path / 'mylab/Subjects/KS001/2024-01-15/002/alf').exists()
    assert (tmp_path / 'KS002/2024-02-01/001/alf/_ibl_trials.intervals.npy').exists()


def test_make_parquet_db_skips_links_leading_outside(tmp_path):
    """Loads refuse files reached through a link leading outside the data folder
    (one/_lib/confine.py): indexing does not list them either, and counts them."""
    from one._tables.folder_index import Tree
    tmp_path = tmp_path.resolve()
    root = tmp_path / 'root'
    _touch(root, 'KS002/2024-02-01/001/alf/a.b.npy')
    _touch(root, 'elsewhere/alf/e.f.npy')
    shared = _touch(tmp_path, 'shared/alf/c.d.npy')
    os.symlink(shared.parent, root / 'KS002/2024-02-01/001/linked')  # a folder out
    os.symlink(shared, root / 'KS002/2024-02-01/001/alf/c.d.npy')  # a file out
    os.symlink(tmp_path / 'shared', root / 'KS003')  # a folder of sessions out
    os.symlink(root / 'elsewhere/alf', root / 'KS002/2024-02-01/001/inside')  # kept
    _touch(tmp_path, 'shared/2024-01-01/001/alf/g.h.npy')
    tree = Tree(root)
    assert sorted(tree.links_out) == ['KS002/2024-02-01/001/alf/c.d.npy',
                                      'KS002/2024-02-01/001/linked', 'KS003']
    make_parquet_db(root)
    datasets = load_tables(root).datasets
    assert sorted(datasets['rel_path']) == ['alf/a.b.npy', 'inside/e.f.npy']
    assert len(load_tables(root).sessions) == 1


def test_remove_missing_datasets_never_deletes_through_links(tmp_path):
    tmp_path = tmp_path.resolve()  # paths are returned resolved
    _touch(tmp_path, 'root/KS002/2024-02-01/001/alf/a.b.npy')
    shared = _touch(tmp_path, 'shared/alf/c.d.npy')
    os.symlink(shared.parent, tmp_path / 'root/KS002/2024-02-01/001/linked')
    make_parquet_db(tmp_path / 'root', hash_ids=True)
    cache = load_tables(tmp_path / 'root')
    assert 'linked/c.d.npy' not in set(cache.datasets['rel_path'])  # a link leading out
    tables = {'sessions': cache.sessions, 'datasets': cache.datasets.iloc[:0]}
    removed = remove_missing_datasets(tmp_path / 'root', tables=tables, dry=False)
    assert removed == [tmp_path / 'root/KS002/2024-02-01/001/alf/a.b.npy']
    assert shared.exists()
