"""Save and load a DataFrame as a parquet file carrying a JSON metadata dict.

The metadata is stored as JSON under the schema metadata key ``b'one_metadata'``, beside the
``b'pandas'`` key that lets pandas restore the index and the extension dtypes.  This is the
layout ONE and Alyx use for the cache tables, so files written here load there and vice versa.
Saving is atomic (temporary file + rename).

Loading a table indexed by several columns of canonical UUID strings (the datasets table) builds
the MultiIndex from the UUIDs' 128-bit values, sorted as integers, instead of letting pandas
sort a million strings; the result is identical to ``pyarrow.parquet.read_table(f).to_pandas()``
and any other index falls back to that.
"""
from __future__ import annotations

import datetime
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from one._lib.files import atomic_path
from one._tables.string_arrays import category_strings, fixed_width_keys

__all__ = ['METADATA_KEY', 'save', 'load', 'load_table', 'read_metadata']

METADATA_KEY = b'one_metadata'


def _json_default(obj):
    """Encode the few non-JSON types metadata dicts hold."""
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, datetime.datetime):
        return obj.isoformat(sep=' ', timespec='minutes')
    if isinstance(obj, datetime.date):
        return obj.isoformat()
    if isinstance(obj, (Path, uuid.UUID)):
        return str(obj)
    raise TypeError(f'Object of type {type(obj).__name__} is not JSON serializable')


def _decode(raw: bytes | None) -> dict:
    if not raw:
        return {}
    meta = json.loads(raw)
    return meta if isinstance(meta, dict) else {'value': meta}


def _small_strings(table: pa.Table) -> pa.Table:
    """Store pandas 3's large_string columns as string, as pandas 2 and Alyx do.

    Columns whose characters exceed the 2 GiB offsets of `string` stay large_string.
    """
    fields = list(table.schema)
    if not any(pa.types.is_large_string(f.type) for f in fields):
        return table
    columns = []
    for field, column in zip(fields, table.columns):
        if pa.types.is_large_string(field.type):
            try:
                column = column.cast(pa.string())
                field = field.with_type(pa.string())
            except (pa.ArrowInvalid, pa.ArrowCapacityError, OverflowError):
                pass
        columns.append((field, column))
    schema = pa.schema([f for f, _ in columns], metadata=table.schema.metadata)
    return pa.Table.from_arrays([c for _, c in columns], schema=schema)


def save(filename: str | os.PathLike, df: pd.DataFrame, metadata: dict | None = None,
         fsync: bool = True, strings=()) -> Path:
    """Save a DataFrame to a parquet file with a metadata dict, atomically.

    Parameters
    ----------
    filename : str, os.PathLike
        The destination file; its folder must exist.
    df : pandas.DataFrame
        The table.  A RangeIndex is stored as metadata only; any other index is stored as
        columns named after the index levels.
    metadata : dict, optional
        JSON-serialisable dict (sets are stored as sorted lists, datetimes as
        ``'YYYY-MM-DD HH:MM'``).
    fsync : bool
        Flush the file to disk before it replaces the previous one.
    strings : iterable of str
        Categorical string columns to store as plain strings (as a str column would be), e.g.
        those loaded with ``load_table(..., categorical=...)``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    filename = Path(filename)
    strings = [c for c in strings
               if c in df.columns and isinstance(df[c].dtype, pd.CategoricalDtype)]
    if strings:
        df = df.copy(deep=False)
        for name in strings:
            df.isetitem(df.columns.get_loc(name), category_strings(df[name]).array)
    table = _small_strings(pa.Table.from_pandas(df, preserve_index=None))
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[METADATA_KEY] = json.dumps(metadata or {}, default=_json_default).encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_path(filename, fsync=fsync) as tmp:
        pq.write_table(table, tmp)
    return filename


def read_metadata(filename: str | os.PathLike) -> dict:
    """Return the metadata dict of a parquet file ({} when it has none)."""
    schema = pq.read_schema(filename)
    return _decode((schema.metadata or {}).get(METADATA_KEY))


def _is_text(arrow_type) -> bool:
    """A string column, or a dictionary of strings."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _split_index(table: pa.Table) -> tuple[pa.Table, list, list] | None:
    """Separate the string index columns of a table saved with a MultiIndex.

    Returns (table without them, their arrays, their names), with the pandas metadata edited
    to match, or None when the table has no such index.
    """
    meta = table.schema.pandas_metadata
    if not meta:
        return None
    index_columns = meta.get('index_columns') or []
    if len(index_columns) < 2 or not all(isinstance(c, str) and c in table.column_names
                                         for c in index_columns):
        return None
    if not all(_is_text(table.schema.field(c).type) for c in index_columns):
        return None
    names = {c.get('field_name'): c.get('name') for c in meta.get('columns', [])}
    meta = dict(meta)
    meta['index_columns'] = []
    meta['columns'] = [c for c in meta.get('columns', [])
                       if c.get('field_name') not in index_columns]
    arrays = [table.column(c) for c in index_columns]
    rest = table.drop_columns(index_columns)
    schema_meta = dict(rest.schema.metadata or {})
    schema_meta[b'pandas'] = json.dumps(meta).encode()
    return rest.replace_schema_metadata(schema_meta), arrays, [names.get(c, c)
                                                               for c in index_columns]


def _distinct_fixed_width(arr, width: int = 36) -> bool:
    """True if all values of a string column of `width`-character values are distinct.

    A proof, not an estimate: distinct `fixed_width_keys` imply distinct strings (checked by
    sorting the keys).  Equal keys (real duplicates, or a freak collision) return False and
    the caller takes the exact path.
    """
    keys = fixed_width_keys(arr, width)
    if keys is None:
        return False
    keys.sort()
    return not (keys[1:] == keys[:-1]).any()


def _sorted_multiindex(arrays: list, names: list) -> pd.MultiIndex | None:
    """An (eid, id) MultiIndex built from codes, when the rows are sorted by (eid, id).

    The first level's values come from dictionary encoding (sorted when the rows are sorted);
    the second level is the id column itself in row order (codes 0..n-1), which is valid when
    the ids are distinct.  Returns None when the table does not qualify.
    """
    if len(arrays) != 2 or len(arrays[0]) == 0:
        return None
    first, second = (a if isinstance(a, pa.ChunkedArray) else pa.chunked_array([a])
                     for a in arrays)
    if first.null_count or second.null_count:
        return None
    first = first.combine_chunks()
    encoded = first if pa.types.is_dictionary(first.type) else first.dictionary_encode()
    dictionary = encoded.dictionary
    if len(dictionary) > 1 and not pc.all(pc.less(dictionary[:-1], dictionary[1:])).as_py():
        return None  # first-appearance order is not sorted: rows not sorted by the first level
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    steps = np.diff(codes)
    if (steps < 0).any():
        return None
    # where the id does not increase, a new session must start
    not_increasing = pc.indices_nonzero(pc.invert(pc.less(second[:-1], second[1:])))
    if not (steps[not_increasing.to_numpy()] > 0).all():
        return None  # ids not sorted within a session
    if not _distinct_fixed_width(second) and \
            pc.count_distinct(second).as_py() != len(second):
        return None
    levels = [pd.Index(dictionary.to_pandas(), name=names[0]),
              pd.Index(second.to_pandas(), name=names[1])]
    return pd.MultiIndex(levels=levels, codes=[codes, np.arange(len(second))], names=names,
                         verify_integrity=False)


def _multiindex(arrays: list, names: list) -> tuple[pd.MultiIndex, bool]:
    """A MultiIndex from arrow string columns, and whether it is known to be sorted."""
    index = _sorted_multiindex(arrays, names)
    if index is not None:
        return index, True
    arrays = [a.cast(a.type.value_type) if pa.types.is_dictionary(a.type) else a
              for a in arrays]
    return pd.MultiIndex.from_arrays([a.to_pandas() for a in arrays], names=names), False


def _numpy_data(array) -> np.ndarray | None:
    """The numpy buffer behind a pandas array (codes of a Categorical), if any."""
    if isinstance(array, pd.Categorical):
        return array.codes
    for attribute in ('_ndarray', '_data'):
        data = getattr(array, attribute, None)
        if isinstance(data, np.ndarray):
            return data
    return None


def _make_writable(df: pd.DataFrame) -> pd.DataFrame:
    """Copy the columns pyarrow handed over zero-copy (read-only), so cells can be set."""
    read_only = []
    for i in range(df.shape[1]):
        data = _numpy_data(df.iloc[:, i].array)
        if data is not None and not data.flags.writeable:
            read_only.append(i)
    for i in read_only:
        df.isetitem(i, df.iloc[:, i].copy())
    return df


# Columns of the cache tables with few distinct values: decoding them from parquet as
# dictionaries is about twice as fast as materialising every string.
_DICTIONARY_COLUMNS = ('eid', 'rel_path')


def _read_table(filename: Path, categorical: tuple = ()) -> pa.Table:
    """Read a parquet file, decoding repetitive string columns as dictionaries first.

    Those columns are cast back to plain strings, except the first level of a MultiIndex
    (`_sorted_multiindex` uses its dictionary directly) and the `categorical` ones, so other
    dtypes are as saved.
    """
    schema = pq.read_schema(filename)
    names = [c for c in dict.fromkeys([*_DICTIONARY_COLUMNS, *categorical])
             if c in schema.names and _is_text(schema.field(c).type)]
    # ParquetFile.read gives one chunk per row group (read_table splits columns into many
    # chunks, which makes every later row selection re-join them).
    table = pq.ParquetFile(filename, memory_map=True, read_dictionary=names or None).read(
        use_threads=True)
    index_columns = (schema.pandas_metadata or {}).get('index_columns') or []
    keep = {index_columns[0]} if len(index_columns) >= 2 else set()
    for name in names:
        if name not in keep and name not in categorical:
            i = table.schema.get_field_index(name)
            column = table.column(i).cast(schema.field(name).type)
            table = table.set_column(i, schema.field(name), column)
    return table


def _sort_categories(df: pd.DataFrame, columns) -> pd.DataFrame:
    """Give categorical columns lexically sorted categories (the codes are remapped).

    Categories decoded from parquet dictionaries come in order of first appearance; sorted,
    the column sorts and compares as the strings would.
    """
    for name in columns:
        if name not in df.columns or not isinstance(df[name].dtype, pd.CategoricalDtype):
            continue
        values = df[name].array
        categories = values.categories
        if categories.is_monotonic_increasing:
            continue
        order = np.argsort(np.asarray(categories, dtype=object), kind='stable')
        rank = np.empty(len(order) + 1, dtype=values.codes.dtype)
        rank[order] = np.arange(len(order))
        rank[-1] = -1  # missing values (code -1) stay missing
        dtype = pd.CategoricalDtype(categories.take(order), ordered=values.ordered)
        df.isetitem(df.columns.get_loc(name),
                    pd.Categorical.from_codes(rank[values.codes], dtype=dtype))
    return df


def load(filename: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Load a parquet file and its metadata dict.

    Parameters
    ----------
    filename : str, os.PathLike
        The parquet file.

    Returns
    -------
    pandas.DataFrame
        The table, with the index and dtypes recorded by pandas when it was saved.  Its
        values can be set in place (no read-only buffers shared with pyarrow).
    dict
        The ``one_metadata`` dict, or {} when the file has none.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    """
    df, meta, _ = load_table(filename)
    return df, meta


def load_table(filename: str | os.PathLike, categorical=()
               ) -> tuple[pd.DataFrame, dict, bool]:
    """As `load`, also saying whether the (multi-)index is known to be sorted already.

    Parameters
    ----------
    filename : str, os.PathLike
        The parquet file.
    categorical : iterable of str
        String columns to return as `pandas.Categorical` (lexically sorted categories) rather
        than as strings: decoding them is cheaper and they take a fraction of the memory when
        values repeat.  Names the file lacks are ignored.

    Returns
    -------
    pandas.DataFrame, dict, bool
        The table, its metadata dict, and True when the rows were proven sorted by index.
    """
    filename = Path(filename)
    if not filename.exists():
        raise FileNotFoundError(f'{filename} not found')
    categorical = tuple(categorical)
    table = _read_table(filename, categorical)
    meta = _decode((table.schema.metadata or {}).get(METADATA_KEY))
    split = _split_index(table)
    if split is None:
        df = _sort_categories(table.to_pandas(split_blocks=True), categorical)
        return _make_writable(df), meta, False
    # pyarrow's own MultiIndex reconstruction hashes and sorts a million strings: build the
    # index from codes instead when the rows are sorted.
    rest, arrays, names = split
    df = _make_writable(_sort_categories(rest.to_pandas(split_blocks=True), categorical))
    df.index, is_sorted = _multiindex(arrays, names)
    return df, meta, is_sorted
