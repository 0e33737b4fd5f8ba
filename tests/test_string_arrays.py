"""Strings as numpy sees them (`one._tables.string_arrays`): fixed-width bytes and 64-bit keys."""
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from one._tables import string_arrays


def test_fixed_width_keys():
    values = [str(uuid.uuid4()) for _ in range(300)]
    keys = string_arrays.fixed_width_keys(pa.array(values))
    chunked = string_arrays.fixed_width_keys(pa.chunked_array([values[:100], values[100:]],
                                                        type=pa.large_string()))
    assert keys.dtype == np.uint64 and (keys == chunked).all()
    assert len(set(keys.tolist())) == 300
    # the same value gives the same key wherever it is
    assert string_arrays.fixed_width_keys(pa.array(values[5:6]))[0] == keys[5]
    assert string_arrays.fixed_width_keys(pa.array(values[:-1] + ['short'])) is None
    assert string_arrays.fixed_width_keys(pa.array(values[:-1] + [None])) is None
    assert string_arrays.fixed_width_keys(pa.array([1, 2])) is None
    assert string_arrays.fixed_width_keys(pa.array([], pa.string())).size == 0


def test_fixed_width_bytes_and_their_keys():
    values = [str(uuid.uuid4()) for _ in range(300)]
    array = pa.array(values)
    fixed = string_arrays.fixed_width_bytes(array)
    assert fixed.dtype == np.dtype('S36') and fixed.tolist() == [v.encode() for v in values]
    chunked = string_arrays.fixed_width_bytes(pa.chunked_array([values[:100], values[100:]],
                                                         type=pa.large_string()))
    assert np.array_equal(chunked, fixed)
    assert np.array_equal(string_arrays.fixed_width_bytes(array.slice(7, 20)), fixed[7:27])
    assert (string_arrays.bytes_keys(fixed) == string_arrays.fixed_width_keys(array)).all()
    keys = string_arrays.fixed_width_keys(array)
    assert (string_arrays.bytes_keys(fixed[::3]) == keys[::3]).all()
    assert string_arrays.bytes_keys(fixed[:0]).size == 0
    assert string_arrays.fixed_width_bytes(pa.array(values[:-1] + ['short'])) is None
    assert string_arrays.fixed_width_bytes(pa.array(values[:-1] + [None])) is None
    assert string_arrays.fixed_width_bytes(pa.array([1, 2])) is None
    assert string_arrays.fixed_width_bytes(pa.array([], pa.string())).size == 0


@pytest.mark.parametrize('dtype', [object, 'str'])
def test_index_strings(dtype):
    index = pd.Index(['a', 'bc'], dtype=dtype)
    strings = string_arrays.index_strings(index)
    assert strings.to_pylist() == ['a', 'bc']
    assert string_arrays.index_strings(pd.Index([1.5, 2.0])) is None
