"""Tests of one/_tables/diff.py (what differs between a table in memory and on disk) and of
`row_match.positions_in`, on tables of a real data folder indexed and saved by one-next."""
import uuid

import numpy as np
import pandas as pd
import pytest

from one._tables import row_match
from one._tables.diff import apply_changes, table_changes
from one.alf.cache import _load_tables, _merge_tables, make_parquet_db, to_user_shape
from one.synthetic import make_dataset_folder


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp('diff')
    make_dataset_folder(root, n_subjects=2, n_sessions=3)
    make_parquet_db(root, hash_ids=True)
    return root


def upsert(table, rows):
    cache = {'t': table, '_meta': {'raw': {}}}
    _merge_tables(cache, {'t': rows}, as_uuid=False)
    return cache['t']


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal rows (any order, ids as strings, strings in any dtype)."""
    def plain(frame):
        frame = frame.copy()
        frame.index = pd.MultiIndex.from_tuples(
            [tuple(map(str, k)) if isinstance(k, tuple) else (str(k),) for k in frame.index])
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]) or \
                    isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype(object)
        return frame.sort_index()
    pd.testing.assert_frame_equal(plain(a), plain(b), check_dtype=False)


def test_the_same_table_has_no_changes(folder):
    disk = _load_tables(folder)
    memory = _load_tables(folder)
    assert table_changes(memory['datasets'], disk['datasets']) is None
    to_user_shape(memory)  # UUID objects, plain strings instead of categories
    assert table_changes(memory['datasets'], disk['datasets']) is None
    assert table_changes(memory['sessions'], disk['sessions']) is None


def test_changed_added_and_removed_rows(folder):
    disk = _load_tables(folder)['datasets']
    memory = _load_tables(folder)
    to_user_shape(memory)
    table = memory['datasets']
    edited = table.index[3]
    table.loc[edited, 'qc'] = 'FAIL'
    table.loc[table.index[5], 'hash'] = None  # a value now missing
    removed = table.index[7]
    eid = edited[0]
    new_id = uuid.uuid4()
    added = table.iloc[[0]].rename(index={table.index[0][1]: new_id}, level='id')
    table = pd.concat([table.drop(index=[removed]), added])
    changes = table_changes(table, disk)
    assert sorted(map(tuple, changes.upsert.index.tolist())) == sorted([
        (str(eid), str(edited[1])), tuple(map(str, table.index[5])),
        (str(added.index[0][0]), str(new_id))])
    assert {type(x) for k in changes.upsert.index for x in k} == {str}
    assert changes.dropped.tolist() == [tuple(map(str, removed))]
    assert not changes.replace and len(changes) == 4
    rebuilt = apply_changes(disk, changes, upsert)
    same(rebuilt, table)


def test_missing_values_equal_missing_values():
    index = pd.Index(['a', 'b'], name='id')
    disk = pd.DataFrame({'x': pd.array([1, None], dtype='UInt64'), 'y': ['s', None]},
                        index=index)
    memory = disk.copy()
    memory['y'] = memory['y'].astype(object).where(memory['y'].notna(), np.nan)
    assert table_changes(memory, disk) is None
    memory.loc['b', 'x'] = 3
    assert table_changes(memory, disk).upsert.index.tolist() == ['b']


def test_other_columns_or_no_disk_table_give_the_whole_table(folder):
    disk = _load_tables(folder)['sessions']
    memory = disk.assign(extra=1)
    changes = table_changes(memory, disk)
    assert changes.replace and len(changes.upsert) == len(memory)
    assert apply_changes(disk, changes, upsert) is changes.upsert
    assert table_changes(memory, None).replace


def test_a_slice_does_not_carry_the_whole_index(folder):
    disk = _load_tables(folder)['datasets']
    memory = disk.copy()
    memory.loc[memory.index[0], 'exists'] = False
    changes = table_changes(memory, disk)
    assert [len(level) for level in changes.upsert.index.levels] == [1, 1]


def test_positions_in():
    ids = [str(uuid.uuid4()) for _ in range(6)]
    index = pd.MultiIndex.from_arrays([ids[:3], ids[3:]], names=['eid', 'id'])
    other = index[[2, 0]]
    assert row_match.positions_in(index, other).tolist() == [1, -1, 0]
    assert row_match.positions_in(index, index).tolist() == [0, 1, 2]
    repeated = index[[0, 0]]
    assert row_match.positions_in(index, repeated) is None
    plain = pd.Index(['a', 'b', 'c'], name='id')  # not UUIDs: compared by pandas
    assert row_match.positions_in(plain, plain[[2, 1]]).tolist() == [-1, 1, 0]
    assert row_match.positions_in(plain, index) is None  # other levels


def test_positions_in_is_exact_when_keys_collide(monkeypatch):
    """With every key shared by many rows (forced), the positions are those of pandas."""
    from one._tables import string_arrays
    rng = np.random.default_rng(3)
    ids = [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**63, 40)]
    eids = [str(uuid.UUID(int=i + 1)) for i in range(4)]
    index = pd.MultiIndex.from_arrays([[eids[i % 4] for i in range(40)], ids],
                                      names=['eid', 'id'])
    other = index[rng.permutation(40)[:25]].append(pd.MultiIndex.from_arrays(
        [eids[:2], [str(uuid.uuid4()) for _ in range(2)]], names=['eid', 'id']))
    expected = other.get_indexer(index)
    assert row_match.positions_in(index, other).tolist() == expected.tolist()
    bytes_keys = string_arrays.bytes_keys
    monkeypatch.setattr(string_arrays, 'bytes_keys',
                        lambda fixed: bytes_keys(fixed) % np.uint64(3))
    assert row_match.positions_in(index, other).tolist() == expected.tolist()
    assert row_match.positions_in(index, other.append(other[:1])) is None  # a repeated row
