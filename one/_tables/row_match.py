"""Which rows of an index of UUID strings are not in another, compared as 64-bit keys.

Used when saving a table over the one on disk: rather than hashing a million strings with
pandas (``index.isin(other)``), each row gets a 64-bit key from the bytes of its values, the keys
are sorted and matched, and every match is confirmed on the bytes, so the answer is exact.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from one._tables import string_arrays

__all__ = ['rows_not_in']


_LEVEL_MULTIPLIER = np.uint64(0xBF58476D1CE4E5B9)
_MAX_SHARED_KEYS = 10_000


def _index_bytes(index: pd.Index) -> list[tuple[pd.Index, np.ndarray, np.ndarray | None]] | None:
    """Each level of an index of canonical UUID strings: (values, values as ``S36``, codes).

    The codes are None for a flat index (its values are the rows).  Returns None when a value
    is not a 36-byte string or is missing: the caller then compares with pandas.
    """
    if isinstance(index, pd.MultiIndex):
        pairs = list(zip(index.levels, index.codes))
    else:
        pairs = [(index, None)]
    levels = []
    for values, codes in pairs:
        strings = string_arrays.index_strings(values)
        fixed = None if strings is None else string_arrays.fixed_width_bytes(strings)
        if fixed is None:
            return None
        if codes is not None:
            codes = np.asarray(codes)
            if len(codes) and codes.min() < 0:
                return None
        levels.append((values, fixed, codes))
    return levels


def _row_keys(levels: list) -> np.ndarray:
    """A 64-bit key per row of an `_index_bytes` index: equal rows have equal keys."""
    keys = None
    for _, fixed, codes in levels:
        level_keys = string_arrays.bytes_keys(fixed)
        if codes is not None:
            level_keys = level_keys[codes]
        keys = level_keys if keys is None else keys * _LEVEL_MULTIPLIER + level_keys
    return keys


_BLOCK = 1 << 16


def _rows_equal(a: list, rows_a: np.ndarray, b: list, rows_b: np.ndarray) -> np.ndarray:
    """Whether row ``rows_a[i]`` of index `a` equals row ``rows_b[i]`` of `b` (`_index_bytes`).

    A level with few values (a session's eid) is compared by codes, after matching its
    values once; others on the bytes of the values, a block of rows at a time.
    """
    equal = np.ones(len(rows_a), dtype=bool)
    for (values_a, fixed_a, codes_a), (values_b, fixed_b, codes_b) in zip(a, b):
        if codes_a is not None and codes_b is not None and \
                len(fixed_a) * 4 < len(codes_a) and values_b.is_unique:
            # -2: a value of `a` that `b` lacks, never equal to a code of `b`
            to_b = np.append(values_b.get_indexer(values_a), -2)
            to_b[to_b == -1] = -2
            equal &= to_b[codes_a[rows_a]] == codes_b[rows_b]
            continue
        for start in range(0, len(rows_a), _BLOCK):
            block = slice(start, start + _BLOCK)
            ra, rb = rows_a[block], rows_b[block]
            left = fixed_a[ra if codes_a is None else codes_a[ra]]
            right = fixed_b[rb if codes_b is None else codes_b[rb]]
            equal[block] &= left == right
    return equal


def _same_rows(a: list, b: list) -> bool:
    """True if two `_index_bytes` indices hold the same levels and codes (same rows in order)."""
    for (_, fixed_a, codes_a), (_, fixed_b, codes_b) in zip(a, b):
        if (codes_a is None) != (codes_b is None) or not np.array_equal(fixed_a, fixed_b):
            return False
        if codes_a is not None and not np.array_equal(codes_a, codes_b):
            return False
    return True


def _match(a: list, b: list, n: int, m: int) -> tuple[np.ndarray, np.ndarray, Callable]:
    """Rows of `a` matched to rows of `b` (`_index_bytes` indices of `n` and `m` rows) by
    their 64-bit keys, each match confirmed on the bytes.

    Returns
    -------
    numpy.ndarray
        For each row of `a`, the position of the equal row of `b` when its key has a single
        candidate there, else -1.
    numpy.ndarray
        The keys of `a` (positions in sorted order) with several candidates in `b` (equal
        keys: rare, unless `b` repeats rows), their rows not matched yet.
    callable
        ``candidates(key)``: for one of these, its row of `a` and the positions in `b` of the
        rows sharing its key.
    """
    # keys sorted with each row's position in their low bits: one sort per index, and the
    # matching runs over sorted queries (searching in random order is 30 times slower)
    mask = np.uint64((1 << max(n, m, 1).bit_length()) - 1)
    ours = string_arrays.tagged_sorted_keys(_row_keys(a), mask)
    theirs = string_arrays.tagged_sorted_keys(_row_keys(b), mask)
    their_keys = theirs & ~mask
    query = ours & ~mask
    low = np.searchsorted(their_keys, query, side='left')
    count = np.searchsorted(their_keys, query, side='right') - low
    rows = (ours & mask).astype(np.int64)
    match = np.full(n, -1, dtype=np.int64)
    single = np.flatnonzero(count == 1)
    # the candidate pairs in row order: for tables in the same order, the strings are then
    # read nearly sequentially on both sides
    match[rows[single]] = (theirs[low[single]] & mask).astype(np.int64)
    candidates = np.flatnonzero(match >= 0)
    equal = _rows_equal(a, candidates, b, match[candidates])
    match[candidates[~equal]] = -1

    def candidates(i: int) -> tuple[int, np.ndarray]:
        return rows[i], (theirs[low[i]:low[i] + count[i]] & mask).astype(np.int64)

    return match, np.flatnonzero(count > 1), candidates


def rows_not_in(index: pd.Index, other: pd.Index) -> np.ndarray | None:
    """A mask of the rows of `index` whose value is not in `other`, as ``~index.isin(other)``.

    For indices of canonical UUID strings (``id``; ``(eid, id)``): when both hold the same
    levels and codes, nothing needs comparing; otherwise the rows' 64-bit keys are sorted and
    matched, and every match is confirmed on the strings' bytes, so the answer is exact.
    Returns None when this does not apply (other values, levels, or many shared keys).
    """
    if index.nlevels != other.nlevels or list(index.names) != list(other.names):
        return None
    a, b = _index_bytes(index), _index_bytes(other)
    if a is None or b is None:
        return None
    n, m = len(index), len(other)
    if n == m and _same_rows(a, b):
        return np.zeros(n, dtype=bool)
    match, shared, candidates = _match(a, b, n, m)
    if len(shared) > _MAX_SHARED_KEYS:
        return None
    found = match >= 0
    for i in shared:  # equal high bits (rare) or an index with duplicates
        row, options = candidates(i)
        found[row] = _rows_equal(a, np.full(len(options), row), b, options).any()
    return ~found


def positions_in(index: pd.Index, other: pd.Index) -> np.ndarray | None:
    """For each row of `index`, the position of the equal row of `other` (-1 where none), as
    ``other.get_indexer(index)`` for a unique `other`.

    Indices of canonical UUID strings are matched as in `rows_not_in` (sorted 64-bit keys,
    every match confirmed on the bytes); others by pandas.  Returns None when `other` repeats
    a row, or the indices do not have the same levels.
    """
    if index.nlevels != other.nlevels or list(index.names) != list(other.names):
        return None
    a, b = _index_bytes(index), _index_bytes(other)
    if a is None or b is None:
        if not other.is_unique:
            return None
        return np.asarray(other.get_indexer(index), dtype=np.int64)
    n, m = len(index), len(other)
    if n == m and _same_rows(a, b):
        return np.arange(n, dtype=np.int64)
    match, shared, candidates = _match(a, b, n, m)
    for i in shared:  # equal high bits: rare, unless `other` repeats rows
        row, options = candidates(i)
        hits = options[_rows_equal(a, np.full(len(options), row), b, options)]
        if len(hits) > 1:
            return None
        match[row] = hits[0] if len(hits) else -1
    return match
