"""The cache tables: their schema, loading, merging, saving, and indexing a local ALF tree.

ONE's local index is a set of parquet tables in a *tables dir*: ``sessions.pqt`` (one row per
session) and ``datasets.pqt`` (one row per file), optionally ``insertions.pqt``.  In memory they
live in a `Bunch` (``One._cache``) with a ``_meta`` entry holding load/save times and each
table's parquet metadata (``_meta['raw'][<table>]``).

Schema
------
sessions : index ``id``; columns lab, subject, date (`datetime.date`), number (uint16; tables
    built by Alyx may hold int64), task_protocol, projects (comma-separated).
datasets : MultiIndex ``(eid, id)``; columns rel_path, file_size (nullable UInt64), hash,
    exists (bool), qc (ordered categorical `QC_TYPE`), and optionally default_revision (bool).

Identifiers are kept as canonical lower-case UUID *strings* in memory, exactly as stored on
disk, so loading and saving need no conversion.  (ONE-api converts every id to `uuid.UUID` on
load, which dominates its start-up time.)  Use `cast_index_object` to get `uuid.UUID` objects.
String columns are ``object`` under pandas 2 and ``str`` under pandas 3, except the datasets
``rel_path`` column, which `load_tables` returns as a `pandas.Categorical` with lexically sorted
categories: a million rows hold a few thousand distinct paths, so it loads faster and takes a
tenth of the memory.  It behaves as strings for ``.str`` methods, equality, ``isin``, sorting,
``tolist()`` and ``to_numpy()``; setting a row to a path not yet in its categories needs
``merge_tables`` (which widens them) or ``.cat.add_categories``.  It is saved as a plain string
column, so the files are those ONE-api reads and writes.  The MultiIndex already stores each
distinct ``eid`` once.

Saving
------
`save_tables` is the primitive behind ``One.save_cache``: under an inter-process lock it merges
the in-memory tables into those on disk and writes each table atomically, so concurrent savers
never lose each other's records and a killed writer leaves the previous files intact.
"""
from __future__ import annotations

import bisect
import contextlib
import datetime
import hashlib
import logging
import os
import re
import uuid
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from one._lib import files as _files
from one._lib import parquet
from one._lib.bunch import Bunch
from one._lib.locks import file_lock
from one.alf import spec
from one.alf.exceptions import ALFWarning

__all__ = [
    'make_parquet_db', 'load_tables', 'patch_tables', 'merge_tables', 'save_tables',
    'remove_table_files', 'remove_missing_datasets', 'default_cache', 'cast_index_object',
    'QC_TYPE', 'SESSIONS_COLUMNS', 'DATASETS_COLUMNS', 'EMPTY_DATASETS_FRAME',
    'EMPTY_SESSIONS_FRAME', 'LOCK_NAME', 'ID_NAMESPACE',
]

_logger = logging.getLogger(__name__)

QC_TYPE = pd.CategoricalDtype(categories=[e.name for e in sorted(spec.QC)], ordered=True)
"""The dtype of the datasets ``qc`` column: NOT_SET < PASS < WARNING < FAIL < CRITICAL."""

SESSIONS_COLUMNS = {
    'id': object,  # str
    'lab': object,  # str
    'subject': object,  # str
    'date': object,  # datetime.date
    'number': np.uint16,  # int
    'task_protocol': object,  # str
    'projects': object,  # str (comma-separated)
}
"""Columns of the sessions table (index ``id`` included) and their dtypes."""

DATASETS_COLUMNS = {
    'eid': object,  # str
    'id': object,  # str
    'rel_path': object,  # str, relative to the session folder
    'file_size': 'UInt64',  # int, nullable
    'hash': object,  # str, md5
    'exists': bool,
    'qc': QC_TYPE,
}
"""Columns of the datasets table (index levels ``eid``, ``id`` included) and their dtypes."""

EMPTY_SESSIONS_FRAME = (
    pd.DataFrame(columns=list(SESSIONS_COLUMNS)).astype(SESSIONS_COLUMNS).set_index('id'))
"""An empty sessions table with the right index and dtypes (copy it before use)."""

EMPTY_DATASETS_FRAME = (
    pd.DataFrame(columns=list(DATASETS_COLUMNS)).astype(DATASETS_COLUMNS)
    .set_index(['eid', 'id']))
"""An empty datasets table with the right index and dtypes (copy it before use)."""

LOCK_NAME = '.ONE.lock'
"""Name of the lock file that `save_tables` holds in the tables folder (as ONE-api's)."""

LOCK_TIMEOUT = 60.0
"""Seconds `save_tables` waits for another live process to finish saving."""

ID_NAMESPACE = uuid.UUID('2e3d6b6f-1c55-4a8b-9f0e-7d3b4b1f6a2c')
"""Namespace of the version-3 UUIDs `make_parquet_db` derives from session and dataset paths."""

_INDEX_KEY = re.compile('.?id')
_CATEGORICAL = {'datasets': ('rel_path',)}  # str columns kept categorical in memory
_DATE_FORMAT = dict(sep=' ', timespec='minutes')
_TABLE_ORDER = {'sessions': 0, 'datasets': 1}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _now() -> datetime.datetime:
    return datetime.datetime.now()


def _timestamp(t: datetime.datetime | None = None) -> str:
    """A time as stored in table metadata: ``'YYYY-MM-DD HH:MM'``."""
    return (t or _now()).isoformat(**_DATE_FORMAT)


def _metadata(origin) -> dict:
    """Return the metadata of a new table: ``{'date_created': <now>, 'origin': str(origin)}``."""
    return {'date_created': _timestamp(), 'origin': str(origin)}


def _origin_set(origin) -> set:
    """Normalise a metadata 'origin' (None, str, list or set) to a set of str."""
    if origin is None:
        return set()
    if isinstance(origin, str):
        return {origin} if origin else set()
    return {str(o) for o in origin if o}


def _parse_time(value) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value
    try:
        return datetime.datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None


def _version_tuple(version) -> tuple:
    """'2.10' -> (2, 10, 0); None -> (0, 0, 0)."""
    numbers = [int(x) for x in re.findall(r'\d+', str(version or '0'))[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


def _has_uuid_objects(index: pd.Index) -> bool:
    """True if the first value of any index level is a `uuid.UUID` (rather than a str)."""
    if len(index) == 0:
        return False
    first = index[0] if isinstance(index, pd.MultiIndex) else (index[0],)
    return any(isinstance(v, uuid.UUID) for v in first)


def _nullable(dtype):
    """The nullable counterpart of a numpy bool/int dtype (other dtypes are returned as is)."""
    if isinstance(dtype, np.dtype):
        if dtype.kind == 'b':
            return pd.BooleanDtype()
        if dtype.kind in 'iu':
            return pd.api.types.pandas_dtype(dtype.name.capitalize().replace('Uint', 'UInt'))
    return dtype


def default_cache(origin: str = '') -> Bunch:
    """Return an empty cache: empty sessions and datasets tables and fresh metadata.

    Parameters
    ----------
    origin : str
        Where the tables come from (e.g. a folder or an Alyx URL); '' for none.

    Returns
    -------
    Bunch
        Keys ``datasets``, ``sessions`` (empty DataFrames with the schema dtypes) and ``_meta``
        (``created_time``, ``loaded_time``, ``modified_time``, ``saved_time`` all None, and
        ``raw``: per-table metadata with ``date_created`` = now and ``origin`` a set).
    """
    table_meta = {'date_created': _timestamp(), 'origin': set(filter(None, [origin]))}
    return Bunch({
        'datasets': EMPTY_DATASETS_FRAME.copy(),
        'sessions': EMPTY_SESSIONS_FRAME.copy(),
        '_meta': {
            'created_time': None,
            'loaded_time': None,
            'modified_time': None,
            'saved_time': None,
            'raw': {k: {**table_meta, 'origin': set(table_meta['origin'])}
                    for k in ('datasets', 'sessions')},
        },
    })


def cast_index_object(df: pd.DataFrame, dtype=uuid.UUID) -> pd.DataFrame:
    """Map every index level of `df` through `dtype` (NA values are left as they are).

    Used to turn the str ids of a table into `uuid.UUID` objects (the default) or back
    (``dtype=str``).  The index of `df` is replaced in place; `df` is returned.

    Parameters
    ----------
    df : pandas.DataFrame
        A table; a MultiIndex keeps its levels and names.
    dtype : callable
        Applied to each index value, e.g. `uuid.UUID` or `str`.

    Returns
    -------
    pandas.DataFrame
        `df` itself.

    Examples
    --------
    >>> df = pd.DataFrame({'a': [1]}, index=pd.Index(['a4a74102-2000-4b8c-8f8e-6e6a6f4b1c2d']))
    >>> type(cast_index_object(df).index[0]).__name__
    'UUID'
    """
    index = df.index
    if isinstance(index, pd.MultiIndex):
        arrays = [index.get_level_values(i).map(dtype, na_action='ignore')
                  for i in range(index.nlevels)]
        df.index = pd.MultiIndex.from_arrays(arrays, names=index.names)
    else:
        df.index = index.map(dtype, na_action='ignore').rename(index.name)
    return df


# --------------------------------------------------------------------------------------------
# Legacy tables
# --------------------------------------------------------------------------------------------

_HEX_DIGITS = np.frombuffer(b'0123456789abcdef', dtype=np.uint8)
_UUID_CHAR_POSITIONS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _uuid_strings(raw: np.ndarray) -> list[str]:
    """Format rows of 16 bytes as canonical UUID strings (vectorised)."""
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1, 16)
    n = len(raw)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    chars = np.full((n, 36), ord('-'), dtype=np.uint8)
    chars[:, _UUID_CHAR_POSITIONS] = _HEX_DIGITS[nibbles]
    text = chars.tobytes().decode('ascii')
    return [text[i:i + 36] for i in range(0, 36 * n, 36)]


def _int2str_uuids(low: np.ndarray, high: np.ndarray) -> list[str]:
    """Turn pairs of int64 (the 16 bytes of a UUID read as 2 little-endian int64) into str."""
    pairs = np.empty((len(low), 2), dtype='<i8')
    pairs[:, 0] = low
    pairs[:, 1] = high
    return _uuid_strings(pairs.view(np.uint8))


def _cache_int2str(table: pd.DataFrame) -> pd.DataFrame:
    """Convert legacy int64-pair id levels (``<x>_0``, ``<x>_1``) to UUID str levels ``<x>``.

    Legacy tables stored each UUID as two int64 columns holding the UUID's 16 bytes
    (little-endian).  When the index has at least two levels and one of them ends with ``_0``,
    each pair is replaced by a single str level named ``<x>``; other levels are kept in order.

    Parameters
    ----------
    table : pandas.DataFrame
        A table whose index may hold int64 pairs.

    Returns
    -------
    pandas.DataFrame
        The table with str UUID index levels (the input itself when there was nothing to do).
    """
    names = list(table.index.names)
    if table.index.nlevels < 2 or not any(str(n).endswith('_0') for n in names):
        return table
    arrays, new_names, done = [], [], set()
    for i, name in enumerate(names):
        name = str(name)
        if name in done:
            continue
        if name.endswith('_0') and (pair := name[:-2] + '_1') in names:
            low = table.index.get_level_values(i).to_numpy(dtype=np.int64)
            high = table.index.get_level_values(names.index(pair)).to_numpy(dtype=np.int64)
            arrays.append(pd.Index(_int2str_uuids(low, high), dtype=object))
            new_names.append(name[:-2])
            done.update((name, pair))
        elif name.endswith('_1') and name[:-2] + '_0' in names:
            continue
        else:
            arrays.append(table.index.get_level_values(i))
            new_names.append(name)
    table = table.copy(deep=False)
    if len(arrays) == 1:
        table.index = pd.Index(arrays[0], name=new_names[0])
    else:
        table.index = pd.MultiIndex.from_arrays(arrays, names=new_names)
    return table


def patch_tables(table: pd.DataFrame, min_api_version=None, name: str | None = None
                 ) -> pd.DataFrame:
    """Upgrade a table written by an older ONE or Alyx to the current schema.

    1. int64-pair id levels become UUID strings (`_cache_int2str`);
    2. ``min_api_version`` < 1.13.0: column ``project`` is renamed ``projects``;
    3. datasets table, ``min_api_version`` < 2.7.0 and no ``qc`` column: ``qc`` is added, all
       ``'NOT_SET'``;
    4. datasets table: the legacy ``session_path`` column is dropped.

    Parameters
    ----------
    table : pandas.DataFrame
        The table as loaded, its index already set.
    min_api_version : str, optional
        The table's ``min_api_version`` metadata (None counts as 0.0.0).
    name : str, optional
        The table name ('sessions', 'datasets', ...).

    Returns
    -------
    pandas.DataFrame
        The patched table.
    """
    table = _cache_int2str(table)
    version = _version_tuple(min_api_version)
    if version < (1, 13, 0) and 'project' in table.columns:
        table = table.rename(columns={'project': 'projects'})
    if name == 'datasets':
        if version < (2, 7, 0) and 'qc' not in table.columns:
            table = table.assign(qc=pd.Categorical.from_codes(
                np.zeros(len(table), dtype=np.int8), dtype=QC_TYPE))
        if 'session_path' in table.columns:
            table = table.drop(columns='session_path')
    return table


def _normalise(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Bring the columns ONE relies on to the schema dtypes (after `patch_tables`).

    ``qc`` becomes `QC_TYPE` (Alyx stores an ordered dictionary, legacy tables strings) and a
    float ``file_size`` (legacy) becomes UInt64.  Other columns are left as loaded.
    """
    if name != 'datasets':
        return table
    changes = {}
    if 'qc' in table.columns and table['qc'].dtype != QC_TYPE:
        changes['qc'] = table['qc'].astype(object).astype(QC_TYPE)
    if 'file_size' in table.columns and table['file_size'].dtype.kind in 'fiu' \
            and str(table['file_size'].dtype) != 'UInt64':
        size = table['file_size']
        if size.dtype.kind != 'f' or not (size.dropna() % 1).any():
            changes['file_size'] = size.astype('UInt64')
    return table.assign(**changes) if changes else table


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def _load_table(path: Path, name: str) -> tuple[pd.DataFrame | None, dict]:
    """Load one table file; (None, meta) when the file is not a valid table."""
    df, meta, is_sorted = parquet.load_table(path, categorical=_CATEGORICAL.get(name, ()))
    if 'date_created' not in meta:
        _logger.warning(f'{path} does not appear to be a valid table. Skipping')
        return None, meta
    if isinstance(df.index, pd.RangeIndex):
        id_columns = sorted(c for c in df.columns if _INDEX_KEY.search(str(c)))
        if not id_columns:
            raise KeyError('Failed to set index')
        df = df.set_index(id_columns)
    df = patch_tables(df, meta.get('min_api_version'), name)
    df = _normalise(df, name)
    if not is_sorted and not df.index.is_monotonic_increasing:
        df = df.sort_index()
    meta['origin'] = _origin_set(meta.get('origin')) or {'unknown'}
    return df, meta


def load_tables(tables_dir: str | os.PathLike, glob_pattern: str = '*.pqt') -> Bunch:
    """Load the cache tables of a folder.

    Every file matching `glob_pattern` is loaded as a table named after the file stem.  Files
    without ``date_created`` metadata are skipped with a warning.  A table saved without an
    index gets one from its id columns (``id``; ``eid``, ``id``); legacy tables are patched
    (`patch_tables`); ``qc`` is cast to `QC_TYPE`; tables are sorted by index.  Ids stay str;
    the datasets ``rel_path`` is categorical (see the module docstring).

    Parameters
    ----------
    tables_dir : str, os.PathLike
        The folder holding the tables.  A missing or empty folder gives the empty cache.
    glob_pattern : str
        Which files to load.

    Returns
    -------
    Bunch
        As `default_cache`, with the loaded tables, ``_meta['raw'][<table>]`` the metadata of
        each file (``origin`` as a set), ``_meta['loaded_time']`` now (None if nothing was
        loaded) and ``_meta['created_time']`` the earliest ``date_created``.

    Raises
    ------
    KeyError
        A table has neither an index nor id columns.
    """
    cache = default_cache()
    meta = cache['_meta']
    tables_dir = Path(tables_dir)
    for path in sorted(tables_dir.glob(glob_pattern)) if tables_dir.is_dir() else []:
        if not path.is_file():
            continue
        name = path.stem
        df, table_meta = _load_table(path, name)
        meta['raw'][name] = table_meta
        if df is None:
            continue
        meta['loaded_time'] = _now()
        cache[name] = df
    created = [t for t in (_parse_time(m.get('date_created')) for m in meta['raw'].values()
                           if m.get('date_created')) if t is not None]
    if meta['loaded_time'] is not None and created:
        meta['created_time'] = min(created)
    return cache


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------

def _na_column(index: pd.Index, dtype) -> pd.Series:
    """An all-NA column of `dtype` (which must hold NA)."""
    return pd.Series(index=index, dtype=dtype)


def _filled_without_na(col: str) -> bool:
    """Columns whose missing values are booleans: ``exists_*`` and ``default_revision``."""
    return col.startswith('exists_') or col == 'default_revision'


def _fill_value_column(col: str, rows: pd.DataFrame, dtype) -> pd.Series:
    """The values of a column `rows` lack.

    ``exists_*`` copy the rows' ``exists`` (True without it); ``default_revision`` is False
    (not marked as the default: the revision logic then picks the only or latest revision, as
    for a table without the column) so that the column stays bool, as ONE-api expects;
    anything else is NA.
    """
    if col.startswith('exists_'):
        if 'exists' in rows.columns:
            return rows['exists'].astype(dtype)
        return pd.Series(True, index=rows.index).astype(dtype)
    if col == 'default_revision':
        return pd.Series(False, index=rows.index).astype(dtype)
    return _na_column(rows.index, dtype)


def _column_dtype(col: str, dtype):
    """The dtype of a column added to rows that lack it (nullable unless filled with bools)."""
    return dtype if _filled_without_na(col) else _nullable(dtype)


def _with_column(table: pd.DataFrame, col: str, values: pd.Series) -> pd.DataFrame:
    """A shallow copy of `table` with a column set or added (the input is not modified)."""
    table = table.copy(deep=False)
    if col in table.columns:
        table.isetitem(table.columns.get_loc(col), values)
    else:
        table[col] = values
    return table


def _code_dtype(n_categories: int):
    """The smallest integer type pandas uses for the codes of `n_categories` categories."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories < np.iinfo(dtype).max:
            return dtype
    return np.int64


def _recategorize(column: pd.Series, categories: pd.Index) -> pd.Series:
    """A categorical column re-expressed with more categories (the codes remapped)."""
    values = column.array
    mapping = np.append(categories.get_indexer(values.categories), -1)
    codes = mapping[values.codes].astype(_code_dtype(len(categories)))
    dtype = pd.CategoricalDtype(categories, ordered=values.ordered)
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), index=column.index,
                     name=column.name)


def _widen_categories(table: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """`table` with the values of `records` added to its unordered categorical columns.

    Categories stay sorted, so that the column keeps sorting as the strings it holds.
    Ordered categoricals (``qc``) have a fixed set of levels and are left alone.
    """
    for col in table.columns:
        dtype = table[col].dtype
        if not isinstance(dtype, pd.CategoricalDtype) or dtype.ordered or \
                col not in records.columns:
            continue
        values = records[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            used = np.unique(values.cat.codes[values.cat.codes >= 0])
            present = values.cat.categories.take(used)
        else:
            present = pd.Index(pd.unique(values.dropna()))
        new = present[dtype.categories.get_indexer(present) < 0]
        if not len(new):
            continue
        categories = dtype.categories.append(new.astype(dtype.categories.dtype))
        with contextlib.suppress(TypeError):  # values that do not compare stay unsorted
            categories = categories.sort_values()
        table = _with_column(table, col, _recategorize(table[col], categories))
    return table


def _align(table: pd.DataFrame, records: pd.DataFrame, strict: bool = False
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give `records` the columns (order and dtypes) of `table`.

    Non-strict: table columns missing from the records are added to the records (and made
    nullable in the table when filled with NA); record columns missing from the table are
    added to the table (see `_fill_value_column` for the values of its existing rows).
    Categorical columns of the table get the categories the records need.

    Returns
    -------
    (table, records)
        The (possibly converted; the input is never modified) table and the aligned records.
    """
    if strict:
        if set(records.columns) != set(table.columns):
            raise AssertionError(
                f'Columns of records {sorted(map(str, records.columns))} do not match those '
                f'of the table {sorted(map(str, table.columns))}')
    else:
        missing = [c for c in table.columns if c not in records.columns]
        if missing:
            # columns filled with NA must hold it (exists_* columns are filled with booleans)
            conversions = {c: _column_dtype(c, table[c].dtype) for c in missing}
            conversions = {c: d for c, d in conversions.items() if d != table[c].dtype}
            if conversions:
                table = table.astype(conversions)
            records = records.assign(**{
                c: _fill_value_column(c, records, table[c].dtype) for c in missing})
        for col in records.columns:
            if col not in table.columns:
                table = _with_column(table, col, _fill_value_column(
                    col, table, _column_dtype(col, records[col].dtype)))
    table = _widen_categories(table, records)
    records = records[list(table.columns)]
    dtypes = table.dtypes.to_dict()
    if records.dtypes.to_dict() != dtypes:
        records = records.astype(dtypes)
    return table, records


def _records_frame(table: pd.DataFrame, records) -> pd.DataFrame:
    """Records as a DataFrame indexed like `table` (a Series is one row named by its name)."""
    if isinstance(records, pd.Series):
        frame = pd.DataFrame([records])
        names = table.index.names
        if frame.index.nlevels == len(names):
            frame.index = frame.index.set_names(names)
        records = frame.infer_objects()
    if _has_uuid_objects(records.index):
        records = cast_index_object(records.copy(deep=False), str)
    return records


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

    A loaded table's id level is kept in row order for speed (see `one._lib.parquet`); it is
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


def _sorted_row_order_index(index: pd.Index) -> tuple | None:
    """The parts of a 2-level index that `_upsert_sorted` can extend, or None.

    That is: rows sorted by (first, second) value, the first level sorted (few values: a
    session's eid), the second level holding the row values in row order (codes 0..n-1, so
    its values are distinct), as `load_tables` builds the datasets index and `_upsert_sorted`
    keeps it.  Checking costs a few comparisons per row, never a sort or hash of the ids.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, pandas.Index) or None
        The first level's values (object array), its codes, and the second level.
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
    try:
        if not all(isinstance(x, str) for x in first) or \
                (len(first) > 1 and not (first[:-1] < first[1:]).all()):
            return None
        values = level1.array
        increasing = np.asarray(values[:-1] < values[1:], dtype=bool)
    except (TypeError, ValueError):
        return None
    if not (steps[~increasing] > 0).all():  # where the id does not increase, a group starts
        return None
    return first, codes0, level1


def _upsert_sorted(table: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame | None:
    """`_upsert` of a few records into a large table indexed as `_sorted_row_order_index` says.

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
    eids, codes0, level1 = parts
    record_eids = list(records.index.get_level_values(0))
    record_ids = list(records.index.get_level_values(1))
    if not all(isinstance(x, str) for x in record_eids + record_ids):
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
    if new_ids and level1.isin(new_ids).any():
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


def _upsert(table: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
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


def merge_tables(cache: dict, strict: bool = False, origin=None, **kwargs
                 ) -> datetime.datetime | None:
    """Insert or update rows of cache tables (ONE's ``merge_tables``).

    Parameters
    ----------
    cache : dict
        A cache Bunch (tables and ``_meta``), modified in place.
    strict : bool
        If True the records must have exactly the columns of the table.  Otherwise columns the
        records lack are filled (``exists_*`` from the records' ``exists``, ``default_revision``
        with False, else NA, the table column becoming nullable when needed), and record
        columns the table lacks are added to it, filled the same way for its existing rows
        (e.g. a ``default_revision`` arriving from Alyx: False, the column bool).
    origin : str, optional
        Added to the ``origin`` set of each updated table's metadata.
    **kwargs
        ``<table name>=records``: a DataFrame indexed like the table, or a Series whose name
        is the index value.  None or empty records are skipped.

    Returns
    -------
    datetime.datetime or None
        The update time, stored in ``cache['_meta']['modified_time']``; None if nothing was
        merged (then ``modified_time`` is left unchanged).

    Raises
    ------
    KeyError
        A table is not in the cache.
    AssertionError
        Strict mode and the columns differ.

    Notes
    -----
    Records overwrite rows with the same index and new rows are appended; duplicate index
    values within the records keep the first.  Records are cast to the table dtypes and the
    table is re-sorted by index.  Ids given as `uuid.UUID` are stored as str.
    """
    updated = None
    for table_name, records in kwargs.items():
        if records is None or (isinstance(records, pd.DataFrame) and records.empty):
            continue
        if table_name not in cache:
            raise KeyError(f'Table "{table_name}" not in cache')
        table = cache[table_name]
        records = _records_frame(table, records)
        if records.index.has_duplicates:
            records = records[~records.index.duplicated(keep='first')]
        table, records = _align(table, records, strict=strict)
        cache[table_name] = _upsert(table, records)
        updated = _now()
        meta = cache.setdefault('_meta', {}).setdefault('raw', {}).setdefault(table_name, {})
        if origin is not None:
            meta['origin'] = _origin_set(meta.get('origin')) | _origin_set(origin)
        meta.setdefault('date_created', _timestamp(updated))
    if updated is not None:
        cache['_meta']['modified_time'] = updated
    return updated


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------

def _with_columns_of(frame: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the columns of `other` it lacks, filled as `merge_tables` fills them."""
    missing = [c for c in other.columns if c not in frame.columns]
    if not missing:
        return frame
    return frame.assign(**{c: _fill_value_column(c, frame, _column_dtype(c, other[c].dtype))
                           for c in missing})


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
        strings = parquet.index_strings(values)
        fixed = None if strings is None else parquet.fixed_width_bytes(strings)
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
        level_keys = parquet.bytes_keys(fixed)
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


def _tagged_sorted(keys: np.ndarray, mask: np.uint64) -> np.ndarray:
    """The keys with their low bits replaced by the row position, sorted."""
    tagged = keys & ~mask
    tagged |= np.arange(len(keys), dtype=np.uint64)
    tagged.sort()
    return tagged


def _rows_not_in(index: pd.Index, other: pd.Index) -> np.ndarray | None:
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
    # keys sorted with each row's position in their low bits: one sort per index, and the
    # matching runs over sorted queries (searching in random order is 30 times slower)
    mask = np.uint64((1 << max(n, m, 1).bit_length()) - 1)
    ours, theirs = _tagged_sorted(_row_keys(a), mask), _tagged_sorted(_row_keys(b), mask)
    their_keys = theirs & ~mask
    query = ours & ~mask
    low = np.searchsorted(their_keys, query, side='left')
    count = np.searchsorted(their_keys, query, side='right') - low
    rows = (ours & mask).astype(np.int64)
    single = np.flatnonzero(count == 1)
    # the candidate pairs in row order: for tables in the same order, the strings are then
    # read nearly sequentially on both sides
    match = np.full(n, -1, dtype=np.int64)
    match[rows[single]] = theirs[low[single]] & mask
    candidates = np.flatnonzero(match >= 0)
    found = np.zeros(n, dtype=bool)
    found[candidates] = _rows_equal(a, candidates, b, match[candidates])
    shared = np.flatnonzero(count > 1)  # equal high bits (rare) or an index with duplicates
    if len(shared) > _MAX_SHARED_KEYS:
        return None
    for i in shared:
        candidates = (theirs[low[i]:low[i] + count[i]] & mask).astype(np.int64)
        mine = np.full(len(candidates), rows[i])
        found[rows[i]] = _rows_equal(a, mine, b, candidates).any()
    return ~found


def _merge_for_save(on_disk: pd.DataFrame, in_memory: pd.DataFrame) -> pd.DataFrame:
    """The union of two versions of a table, the in-memory values winning on equal index.

    Rows only on disk are kept; columns of either table are kept (filled with NA, or with
    ``exists`` for ``exists_*`` columns, where a table lacks them).  The larger of the two
    parts gives the column order and dtypes, so that merging a few records into a big table
    (or a big table into an empty one) costs little.  Indices of UUID strings are compared
    by `_rows_not_in` (sorted 64-bit keys), others by pandas.
    """
    if on_disk.empty:
        return in_memory
    if in_memory.empty:
        base, records = _with_columns_of(on_disk, in_memory), None
    else:
        only_on_disk = _rows_not_in(on_disk.index, in_memory.index)
        if only_on_disk is None:
            only_on_disk = ~on_disk.index.isin(in_memory.index)
        extra = on_disk.iloc[np.flatnonzero(only_on_disk)]
        if len(extra) <= len(in_memory):  # typically: the memory holds what was loaded
            base, records = _with_columns_of(in_memory, on_disk), extra
        else:  # typically: a few records to add to a big table on disk
            base, records = _with_columns_of(on_disk, in_memory), in_memory
    if records is None or records.empty:
        return base
    base, records = _align(base, records)
    return _upsert(base, records)


def _ordered_tables(cache: dict, tables: Iterable[str] | None) -> list[str]:
    names = [k for k, v in cache.items() if not str(k).startswith('_')
             and isinstance(v, pd.DataFrame)] if tables is None else list(tables)
    for name in names:
        if name not in cache:
            raise KeyError(f'Table "{name}" not in cache')
    # sessions before datasets: a reader never sees datasets of sessions it doesn't know
    return sorted(names, key=lambda n: _TABLE_ORDER.get(n, 2))


def save_tables(cache: dict, tables_dir: str | os.PathLike, clobber: bool = False,
                tables: Iterable[str] | None = None, timeout: float | None = LOCK_TIMEOUT
                ) -> list[Path]:
    """Save the cache tables to a folder, safely with respect to other processes.

    This is the write primitive of ``One.save_cache``.  It takes an inter-process lock
    (``<tables_dir>/.ONE.lock``), then, for each table:

    * unless `clobber`, re-reads the table on disk *inside the lock* and merges the in-memory
      table into it: rows in memory win for the same index, rows only on disk are kept (so
      records saved meanwhile by other processes are not lost), columns only on disk are kept;
      the metadata's ``origin`` is the union of both and ``date_created`` the earlier one
      (also written back to ``cache['_meta']['raw']``);
    * writes ``<table>.pqt`` atomically (temporary file, fsync, rename) with the metadata of
      ``cache['_meta']['raw'][<table>]`` (``origin`` as a list; ``date_modified`` from
      ``cache['_meta']['modified_time']`` when set; ``date_created`` added if missing) and ids
      stored as str.

    Tables are written sessions first, then datasets, then any other.  Each file is replaced
    atomically, so a writer killed at any point leaves every table readable, holding either
    its previous or its new content.  A lock whose owner died is released by the operating
    system; a live owner's lock is waited for (never broken).  The in-memory tables are not
    modified; ``cache['_meta']['saved_time']`` is set.

    Parameters
    ----------
    cache : dict
        A cache Bunch as returned by `load_tables` / `default_cache`.
    tables_dir : str, os.PathLike
        The folder to write to (created if missing).
    clobber : bool
        If True, write the in-memory tables as they are, replacing what is on disk.
    tables : iterable of str, optional
        The tables to save; by default every DataFrame entry not starting with '_'.
    timeout : float, optional
        Seconds to wait for the lock (None: for ever).

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    one._lib.locks.LockTimeout
        Another live process kept the lock longer than `timeout` (a TimeoutError).
    KeyError
        A table named in `tables` is not in the cache.
    """
    tables_dir = Path(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    meta = cache.setdefault('_meta', {})
    raw = meta.setdefault('raw', {})
    names = _ordered_tables(cache, tables)
    modified = meta.get('modified_time')
    written = []
    with file_lock(tables_dir / LOCK_NAME, timeout=timeout):
        for name in names:
            filename = tables_dir / f'{name}.pqt'
            _files.remove_temp_files(tables_dir, filename.name)
            df = cache[name]
            table_meta = dict(raw.get(name) or {})
            origin = _origin_set(table_meta.get('origin'))
            if not clobber and filename.exists():
                try:
                    on_disk, disk_meta = _load_table(filename, name)
                except Exception as ex:  # unreadable: nothing on disk can be kept
                    _logger.warning(f'Replacing unreadable table {filename}: {ex!r}')
                    on_disk, disk_meta = None, {}
                if on_disk is not None:
                    df = _merge_for_save(on_disk, _records_frame(on_disk, df))
                    origin |= _origin_set(disk_meta.get('origin')) - {'unknown'}
                    table_meta = {**disk_meta, **table_meta}
                    created = [t for t in map(_parse_time, (
                        disk_meta.get('date_created'), (raw.get(name) or {}).get('date_created')
                    )) if t is not None]
                    if created:
                        table_meta['date_created'] = _timestamp(min(created))
                        if name in raw:
                            raw[name]['date_created'] = table_meta['date_created']
            if _has_uuid_objects(df.index):
                df = cast_index_object(df.copy(deep=False), str)
            table_meta['origin'] = sorted(origin)
            table_meta.setdefault('date_created', _timestamp())
            if modified is not None:
                table_meta['date_modified'] = _timestamp(modified)
            written.append(parquet.save(filename, df, table_meta,
                                        strings=_CATEGORICAL.get(name, ())))
            _logger.debug(f'Saved {filename}')
    meta['saved_time'] = _now()
    return written


def remove_table_files(folder: str | os.PathLike,
                       tables: Sequence[str] = ('sessions', 'datasets')) -> list[Path]:
    """Delete cache table files (and ``cache_info.json``) from a folder.

    Parameters
    ----------
    folder : str, os.PathLike
        The tables folder.
    tables : sequence of str
        Table names; ``<name>.pqt`` is deleted for each.

    Returns
    -------
    list of pathlib.Path
        The files deleted.  A warning is logged for each missing file.
    """
    folder = Path(folder)
    removed = []
    for filename in [folder / 'cache_info.json', *(folder / f'{t}.pqt' for t in tables)]:
        try:
            filename.unlink()
            removed.append(filename)
        except FileNotFoundError:
            _logger.warning(f'{filename} not found')
    return removed


# --------------------------------------------------------------------------------------------
# Indexing a folder
# --------------------------------------------------------------------------------------------

def _session_regex() -> re.Pattern:
    """Matches a relative path ending in a session folder (anchored at a folder boundary)."""
    return re.compile(r'(?:^|/)' + spec.regex(spec.SESSION_SPEC).pattern + '$')


def _rel_path_regex() -> re.Pattern:
    """Matches a valid ALF dataset path relative to its session folder."""
    return re.compile(spec.regex(spec.REL_PATH_SPEC).pattern)


class _Tree:
    """The sessions and dataset files of a folder, found in one walk.

    Attributes
    ----------
    sessions : list of tuple
        ``(rel_session_path, lab, subject, date_str, number_str)`` per session.
    ses_index : list of int
        For each dataset, the index of its session in `sessions`.
    rel_paths, paths, sizes : list
        For each dataset, its path relative to the session, absolute path and size.
    """

    def __init__(self, root: Path):
        self.root = root
        self.sessions: list[tuple] = []
        self.ses_index: list[int] = []
        self.rel_paths: list[str] = []
        self.paths: list[str] = []
        self.sizes: list[int] = []
        self._keys: dict = {}
        self._valid: dict = {}
        self._walk()

    @staticmethod
    def _follow_link(path: str, top: str, visited: set) -> bool:
        """Whether to walk a symlinked folder found while walking the folder `top` (real path).

        Links to a folder already entered through a link during this walk (`visited`), to
        `top` or one of its parents (a loop), or to a folder inside `top` (walked anyway) are
        not followed.
        """
        target = os.path.realpath(path)
        if target in visited or target == top or top.startswith(target + os.sep) \
                or target.startswith(top + os.sep):
            return False
        visited.add(target)
        return True

    @staticmethod
    def _scandir(path: str) -> list:
        try:
            with os.scandir(path) as it:
                return list(it)
        except OSError as ex:
            _logger.warning(f'Could not list {path}: {ex}')
            return []

    def _walk(self) -> None:
        session_re = _session_regex()
        root = str(self.root)
        whole = session_re.search(self.root.as_posix())
        if whole:  # the root is itself a session folder
            self._add_session(root, '', whole)
            return
        top = os.path.realpath(root)
        visited: set = set()
        stack = [(root, '')]
        while stack:
            folder, rel = stack.pop()
            for entry in sorted(self._scandir(folder), key=lambda e: e.name, reverse=True):
                try:
                    if not entry.is_dir():
                        continue
                    if entry.is_symlink() and not self._follow_link(entry.path, top, visited):
                        continue
                except OSError:
                    continue
                rel_dir = rel + entry.name
                match = session_re.search(rel_dir)
                if match:
                    self._add_session(entry.path, rel_dir, match)
                else:
                    stack.append((entry.path, rel_dir + '/'))

    def _add_session(self, path: str, rel: str, match: re.Match) -> None:
        parts = match.groupdict()
        lab, subject, date, number = (parts['lab'] or '', parts['subject'], parts['date'],
                                      parts['number'])
        try:
            datetime.date.fromisoformat(date)
        except ValueError:
            warnings.warn(f'Skipping {path}: "{date}" is not a valid date', ALFWarning)
            return
        key = (lab, subject, date, int(number))
        if key in self._keys:
            warnings.warn(f'Skipping {path}: same session as {self._keys[key]}', ALFWarning)
            return
        self._keys[key] = path
        i = len(self.sessions)
        self.sessions.append((rel, lab, subject, date, number))
        rel_path_re = _rel_path_regex()
        valid_cache = self._valid  # sessions hold mostly the same relative paths
        ses_index, rel_paths, paths, sizes = (
            self.ses_index, self.rel_paths, self.paths, self.sizes)
        top = os.path.realpath(path)
        visited: set = set()  # per session: a folder linked into two sessions is in both
        stack = [(path, '')]
        while stack:
            folder, prefix = stack.pop()
            for entry in self._scandir(folder):
                try:
                    if entry.is_dir():
                        if not entry.is_symlink() or self._follow_link(entry.path, top,
                                                                        visited):
                            stack.append((entry.path, prefix + entry.name + '/'))
                        continue
                    if not entry.is_file():
                        continue
                    rel_path = prefix + entry.name
                    valid = valid_cache.get(rel_path)
                    if valid is None:
                        valid = valid_cache[rel_path] = rel_path_re.match(rel_path) is not None
                    if not valid:
                        continue
                    size = entry.stat().st_size
                except OSError:
                    continue
                ses_index.append(i)
                rel_paths.append(rel_path)
                paths.append(entry.path)
                sizes.append(size)


def _session_key(lab: str, subject: str, date: str, number: str) -> str:
    """The string a session id is derived from: ``(lab/)subject/date/number``."""
    return '/'.join(filter(None, (lab, subject, date, number)))


def _uuid3_strings(names: Iterable[str], namespace: uuid.UUID = ID_NAMESPACE) -> list[str]:
    """``str(uuid.uuid3(namespace, name))`` for many names, without building UUID objects."""
    ns = namespace.bytes
    md5 = hashlib.md5
    digests = b''.join([md5(ns + name.encode()).digest() for name in names])
    raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x30  # version 3
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return _uuid_strings(raw)


def _dataset_ids(session_ids: Sequence[str], rel_paths: Sequence[str]) -> list[str]:
    """Dataset ids: uuid3 of ``'<session uuid>/<rel_path>'`` (unique across sessions)."""
    return _uuid3_strings(f'{e}/{r}' for e, r in zip(session_ids, rel_paths))


def _ids_to_uuid(df_ses: pd.DataFrame, df_dsets: pd.DataFrame
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace path ids by deterministic version-3 UUID strings.

    Session ids (column ``id`` of `df_ses`, ``eid`` of `df_dsets`) are ``(lab/)subject/date/
    number`` strings; they become ``uuid3(ID_NAMESPACE, <that string>)``.  Dataset ids (column
    ``id`` of `df_dsets`, the relative path) become ``uuid3(ID_NAMESPACE, '<session uuid>/
    <rel_path>')``, so the same file name in two sessions gets two ids and a rebuild gives the
    same ids.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Copies of both frames with the id columns replaced (as str).
    """
    df_ses, df_dsets = df_ses.copy(), df_dsets.copy()
    df_ses['id'] = _uuid3_strings(df_ses['id'])
    eids = _uuid3_strings(df_dsets['eid'])
    df_dsets['id'] = _dataset_ids(eids, df_dsets['id'])
    df_dsets['eid'] = eids
    return df_ses, df_dsets


def _get_session_info(rel_ses_path) -> dict:
    """Parse a session path into a sessions-table record.

    Parameters
    ----------
    rel_ses_path : str, os.PathLike
        A path ending in ``(lab/Subjects/)subject/date/number``.

    Returns
    -------
    dict
        Keys id (``(lab/)subject/date/number``), lab ('' if none), subject, date
        (`datetime.date`), number (int), task_protocol (''), projects ('').

    Raises
    ------
    ValueError
        The path does not end in a session folder.
    """
    path = Path(rel_ses_path).as_posix() if not isinstance(rel_ses_path, str) else \
        rel_ses_path.replace('\\', '/')
    match = _session_regex().search(path.rstrip('/'))
    if not match:
        raise ValueError(f'Invalid session path "{rel_ses_path}"')
    lab, subject, date, number = match.group('lab', 'subject', 'date', 'number')
    return {
        'id': _session_key(lab or '', subject, date, number),
        'lab': lab or '',
        'subject': subject,
        'date': datetime.date.fromisoformat(date),
        'number': int(number),
        'task_protocol': '',
        'projects': '',
    }


def _sessions_frame(tree: _Tree, ids: Sequence[str]) -> pd.DataFrame:
    n = len(tree.sessions)
    labs, subjects, dates, numbers = ([s[i] for s in tree.sessions] for i in range(1, 5))
    return pd.DataFrame({
        'id': pd.array(ids, dtype=object) if n else pd.array([], dtype=object),
        'lab': pd.array(labs, dtype=object),
        'subject': pd.array(subjects, dtype=object),
        'date': pd.array([datetime.date.fromisoformat(d) for d in dates], dtype=object),
        'number': np.array([int(x) for x in numbers], dtype=np.uint16),
        'task_protocol': pd.array([''] * n, dtype=object),
        'projects': pd.array([''] * n, dtype=object),
    })


def _datasets_frame(tree: _Tree, eids: Sequence[str], ids: Sequence[str],
                    hashes: Sequence[str]) -> pd.DataFrame:
    n = len(tree.rel_paths)
    return pd.DataFrame({
        'eid': pd.array(eids, dtype=object),
        'id': pd.array(ids, dtype=object),
        'rel_path': pd.array(tree.rel_paths, dtype=object),
        'file_size': pd.array(np.asarray(tree.sizes, dtype=np.uint64), dtype='UInt64'),
        'hash': pd.array(hashes, dtype=object),
        'exists': np.ones(n, dtype=bool),
        'qc': pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=QC_TYPE),
    })


def _latest_revisions(eids: Sequence[str], rel_paths: Sequence[str]) -> np.ndarray:
    """Per dataset: is it the latest revision of that dataset in its session?

    A dataset without revision folders is its own latest revision.  Written as the
    ``default_revision`` column, so that loading from an indexed folder picks the latest
    revision without warning that no default is marked.
    """
    n = len(rel_paths)
    if n == 0:
        return np.zeros(0, dtype=bool)
    codes, uniques = pd.factorize(pd.Series(rel_paths, dtype=object))
    stems, labels = [], []
    for rel_path in uniques:
        parts = rel_path.split('/')
        label = ''
        if len(parts) >= 2 and len(parts[-2]) > 2 and parts[-2][0] == parts[-2][-1] == '#':
            label = parts.pop(-2)[1:-1]
        stems.append('/'.join(parts))
        labels.append(label)
    stem_codes = pd.factorize(pd.Series(stems, dtype=object))[0][codes]
    label_rank = pd.Series(labels, dtype=object).rank(method='dense').to_numpy()[codes]
    eid_codes = pd.factorize(pd.Series(eids, dtype=object))[0]
    group = eid_codes.astype(np.int64) * (int(stem_codes.max()) + 1) + stem_codes
    order = np.lexsort((-label_rank, group))  # by group, latest revision first
    first = np.ones(n, dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    latest = np.zeros(n, dtype=bool)
    latest[order[first]] = True
    return latest


def _make_sessions_df(root_dir) -> pd.DataFrame:
    """The sessions table of a folder, ids being ``(lab/)subject/date/number`` (RangeIndex)."""
    tree = _Tree(Path(root_dir).resolve())
    return _sessions_frame(tree, [_session_key(*s[1:]) for s in tree.sessions])


def _make_datasets_df(root_dir, hash_files: bool = False) -> pd.DataFrame:
    """The datasets table of a folder (RangeIndex), with path ids.

    ``eid`` is the session's ``(lab/)subject/date/number`` and ``id`` the relative path; only
    valid ALF dataset names are listed.  ``hash`` is the md5 when `hash_files`, else ''.
    """
    tree = _Tree(Path(root_dir).resolve())
    keys = [_session_key(*s[1:]) for s in tree.sessions]
    eids = [keys[i] for i in tree.ses_index]
    hashes = _files.hash_files(tree.paths, tree.sizes) if hash_files else \
        [''] * len(tree.paths)
    return _datasets_frame(tree, eids, tree.rel_paths, hashes)


def make_parquet_db(root_dir, out_dir=None, hash_ids: bool = True, hash_files: bool = False,
                    lab: str | None = None) -> tuple[Path, Path]:
    """Index a folder of ALF sessions into ``sessions.pqt`` and ``datasets.pqt``.

    Sessions are folders ending in ``(lab/Subjects/)subject/date/number`` (relative to
    `root_dir`); datasets are the files inside them, at any depth, whose path relative to the
    session is a valid ALF dataset path (``collection/#revision#/name``; other files are not
    indexed).

    Parameters
    ----------
    root_dir : str, os.PathLike
        The folder to index (e.g. a ONE cache dir).
    out_dir : str, os.PathLike, optional
        Where to write the tables (default `root_dir`); must exist.
    hash_ids : bool
        If True (default), ids are version-3 UUID strings: a session's is derived from
        ``(lab/)subject/date/number``, a dataset's from ``<session uuid>/<rel_path>`` (namespace
        `ID_NAMESPACE`), so rebuilding gives the same ids and no two datasets share one.  The
        tables are indexed (``id``; ``eid``, ``id``) and sorted.  If False the ids are the path
        strings and the tables are saved without index (`load_tables` sets it).
    hash_files : bool
        If True, compute each file's md5 (in parallel threads, with a progress bar when stderr
        is a terminal); otherwise ``hash`` is ''.
    lab : str, optional
        Lab name for all sessions.  Sessions found in a lab folder must be in this lab.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The sessions and datasets table files.

    Raises
    ------
    AssertionError
        `out_dir` does not exist, or `lab` is given and a session lies in another lab's folder.

    Warns
    -----
    RuntimeWarning
        No sessions or no datasets were found (empty tables are written).
    ALFWarning
        A session folder number is not zero-padded to three digits (such sessions are indexed,
        but ONE builds padded paths, so their files cannot be loaded through it).
    """
    root_dir = Path(root_dir).resolve()
    out_dir = Path(out_dir or root_dir)
    assert out_dir.exists(), f'{out_dir} does not exist'
    tree = _Tree(root_dir)
    if not tree.sessions:
        warnings.warn('No sessions found', RuntimeWarning)
    if not tree.rel_paths:
        warnings.warn('No datasets found', RuntimeWarning)
    unpadded = [s[0] for s in tree.sessions if len(s[4]) != 3]
    if unpadded:
        warnings.warn(f'{len(unpadded)} session folder(s) have a number not zero-padded to 3 '
                      f'digits, e.g. "{unpadded[0]}"; ONE cannot load their datasets',
                      ALFWarning)

    keys = [_session_key(*s[1:]) for s in tree.sessions]
    if hash_ids:
        session_ids = _uuid3_strings(keys)
        eids = [session_ids[i] for i in tree.ses_index]
        dataset_ids = _dataset_ids(eids, tree.rel_paths)
    else:
        session_ids = keys
        eids = [keys[i] for i in tree.ses_index]
        dataset_ids = tree.rel_paths
    hashes = _files.hash_files(tree.paths, tree.sizes) if hash_files and tree.paths else \
        [''] * len(tree.paths)

    df_ses = _sessions_frame(tree, session_ids)
    df_dsets = _datasets_frame(tree, eids, dataset_ids, hashes)
    df_dsets['default_revision'] = _latest_revisions(eids, tree.rel_paths)
    if lab:
        others = set(df_ses['lab']) - {'', lab}
        assert not others, \
            f'Sessions in lab folder(s) {sorted(others)} cannot be assigned to lab "{lab}"'
        df_ses['lab'] = lab
    if hash_ids:
        df_ses = df_ses.set_index('id').sort_index()
        df_dsets = df_dsets.set_index(['eid', 'id']).sort_index()

    metadata = _metadata(root_dir)
    sessions_file = out_dir / 'sessions.pqt'
    datasets_file = out_dir / 'datasets.pqt'
    with file_lock(out_dir / LOCK_NAME, timeout=LOCK_TIMEOUT):
        parquet.save(sessions_file, df_ses, metadata)
        parquet.save(datasets_file, df_dsets, metadata)
    return sessions_file, datasets_file


# --------------------------------------------------------------------------------------------
# Removing files that are not in the tables
# --------------------------------------------------------------------------------------------

def _date_str(value) -> str:
    if isinstance(value, (datetime.date, pd.Timestamp)):
        return value.isoformat()[:10]
    return str(value)[:10]


def _remove_empty_folders(folder: Path, stop: Path) -> None:
    """Remove `folder` and its parents while they are empty, never `stop` or above it."""
    folder, stop = Path(folder), Path(stop)
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone)
            if folder.exists():
                return
        _logger.debug(f'Removed {folder}')
        folder = folder.parent


def _remove_empty_subfolders(folder: Path) -> None:
    """Remove the empty folders inside `folder`, deepest first (not `folder` itself)."""
    for dirpath, _, _ in sorted(os.walk(folder), key=lambda w: w[0].count(os.sep),
                                reverse=True):
        if Path(dirpath) != Path(folder):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def remove_missing_datasets(cache_dir, tables: dict | None = None,
                            remove_empty_sessions: bool = True, dry: bool = True) -> list[Path]:
    """Delete dataset files (and session folders) of a folder that are not in the cache tables.

    For each session folder under `cache_dir`, every valid ALF dataset file (at any depth)
    whose path relative to the session is not a ``rel_path`` of that session in the datasets
    table is selected; with `remove_empty_sessions`, so are session folders absent from the
    sessions table.  Files that are not valid ALF datasets are never selected, and session
    folders present in the sessions table are never removed, nor are files reached through a
    symlinked folder.

    A folder is matched to its table record by lab, subject, date and number (the number as an
    integer, so ``1`` and ``001`` match); a folder outside any lab folder also matches a record
    of any lab with the same subject, date and number.

    Parameters
    ----------
    cache_dir : str, os.PathLike
        The root folder of the sessions.
    tables : dict, optional
        ``{'sessions': DataFrame, 'datasets': DataFrame}``; loaded from `cache_dir` if None.
    remove_empty_sessions : bool
        Also select session folders that are not in the sessions table.
    dry : bool
        If True (default), only print and return what would be removed.

    Returns
    -------
    list of pathlib.Path
        The selected files and folders, sorted.
    """
    cache_dir = Path(cache_dir).resolve()
    if tables is None:
        tables = load_tables(cache_dir)
    sessions, datasets = tables['sessions'], tables['datasets']

    # session folder parts -> eid (strings, whatever the index dtype)
    by_key, by_short_key = {}, {}
    if len(sessions):
        ses = sessions.reset_index()
        id_col = 'id' if 'id' in ses.columns else ses.columns[0]
        for eid, lab, subject, date, number in zip(
                ses[id_col], ses['lab'].fillna(''), ses['subject'], ses['date'],
                ses['number']):
            date = _date_str(date)
            by_key[(str(lab), str(subject), date, int(number))] = str(eid)
            by_short_key.setdefault((str(subject), date, int(number)), []).append(str(eid))
    rel_paths_by_eid: dict[str, set] = {}
    if len(datasets):
        eid_level = datasets.index.get_level_values(0).map(str) \
            if datasets.index.nlevels > 1 else datasets['eid'].map(str)
        for eid, paths in pd.Series(datasets['rel_path'].to_numpy(), index=eid_level) \
                .groupby(level=0):
            rel_paths_by_eid[eid] = set(paths.dropna())

    tree = _Tree(cache_dir)
    to_delete: set[Path] = set()
    orphan_sessions: set[Path] = set()
    session_eids: list[str | None] = []
    for rel, lab, subject, date, number in tree.sessions:
        key = (lab, subject, date, int(number))
        eid = by_key.get(key)
        if eid is None and not lab:
            candidates = by_short_key.get(key[1:], [])
            eid = candidates[0] if len(candidates) == 1 else None
        session_eids.append(eid)
        session_path = cache_dir / rel if rel else cache_dir
        if eid is None and remove_empty_sessions:
            orphan_sessions.add(session_path)
    for i, rel_path, path in zip(tree.ses_index, tree.rel_paths, tree.paths):
        known = rel_paths_by_eid.get(session_eids[i], ())
        # files reached through a symlinked folder belong elsewhere: never removed
        if rel_path not in known and os.path.realpath(os.path.dirname(path)) == \
                os.path.dirname(path):
            to_delete.add(Path(path))
    selected = sorted(to_delete | orphan_sessions)
    if dry:
        print('The following session and datasets would be removed:', end='\n\t')
        print('\n\t'.join(map(str, selected)))
        return selected

    session_folders = {cache_dir / s[0] for s in tree.sessions}
    for path in sorted(to_delete):
        _logger.debug(f'Removing {path}')
        path.unlink(missing_ok=True)
        session_path = next((p for p in path.parents if p in session_folders), cache_dir)
        _remove_empty_folders(path.parent, session_path)
    for session_path in sorted(orphan_sessions, reverse=True):
        if session_path == cache_dir:
            continue
        _remove_empty_subfolders(session_path)
        _remove_empty_folders(session_path, cache_dir)
    return selected

