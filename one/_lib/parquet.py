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
import pyarrow.parquet as pq

from one._lib.files import atomic_path

__all__ = ['METADATA_KEY', 'save', 'load', 'read_metadata']

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
         fsync: bool = True) -> Path:
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

    Returns
    -------
    pathlib.Path
        The file written.
    """
    filename = Path(filename)
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


_HYPHENS = [8, 13, 18, 23]
_HEX_BLOCKS = [(0, 8), (9, 13), (14, 18), (19, 23), (24, 36)]


def _u64(x: int) -> np.uint64:
    return np.uint64(x)


def _parse_hex_words(words: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse rows of 32 lower-case hex characters into two uint64 (high, low) per row.

    `words` is the (n, 4) little-endian uint64 view of the characters; 8 characters are
    decoded at once with bit operations (in place, to spare memory traffic).  Returns None if
    any character is not in [0-9a-f].
    """
    ones = _u64(0x0101010101010101)
    # nibble value of each byte: low 4 bits, + 9 for letters (bit 6 set)
    val = np.bitwise_and(words, _u64(0x0F0F0F0F0F0F0F0F))
    tmp = np.right_shift(words, _u64(6))
    tmp &= ones
    tmp *= _u64(9)
    val += tmp
    # encode back and compare: only '0'-'9' and 'a'-'f' survive the round trip ...
    np.add(val, _u64(0x0606060606060606), out=tmp)
    tmp >>= _u64(4)
    tmp &= ones
    tmp *= _u64(0x27)
    tmp += val
    tmp += _u64(0x3030303030303030)
    if not np.array_equal(tmp, words):
        return None
    # ... and no value above 15 ('g'-'o' would round-trip as 16-24)
    np.add(val, _u64(0x7070707070707070), out=tmp)
    tmp &= _u64(0x8080808080808080)
    if tmp.any():
        return None
    # join nibble pairs into bytes, then the 4 bytes of each word, then 2 words per half
    np.bitwise_and(val, _u64(0x00FF00FF00FF00FF), out=tmp)
    tmp <<= _u64(4)
    val >>= _u64(8)
    val &= _u64(0x00FF00FF00FF00FF)
    tmp |= val
    np.right_shift(tmp, _u64(8), out=val)
    tmp |= val
    tmp &= _u64(0x0000FFFF0000FFFF)
    np.right_shift(tmp, _u64(16), out=val)
    tmp |= val
    tmp &= _u64(0x00000000FFFFFFFF)
    high = (tmp[:, 0] | (tmp[:, 1] << _u64(32))).byteswap()
    low = (tmp[:, 2] | (tmp[:, 3] << _u64(32))).byteswap()
    return high, low


def _uuid_factorize(array: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array] | None:
    """Sorted factorization of a column of canonical (lower-case) UUID strings.

    Canonical UUID strings sort like the 128-bit numbers they spell, so the column is parsed
    into two uint64 per row (vectorised) and sorted as integers, much faster than sorting
    strings.  Returns (codes, sorted unique values), or None if any value is not a canonical
    UUID string (or is null).
    """
    arr = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    n = len(arr)
    if n == 0 or arr.null_count or not (pa.types.is_string(arr.type) or
                                        pa.types.is_large_string(arr.type)):
        return None
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=offset_type)[arr.offset:arr.offset + n + 1]
    if offsets[-1] - offsets[0] != 36 * n or not (np.diff(offsets) == 36).all():
        return None
    chars = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=36 * n,
                          offset=int(offsets[0])).reshape(n, 36)
    if not (chars[:, _HYPHENS] == ord('-')).all():
        return None
    hex_chars = np.concatenate([chars[:, a:b] for a, b in _HEX_BLOCKS], axis=1)
    parsed = _parse_hex_words(hex_chars.view('<u8'))
    if parsed is None:
        return None
    high, low = parsed
    # Sort by the high 64 bits (stable: fast on already sorted columns); a full two-key sort
    # is only needed if equal high halves come with unsorted low halves.
    order = np.argsort(high, kind='stable')
    sorted_high, sorted_low = high[order], low[order]
    if ((sorted_high[1:] == sorted_high[:-1]) & (sorted_low[1:] < sorted_low[:-1])).any():
        order = np.lexsort((low, high))
        sorted_high, sorted_low = high[order], low[order]
    high, low = sorted_high, sorted_low
    first = np.empty(n, dtype=bool)
    first[0] = True
    first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    codes = np.empty(n, dtype=np.int64)
    codes[order] = np.cumsum(first) - 1
    return codes, arr.take(pa.array(order[first]))


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
    if not all(pa.types.is_string(table.schema.field(c).type) or
               pa.types.is_large_string(table.schema.field(c).type) for c in index_columns):
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


def _multiindex(arrays: list, names: list) -> pd.MultiIndex:
    """A MultiIndex from arrow string columns, fast when they hold UUID strings."""
    factorized = [_uuid_factorize(a) for a in arrays]
    if any(f is None for f in factorized):
        return pd.MultiIndex.from_arrays([a.to_pandas() for a in arrays], names=names)
    levels = [pd.Index(uniques.to_pandas(), name=name)
              for (_, uniques), name in zip(factorized, names)]
    return pd.MultiIndex(levels=levels, codes=[codes for codes, _ in factorized], names=names,
                         verify_integrity=False)


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
    filename = Path(filename)
    if not filename.exists():
        raise FileNotFoundError(f'{filename} not found')
    table = pq.read_table(filename, use_threads=True)
    meta = _decode((table.schema.metadata or {}).get(METADATA_KEY))
    split = _split_index(table)
    if split is None:
        return _make_writable(table.to_pandas(split_blocks=True)), meta
    # Building a MultiIndex of a million UUID strings is the slow part of to_pandas (it sorts
    # the strings): build it from integer-sorted codes instead.
    rest, arrays, names = split
    df = _make_writable(rest.to_pandas(split_blocks=True))
    df.index = _multiindex(arrays, names)
    return df, meta
