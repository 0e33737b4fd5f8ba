"""Index levels of `uuid.UUID` objects, built in bulk, and ids matched to a level's form.

The cache tables are loaded with canonical UUID *strings* as index values (cheap), and handed
to users with `uuid.UUID` objects (ONE-api's layout).  Turning a level of a million strings
into UUIDs one ``UUID(s)`` at a time takes over a second; here the strings' bytes are decoded
to 128-bit integers with numpy and the objects are made in bulk, without the cyclic garbage
collector scanning the growing heap meanwhile.  A level keeps its order (lower-case hex order
is UUID order), so a MultiIndex keeps its codes and only its levels are replaced.

Code that looks ids up in a table whose index may hold either form uses `key_for` /
`keys_for` to express an id (str or UUID) in the form of the index.
"""
from __future__ import annotations

import contextlib
import gc
import types
import uuid
import weakref
from collections import deque
from collections.abc import Iterable
from itertools import repeat
from operator import attrgetter

import numpy as np
import pandas as pd
import pyarrow as pa

from one._lib import parquet, uuids

__all__ = ['is_uuid_level', 'uuid_objects', 'uuid_level', 'string_level', 'with_uuid_levels',
           'with_string_levels', 'key_for', 'keys_for', 'level_of', 'remember_strings',
           'strings_of']

_UUID = uuid.UUID
_DASHES = np.array([8, 13, 18, 23])
_HEX = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_SLOTS = isinstance(_UUID.__dict__.get('int'), types.MemberDescriptorType) and \
    isinstance(_UUID.__dict__.get('is_safe'), types.MemberDescriptorType)
_SMALL = 512  # below this many values, one at a time is as fast
_INT_OF = attrgetter('int')


@contextlib.contextmanager
def _no_cyclic_gc():
    """Pause the cyclic garbage collector (it would rescan a growing heap of new objects)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def is_uuid_level(values) -> bool:
    """True if an index level (or flat index) holds `uuid.UUID` objects (checked on its first
    value; an empty one does not)."""
    return len(values) > 0 and isinstance(values[0], _UUID)


def _uuid_bytes(values) -> np.ndarray | None:
    """The 16 bytes of each canonical lower-case UUID string, or None if a value is not one."""
    strings = parquet.index_strings(pd.Index(values) if not isinstance(values, pd.Index)
                                    else values)
    fixed = None if strings is None else parquet.fixed_width_bytes(strings, 36)
    if fixed is None:
        return None
    chars = np.ascontiguousarray(fixed).view(np.uint8).reshape(-1, 36)
    if (chars[:, _DASHES] != ord('-')).any():
        return None
    digits = chars[:, _HEX]
    letters = (digits >= ord('a')) & (digits <= ord('f'))
    if not (letters | ((digits >= ord('0')) & (digits <= ord('9')))).all():
        return None
    nibbles = digits - np.uint8(ord('0'))
    nibbles -= letters.view(np.uint8) * np.uint8(ord('a') - ord('0') - 10)
    return (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]


def _objects(ints: list[int]) -> list[uuid.UUID]:
    """UUID objects of 128-bit integers, made in bulk (`uuid.UUID(int=i)` each, but faster)."""
    if not _SLOTS or len(ints) < _SMALL:
        return [_UUID(int=i) for i in ints]
    with _no_cyclic_gc():
        objects = list(map(object.__new__, repeat(_UUID, len(ints))))
        deque(map(_UUID.int.__set__, objects, ints), maxlen=0)
        deque(map(_UUID.is_safe.__set__, objects, repeat(uuid.SafeUUID.unknown)), maxlen=0)
    return objects


def uuid_objects(values) -> list[uuid.UUID] | None:
    """`uuid.UUID` objects for canonical lower-case UUID strings, in bulk.

    Parameters
    ----------
    values : pandas.Index, array_like of str
        The strings.

    Returns
    -------
    list of uuid.UUID, or None
        One UUID per value; None when a value is not a canonical lower-case UUID string.
    """
    raw = _uuid_bytes(values)
    if raw is None:
        return None
    with _no_cyclic_gc():
        halves = np.ascontiguousarray(raw).view('>u8').astype(np.uint64)
        ints = [(high << 64) | low for high, low in zip(halves[:, 0].tolist(),
                                                         halves[:, 1].tolist())]
    return _objects(ints)


def uuid_level(level: pd.Index) -> pd.Index:
    """A level of canonical UUID strings as a level of `uuid.UUID` objects (same order).

    A level of other values (or already of UUIDs, or empty) is returned as is.
    """
    if len(level) == 0 or is_uuid_level(level):
        return level
    objects = uuid_objects(level)
    if objects is None:
        return level
    values = pd.Index(objects, dtype=object, name=level.name)
    remember_strings(values, level)
    return values


# The string level each UUID level was made from (alive while the UUID level is): saving the
# tables, or matching them with strings, right after the first read of ``One._cache`` costs
# nothing.  Keyed by id(), with a weak reference finalizer removing the entry.
_STRING_FORM: dict[int, tuple[weakref.ref, pd.Index]] = {}


def remember_strings(uuid_values: pd.Index, strings: pd.Index) -> None:
    """Record the canonical strings of a level of UUIDs (the same values in the same order),
    for as long as that level object lives."""
    key = id(uuid_values)
    _STRING_FORM[key] = (weakref.ref(uuid_values, lambda _, key=key: _STRING_FORM.pop(key, None)),
                         strings)


def strings_of(level: pd.Index) -> pd.Index | None:
    """The canonical strings recorded for a level of UUIDs (see `remember_strings`), or None."""
    entry = _STRING_FORM.get(id(level))
    if entry is not None and entry[0]() is level:
        return entry[1]
    return None


def _strings_index(chars: np.ndarray, name) -> pd.Index:
    """An index of the strings whose characters are the rows of `chars` (n, width)."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    array = pa.StringArray.from_buffers(n, pa.py_buffer(offsets),
                                        pa.py_buffer(np.ascontiguousarray(chars)))
    return pd.Index(array.to_pandas(), name=name)  # str (pandas 3) or object strings


def string_level(level: pd.Index) -> pd.Index:
    """A level of `uuid.UUID` objects as canonical strings (same order); other levels as is."""
    if not is_uuid_level(level):
        return level
    remembered = strings_of(level)
    if remembered is not None:
        return remembered.rename(level.name)
    if len(level) < _SMALL:
        return pd.Index([str(x) if isinstance(x, _UUID) else x for x in level], name=level.name)
    try:
        ints = list(map(_INT_OF, level))
    except AttributeError:  # a value that is not a UUID
        return pd.Index([str(x) if isinstance(x, _UUID) else x for x in level], name=level.name)
    raw = np.frombuffer(b''.join(map(int.to_bytes, ints, repeat(16))), dtype=np.uint8)
    return _strings_index(uuids.uuid_chars(raw), level.name)


def _map_levels(index: pd.Index, convert) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        levels = [convert(level) for level in index.levels]
        if all(new is old for new, old in zip(levels, index.levels)):
            return index
        new_index = pd.MultiIndex(levels=levels, codes=index.codes, names=index.names,
                                  verify_integrity=False)
        for made, level in zip(new_index.levels, levels):  # the index holds copies of them
            strings = strings_of(level)
            if strings is not None:
                remember_strings(made, strings)
        return new_index
    new = convert(index)
    return index if new is index else new


def with_uuid_levels(index: pd.Index) -> pd.Index:
    """The index with its levels of canonical UUID strings as `uuid.UUID` objects.

    A MultiIndex keeps its codes (levels keep their order); other levels are left as they
    are.  The input itself is returned when nothing changes.
    """
    return _map_levels(index, uuid_level)


def with_string_levels(index: pd.Index) -> pd.Index:
    """The index with its levels of `uuid.UUID` objects as canonical strings (codes kept)."""
    return _map_levels(index, string_level)


def level_of(index: pd.Index, name: str) -> pd.Index:
    """The values of a level of a MultiIndex (its distinct values), or a flat index itself."""
    if isinstance(index, pd.MultiIndex):
        return index.levels[index.names.index(name) if name in index.names else -1]
    return index


def key_for(values: pd.Index, value):
    """An id (str or UUID) in the form of the values of an index level (or flat index).

    Strings that are not UUIDs are left as they are (they cannot be in a UUID level).
    """
    if is_uuid_level(values):
        if isinstance(value, str):
            try:
                return _UUID(value)
            except ValueError:
                return value
        return value
    return str(value) if isinstance(value, _UUID) else value


def keys_for(values: pd.Index, ids: Iterable) -> list:
    """`key_for` of several ids."""
    as_uuid = is_uuid_level(values)
    out = []
    for value in ids:
        if as_uuid and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = _UUID(value)
        elif not as_uuid and isinstance(value, _UUID):
            value = str(value)
        out.append(value)
    return out
