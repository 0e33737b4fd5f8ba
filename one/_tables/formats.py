"""Bringing cache tables written in older layouts to ONE's index.

ONE's cache tables identify sessions and datasets by UUID.  Over the years they were written as

* pairs of int64 holding the 16 bytes of the UUID (read as two little-endian int64), named
  ``<x>_0`` and ``<x>_1``, either as index levels or as plain columns: ONE 1.x wrote sessions
  indexed by ``id_0, id_1`` and datasets indexed by ``id_0, id_1`` with ``eid_0, eid_1`` as
  plain columns (and a ``session_path`` column);
* canonical UUID strings, as index levels (today's layout) or as plain columns (tables saved
  without an index, e.g. by ``make_parquet_db(hash_ids=False)``).

`standard_index` gives any of them ONE's index: ``id`` for sessions, ``(eid, id)`` for datasets
(the session id moved into the index when it is a column), other tables the id columns ONE
picks (``.?id``).  A table that cannot be given that index raises `TableFormatError`, naming
the table and what is wrong, rather than loading in a shape every query silently misreads.
Pure pandas/numpy.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from one._tables import uuids

__all__ = ['TableFormatError', 'int_pair_strings', 'merge_int_pairs', 'merge_int_pair_levels',
           'standard_index', 'has_standard_index', 'INDEX_KEY']

INDEX_KEY = re.compile('.?id')
"""Columns ONE makes the index of a table saved without one (searched in the name)."""

_PAIR = re.compile(r'^(?P<base>.*id)_(?P<half>[01])$')  # id_0, eid_1, pid_0, ...
_INDEX_OF = {'sessions': ['id'], 'datasets': ['eid', 'id']}
_REQUIRED_COLUMNS = {'datasets': ('rel_path',)}


class TableFormatError(KeyError, ValueError):
    """A cache table that cannot be understood (a `KeyError`, as ONE raises when a table has no
    id to index it by, and a `ValueError`)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ''


def int_pair_strings(low, high) -> list[str]:
    """UUID strings from pairs of int64 (the 16 bytes of a UUID read as 2 little-endian int64).

    Parameters
    ----------
    low, high : array_like of int
        The first and second int64 of each UUID.

    Returns
    -------
    list of str
        Canonical lower-case UUID strings.
    """
    pairs = np.empty((len(low), 2), dtype='<i8')
    pairs[:, 0] = low
    pairs[:, 1] = high
    return uuids.uuid_strings(pairs.view(np.uint8))


def _pairs(names) -> dict[str, tuple[str, str]]:
    """``{base: (name_0, name_1)}`` of the id-like ``<base>_0``/``<base>_1`` names."""
    halves = {}
    for name in names:
        match = _PAIR.match(str(name))
        if match:
            halves.setdefault(match['base'], {})[match['half']] = name
    return {base: (h.get('0'), h.get('1')) for base, h in halves.items()}


def _pair_values(frame: pd.DataFrame, low: str, high: str, what: str) -> list[str]:
    values = []
    for name in (low, high):
        column = frame[name]
        if column.isna().any():
            raise TableFormatError(f'{what}: the id column "{name}" has missing values')
        if not pd.api.types.is_integer_dtype(column.dtype):
            raise TableFormatError(f'{what}: the id column "{name}" holds {column.dtype}, not '
                                   'the int64 halves of UUIDs')
        values.append(column.to_numpy(dtype=np.int64))
    return int_pair_strings(*values)


def merge_int_pairs(frame: pd.DataFrame, what: str = 'table') -> pd.DataFrame:
    """Replace the int64-pair id columns (``<x>_0``, ``<x>_1``) of a frame by UUID strings ``<x>``.

    Index levels are not looked at (see `standard_index`).  The new column takes the place of
    ``<x>_0``.  A frame without such columns is returned as is.

    Raises
    ------
    TableFormatError
        A half of a pair is missing, or holds missing or non-integer values.
    """
    pairs = _pairs(frame.columns)
    if not pairs:
        return frame
    frame = frame.copy(deep=False)
    for base, (low, high) in pairs.items():
        if low is None or high is None:
            present = low or high
            raise TableFormatError(f'{what}: the id column "{present}" has no other half '
                                   f'("{base}_{"1" if high is None else "0"}")')
        if base in frame.columns:
            raise TableFormatError(f'{what}: ids are given twice, as "{base}" and as the '
                                   f'pair "{low}", "{high}"')
        strings = _pair_values(frame, low, high, what)
        position = frame.columns.get_loc(low)
        frame = frame.drop(columns=[low, high])
        frame.insert(position, base, pd.array(strings, dtype=object))
    return frame


def merge_int_pair_levels(frame: pd.DataFrame, what: str = 'table') -> pd.DataFrame:
    """Replace the int64-pair id levels of a frame's index (``<x>_0``, ``<x>_1``) by UUID string
    levels ``<x>``, in place of ``<x>_0``; other levels and the columns are kept.

    A frame without such levels is returned as is, else a shallow copy with a new index.

    Raises
    ------
    TableFormatError
        As `merge_int_pairs`.
    """
    names = [n for n in frame.index.names if n is not None]
    if len(names) != frame.index.nlevels or not _pairs(names):
        return frame
    levels = merge_int_pairs(frame.index.to_frame(index=False), what)
    frame = frame.copy(deep=False)
    if levels.shape[1] == 1:
        frame.index = pd.Index(levels.iloc[:, 0], name=levels.columns[0])
    else:
        frame.index = pd.MultiIndex.from_frame(levels)
    return frame


def has_standard_index(frame: pd.DataFrame, name: str) -> bool:
    """True when a sessions or datasets table has ONE's index (``id``; ``eid``, ``id``), or the
    table is of another kind."""
    wanted = _INDEX_OF.get(name)
    return wanted is None or list(frame.index.names) == wanted


def _is_standard(frame: pd.DataFrame, name: str) -> bool:
    """True when a frame already has its table's index and no int64-pair id columns."""
    return name in _INDEX_OF and has_standard_index(frame, name) and not _pairs(frame.columns)


def _index_names_after_pairs(names: list) -> list:
    """Index level names once each int64 pair ``<x>_0``, ``<x>_1`` is the single level ``<x>``."""
    out = []
    for name in names:
        match = _PAIR.match(str(name))
        base = match['base'] if match else name
        if base not in out:
            out.append(base)
    return out


def standard_index(frame: pd.DataFrame, name: str | None, what: str = 'table') -> pd.DataFrame:
    """Give a table ONE's index, whatever layout of ids it was written in.

    Sessions get the index ``id``; datasets ``(eid, id)`` (the session id is moved into the
    index when it is a column).  Other tables (e.g. ``insertions``) keep their index, or, saved
    without one, get the sorted columns whose name contains ``.?id``, as ONE does.  Ids held as
    int64 pairs (``<x>_0``, ``<x>_1``; index levels or columns) become UUID strings ``<x>``.  A
    table already in today's layout is returned as is.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table as loaded (with the index recorded in the file, if any).
    name : str
        The table name ('sessions', 'datasets', ...).
    what : str
        How to name the table in errors (e.g. its file).

    Returns
    -------
    pandas.DataFrame
        The table with its index set (not sorted).

    Raises
    ------
    TableFormatError
        No id to index the table by (e.g. a datasets table without the session of each row),
        a malformed int64 pair, or (datasets) no ``rel_path`` column.
    """
    if _is_standard(frame, name):
        _check_columns(frame, name, what)
        return frame
    index = frame.index
    wanted = _INDEX_OF.get(name)
    if not isinstance(index, pd.RangeIndex):
        named = [n for n in index.names if n is not None]
        if wanted is None and named:  # another table: keep its index, ids as strings
            wanted = _index_names_after_pairs(named)
        # named levels become columns; unnamed ones (a row number) are dropped
        try:
            frame = frame.reset_index(level=named) if named else frame.reset_index(drop=True)
        except ValueError as ex:  # a level and a column of the same name
            raise TableFormatError(f'{what}: {ex}') from None
    frame = merge_int_pairs(frame, what)
    if wanted is None:
        wanted = sorted(c for c in frame.columns if INDEX_KEY.search(str(c)))
        if not wanted:
            raise TableFormatError(f'Failed to set index of {what}: no id column (a '
                                   'column whose name contains "id", e.g. "id" or "eid")')
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        found = sorted(map(str, frame.columns))
        if name == 'datasets' and missing == ['eid']:
            problem = 'the session of each dataset is unknown: no "eid" column or index level'
        else:
            problem = f'no {" or ".join(map(repr, missing))} id column or index level'
        raise TableFormatError(f'Failed to set index of {what}: {problem} (columns: '
                               f'{", ".join(found)})')
    _check_columns(frame, name, what)
    return frame.set_index(wanted)


def _check_columns(frame: pd.DataFrame, name: str | None, what: str) -> None:
    for column in _REQUIRED_COLUMNS.get(name, ()):
        if column not in frame.columns:
            raise TableFormatError(f'{what}: no "{column}" column (columns: '
                                   f'{", ".join(sorted(map(str, frame.columns)))})')
