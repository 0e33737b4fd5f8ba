"""Index levels of `uuid.UUID` objects, built in bulk, and ids put in a level's form.

The cache tables are loaded with canonical UUID *strings* as index values (cheap), and handed
to users with `uuid.UUID` objects (ONE-api's layout).  Turning a level of a million strings
into UUIDs one ``UUID(s)`` at a time takes over a second; here the strings' bytes are decoded
to 128-bit integers with numpy and the objects are made in bulk, without the cyclic garbage
collector scanning the growing heap meanwhile.  A level keeps its order (lower-case hex order
is UUID order), so a MultiIndex keeps its codes and only its levels are replaced.

`in_form` is the one conversion of ids between the two forms: whole indexes (in bulk when the
values allow it, else value by value, values that are not UUIDs left as they are) and, through
`key_for` / `keys_for`, single ids looked up in a table whose index may hold either form.  Ids
written in upper case are made canonical (lower case), as ONE-api, which casts them with
`uuid.UUID`, ignores case.  Pure: numpy, pandas and pyarrow arrays, no files.
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

from one._tables import string_arrays, uuids

__all__ = ['is_uuid_level', 'uuid_objects', 'uuid_level', 'string_level', 'uuid_low_bits',
           'in_form', 'with_uuid_levels', 'with_string_levels', 'value_in_form', 'canonical_id',
           'key_for', 'keys_for', 'level_of', 'remember_strings', 'strings_of']

_UUID = uuid.UUID
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


def _uuid_bytes(values, strings=None) -> np.ndarray | None:
    """The 16 bytes of each canonical lower-case UUID string, or None if a value is not one
    (`strings`: the values as an arrow array, if already made)."""
    if strings is None:
        strings = string_arrays.index_strings(
            pd.Index(values) if not isinstance(values, pd.Index) else values)
    fixed = None if strings is None else string_arrays.fixed_width_bytes(strings, 36)
    if fixed is None:
        return None
    chars = np.ascontiguousarray(fixed).view(np.uint8).reshape(-1, 36)
    if (chars[:, uuids.DASH_POSITIONS] != ord('-')).any():
        return None
    digits = chars[:, uuids.HEX_POSITIONS]
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


def uuid_objects(values, strings=None) -> list[uuid.UUID] | None:
    """`uuid.UUID` objects for canonical lower-case UUID strings, in bulk.

    Parameters
    ----------
    values : pandas.Index, array_like of str
        The strings.
    strings : pyarrow.Array, optional
        The same strings as an arrow array, when already made (saves making it again).

    Returns
    -------
    list of uuid.UUID, or None
        One UUID per value; None when a value is not a canonical lower-case UUID string.
    """
    raw = _uuid_bytes(values, strings)
    if raw is None:
        return None
    with _no_cyclic_gc():
        halves = np.ascontiguousarray(raw).view('>u8').astype(np.uint64)
        ints = [(high << 64) | low for high, low in zip(halves[:, 0].tolist(),
                                                         halves[:, 1].tolist())]
    return _objects(ints)


def uuid_level(level: pd.Index, strings=None) -> pd.Index:
    """A level of canonical UUID strings as a level of `uuid.UUID` objects (same order).

    A level of other values (or already of UUIDs, or empty) is returned as is.  `strings`: the
    level as an arrow array, when already made.
    """
    if len(level) == 0 or is_uuid_level(level):
        return level
    objects = uuid_objects(level, strings)
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


def _uuid_ints_bytes(level) -> np.ndarray | None:
    """The 16 bytes of each value of a level of UUID objects, shape (n, 16), or None if a value
    is not a UUID (a C-level pass: no Python loop)."""
    try:
        ints = list(map(_INT_OF, level))
    except AttributeError:  # a value that is not a UUID
        return None
    joined = b''.join(map(int.to_bytes, ints, repeat(16), repeat('big')))
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, 16)


def string_level(level: pd.Index) -> pd.Index:
    """A level of `uuid.UUID` objects as canonical strings (same order); other levels as is.

    Values of a level starting with a UUID that are not UUIDs are kept as they are.
    """
    if not is_uuid_level(level):
        return level
    remembered = strings_of(level)
    if remembered is not None:
        return remembered.rename(level.name)
    raw = _uuid_ints_bytes(level) if len(level) >= _SMALL else None
    if raw is None:
        return pd.Index([str(x) if isinstance(x, _UUID) else x for x in level], name=level.name)
    return _strings_index(uuids.uuid_chars(raw), level.name)


def uuid_low_bits(level: pd.Index) -> np.ndarray | None:
    """The low 64 bits of each UUID of a level (random in version 3 and 4 UUIDs), in bulk; None
    when a value is not a UUID."""
    raw = _uuid_ints_bytes(level)
    if raw is None:
        return None
    return np.ascontiguousarray(raw[:, 8:]).view('>u8').ravel().astype(np.uint64)


# ---- canonical forms ---------------------------------------------------------------------

def _no_upper_case(strings) -> bool:
    """True when no value of an arrow string array can hold an ASCII upper-case letter.

    Every character of a canonical UUID string (digits, a-f, '-') has the bit 0x20 set, which
    upper-case letters lack: one AND over the bytes tells (a clear bit is only a maybe).
    """
    chunks = strings.chunks if isinstance(strings, pa.ChunkedArray) else [strings]
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return False
        offsets = string_arrays.string_offsets(chunk)
        start, stop = int(offsets[0]), int(offsets[-1])
        if stop > start:
            data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8, count=stop - start,
                                 offset=start)
            if not np.bitwise_and.reduce(data) & 0x20:
                return False
    return True


_CHUNK = 1 << 16


def _objects_without_upper_case(level: pd.Index) -> bool:
    """`_no_upper_case` of a level of Python strings (pandas 2), checked a slice at a time so
    that no arrow copy of a million strings is made; False also when a value is not a str."""
    values = level.to_numpy(dtype=object)
    try:
        return all(_no_upper_case(pa.array(values[i:i + _CHUNK], type=pa.string(),
                                           from_pandas=True))
                   for i in range(0, len(values), _CHUNK))
    except (pa.ArrowException, TypeError, ValueError):
        return False


def canonical_id(value):
    """A UUID string in any case as its canonical lower-case string; other values as they are."""
    if isinstance(value, str) and len(value) == 36 and not value.islower():
        try:
            return str(_UUID(value))
        except ValueError:
            return value
    return value


def value_in_form(value, as_uuid: bool):
    """An id as a `uuid.UUID` (`as_uuid`) or as its canonical string; values that are not
    UUIDs (path ids, None, numbers) as they are."""
    if as_uuid:
        if isinstance(value, str):
            try:
                return _UUID(value)
            except ValueError:
                return value
        return value
    if isinstance(value, _UUID):
        return str(value)
    return canonical_id(value)


def _value_by_value(level: pd.Index, as_uuid: bool, positions=None) -> pd.Index:
    """`value_in_form` of the values of a level (only those at `positions`, if given)."""
    values = level.to_numpy(dtype=object, copy=True)
    changed = False
    for i in range(len(values)) if positions is None else positions:
        new = value_in_form(values[i], as_uuid)
        if new is not values[i]:
            values[i] = new
            changed = True
    if not changed:
        return level
    if all(isinstance(x, str) for x in values):
        return pd.Index(values, name=level.name)  # str (pandas 3) or object strings
    return pd.Index(values, dtype=object, name=level.name)


def _uuid_length(strings) -> np.ndarray:
    """Positions of the values of an arrow string array that have 36 characters."""
    import pyarrow.compute as pc

    lengths = pc.utf8_length(strings).to_numpy(zero_copy_only=False)
    return np.flatnonzero(lengths == 36)


def _canonical_strings(level: pd.Index, strings) -> pd.Index:
    """A level of strings with its UUID strings in upper or mixed case made canonical."""
    if _no_upper_case(strings):
        return level
    import pyarrow.compute as pc

    lowered = pc.equal(strings, pc.utf8_lower(strings)).to_numpy(zero_copy_only=False)
    candidates = np.intersect1d(np.flatnonzero(lowered == False),  # noqa: E712 (not NA)
                                _uuid_length(strings))
    return _value_by_value(level, False, candidates) if len(candidates) else level


def _all_uuids(level: pd.Index) -> bool:
    return all(map(isinstance, level, repeat(_UUID)))


def _level_in_form(level: pd.Index, as_uuid: bool) -> tuple[pd.Index, bool]:
    """A level (or flat index) with its ids as UUIDs or canonical strings (see `in_form`), and
    whether it was converted value by value (two values may have become one)."""
    if len(level) == 0:
        return level, False
    if is_uuid_level(level) and _all_uuids(level):
        return (level if as_uuid else string_level(level)), False
    if not as_uuid and level.dtype == object and not is_uuid_level(level) and \
            _objects_without_upper_case(level):
        return level, False  # the common case when loading (pandas 2), without a copy
    strings = None if is_uuid_level(level) else string_arrays.index_strings(level)
    if strings is None:  # mixed kinds of values
        new = _value_by_value(level, as_uuid)
        return new, new is not level
    canonical = _canonical_strings(level, strings)
    if not as_uuid:
        return canonical, canonical is not level
    converted = uuid_level(canonical, strings if canonical is level else None)
    if converted is not canonical:
        return converted, canonical is not level
    # some values are not UUIDs (e.g. path ids): they stay; those of a UUID's length are tried
    candidates = _uuid_length(
        strings if canonical is level else string_arrays.index_strings(canonical))
    new = _value_by_value(canonical, True, candidates) if len(candidates) else canonical
    return new, new is not level


def _recoded(level: pd.Index, codes: np.ndarray) -> tuple[pd.Index, np.ndarray]:
    """A level made unique again (two forms of an id became one value), codes remapped."""
    new_codes, uniques = pd.factorize(level)
    codes = np.asarray(codes)
    remapped = np.where(codes >= 0, np.asarray(new_codes)[np.maximum(codes, 0)], -1)
    return pd.Index(uniques, dtype=level.dtype, name=level.name), remapped


def in_form(index: pd.Index, as_uuid: bool) -> pd.Index:
    """An index with its ids as `uuid.UUID` objects (`as_uuid`) or canonical lower-case strings.

    Levels of canonical strings or of UUIDs are converted in bulk (a MultiIndex keeps its codes);
    other levels value by value: strings that are UUIDs in any case become UUIDs or canonical
    strings, values that are not UUIDs (path ids, numbers, NA) stay as they are.  Ids given in
    two forms (a UUID and its string, or two cases) become one value of a level.

    Parameters
    ----------
    index : pandas.Index, pandas.MultiIndex
        The index (a RangeIndex is returned as it is).
    as_uuid : bool
        True for UUID objects, False for strings.

    Returns
    -------
    pandas.Index
        The index itself when nothing changes, else a new index (names kept).
    """
    if isinstance(index, pd.RangeIndex) or len(index) == 0:
        return index
    if not isinstance(index, pd.MultiIndex):
        return _level_in_form(index, as_uuid)[0]
    converted = [_level_in_form(level, as_uuid) for level in index.levels]
    if all(new is old for (new, _), old in zip(converted, index.levels)):
        return index
    levels, codes = [], []
    for (new, by_value), level_codes in zip(converted, index.codes):
        if by_value and not new.is_unique:
            new, level_codes = _recoded(new, level_codes)
        levels.append(new)
        codes.append(level_codes)
    new_index = pd.MultiIndex(levels=levels, codes=codes, names=index.names,
                              verify_integrity=False)
    for made, level in zip(new_index.levels, levels):  # the index holds copies of them
        strings = strings_of(level)
        if strings is not None:
            remember_strings(made, strings)
    return new_index


def with_uuid_levels(index: pd.Index) -> pd.Index:
    """`in_form(index, as_uuid=True)`: ids as `uuid.UUID` objects."""
    return in_form(index, True)


def with_string_levels(index: pd.Index) -> pd.Index:
    """`in_form(index, as_uuid=False)`: ids as canonical strings."""
    return in_form(index, False)


def level_of(index: pd.Index, name: str) -> pd.Index:
    """The values of a level of a MultiIndex (its distinct values), or a flat index itself."""
    if isinstance(index, pd.MultiIndex):
        return index.levels[index.names.index(name) if name in index.names else -1]
    return index


def key_for(values: pd.Index, value):
    """An id (str or UUID) in the form of the values of an index level (or flat index).

    Strings that are not UUIDs are left as they are (they cannot be in a UUID level).
    """
    return value_in_form(value, is_uuid_level(values))


def keys_for(values: pd.Index, ids: Iterable) -> list:
    """`key_for` of several ids."""
    as_uuid = is_uuid_level(values)
    return [value_in_form(value, as_uuid) for value in ids]
