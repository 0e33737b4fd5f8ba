"""Arrays of strings as numpy sees them: fixed-width bytes, 64-bit keys, categoricals expanded.

Pure helpers over pandas / pyarrow string arrays (no files): the cache tables' ids are
36-character UUID strings, which numpy can read in place from arrow buffers as ``S36`` values
or turn into 64-bit keys for sorting and binary search.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ['category_strings', 'fixed_width_keys', 'fixed_width_bytes', 'bytes_keys',
           'index_strings', 'string_offsets', 'tagged_sorted_keys']


def category_strings(column: pd.Series) -> pd.Series:
    """The strings a categorical column holds, with the dtype of its categories (a Series)."""
    values = column.array
    dtype = values.categories.dtype
    if not hasattr(dtype, '__from_arrow__'):  # object (pandas 2)
        return column.astype(object)
    # arrow-backed str (pandas 3): expand the dictionary in arrow, not through Python objects
    codes = values.codes
    array = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0),
                                           pa.array(values.categories))
    return pd.Series(dtype.__from_arrow__(array.cast(pa.large_string())), index=column.index,
                     name=column.name)


def string_offsets(arr: pa.Array) -> np.ndarray:
    """The value offsets of a string or large_string array (a view of its buffer)."""
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    return np.frombuffer(arr.buffers()[1], dtype=offset_type)[arr.offset:arr.offset + len(arr) + 1]


def _fixed_width_chunks(values, width: int) -> list | None:
    """The non-empty chunks of a string array with their value offsets, or None unless every
    value is present and `width` bytes long."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if width < 8 or not all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type)
                            for c in chunks):
        return None
    out = []
    for chunk in chunks:
        n = len(chunk)
        if n == 0:
            continue
        offsets = string_offsets(chunk)
        if chunk.null_count or offsets[-1] - offsets[0] != width * n or \
                not (np.diff(offsets) == width).all():
            return None
        out.append((chunk, int(offsets[0])))
    return out


_KEY_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def fixed_width_keys(values, width: int = 36) -> np.ndarray | None:
    """64-bit keys of string values that all have `width` bytes (e.g. canonical UUIDs).

    The key of a value combines its first and last 8 bytes (for UUID strings: 64 random
    bits), read in place from the arrow buffers.  Equal strings have equal keys; distinct
    ones almost always differ, so keys narrow a search that is then confirmed on the strings.

    Parameters
    ----------
    values : pyarrow.Array, pyarrow.ChunkedArray
        A string or large_string array.
    width : int
        The length in bytes every value must have (at least 8).

    Returns
    -------
    numpy.ndarray or None
        One uint64 per value; None when a value is missing or of another width, or the
        array is not of plain strings.
    """
    chunks = _fixed_width_chunks(values, width)
    if chunks is None:
        return None
    keys = np.empty(sum(len(c) for c, _ in chunks), dtype=np.uint64)
    start = 0
    for chunk, base in chunks:
        n = len(chunk)
        _keys_into(chunk.buffers()[2], base, n, width, keys[start:start + n])
        start += n
    return keys


def _keys_into(data, offset: int, n: int, width: int, out: np.ndarray) -> None:
    """Write the keys of `n` values of `width` bytes stored from `offset` in `data` to `out`."""
    # unaligned strided views of the first and last 8 bytes of every value (no copy)
    first = np.ndarray((n,), dtype='<u8', buffer=data, offset=offset, strides=(width,))
    last = np.ndarray((n,), dtype='<u8', buffer=data, offset=offset + width - 8,
                      strides=(width,))
    np.multiply(first, _KEY_MULTIPLIER, out=out)
    out += last


def tagged_sorted_keys(keys: np.ndarray, mask: np.uint64) -> np.ndarray:
    """The keys with their low bits (`mask`) replaced by their position, sorted: one sort
    gives the sorted keys and where each one comes from (a new array)."""
    tagged = keys & ~mask
    tagged |= np.arange(len(keys), dtype=np.uint64)
    tagged.sort()
    return tagged


def fixed_width_bytes(values, width: int = 36) -> np.ndarray | None:
    """String values that all have `width` bytes as a numpy array of dtype ``S<width>``.

    A single chunk is viewed in place (no copy: not to be modified); several chunks are joined.

    Parameters
    ----------
    values : pyarrow.Array, pyarrow.ChunkedArray
        A string or large_string array.
    width : int
        The length in bytes every value must have (at least 8).

    Returns
    -------
    numpy.ndarray or None
        One element per value; None when a value is missing or of another width, or the
        array is not of plain strings.
    """
    chunks = _fixed_width_chunks(values, width)
    if chunks is None:
        return None
    parts = [np.frombuffer(chunk.buffers()[2], dtype=f'S{width}', count=len(chunk), offset=base)
             for chunk, base in chunks]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype=f'S{width}')


def bytes_keys(fixed: np.ndarray) -> np.ndarray:
    """The `fixed_width_keys` of a `fixed_width_bytes` array (uint64, a new array)."""
    keys = np.empty(len(fixed), dtype=np.uint64)
    if len(fixed):
        _keys_into(np.ascontiguousarray(fixed), 0, len(fixed), fixed.dtype.itemsize, keys)
    return keys


def index_strings(values: pd.Index):
    """The values of a str Index as arrow strings (its own chunks when arrow-backed), or None."""
    array = values.array
    try:
        if hasattr(array, '__arrow_array__'):
            return array.__arrow_array__()
        return pa.array(np.asarray(array, dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return None
