"""The cache tables: their schema, loading, merging, saving, and indexing a local ALF tree.

ONE's local index is a set of parquet tables in a *tables dir*: ``sessions.pqt`` (one row per
session) and ``datasets.pqt`` (one row per file), optionally ``insertions.pqt``.  In memory they
live in a `Bunch` with a ``_meta`` entry holding load/save times and each table's parquet
metadata (``_meta['raw'][<table>]``).

Schema
------
sessions : index ``id``; columns lab, subject, date (`datetime.date`), number (uint16; tables
    built by Alyx may hold int64), task_protocol, projects (comma-separated).
datasets : MultiIndex ``(eid, id)``; columns rel_path, file_size (nullable UInt64), hash,
    exists (bool), qc (ordered categorical `QC_TYPE`), and optionally default_revision (bool).

Identifiers
-----------
On disk ids are canonical lower-case UUID strings (the layout ONE-api reads and writes).
Tables written in older layouts (int64-pair ids, ids as columns) get ONE's index as they are
read, by `one._tables.formats.standard_index`; ids written in upper case are made canonical
(ONE-api, casting them with `uuid.UUID`, ignores case).  `load_tables` returns ONE-api's
shape: ids as `uuid.UUID` objects, every string column plain strings.  Building a million UUID
objects is the dearest part of loading, so `One` runs on the same tables as `read_tables`
gives them, ids kept as strings and the datasets ``rel_path`` as a `pandas.Categorical` (a
million rows hold a few thousand distinct paths: it loads faster and takes a tenth of the
memory), until ``one._cache`` is first read; then `to_user_shape` converts them (the UUIDs
made in bulk from the strings' bytes, see `one._tables.uuid_index`).  `merge_tables` keeps a
table's id form whatever form the records give, and `save_tables` accepts both.
String columns are ``object`` under pandas 2 and ``str`` under pandas 3.

Saving
------
`save_tables` is the primitive behind ``One.save_cache``: under an inter-process lock it merges
the in-memory tables into those on disk and writes each table atomically, so concurrent savers
never lose each other's records and a killed writer leaves the previous files intact.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import uuid
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from one._lib import files as _files
from one._lib.bunch import Bunch
from one._lib.locks import file_lock
from one._tables import (
    align,
    folder_index,
    formats,
    parquet,
    row_match,
    string_arrays,
    upsert,
    uuid_index,
    uuids,
)
from one._tables.formats import TableFormatError
from one.alf import spec
from one.alf.exceptions import ALFWarning

__all__ = [
    'make_parquet_db', 'load_tables', 'patch_tables', 'merge_tables', 'save_tables',
    'remove_table_files', 'remove_missing_datasets', 'default_cache', 'cast_index_object',
    'QC_TYPE', 'SESSIONS_COLUMNS', 'DATASETS_COLUMNS', 'EMPTY_DATASETS_FRAME',
    'EMPTY_SESSIONS_FRAME', 'LOCK_NAME', 'ID_NAMESPACE', 'TableFormatError', 'to_user_shape',
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

def _cache_int2str(table: pd.DataFrame) -> pd.DataFrame:
    """Convert legacy int64-pair id levels (``<x>_0``, ``<x>_1``) to UUID str levels ``<x>``.

    Legacy tables stored each UUID as two int64 holding the UUID's 16 bytes (little-endian).
    When the index has at least two levels and one of them ends with ``_0``, each pair is
    replaced by a single str level named ``<x>``; other levels are kept in order (see
    `one._tables.formats.merge_int_pair_levels`).

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
    return formats.merge_int_pair_levels(table)


def patch_tables(table: pd.DataFrame, min_api_version=None, name: str | None = None
                 ) -> pd.DataFrame:
    """Upgrade a table written by an older ONE or Alyx to the current schema.

    1. int64-pair ids become UUID strings: index levels (`_cache_int2str`) and columns
       (``eid_0``, ``eid_1`` -> ``eid``); a datasets table indexed by ``id`` alone gets its
       ``eid`` column as first index level;
    2. ``min_api_version`` < 1.13.0 (or no ``projects`` column): column ``project`` is renamed
       ``projects``;
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

    Raises
    ------
    one.alf.cache.TableFormatError
        An int64-pair id column lacks its other half or holds missing or non-integer values.
    """
    table = formats.merge_int_pairs(_cache_int2str(table))
    if name == 'datasets' and list(table.index.names) == ['id'] and 'eid' in table.columns:
        table = table.set_index('eid', append=True).reorder_levels(['eid', 'id'])
    version = _version_tuple(min_api_version)
    if 'project' in table.columns and (version < (1, 13, 0) or name == 'sessions') and \
            'projects' not in table.columns:
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
    """Load one table file; (None, meta) when the file has no table metadata.

    Raises
    ------
    TableFormatError
        The file cannot be read as a parquet table, or the table has no id to index it by.
    """
    try:
        df, meta, is_sorted = parquet.load_table(path, categorical=_CATEGORICAL.get(name, ()))
    except (pa.ArrowException, ValueError) as ex:  # damaged, or not parquet at all
        raise TableFormatError(f'{path} cannot be read as a cache table (damaged or not a '
                               f'parquet file: {ex}); delete it, or build the tables again') \
            from ex
    if 'date_created' not in meta:
        _logger.warning(f'{path} does not appear to be a valid table. Skipping')
        return None, meta
    df = formats.standard_index(df, name, what=str(path))
    df = patch_tables(df, meta.get('min_api_version'), name)
    df = _normalise(df, name)
    index = uuid_index.in_form(df.index, as_uuid=False)  # ids in upper case: canonical
    if index is not df.index:
        df.index, is_sorted = index, False
    if not is_sorted and not df.index.is_monotonic_increasing:
        df = df.sort_index()
    meta['origin'] = _origin_set(meta.get('origin')) or {'unknown'}
    return df, meta


def read_tables(tables_dir: str | os.PathLike, glob_pattern: str = '*.pqt') -> Bunch:
    """The cache tables of a folder as `One` runs on them: `load_tables` without the conversion
    to ONE-api's shape.

    Ids stay canonical strings and the datasets ``rel_path`` a `pandas.Categorical`: cheaper to
    load (no UUID objects).  This is one-next's entry point for its own readers of a folder's
    tables (`One`, the command line, releases); it is not part of ONE-api.

    Parameters
    ----------
    tables_dir : str, os.PathLike
        The folder holding the tables.
    glob_pattern : str
        Which files to load.

    Returns
    -------
    Bunch
        As `load_tables`.

    Raises
    ------
    one.alf.cache.TableFormatError
        As `load_tables`.
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


def load_tables(tables_dir: str | os.PathLike, glob_pattern: str = '*.pqt') -> Bunch:
    """Load the cache tables of a folder, in ONE-api's shape.

    Every file matching `glob_pattern` is loaded as a table named after the file stem.  Files
    without ``date_created`` metadata are skipped with a logged warning (as ONE-api).  Tables
    in older layouts get ONE's index (``id``; ``eid``, ``id``), whether their ids were saved as
    index levels or columns, as int64 pairs or strings, in any case (see
    `one._tables.formats.standard_index` and `patch_tables`); ``qc`` is cast to `QC_TYPE`;
    tables are sorted by index.  Ids are `uuid.UUID` objects (levels of other values stay as
    they are) and every string column holds plain strings (see `to_user_shape`).

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
    one.alf.cache.TableFormatError
        A table cannot be understood: a file that cannot be read as parquet, no id to index
        it by (``KeyError('Failed to set index ...')``, as ONE-api), a datasets table without
        the session of each row or without ``rel_path``, a malformed int64 id pair.  The
        message names the file.
    """
    return to_user_shape(read_tables(tables_dir, glob_pattern))


_load_tables = read_tables  # the name before read_tables (still imported by work in flight)


def to_user_shape(cache: dict) -> dict:
    """Give the tables of a cache ONE-api's shape, in place (the same DataFrame objects).

    Index levels of canonical UUID strings become levels of `uuid.UUID` objects (built in bulk;
    a MultiIndex keeps its codes) and categorical string columns (the datasets ``rel_path``
    as loaded) become plain string columns (see `user_shaped`).  Tables already in that shape
    are left alone.

    Parameters
    ----------
    cache : dict
        A cache Bunch; entries whose name starts with '_' and non-DataFrames are skipped.

    Returns
    -------
    dict
        `cache` itself.
    """
    for name, table in cache.items():
        if not str(name).startswith('_') and isinstance(table, pd.DataFrame):
            user_shaped(table, copy=False)
    return cache


def user_shaped(table: pd.DataFrame, copy: bool = True) -> pd.DataFrame:
    """A table in ONE-api's shape: ids as `uuid.UUID` objects, plain string columns.

    Index levels of id strings become UUIDs (`one._tables.uuid_index.in_form`) and unordered
    categorical string columns (``rel_path`` as `read_tables` loads it) plain strings.

    Parameters
    ----------
    table : pandas.DataFrame
        A cache table, or rows of one.
    copy : bool
        If True, `table` is left as it is and a shallow copy is changed (when anything
        changes); if False, `table` itself is changed.

    Returns
    -------
    pandas.DataFrame
        The table in ONE-api's shape.
    """
    index = uuid_index.in_form(table.index, as_uuid=True)
    strings = [i for i, dtype in enumerate(table.dtypes)
               if isinstance(dtype, pd.CategoricalDtype) and not dtype.ordered and
               (pd.api.types.is_object_dtype(dtype.categories.dtype)
                or pd.api.types.is_string_dtype(dtype.categories.dtype))]
    if copy and (strings or index is not table.index):
        table = table.copy(deep=False)
    if index is not table.index:
        table.index = index
    for i in strings:
        table.isetitem(i, string_arrays.category_strings(table.iloc[:, i]).array)
    return table


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------

def _index_form(index: pd.Index) -> bool | None:
    """True if an index holds UUID objects, False if strings (or other values), None if it
    holds no values to tell."""
    levels = index.levels if isinstance(index, pd.MultiIndex) else [index]
    for level in levels:
        if len(level):
            return uuid_index.is_uuid_level(level)
    return None


def _records_frame(table: pd.DataFrame, records, as_uuid: bool | None = None) -> pd.DataFrame:
    """Records as a DataFrame indexed like `table` (a Series is one row named by its name).

    Ids are given the form of the table's ids (UUID objects or strings); for an empty table,
    the form `as_uuid` says (None: as the records have them).
    """
    if isinstance(records, pd.Series):
        frame = pd.DataFrame([records])
        names = table.index.names
        if frame.index.nlevels == len(names):
            frame.index = frame.index.set_names(names)
        records = frame.infer_objects()
    form = _index_form(table.index)
    form = as_uuid if form is None else form
    if form is not None and not records.empty:
        index = uuid_index.in_form(records.index, form)
        if index is not records.index:
            records = records.copy(deep=False)
            records.index = index
    return records


def merge_tables(cache: dict, strict: bool = False, origin=None, **kwargs
                 ) -> datetime.datetime | None:
    """Insert or update rows of cache tables (ONE's ``merge_tables``).

    Parameters
    ----------
    cache : dict
        A cache Bunch (tables and ``_meta``), modified in place.
    strict : bool
        If True the records must have exactly the columns of the table.  Otherwise, as in
        ONE-api, columns the records lack are filled (``exists_*`` from the records'
        ``exists``, ``default_revision`` with False, else NA; the table column becomes
        nullable, ``exists_*`` columns nullable booleans) and record columns the table lacks
        are dropped, but ``default_revision``, which is added to the table (False for its
        existing rows, the column bool).
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
    table is re-sorted by index.  Ids keep the form of the table's (`uuid.UUID` objects, as
    `load_tables` gives them, or strings): records may give them in either form.
    """
    return _merge_tables(cache, kwargs, strict=strict, origin=origin)


def _merge_tables(cache: dict, tables: dict, strict: bool = False, origin=None,
                  as_uuid: bool | None = None) -> datetime.datetime | None:
    """`merge_tables`; an empty table takes the id form `as_uuid` says (None: the records')."""
    updated = None
    for table_name, records in tables.items():
        if records is None or (isinstance(records, pd.DataFrame) and records.empty):
            continue
        if table_name not in cache:
            raise KeyError(f'Table "{table_name}" not in cache')
        table = cache[table_name]
        records = _records_frame(table, records, as_uuid)
        if records.index.has_duplicates:
            records = records[~records.index.duplicated(keep='first')]
        table, records = align.align(table, records, strict=strict)
        cache[table_name] = upsert.upsert(table, records)
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

def _merge_for_save(on_disk: pd.DataFrame, in_memory: pd.DataFrame) -> pd.DataFrame:
    """The union of two versions of a table, the in-memory values winning on equal index.

    Rows only on disk are kept; columns of either table are kept (filled with NA, or with
    ``exists`` for ``exists_*`` columns, where a table lacks them).  The larger of the two
    parts gives the column order and dtypes, so that merging a few records into a big table
    (or a big table into an empty one) costs little.  Indices of UUID strings are compared
    by `one._tables.row_match.rows_not_in` (sorted 64-bit keys), others by pandas.
    """
    if on_disk.empty:
        return in_memory
    if in_memory.empty:
        base, records = align.with_columns_of(on_disk, in_memory), None
    else:
        only_on_disk = row_match.rows_not_in(on_disk.index, in_memory.index)
        if only_on_disk is None:
            only_on_disk = ~on_disk.index.isin(in_memory.index)
        extra = on_disk.iloc[np.flatnonzero(only_on_disk)]
        if len(extra) <= len(in_memory):  # typically: the memory holds what was loaded
            base, records = align.with_columns_of(in_memory, on_disk), extra
        else:  # typically: a few records to add to a big table on disk
            base, records = align.with_columns_of(on_disk, in_memory), in_memory
    if records is None or records.empty:
        return base
    base, records = align.align(base, records)
    return upsert.upsert(base, records)


def _without_duplicates(table: pd.DataFrame) -> pd.DataFrame:
    """The table without the rows repeating an index value of an earlier row (as ONE-api,
    saving drops duplicate rows; the first is kept, as `merge_tables` keeps it)."""
    index = table.index
    if isinstance(index, pd.MultiIndex) and 'id' in index.names:
        # the id level of a loaded table holds each row's own distinct id (see one._tables.parquet)
        codes = np.asarray(index.codes[index.names.index('id')])
        level = index.levels[index.names.index('id')]
        if len(codes) == len(level) and (len(codes) == 0 or (
                codes[0] == 0 and (np.diff(codes) == 1).all())):
            return table
    if index.is_unique:
        return table
    return table[~index.duplicated(keep='first')]


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
    one.alf.cache.TableFormatError
        A sessions or datasets table lacks ONE's index and has no id columns to set it from
        (a table whose index was reset, e.g. by ``reset_index()``, is saved with it set again).
    """
    tables_dir = Path(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    names = _ordered_tables(cache, tables)
    with file_lock(tables_dir / LOCK_NAME, timeout=timeout):
        written = _write_tables(cache, tables_dir, names, clobber)
    cache['_meta']['saved_time'] = _now()
    return written


def _write_tables(cache: dict, tables_dir: Path, names: list[str], clobber: bool
                  ) -> list[Path]:
    """The writes of `save_tables`, for a caller holding the folder's lock."""
    meta = cache.setdefault('_meta', {})
    raw = meta.setdefault('raw', {})
    modified = meta.get('modified_time')
    written = []
    for name in names:
        filename = tables_dir / f'{name}.pqt'
        _files.remove_temp_files(tables_dir, filename.name)
        df = cache[name]
        if not formats.has_standard_index(df, name):  # e.g. after reset_index()
            df = formats.standard_index(df, name, what=f'the {name} table')
        df = _without_duplicates(df)
        table_meta = dict(raw.get(name) or {})
        origin = _origin_set(table_meta.get('origin'))
        if not clobber and filename.exists():
            try:
                on_disk, disk_meta = _load_table(filename, name)
            except Exception as ex:  # unreadable: nothing on disk can be kept
                _logger.warning(f'Replacing unreadable table {filename}: {ex!r}')
                on_disk, disk_meta = None, {}
            if on_disk is not None:
                df = _merge_for_save(_without_duplicates(on_disk),
                                     _records_frame(on_disk, df, as_uuid=False))
                origin |= _origin_set(disk_meta.get('origin')) - {'unknown'}
                table_meta = {**disk_meta, **table_meta}
                created = [t for t in map(_parse_time, (
                    disk_meta.get('date_created'), (raw.get(name) or {}).get('date_created')
                )) if t is not None]
                if created:
                    table_meta['date_created'] = _timestamp(min(created))
                    if name in raw:
                        raw[name]['date_created'] = table_meta['date_created']
        string_index = uuid_index.with_string_levels(df.index)  # ids as strings on disk
        if string_index is not df.index:
            df = df.copy(deep=False)
            df.index = string_index
        table_meta['origin'] = sorted(origin)
        table_meta.setdefault('date_created', _timestamp())
        if modified is not None:
            table_meta['date_modified'] = _timestamp(modified)
        written.append(parquet.save(filename, df, table_meta,
                                    strings=_CATEGORICAL.get(name, ())))
        _logger.debug(f'Saved {filename}')
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
    df_ses['id'] = uuids.uuid3_strings(df_ses['id'], ID_NAMESPACE)
    eids = uuids.uuid3_strings(df_dsets['eid'], ID_NAMESPACE)
    df_dsets['id'] = folder_index.dataset_ids(eids, df_dsets['id'], ID_NAMESPACE)
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
    match = folder_index.session_regex().search(path.rstrip('/'))
    if not match:
        raise ValueError(f'Invalid session path "{rel_ses_path}"')
    lab, subject, date, number = match.group('lab', 'subject', 'date', 'number')
    return {
        'id': folder_index.session_key(lab or '', subject, date, number),
        'lab': lab or '',
        'subject': subject,
        'date': datetime.date.fromisoformat(date),
        'number': int(number),
        'task_protocol': '',
        'projects': '',
    }


def _make_sessions_df(root_dir) -> pd.DataFrame:
    """The sessions table of a folder, ids being ``(lab/)subject/date/number`` (RangeIndex)."""
    tree = folder_index.Tree(Path(root_dir).resolve())
    keys = [folder_index.session_key(*s[1:]) for s in tree.sessions]
    return folder_index.sessions_frame(tree, keys)


def _make_datasets_df(root_dir, hash_files: bool = False) -> pd.DataFrame:
    """The datasets table of a folder (RangeIndex), with path ids.

    ``eid`` is the session's ``(lab/)subject/date/number`` and ``id`` the relative path; only
    valid ALF dataset names are listed.  ``hash`` is the md5 when `hash_files`, else ''.
    """
    tree = folder_index.Tree(Path(root_dir).resolve())
    keys = [folder_index.session_key(*s[1:]) for s in tree.sessions]
    eids = [keys[i] for i in tree.ses_index]
    hashes = _files.hash_files(tree.paths, tree.sizes) if hash_files else \
        [''] * len(tree.paths)
    return folder_index.datasets_frame(tree, eids, tree.rel_paths, hashes, QC_TYPE)


def make_parquet_db(root_dir, out_dir=None, hash_ids: bool = True, hash_files: bool = False,
                    lab: str | None = None, *, _tree=None) -> tuple[Path, Path]:
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
        tables are indexed (``id``; ``eid``, ``id``).  If False the ids are the path strings
        and the tables are saved without index (`load_tables` sets it).  Either way the rows
        are sorted by path, as ONE-api writes them: sessions by folder, datasets by session
        folder then relative path.
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
    tree = _tree or folder_index.Tree(root_dir)  # (the walk `one index` made already)
    if not tree.sessions:
        warnings.warn('No sessions found', RuntimeWarning)
    if not tree.rel_paths:
        warnings.warn('No datasets found', RuntimeWarning)
    unpadded = [s[0] for s in tree.sessions if len(s[4]) != 3]
    if unpadded:
        warnings.warn(f'{len(unpadded)} session folder(s) have a number not zero-padded to 3 '
                      f'digits, e.g. "{unpadded[0]}"; ONE cannot load their datasets',
                      ALFWarning)

    keys = [folder_index.session_key(*s[1:]) for s in tree.sessions]
    if hash_ids:
        session_ids = uuids.uuid3_strings(keys, ID_NAMESPACE)
        eids = [session_ids[i] for i in tree.ses_index]
        dataset_ids = folder_index.dataset_ids(eids, tree.rel_paths, ID_NAMESPACE)
    else:
        session_ids = keys
        eids = [keys[i] for i in tree.ses_index]
        dataset_ids = tree.rel_paths
    hashes = _files.hash_files(tree.paths, tree.sizes) if hash_files and tree.paths else \
        [''] * len(tree.paths)

    df_ses = folder_index.sessions_frame(tree, session_ids)
    df_dsets = folder_index.datasets_frame(tree, eids, dataset_ids, hashes, QC_TYPE)
    df_dsets['default_revision'] = folder_index.latest_revisions(eids, tree.rel_paths)
    if lab:
        others = set(df_ses['lab']) - {'', lab}
        assert not others, \
            f'Sessions in lab folder(s) {sorted(others)} cannot be assigned to lab "{lab}"'
        df_ses['lab'] = lab
    # rows sorted by path, as ONE-api writes them: sessions by their folder, datasets by their
    # session's folder, then relative path (load_tables sorts the rows by id in memory)
    session_order = np.argsort(np.array([s[0] for s in tree.sessions], dtype=object),
                               kind='stable')
    session_rank = np.empty(len(session_order), dtype=np.int64)
    session_rank[session_order] = np.arange(len(session_order))
    dataset_order = np.lexsort((np.array(tree.rel_paths, dtype=object),
                                session_rank[np.asarray(tree.ses_index, dtype=np.int64)]))
    df_ses = df_ses.iloc[session_order].reset_index(drop=True)
    df_dsets = df_dsets.iloc[dataset_order].reset_index(drop=True)
    if hash_ids:
        df_ses = df_ses.set_index('id')
        df_dsets = df_dsets.set_index(['eid', 'id'])

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
        if isinstance(datasets.index, pd.MultiIndex):  # group on the eid codes, not strings
            eid_codes, eid_values = datasets.index.codes[0], datasets.index.levels[0]
        else:
            eid_codes, eid_values = pd.factorize(datasets['eid'])
        for code, paths in pd.Series(datasets['rel_path'].to_numpy()).groupby(
                np.asarray(eid_codes)):
            if code >= 0:
                rel_paths_by_eid[str(eid_values[code])] = set(paths.dropna())

    tree = folder_index.Tree(cache_dir)
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

