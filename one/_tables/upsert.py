"""Upserting rows into a table sorted by index, without re-sorting a million ids.

`upsert` overwrites the rows of a table that share an index value with aligned records (see
`one._tables.align`) and inserts the others, keeping the table sorted.  A few records going
into a large table indexed as `load_tables` builds it are placed by binary search and inserted
between slices of the table; otherwise new MultiIndex rows are appended level by level
(`_append_multiindex`) and the rows sorted by their codes.  Pure pandas/numpy.
"""
from __future__ import annotations

import bisect
import uuid

import numpy as np
import pandas as pd

from one._tables import uuid_index

__all__ = ['upsert']


def _append_multiindex(a: pd.MultiIndex, b: pd.MultiIndex) -> tuple | None:
    """Levels and codes of the rows of `a` followed by those of `b`.

    pandas' own append rebuilds (re-hashes and re-sorts) every level, which costs seconds for
    a million rows; here each sorted level of `a` is kept and only `b`'s new values are
    inserted, found by binary search.

    Returns
    -------
    (levels, codes) or None
        None when this does not apply (levels not sorted, NA, values not comparable).
    """
    if a.nlevels != b.nlevels:
        return None
    levels, codes = [], []
    for k in range(a.nlevels):
        level = a.levels[k]
        n = len(level)
        a_codes = np.asarray(a.codes[k], dtype=np.int64)
        values = b.get_level_values(k)
        if n == 0 or values.hasnans or (a_codes < 0).any():
            return None
        try:
            lv = np.asarray(level, dtype=object)
            if not (lv[:-1] < lv[1:]).all():
                return None
            vals = np.asarray(values, dtype=object)
            pos = np.searchsorted(lv, vals)
            found = (pos < n) & (lv[np.minimum(pos, n - 1)] == vals)
            if found.all():
                b_codes = pos
            else:
                new = np.unique(vals[~found])
                inserted_at = np.searchsorted(lv, new)
                old_pos = np.arange(n) + np.searchsorted(inserted_at, np.arange(n), side='right')
                new_pos = inserted_at + np.arange(len(new))
                order = np.empty(n + len(new), dtype=np.int64)
                order[old_pos] = np.arange(n)
                order[new_pos] = n + np.arange(len(new))
                level = level.append(pd.Index(new, dtype=level.dtype)).take(order)
                a_codes = old_pos[a_codes]
                b_codes = np.where(found, old_pos[np.minimum(pos, n - 1)],
                                   new_pos[np.minimum(np.searchsorted(new, vals), len(new) - 1)])
        except (TypeError, ValueError):
            return None
        levels.append(level.rename(a.names[k]))
        codes.append(np.concatenate([a_codes, b_codes]))
    return levels, codes


def _sorting_order(levels: list, codes: list) -> np.ndarray:
    """The permutation that sorts rows given sorted levels and their codes."""
    sizes = [len(level) for level in levels]
    if float(np.prod(sizes, dtype=float)) < 2 ** 62:
        key = codes[0].astype(np.int64)
        for size, c in zip(sizes[1:], codes[1:]):
            key = key * size + c
        return np.argsort(key, kind='stable')  # timsort: fast on nearly sorted keys
    return np.lexsort(codes[::-1])


def _with_sorted_levels(index: pd.MultiIndex) -> pd.MultiIndex:
    """The same index with every level's values sorted (codes remapped; rows unchanged).

    A loaded table's id level is kept in row order for speed (see `one._tables.parquet`); it is
    sorted here, once, the first time rows are added to the table.
    """
    if all(level.is_monotonic_increasing for level in index.levels):
        return index
    levels, codes = [], []
    for level, level_codes in zip(index.levels, index.codes):
        if level.is_monotonic_increasing:
            levels.append(level)
            codes.append(np.asarray(level_codes))
            continue
        order = np.argsort(np.asarray(level, dtype=object), kind='stable')
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        levels.append(level.take(order))
        level_codes = np.asarray(level_codes, dtype=np.int64)
        codes.append(np.where(level_codes >= 0, rank[level_codes], -1))
    return pd.MultiIndex(levels=levels, codes=codes, names=index.names, verify_integrity=False)


def _concat_rows(table: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`table` with the rows of `new` (same columns and dtypes) appended, sorted by index."""
    if isinstance(table.index, pd.MultiIndex) and len(new):
        table = table.set_axis(_with_sorted_levels(table.index))
        parts = _append_multiindex(table.index, new.index)
        if parts is not None:
            levels, codes = parts
            order = _sorting_order(levels, codes)
            out = pd.concat([table.reset_index(drop=True), new.reset_index(drop=True)],
                            ignore_index=True).take(order)
            out.index = pd.MultiIndex(levels=levels, codes=[c[order] for c in codes],
                                      names=table.index.names, verify_integrity=False)
            return out
    return pd.concat([table, new]).sort_index()


def _id_kind(values) -> type | None:
    """str or uuid.UUID when every value is one (numpy strings count as str), else None."""
    values = list(values)
    for kind in (str, uuid.UUID):
        if values and all(isinstance(x, kind) for x in values):
            return kind
    return None


def _sorted_row_order_index(index: pd.Index) -> tuple | None:
    """The parts of a 2-level index that `_upsert_sorted` can extend, or None.

    That is: rows sorted by (first, second) value, the first level sorted (few values: a
    session's eid), the second level holding the row values in row order (codes 0..n-1, so
    its values are distinct), as `load_tables` builds the datasets index and `_upsert_sorted`
    keeps it.  The ids are all strings or all `uuid.UUID` objects.  Checking costs a few
    comparisons per row, never a sort or hash of the ids.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, pandas.Index, type or None) or None
        The first level's values (object array), its codes, the second level, and the kind of
        id both levels hold (str or uuid.UUID; None when they hold different kinds).
    """
    if not isinstance(index, pd.MultiIndex) or index.nlevels != 2 or len(index) == 0:
        return None
    level0, level1 = index.levels
    codes0, codes1 = (np.asarray(c) for c in index.codes)
    n = len(index)
    if len(level1) != n or codes1[0] != 0 or not (np.diff(codes1) == 1).all():
        return None
    steps = np.diff(codes0)
    if codes0[0] < 0 or (steps < 0).any():
        return None
    first = np.asarray(level0, dtype=object)
    kind = _id_kind(first)
    try:
        if kind is None or (len(first) > 1 and not (first[:-1] < first[1:]).all()):
            return None
        kind1 = _id_kind(level1[:1])
        # UUIDs compare as their canonical strings do: compare those when known (vectorised)
        values = uuid_index.strings_of(level1) if kind1 is uuid.UUID else None
        values = (level1 if values is None else values).array
        increasing = np.asarray(values[:-1] < values[1:], dtype=bool)
    except (TypeError, ValueError):
        return None
    if not (steps[~increasing] > 0).all():  # where the id does not increase, a group starts
        return None
    return first, codes0, level1, kind if kind1 is kind else None


def _upsert_sorted(table: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame | None:
    """`upsert` of a few records into a large table indexed as `_sorted_row_order_index` says.

    Each record is found by binary search (of its session, then of its id among that
    session's rows) instead of hashing and sorting the million values of the index levels;
    new rows are inserted in place, and the index is built from codes.  Returns None when
    the table or the records do not qualify (the general path then applies).
    """
    n, k = len(table), len(records)
    if k > max(1000, n // 10) or not isinstance(records.index, pd.MultiIndex) or \
            records.index.nlevels != 2:
        return None
    parts = _sorted_row_order_index(table.index)
    if parts is None:
        return None
    eids, codes0, level1, kind = parts
    record_eids = list(records.index.get_level_values(0))
    record_ids = list(records.index.get_level_values(1))
    if kind is None or _id_kind(record_eids) is not kind or _id_kind(record_ids) is not kind:
        return None
    order = sorted(range(k), key=lambda j: (record_eids[j], record_ids[j]))
    records = records.iloc[order]
    record_eids = np.array([record_eids[j] for j in order], dtype=object)
    record_ids = [record_ids[j] for j in order]

    # the rows of each record's session, then the record's place among them
    eid_pos = np.searchsorted(eids, record_eids)
    known = (eid_pos < len(eids)) & (eids[np.minimum(eid_pos, len(eids) - 1)] == record_eids)
    starts = np.searchsorted(codes0, eid_pos, side='left')
    stops = np.where(known, np.searchsorted(codes0, eid_pos, side='right'), starts)
    rows = np.empty(k, dtype=np.int64)
    existing = np.zeros(k, dtype=bool)
    groups = {}
    for j in range(k):
        start, stop = int(starts[j]), int(stops[j])
        if stop > start:
            if start not in groups:
                groups[start] = list(level1[start:stop])
            ids = groups[start]
            p = bisect.bisect_left(ids, record_ids[j])
            existing[j] = p < len(ids) and ids[p] == record_ids[j]
            rows[j] = start + p
        else:
            rows[j] = start
    new_ids = [x for x, e in zip(record_ids, existing) if not e]
    strings1 = uuid_index.strings_of(level1) if kind is uuid.UUID else None
    if new_ids and (strings1.isin([str(x) for x in new_ids]).any() if strings1 is not None
                    else level1.isin(new_ids).any()):
        return None  # an id already held by another session: not a row-order level any more

    out = table
    if existing.any():
        out = table.copy()
        for i, col in enumerate(out.columns):
            out.iloc[rows[existing], i] = records[col].array[existing]
    if existing.all():
        return out
    new = ~existing
    insert_at = rows[new]
    if (np.diff(insert_at) < 0).any():
        return None
    # the new rows go between slices of the table (no copy of arrow-backed string columns)
    added_rows = records[new]
    runs = _interleave(n, insert_at)
    frame = _defragment(pd.concat([(added_rows if is_new else out).iloc[a:b]
                                   for is_new, a, b in runs], ignore_index=True))
    new_level1 = pd.Index(new_ids, dtype=level1.dtype)
    level1 = _defragment(level1[:0].append([(new_level1 if is_new else level1)[a:b]
                                            for is_new, a, b in runs]))
    # sessions not in the table yet are inserted into the sorted first level
    added = np.unique(record_eids[new & ~known]).astype(object)
    inserted_at = np.searchsorted(eids, added)
    level0_values = np.insert(eids, inserted_at, added)
    remap = np.arange(len(eids)) + np.searchsorted(inserted_at, np.arange(len(eids)),
                                                   side='right')
    new_codes, old_codes = np.searchsorted(level0_values, record_eids[new]), remap[codes0]
    codes = np.concatenate([(new_codes if is_new else old_codes)[a:b] for is_new, a, b in runs])
    level0 = pd.Index(level0_values, dtype=table.index.levels[0].dtype,
                      name=table.index.names[0])
    frame.index = pd.MultiIndex(levels=[level0, level1.rename(table.index.names[1])],
                                codes=[codes, np.arange(len(frame))],
                                names=table.index.names, verify_integrity=False)
    if strings1 is not None:  # the strings of the new level, from the same slices
        new_strings = pd.Index([str(x) for x in new_ids], dtype=strings1.dtype)
        uuid_index.remember_strings(frame.index.levels[1], _defragment(strings1[:0].append(
            [(new_strings if is_new else strings1)[a:b] for is_new, a, b in runs])))
    return frame


def _interleave(n: int, insert_at: np.ndarray) -> list[tuple[bool, int, int]]:
    """Slices that insert new items, in order, before the positions `insert_at` of n items.

    Returns
    -------
    list of (bool, int, int)
        (from the new items?, start, stop), in output order.
    """
    runs, previous = [], 0
    breaks = np.flatnonzero(np.diff(insert_at)) + 1
    for start, stop in zip([0, *breaks.tolist()], [*breaks.tolist(), len(insert_at)]):
        position = int(insert_at[start])
        if position > previous:
            runs.append((False, previous, position))
        runs.append((True, start, stop))
        previous = position
    if previous < n:
        runs.append((False, previous, n))
    return runs


_MAX_CHUNKS = 64


def _defragment(obj):
    """Join the chunks of arrow-backed columns (or of an Index) once they are many.

    Rows inserted between slices of a table share the slices' memory, one chunk each: after
    many insertions the chunks are joined, once.
    """
    arrays = [obj.array] if isinstance(obj, pd.Index) else [obj.iloc[:, i].array
                                                             for i in range(obj.shape[1])]
    for i, array in enumerate(arrays):
        if not isinstance(array, pd.arrays.ArrowExtensionArray):
            continue
        chunked = array.__arrow_array__()
        if getattr(chunked, 'num_chunks', 0) <= _MAX_CHUNKS:
            continue
        joined = array.dtype.__from_arrow__(chunked.combine_chunks())
        if isinstance(obj, pd.Index):
            return pd.Index(joined, name=obj.name)
        obj.isetitem(i, joined)
    return obj


def upsert(table: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Return `table` with `records` (aligned) overwriting rows of the same index, new ones added.

    The result is sorted by index.  Neither input is modified.
    """
    if table.empty:
        out = records.copy()
    else:
        fast = _upsert_sorted(table, records)
        if fast is not None:
            return fast
        if table.index.is_unique:
            positions = table.index.get_indexer(records.index)
        else:  # a malformed table: replace every row sharing an index with the record
            keep = ~table.index.isin(records.index)
            table, positions = table[keep], np.full(len(records), -1)
        existing = positions >= 0
        out = table
        if existing.any():
            out = table.copy()
            rows = positions[existing]
            for j, col in enumerate(out.columns):
                out.iloc[rows, j] = records[col].array[existing]
        if not existing.all():
            return _concat_rows(out, records[~existing])
        return out  # rows updated in place: the order is unchanged
    if not out.index.is_monotonic_increasing:
        out = out.sort_index()
    return out
