"""Tests for one._tables.parquet (DataFrame + JSON metadata in parquet files)."""
import datetime
import json
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from one._tables import parquet


def test_round_trip_with_metadata(tmp_path):
    df = pd.DataFrame({'a': ['x', 'y'], 'n': np.array([1, 2], dtype=np.uint16)},
                      index=pd.Index(['i1', 'i2'], name='id'))
    meta = {'date_created': '2024-01-01 10:00', 'origin': {'b', 'a'},
            'date_modified': datetime.datetime(2024, 1, 2, 3, 4, 5)}
    f = parquet.save(tmp_path / 't.pqt', df, meta)
    loaded, loaded_meta = parquet.load(f)
    assert loaded_meta == {'date_created': '2024-01-01 10:00', 'origin': ['a', 'b'],
                           'date_modified': '2024-01-02 03:04'}
    assert list(loaded.index) == ['i1', 'i2'] and loaded.index.name == 'id'
    assert loaded['n'].dtype == np.uint16
    assert list(loaded['a']) == ['x', 'y']
    assert parquet.read_metadata(f) == loaded_meta
    assert [p.name for p in tmp_path.iterdir()] == ['t.pqt']  # no temporary file left


def test_metadata_key_and_string_type_on_disk(tmp_path):
    df = pd.DataFrame({'a': ['x']})
    parquet.save(tmp_path / 't.pqt', df, {'k': 1})
    schema = pq.read_schema(tmp_path / 't.pqt')
    assert json.loads(schema.metadata[b'one_metadata']) == {'k': 1}
    assert b'pandas' in schema.metadata
    assert schema.field('a').type == pa.string()  # not large_string, like pandas 2 and Alyx
    assert 'index' not in ''.join(schema.names)  # RangeIndex stored as metadata only


def test_missing_metadata_key_gives_empty_dict(tmp_path):
    pq.write_table(pa.table({'a': [1, 2]}), tmp_path / 'plain.pqt')
    df, meta = parquet.load(tmp_path / 'plain.pqt')
    assert meta == {}
    assert list(df['a']) == [1, 2]
    assert parquet.read_metadata(tmp_path / 'plain.pqt') == {}


def test_load_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pqt'):
        parquet.load(tmp_path / 'nope.pqt')


def test_unserialisable_metadata_raises_and_keeps_old_file(tmp_path):
    f = tmp_path / 't.pqt'
    parquet.save(f, pd.DataFrame({'a': [1]}), {'v': 1})
    with pytest.raises(TypeError, match='not JSON serializable'):
        parquet.save(f, pd.DataFrame({'a': [2]}), {'v': object()})
    assert parquet.read_metadata(f) == {'v': 1}


def test_extension_dtypes_round_trip(tmp_path):
    qc = pd.CategoricalDtype(['NOT_SET', 'PASS', 'FAIL'], ordered=True)
    df = pd.DataFrame({
        'size': pd.array([1, None], dtype='UInt64'),
        'qc': pd.Categorical(['PASS', 'FAIL'], dtype=qc),
        'flag': [True, False],
        'date': [datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)],
    }, index=pd.MultiIndex.from_tuples([('e', 'a'), ('e', 'b')], names=['eid', 'id']))
    parquet.save(tmp_path / 't.pqt', df)
    loaded, meta = parquet.load(tmp_path / 't.pqt')
    assert meta == {}
    assert str(loaded['size'].dtype) == 'UInt64' and loaded['size'].isna().tolist() == [False,
                                                                                       True]
    assert loaded['qc'].dtype == qc
    assert loaded['flag'].dtype == bool
    assert loaded['date'].tolist() == df['date'].tolist()
    assert loaded.index.names == ['eid', 'id']


def _reference_load(path):
    """What pyarrow alone gives (the slow, generic index reconstruction)."""
    return pq.read_table(path).to_pandas()


@pytest.mark.parametrize('kind', ['uuid', 'uuid_sorted', 'same_ids_in_two_sessions',
                                  'uuid_duplicates_unsorted', 'upper_case', 'mixed_length',
                                  'with_null', 'not_uuid', 'not_uuid_sorted'])
def test_multiindex_load_matches_pyarrow(tmp_path, kind):
    """Sorted tables of distinct ids take the fast path; all give exactly pyarrow's frame."""
    rng = np.random.default_rng(1)
    n = 2000
    eids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(40)]
    eid = [eids[i] for i in rng.integers(0, 40, n)]
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]
    if kind == 'uuid_duplicates_unsorted':
        eid[10], ids[10] = eid[3], ids[3]  # a duplicated index entry
        ids[:2] = ['ffffffff-ffff-4fff-bfff-ffffffffffff', '00000000-0000-4000-8000-000000000000']
    elif kind == 'same_ids_in_two_sessions':  # ONE-api's make_parquet_db quirk (Q2)
        ids[10] = ids[3]
        eid[3], eid[10] = eids[0], eids[1]
    elif kind == 'upper_case':
        ids[5] = ids[5].upper()
    elif kind == 'mixed_length':
        ids[5] = ids[5][:-1]
    elif kind == 'with_null':
        ids[5] = None
    elif kind.startswith('not_uuid'):
        ids = [f'alf/file{i:05d}.ext.npy' for i in range(n)]
    df = pd.DataFrame({'x': np.arange(n), 's': ['a'] * n},
                      index=pd.MultiIndex.from_arrays([eid, ids], names=['eid', 'id']))
    if kind in ('uuid_sorted', 'same_ids_in_two_sessions', 'not_uuid_sorted', 'upper_case',
                'mixed_length'):
        df = df.sort_index()
    parquet.save(tmp_path / 't.pqt', df, {'k': 'v'})
    loaded, meta, fast = parquet.load_table(tmp_path / 't.pqt')
    assert meta == {'k': 'v'}
    reference = _reference_load(tmp_path / 't.pqt')
    pd.testing.assert_frame_equal(loaded, reference)
    assert fast == (kind in ('uuid_sorted', 'not_uuid_sorted', 'upper_case', 'mixed_length'))
    if fast:  # lookups by session and by (session, id) work on the code-built index
        row = df.iloc[len(df) // 2]
        assert loaded.loc[row.name, 'x'] == row['x']
        session = loaded.loc[row.name[0]]
        assert session['x'].tolist() == df.loc[row.name[0], 'x'].tolist()
    if kind == 'uuid_duplicates_unsorted':
        assert loaded.sort_index().loc[(eid[3], ids[3]), 'x'].tolist() == [3, 10]
    if kind != 'with_null':
        assert loaded.sort_index().index.is_monotonic_increasing


def test_distinct_fixed_width_proof():
    import pyarrow as pa
    values = [str(uuid.uuid4()) for _ in range(500)]
    assert parquet._distinct_fixed_width(pa.array(values))
    assert not parquet._distinct_fixed_width(pa.array(values + values[:1]))  # duplicate
    assert not parquet._distinct_fixed_width(pa.array(values[:-1] + ['short']))  # widths


def test_loaded_frames_are_writable(tmp_path):
    qc = pd.CategoricalDtype(['NOT_SET', 'PASS', 'FAIL'], ordered=True)
    df = pd.DataFrame({
        'number': np.array([1, 2], dtype=np.uint16), 'qc': pd.Categorical(['PASS'] * 2, dtype=qc),
        'size': np.array([5, 6], dtype=np.uint64), 'name': ['a', 'b'],
    }, index=pd.MultiIndex.from_tuples([(str(uuid.uuid4()), str(uuid.uuid4()))
                                        for _ in range(2)], names=['eid', 'id']))
    for index in (df.index, pd.RangeIndex(2)):
        parquet.save(tmp_path / 't.pqt', df.set_axis(index))
        loaded, _ = parquet.load(tmp_path / 't.pqt')
        loaded.loc[loaded.index[0], 'qc'] = 'FAIL'
        loaded.iloc[1, 0] = 7
        loaded.loc[loaded.index[0], 'size'] = 9
        assert loaded['qc'].tolist() == ['FAIL', 'PASS']
        assert loaded['number'].tolist() == [1, 7] and loaded['size'].tolist() == [9, 6]


def test_categorical_columns_load_and_save_as_strings(tmp_path):
    """Columns loaded as categoricals (sorted categories) are saved as the plain strings."""
    paths = ['b/x.npy', 'a/y.npy', 'c/z.npy']
    n = 9
    ids = sorted(str(uuid.uuid4()) for _ in range(n))
    df = pd.DataFrame({'rel_path': [paths[i % 3] for i in range(n)], 'other': ['o'] * n},
                      index=pd.MultiIndex.from_arrays([['e'] * n, ids], names=['eid', 'id']))
    df.iloc[4, 0] = None
    parquet.save(tmp_path / 'plain.pqt', df)
    loaded, _, fast = parquet.load_table(tmp_path / 'plain.pqt', categorical=['rel_path', 'nope'])
    assert fast and isinstance(loaded['rel_path'].dtype, pd.CategoricalDtype)
    assert loaded['rel_path'].cat.categories.tolist() == sorted(paths)  # lexically sorted
    assert loaded['rel_path'].astype(object).tolist()[:4] == df['rel_path'].tolist()[:4]
    assert pd.isna(loaded['rel_path'].iloc[4])
    assert not isinstance(loaded['other'].dtype, pd.CategoricalDtype)
    assert loaded.sort_values('rel_path')['rel_path'].dropna().tolist() == \
        sorted(df['rel_path'].dropna())
    loaded.loc[loaded.index[0], 'rel_path'] = 'c/z.npy'  # writable
    parquet.save(tmp_path / 'again.pqt', loaded, strings=['rel_path'])
    for name in ('plain.pqt', 'again.pqt'):
        assert pq.read_schema(tmp_path / name).field('rel_path').type == pa.string()
    ours, theirs = (json.loads(pq.read_schema(tmp_path / f).metadata[b'pandas'])
                    for f in ('plain.pqt', 'again.pqt'))
    assert ours['columns'] == theirs['columns']  # the layout of a str column
    again, _ = parquet.load(tmp_path / 'again.pqt')
    assert again['rel_path'].iloc[0] == 'c/z.npy' and pd.isna(again['rel_path'].iloc[4])
    assert again['rel_path'].tolist()[5:] == df['rel_path'].tolist()[5:]
    # without `strings` a categorical is stored as such (pandas' own round trip)
    parquet.save(tmp_path / 'cat.pqt', loaded)
    assert pa.types.is_dictionary(pq.read_schema(tmp_path / 'cat.pqt').field('rel_path').type)
