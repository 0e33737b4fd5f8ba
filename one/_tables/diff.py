"""What differs between two versions of a cache table: the rows to write and the rows to drop.

A `One` sent to another process (see `one._api.pickling`) carries its tables only as far as they
differ from the files on disk, which the other process loads itself: the rows that are new or
changed in memory, and the index values of the rows on disk that memory no longer has.
`apply_changes` turns the disk version back into the memory version.

Rows are matched on their index (UUID strings compared as sorted 64-bit keys, see
`one._tables.row_match.positions_in`); values are compared column by column, a missing value
equal to a missing value.  A table whose columns differ, or whose index repeats a value, is
given whole.  Nothing here imports `one.alf.cache`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from one._tables import row_match, uuid_index

__all__ = ['TableChanges', 'table_changes', 'apply_changes']


@dataclass
class TableChanges:
    """How to turn a table on disk into the version in memory.

    Attributes
    ----------
    upsert : pandas.DataFrame
        The rows to insert or overwrite (index of strings); the whole table when `replace`.
    dropped : pandas.Index or None
        The index values of the rows to remove (strings).
    replace : bool
        `upsert` is the whole table: the disk version is not used.
    """

    upsert: pd.DataFrame
    dropped: pd.Index | None = None
    replace: bool = False

    def __len__(self) -> int:
        return len(self.upsert) + (len(self.dropped) if self.dropped is not None else 0)


def _with_string_index(table: pd.DataFrame) -> pd.DataFrame:
    index = uuid_index.with_string_levels(table.index)
    if index is table.index:
        return table
    table = table.copy(deep=False)
    table.index = index
    return table


def _differs(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Per position, whether two columns of the same length hold different values (a missing
    value equals a missing value)."""
    if a.dtype == b.dtype:
        left, right = a.reset_index(drop=True), b.reset_index(drop=True)
        try:
            different = left.ne(right).to_numpy(dtype=bool, na_value=True)
        except (TypeError, ValueError):  # values that do not compare: by their hashes
            different = None
        if different is not None:
            both_missing = left.isna().to_numpy(dtype=bool) & right.isna().to_numpy(dtype=bool)
            return different & ~both_missing
    # different dtypes (a categorical and its strings, int and nullable int...): pandas hashes
    # values the same way whatever the dtype that holds them
    hash_a = pd.util.hash_pandas_object(a, index=False).to_numpy()
    hash_b = pd.util.hash_pandas_object(b, index=False).to_numpy()
    return hash_a != hash_b


def table_changes(memory: pd.DataFrame, disk: pd.DataFrame | None) -> TableChanges | None:
    """The changes turning `disk` into `memory`, or None when they hold the same rows.

    Parameters
    ----------
    memory : pandas.DataFrame
        The table in memory (ids as strings or `uuid.UUID` objects).
    disk : pandas.DataFrame, optional
        The table as loaded from disk (ids as strings); None when there is none.

    Returns
    -------
    TableChanges or None
        Rows and index values with ids as strings.
    """
    memory = _with_string_index(memory)
    if disk is None or list(memory.columns) != list(disk.columns) or \
            list(memory.index.names) != list(disk.index.names):
        if disk is not None and disk.empty and memory.empty:
            return None
        return TableChanges(memory, None, replace=True)
    disk = _with_string_index(disk)
    positions = row_match.positions_in(memory.index, disk.index)
    if positions is None:  # the disk repeats rows
        return TableChanges(memory, None, replace=True)
    # (rows repeated in memory all match their disk row: the changed ones are all given, and
    # merging them keeps the first, as saving would)
    found = positions >= 0
    changed = ~found
    if found.any():
        same_order = found.all() and len(memory) == len(disk) and \
            np.array_equal(positions, np.arange(len(disk)))
        rows = None if same_order else np.flatnonzero(found)
        for column in memory.columns:
            a, b = memory[column], disk[column]
            if rows is not None:
                a, b = a.iloc[rows], b.iloc[positions[rows]]
            different = _differs(a, b)
            if rows is None:
                changed |= different
            else:
                changed[rows] |= different
    kept = np.zeros(len(disk), dtype=bool)
    kept[positions[found]] = True
    dropped = _compact(disk.index[~kept]) if not kept.all() else None
    if not changed.any() and dropped is None:
        return None
    upsert = memory.iloc[np.flatnonzero(changed)]
    upsert.index = _compact(upsert.index)
    return TableChanges(upsert, dropped)


def _compact(index: pd.Index) -> pd.Index:
    """An index without the level values no row uses (a slice of a big MultiIndex keeps them
    all, and would pickle them all)."""
    return index.remove_unused_levels() if isinstance(index, pd.MultiIndex) else index


def apply_changes(table: pd.DataFrame, changes: TableChanges, upsert) -> pd.DataFrame:
    """The table on disk with `changes` applied (see `table_changes`).

    Parameters
    ----------
    table : pandas.DataFrame
        The table as loaded (ids as strings).
    changes : TableChanges
        What to change.
    upsert : callable
        ``upsert(table, rows) -> table``: how rows are merged into the table (the cache's
        merge, which aligns columns, dtypes and categories).

    Returns
    -------
    pandas.DataFrame
        The changed table (a new object when anything changed).
    """
    if changes.replace:
        return changes.upsert
    if changes.dropped is not None and len(changes.dropped) and len(table):
        keep = row_match.rows_not_in(table.index, changes.dropped)
        if keep is None:
            keep = ~table.index.isin(changes.dropped)
        if not keep.all():
            table = table.iloc[np.flatnonzero(keep)]
    if len(changes.upsert):
        table = upsert(table, changes.upsert)
    return table
