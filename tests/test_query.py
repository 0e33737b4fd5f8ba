"""Tests for one._tables.views: the id search index and the frames handed to users."""
import uuid

import numpy as np
import pandas as pd
import pytest

from one._tables.views import DatasetCodes, IdLookup, user_frame
from one.alf.cache import merge_tables


def _uuids(n, seed=0) -> list:
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]


def _datasets(eids, ids) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({'rel_path': [f'alf/obj.attr{i}.npy' for i in range(n)],
                         'exists': np.ones(n, dtype=bool)},
                        index=pd.MultiIndex.from_arrays([eids, ids], names=['eid', 'id']))


def _same_id(a, b) -> bool:
    """Ids compared as ONE-api does: UUID strings in any case."""
    return a == b or (isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()
                      and len(a) == 36)


def _check(lookup, index, queries):
    """Rows found are exactly those whose id is queried."""
    rows, which = lookup.rows(queries)
    ids = index.get_level_values('id') if isinstance(index, pd.MultiIndex) else index
    expected = sorted((r, q) for r in range(len(ids)) for q, x in enumerate(queries)
                      if _same_id(ids[r], x))
    assert sorted(zip(rows.tolist(), which.tolist())) == expected
    return rows, which


def test_uuid_lookup_in_row_order_level():
    """A loaded table's id level is in row order (codes 0..n-1): positions are rows."""
    eids, ids = sorted(_uuids(5, 1)), _uuids(300)
    index = pd.MultiIndex(levels=[pd.Index(eids), pd.Index(ids)],
                          codes=[np.repeat(np.arange(5), 60), np.arange(300)],
                          names=['eid', 'id'])
    lookup = IdLookup(index)
    assert lookup._rows is None and lookup._sorted is not None
    rows, which = _check(lookup, index, [ids[7], 'nope', ids[299], ids[0].upper(), ids[7]])
    assert rows.tolist() == [7, 299, 0, 7] and which.tolist() == [0, 2, 3, 4]  # any case
    assert lookup.rows([])[0].size == 0
    assert lookup.rows([None, 3, '0' * 36])[0].size == 0


def test_uuid_lookup_after_merge_and_with_shared_ids():
    """Sorted levels with permuted codes, and an id held by two sessions, give every row."""
    eids, ids = sorted(_uuids(3, 1)), _uuids(30)
    df = _datasets(np.repeat(eids, 10), ids).sort_index()
    table = {'datasets': df.iloc[:20]}
    merge_tables(table, datasets=df.iloc[20:])
    index = table['datasets'].index
    assert (np.diff(index.codes[1]) != 1).any()  # not in row order any more
    _check(IdLookup(index), index, ids[::3] + ['x'])
    shared = pd.MultiIndex.from_arrays([[eids[0], eids[1], eids[1]], [ids[0], ids[0], ids[1]]],
                                       names=['eid', 'id'])
    rows, which = _check(IdLookup(shared), shared, [ids[0], ids[1]])
    assert sorted(rows.tolist()) == [0, 1, 2] and sorted(which.tolist()) == [0, 0, 1]


@pytest.mark.parametrize('ids', [[f'alf/file{i}.npy' for i in range(50)],
                                 _uuids(49) + ['short']])
def test_other_ids_use_the_hash_table(ids):
    index = pd.MultiIndex.from_arrays([['e'] * len(ids), ids], names=['eid', 'id'])
    lookup = IdLookup(index)
    assert lookup._sorted is None
    _check(lookup, index, [ids[3], ids[-1], 'missing'])


def test_flat_index_lookup():
    ids = _uuids(10)
    index = pd.Index(ids + ids[:2], name='id')  # duplicates: every row is returned
    rows, _ = _check(IdLookup(index), index, [ids[1], ids[5]])
    assert sorted(rows.tolist()) == [1, 5, 11]


def test_dataset_codes_keep_the_lookup_while_the_index_is_the_same():
    eids, ids = sorted(_uuids(2, 1)), _uuids(10)
    df = _datasets(np.repeat(eids, 5), ids).sort_index()
    codes = DatasetCodes(df)
    assert codes.id_rows([ids[4]])[0].size == 1
    df.iloc[0, df.columns.get_loc('exists')] = False  # cells changed, same index
    again = DatasetCodes(df, previous=codes)
    assert again._id_lookup is codes._id_lookup and not again.exists[0]
    other = DatasetCodes(df.iloc[1:], previous=again)  # another index: rebuilt
    assert other._id_lookup is None
    row = other.id_rows([df.index[0][1]])[0]
    assert row.size == 0


def test_user_frame_turns_categorical_paths_into_strings():
    ids = _uuids(3)
    df = _datasets(_uuids(1, 1) * 3, ids).assign(
        qc=pd.Categorical(['PASS'] * 3, categories=['NOT_SET', 'PASS'], ordered=True))
    df['rel_path'] = df['rel_path'].astype('category')
    df.iloc[1, 0] = np.nan
    out = user_frame(df.copy())
    assert not isinstance(out['rel_path'].dtype, pd.CategoricalDtype)
    assert pd.api.types.is_object_dtype(out['rel_path'].dtype) or \
        pd.api.types.is_string_dtype(out['rel_path'].dtype)
    assert out['rel_path'].iloc[0] == 'alf/obj.attr0.npy' and pd.isna(out['rel_path'].iloc[1])
    assert isinstance(out['qc'].dtype, pd.CategoricalDtype)  # ordered QC levels stay
    assert isinstance(out.index[0][1], uuid.UUID)
    out.loc[out.index[0], 'rel_path'] = 'alf/new.path.npy'  # editable like a str column


def test_user_frame_levels_hold_only_its_rows_ids():
    """As ONE's docs do: the first row of a listing, given a new id with ``set_levels``, then
    merged into the tables."""
    eid, ids = _uuids(1, 1), _uuids(30)
    table = _datasets(eid * 30, ids).sort_index()
    out = user_frame(table.iloc[[7]].copy())
    assert [len(level) for level in out.index.levels] == [1, 1]
    new_id = uuid.uuid4()
    out.index = out.index.set_levels([new_id], level='id', verify_integrity=False)
    cache = {'datasets': user_frame(table.copy()), '_meta': {}}
    merge_tables(cache, datasets=out.assign(rel_path='alf/extra.values.npy'))
    assert cache['datasets'].loc[(uuid.UUID(eid[0]), new_id), 'rel_path'] == \
        'alf/extra.values.npy'


def test_first_rows_of_path_and_qc_pairs():
    """Distinct paths kept by any QC limit, in order of appearance, follow from the pairs."""
    rng = np.random.default_rng(3)
    n = 500
    paths = np.array([f'alf/obj{i}.attr.npy' for i in range(12)], dtype=object)
    rel = paths[rng.integers(0, 12, n)]
    rel[rng.integers(0, n, 5)] = None
    qc = pd.Categorical(rng.choice(['NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL'], n),
                        categories=['NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL'],
                        ordered=True)
    df = pd.DataFrame({'rel_path': pd.Categorical(rel), 'qc': qc})
    codes = DatasetCodes(df)
    pair_rel, pair_qc, first = codes.first_rows()
    assert len(set(zip(pair_rel.tolist(), pair_qc.tolist()))) == len(first)
    for limit in range(5):
        mask = codes.qc <= limit
        expected = pd.unique(codes.rel_codes[mask])
        keep = pair_qc <= limit
        got = pd.unique(pair_rel[keep][np.argsort(first[keep], kind='stable')])
        assert got.tolist() == expected.tolist()
    assert (codes.rel_codes[first] == pair_rel).all() and (codes.qc[first] == pair_qc).all()
