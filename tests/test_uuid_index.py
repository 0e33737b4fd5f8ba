"""Tests of one._tables.uuid_index: UUID levels built in bulk, strings back, ids in a level's
form."""
import copy
import pickle
import uuid

import numpy as np
import pandas as pd
import pytest

from one._tables import uuid_index


def _strings(n, seed=0) -> list:
    rng = np.random.default_rng(seed)
    return sorted(str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n))


@pytest.mark.parametrize('n', [3, 2000])  # one by one, and in bulk
def test_uuid_objects_are_real_uuids(n):
    strings = _strings(n)
    objects = uuid_index.uuid_objects(pd.Index(strings))
    assert all(type(u) is uuid.UUID for u in objects)
    assert [str(u) for u in objects] == strings
    assert objects == [uuid.UUID(s) for s in strings]
    assert [hash(u) for u in objects] == [hash(uuid.UUID(s)) for s in strings]
    u = objects[-1]
    assert pickle.loads(pickle.dumps(u)) == u and copy.deepcopy(u) == u
    assert u.version == 4 and u.is_safe == uuid.SafeUUID.unknown


@pytest.mark.parametrize('bad', [
    'D3372B15-F696-4279-9BE5-98F15783B5BB',  # upper case: not canonical
    'd3372b15f696-4279-9be5-98f15783b5bb-',  # dashes elsewhere
    'd3372b15-f696-4279-9be5-98f15783b5bg',  # not hex
    'd3372b15-f696-4279-9be5-98f15783b5b',  # short
    'alf/_ibl_trials.choice.npy',
])
def test_uuid_objects_refuse_other_strings(bad):
    assert uuid_index.uuid_objects(pd.Index(_strings(600) + [bad])) is None
    level = pd.Index([bad] * 1)
    assert uuid_index.uuid_level(level) is level


def test_levels_keep_their_order_and_codes():
    eids, ids = _strings(5, 1), _strings(3000, 2)
    index = pd.MultiIndex(levels=[pd.Index(eids), pd.Index(ids[::-1])],  # an unsorted level
                          codes=[np.repeat(np.arange(5), 600), np.arange(3000)],
                          names=['eid', 'id'])
    converted = uuid_index.with_uuid_levels(index)
    assert converted.names == ['eid', 'id']
    assert [list(map(str, x)) for x in converted] == [list(x) for x in index]
    assert converted.levels[0].is_monotonic_increasing  # sorted strings: sorted UUIDs
    assert all(np.array_equal(a, b) for a, b in zip(converted.codes, index.codes))
    # back to strings: the recorded strings, or made from the UUIDs
    assert uuid_index.strings_of(converted.levels[1]) is not None
    back = uuid_index.with_string_levels(converted)
    assert list(back) == list(index)
    fresh = pd.MultiIndex.from_arrays([converted.get_level_values(0),
                                       converted.get_level_values(1)], names=['eid', 'id'])
    assert uuid_index.strings_of(fresh.levels[1]) is None
    assert list(uuid_index.with_string_levels(fresh)) == list(index)
    assert uuid_index.with_uuid_levels(converted) is converted  # nothing to do
    flat = pd.Index(eids, name='id')
    assert list(uuid_index.with_uuid_levels(flat)) == [uuid.UUID(x) for x in eids]


def test_string_level_of_mixed_values():
    level = pd.Index([uuid.UUID(int=1), uuid.UUID(int=2)], dtype=object)
    assert list(uuid_index.string_level(level)) == [str(uuid.UUID(int=1)),
                                                    str(uuid.UUID(int=2))]
    big = pd.Index([uuid.UUID(int=i) for i in range(1000)] + ['not-a-uuid'], dtype=object)
    out = uuid_index.string_level(big)
    assert out[0] == str(uuid.UUID(int=0)) and out[-1] == 'not-a-uuid'


def test_keys_in_the_form_of_a_level():
    strings = pd.Index(_strings(3))
    uuids = uuid_index.uuid_level(strings)
    u = uuids[1]
    assert uuid_index.key_for(uuids, str(u)) == u
    assert uuid_index.key_for(uuids, str(u).upper()) == u
    assert uuid_index.key_for(strings, u) == str(u)
    assert uuid_index.key_for(uuids, 'not-a-uuid') == 'not-a-uuid'
    assert uuid_index.keys_for(uuids, [str(u), u, 'x', None]) == [u, u, 'x', None]
    assert uuid_index.keys_for(strings, [u, str(u)]) == [str(u), str(u)]
    index = pd.MultiIndex.from_arrays([uuids, uuids], names=['eid', 'id'])
    assert uuid_index.level_of(index, 'id').equals(index.levels[1])


def test_in_form_of_upper_case_mixed_and_other_ids():
    strings = _strings(600, 3)
    upper = pd.Index([s.upper() for s in strings], name='id')
    assert list(uuid_index.in_form(upper, False)) == strings  # canonical: lower case
    assert list(uuid_index.in_form(upper, True)) == [uuid.UUID(s) for s in strings]
    canonical = pd.Index(strings, name='id')
    assert uuid_index.in_form(canonical, False) is canonical  # nothing to do
    paths = pd.Index(['alf/_ibl_trials.choice.npy', 'RAW/X.bin', strings[0].upper()])
    assert list(uuid_index.in_form(paths, False)) == [paths[0], paths[1], strings[0]]
    assert list(uuid_index.in_form(paths, True)) == [paths[0], paths[1], uuid.UUID(strings[0])]
    mixed = pd.Index([uuid.UUID(strings[0]), strings[1], None], dtype=object)
    assert list(uuid_index.in_form(mixed, False)) == [strings[0], strings[1], None]
    assert list(uuid_index.in_form(mixed, True)) == [uuid.UUID(strings[0]),
                                                      uuid.UUID(strings[1]), None]
    assert uuid_index.in_form(pd.RangeIndex(3), True).equals(pd.RangeIndex(3))


def test_in_form_merges_two_forms_of_an_id_in_a_level():
    """One id written in two cases (or as a UUID and a string) becomes one level value."""
    a, b, c = _strings(3, 4)
    index = pd.MultiIndex(levels=[pd.Index([a.upper(), a]), pd.Index([b, c])],
                          codes=[[0, 1], [0, 1]], names=['eid', 'id'])
    for as_uuid in (False, True):
        out = uuid_index.in_form(index, as_uuid)
        assert len(out.levels[0]) == 1 and out.levels[0].is_unique
        expected = [(a, b), (a, c)]
        assert [tuple(map(str, x)) for x in out] == expected and out.names == ['eid', 'id']


def test_uuid_low_bits_and_canonical_ids():
    values = uuid_index.uuid_level(pd.Index(_strings(700, 5)))
    bits = uuid_index.uuid_low_bits(values)
    assert bits.dtype == np.uint64
    assert bits.tolist() == [u.int & ((1 << 64) - 1) for u in values]
    assert uuid_index.uuid_low_bits(pd.Index([values[0], 'x'], dtype=object)) is None
    u = values[0]
    assert uuid_index.canonical_id(str(u).upper()) == str(u)
    assert uuid_index.canonical_id('ALF/X.NPY') == 'ALF/X.NPY'
    assert uuid_index.key_for(pd.Index([str(u)]), str(u).upper()) == str(u)
