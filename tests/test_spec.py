"""Tests for one.alf.spec: the ALF grammar strings, regex builder, validators and QC levels."""
import doctest
import re
import textwrap
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from one.alf import spec
from one.alf.spec import (
    COLLECTION_SPEC,
    FILE_SPEC,
    FULL_SPEC,
    QC,
    REL_PATH_SPEC,
    SESSION_SPEC,
    SPEC_DESCRIPTION,
)

# The patterns that users copy into their own code: these must stay byte-identical.
SESSION_PATTERN = (
    r'((?P<lab>\w+)/Subjects/)?(?P<subject>[\w.-]+)/(?P<date>\d{4}-\d{2}-\d{2})/'
    r'(?P<number>\d{1,3})'
)
FILE_PATTERN = (
    r'_?(?P<namespace>(?<=_)[a-zA-Z0-9]+)?_?(?P<object>\w+)\.'
    r'(?P<attribute>(?:_[a-z]+_)?[a-zA-Z0-9]+(?:_times(?=[_.])|_intervals(?=[_.]))?)'
    r'(?:_(?P<timescale>\w+))?(?:\.(?P<extra>[.\w-]+))*\.(?P<extension>\w+)$'
)
COLLECTION_PATTERN = r'((?P<collection>[\w./-]+)/)?(#(?P<revision>[\w.-]+)#/)?'

PART_NAMES = ('lab', 'subject', 'date', 'number', 'collection', 'revision', 'namespace',
              'object', 'attribute', 'timescale', 'extra', 'extension')


# ---- constants ---------------------------------------------------------------------------------

def test_spec_strings_are_exact():
    assert SESSION_SPEC == '({lab}/Subjects/)?{subject}/{date}/{number}'
    assert COLLECTION_SPEC == r'({collection}/)?(#{revision}#/)?'
    assert FILE_SPEC == (r'_?{namespace}?_?{object}\.{attribute}(?:_{timescale})?'
                         r'(?:\.{extra})*\.{extension}$')
    assert REL_PATH_SPEC == COLLECTION_SPEC + FILE_SPEC
    assert FULL_SPEC == SESSION_SPEC + '/' + REL_PATH_SPEC


def test_default_part_patterns():
    assert isinstance(spec._DEFAULT, tuple)
    assert tuple(name for name, _ in spec._DEFAULT) == PART_NAMES
    assert dict(spec._DEFAULT) == {
        'lab': r'\w+',
        'subject': r'[\w.-]+',
        'date': r'\d{4}-\d{2}-\d{2}',
        'number': r'\d{1,3}',
        'collection': r'[\w./-]+',
        'revision': r'[\w.-]+',
        'namespace': '(?<=_)[a-zA-Z0-9]+',
        'object': r'\w+',
        'attribute': r'(?:_[a-z]+_)?[a-zA-Z0-9]+(?:_times(?=[_.])|_intervals(?=[_.]))?',
        'timescale': r'\w+',
        'extra': r'[.\w-]+',
        'extension': r'\w+',
    }


def test_spec_description_keys_in_order():
    assert list(SPEC_DESCRIPTION) == [
        'lab', 'Subjects', 'subject', 'date', 'number', 'collection', 'revision', 'namespace',
        'object', 'attribute', 'timescale', 'extra', 'extension']
    assert all(isinstance(v, str) and v for v in SPEC_DESCRIPTION.values())


def test_public_names():
    for name in ('SPEC_DESCRIPTION', 'SESSION_SPEC', 'COLLECTION_SPEC', 'FILE_SPEC',
                 'REL_PATH_SPEC', 'FULL_SPEC', '_DEFAULT', 'QC', 'path_pattern', 'describe',
                 'regex', 'is_valid', 'is_session_path', 'is_uuid_string', 'is_uuid', 'to_alf',
                 'readableALF', '_named', '_dromedary'):
        assert hasattr(spec, name), name


# ---- regex -------------------------------------------------------------------------------------

def test_docstring_examples():
    result = doctest.testmod(spec)
    assert result.attempted > 0 and result.failed == 0


def test_named():
    assert spec._named(r'\w+', 'lab') == r'(?P<lab>\w+)'
    assert spec._named('', 'x') == '(?P<x>)'


@pytest.mark.parametrize('spec_str, expected', [
    (SESSION_SPEC, SESSION_PATTERN),
    (FILE_SPEC, FILE_PATTERN),
    (COLLECTION_SPEC, COLLECTION_PATTERN),
    (REL_PATH_SPEC, COLLECTION_PATTERN + FILE_PATTERN),
    (FULL_SPEC, SESSION_PATTERN + '/' + COLLECTION_PATTERN + FILE_PATTERN),
])
def test_regex_patterns_are_byte_identical(spec_str, expected):
    pattern = spec.regex(spec_str)
    assert isinstance(pattern, re.Pattern)
    assert pattern.pattern == expected


def test_regex_default_is_full_spec():
    assert spec.regex().pattern == SESSION_PATTERN + '/' + COLLECTION_PATTERN + FILE_PATTERN
    assert list(spec.regex().groupindex) == list(PART_NAMES)


def test_regex_override():
    pattern = spec.regex(COLLECTION_SPEC, collection=r'probe\d{2}')
    assert pattern.pattern == r'((?P<collection>probe\d{2})/)?(#(?P<revision>[\w.-]+)#/)?'
    assert pattern.fullmatch('probe01/#2020-01-01#/').group('collection') == 'probe01'
    assert pattern.fullmatch('alf/') is None
    # Several overrides at once; the other parts keep their defaults
    pattern = spec.regex(FILE_SPEC, object='trials', attribute='table', extension='pqt')
    assert pattern.match('_ibl_trials.table.pqt')
    assert not pattern.match('_ibl_wheel.table.pqt')
    assert not pattern.match('_ibl_trials.table.npy')
    assert pattern.match('trials.table_bpod.x.pqt').group('timescale') == 'bpod'


def test_regex_none_override_keeps_default():
    assert spec.regex(FILE_SPEC, object=None).pattern == FILE_PATTERN
    assert spec.regex(SESSION_SPEC, lab=None, subject=None).pattern == SESSION_PATTERN
    # None mixed with a real override
    pattern = spec.regex(SESSION_SPEC, lab=None, subject='KS005')
    expected = SESSION_PATTERN.replace(r'(?P<subject>[\w.-]+)', '(?P<subject>KS005)')
    assert pattern.pattern == expected


def test_regex_unknown_field():
    with pytest.raises(KeyError) as info:
        spec.regex(FILE_SPEC, foo='bar')
    assert info.value.args[0] == 'Unknown field "foo"'
    # Unknown even when its value is None
    with pytest.raises(KeyError, match='Subjects'):
        spec.regex(SESSION_SPEC, Subjects=None)


def test_regex_arbitrary_specs():
    lab = spec.regex('^{lab}$')
    assert lab.pattern == r'^(?P<lab>\w+)$'
    assert lab.match('mainenlab') and not lab.match('lab-1') and not lab.match('a/b')
    subject_date = spec.regex('{subject}/{date}', date=r'2020-\d{2}-\d{2}')
    assert subject_date.pattern == r'(?P<subject>[\w.-]+)/(?P<date>2020-\d{2}-\d{2})'
    assert subject_date.search('x/NYU-14.1/2020-03-04').groupdict() == {
        'subject': 'NYU-14.1', 'date': '2020-03-04'}
    # A spec without placeholders compiles verbatim
    assert spec.regex('abc$').pattern == 'abc$'
    # Only the placeholders present are substituted, so unused overrides are harmless
    assert spec.regex('^{lab}$', object='foo').pattern == r'^(?P<lab>\w+)$'


def test_regex_is_memoised():
    assert spec.regex(FILE_SPEC) is spec.regex(FILE_SPEC)
    assert spec.regex(FILE_SPEC, object='a') is spec.regex(FILE_SPEC, object='a')
    assert spec.regex(FILE_SPEC, object='a') is not spec.regex(FILE_SPEC, object='b')


# ---- validators --------------------------------------------------------------------------------

@pytest.mark.parametrize('filename, valid', [
    ('spikes.times.npy', True),
    ('_ns_obj.attr1.2622b17c-9408-4910-99cb-abf16d9225b9.metadata.json', True),
    ('channels._phy_ids.csv', True),
    ('_ibl_trials.goCue_times_bpod.csv', True),
    ('a.b.c.d.e', True),
    ('spike_train.npy', False),
    ('spikes.times', False),
    ('obj.attr.', False),
    ('obj.foo-bar.npy', False),
    ('obj-1.attr.npy', False),
    ('obj.attr.#x#.npy', False),
    ('alf/spikes.times.npy', False),
    ('', False),
])
def test_is_valid(filename, valid):
    assert spec.is_valid(filename) is valid


@pytest.mark.parametrize('path, expected', [
    ('/mnt/s0/Data/Subjects/ibl_witten_14/2019-12-04', False),
    ('/mnt/s0/Data/Subjects/ibl_witten_14/2019-12-04/001', True),
    ('/mnt/s0/Data/Subjects/ibl_witten_14/2019-12-04/001/', True),
    ('/mnt/s0/Data/Subjects/ibl_witten_14/2019-12-04/001/tutu', False),
    ('subj/2020-01-01/0001', False),
    ('subj/2020-13-45/001', True),  # the date is not checked against a calendar
    ('subj/2020-01-01/1', True),
    ('lab/Subjects/NYU-14.1/2020-01-01/002', True),
    ('2020-01-01/001', False),
    ('subj/2020-1-01/001', False),
    ('subj/2020-01-01/001/alf/spikes.times.npy', False),
])
def test_is_session_path(path, expected):
    assert spec.is_session_path(path) is expected
    if not path.endswith('/'):
        assert spec.is_session_path(PurePosixPath(path)) is expected
        assert spec.is_session_path(Path(path)) is expected


def test_is_session_path_windows():
    assert spec.is_session_path(PureWindowsPath(r'C:\Data\lab\Subjects\subj\2020-01-01\001'))
    assert not spec.is_session_path(PureWindowsPath(r'C:\Data\subj\2020-01-01\001\alf'))


UUID4 = 'a976e418-c8b8-4d24-be47-d05120b18341'
UUID3 = str(uuid.uuid3(uuid.NAMESPACE_URL, 'https://example.org'))
UUID5 = str(uuid.uuid5(uuid.NAMESPACE_URL, 'https://example.org'))
UUID1 = str(uuid.UUID('f5e3a0c2-1f0e-11ee-be56-0242ac120002'))


def test_is_uuid_forms():
    u = uuid.UUID(UUID4)
    for form in (u, UUID4, UUID4.upper(), u.hex, u.hex.upper(), '{' + UUID4 + '}',
                 'urn:uuid:' + UUID4, u.bytes, u.int):
        assert spec.is_uuid(form), form
    assert spec.is_uuid(UUID3)


def test_is_uuid_versions():
    assert uuid.UUID(UUID1).version == 1 and uuid.UUID(UUID5).version == 5
    assert not spec.is_uuid(UUID1)  # default versions are (4, 3)
    assert not spec.is_uuid(UUID5)
    assert spec.is_uuid(UUID1, versions=(1,))
    assert spec.is_uuid(UUID5, versions=(5,))
    assert spec.is_uuid(uuid.UUID(UUID5), versions=(3, 4, 5))
    assert not spec.is_uuid(UUID4, versions=(3,))


@pytest.mark.parametrize('value', [
    'not-a-uuid', '', 'a976e418-c8b8-4d24-be47-d05120b1834', None, 1.5, b'short', -1, [UUID4],
])
def test_is_uuid_rejects(value):
    assert spec.is_uuid(value) is False


def test_is_uuid_string():
    assert spec.is_uuid_string(UUID4)
    assert spec.is_uuid_string(UUID3)
    assert spec.is_uuid_string(UUID5)
    assert not spec.is_uuid_string(UUID4.upper())
    assert not spec.is_uuid_string(uuid.UUID(UUID4).hex)
    assert not spec.is_uuid_string('{' + UUID4 + '}')
    assert not spec.is_uuid_string(UUID1)
    assert not spec.is_uuid_string(uuid.UUID(UUID4))
    assert not spec.is_uuid_string(None)
    assert not spec.is_uuid_string('foo')


# The fast session search must find exactly what a plain regex search finds
_SEGMENTS = st.one_of(
    st.sampled_from(['Subjects', 'lab', 'lab-1', 'KS005', 'NYU-14.1', '2020-01-01', '2020-13-45',
                     '001', '1', '0001', '12', 'alf', '#2020-01-01#', 'a b', '', 'x.y.z',
                     'openalyx.internationalbrainlab.org', 'C:', '2020-01-01a', '_']),
    st.text('ab1_-./#: 0', max_size=6),
)
_SESSION_LIKE = st.tuples(
    st.sampled_from(['', 'lab/Subjects/', 'lab-1/Subjects/', 'Subjects/', 'a b/Subjects/']),
    st.sampled_from(['KS005', 'NYU-14.1', '2020-01-01', 'a.b', 's']),
    st.sampled_from(['2020-01-01', '2020-13-45', '20-01-01']),
    st.sampled_from(['001', '1', '0001', '12', 'a']),
).map(lambda t: f'{t[0]}{t[1]}/{t[2]}/{t[3]}')
_PATH_LIKE = st.lists(st.one_of(_SEGMENTS, _SESSION_LIKE), max_size=8).map('/'.join)
_SESSION_PATTERNS = (
    spec.regex(SESSION_SPEC),
    re.compile(spec.regex(SESSION_SPEC).pattern + '$'),
    spec.regex(SESSION_SPEC + '/' + COLLECTION_SPEC),
)


@given(st.one_of(_PATH_LIKE, st.text('ab1_-./#:0\n', max_size=40)))
@example('/x/2020-01-01/2020-01-01/002/003')
@example('a/b/c/d/lab/Subjects/s/2020-01-01/001/e/2021-01-01/002')
@example('lab/Subjects/lab/Subjects/s/2020-01-01/1')
@example('s/2020-01-01/1/2020-01-01/1')
@example('x/2020-01-01/2020-01-01/1')
@settings(max_examples=500, deadline=None)
def test_session_search_equals_plain_search(string):
    for pattern in _SESSION_PATTERNS:
        fast, plain = spec._session_search(pattern, string), pattern.search(string)
        if plain is None:
            assert fast is None
        else:
            assert fast is not None
            assert fast.span() == plain.span() and fast.groups() == plain.groups()


# ---- to_alf ------------------------------------------------------------------------------------

@pytest.mark.parametrize('args, kwargs, expected', [
    (('spikes', 'times', 'ssv'), {}, 'spikes.times.ssv'),
    (('spikes', 'times', 'ssv'), {'namespace': 'ibl'}, '_ibl_spikes.times.ssv'),
    (('spikes', 'times', 'ssv'), {'namespace': 'ibl', 'timescale': 'ephysClock'},
     '_ibl_spikes.times_ephysClock.ssv'),
    (('wheel', 'timestamps', '.npy', 'ibl', 'bpod', ('raw', 'v12')), {},
     '_ibl_wheel.timestamps_bpod.raw.v12.npy'),
    (('spikes', 'times', 'npy'), {'namespace': 'ibl', 'timescale': 'ephys clock', 'extra': 'raw'},
     '_ibl_spikes.times_ephysClock.raw.npy'),
    (('obj', 'attr', 'npy'), {'timescale': ('ephys clock', 'minutes')},
     'obj.attr_ephysClock_minutes.npy'),
    (('obj', 'attr', 'npy'), {'timescale': ('', 'bpod')}, 'obj.attr_bpod.npy'),
    (('obj', 'foo_bar_intervals', 'npy'), {}, 'obj.fooBar_intervals.npy'),
    (('obj', 'attr_timestamps', 'npy'), {}, 'obj.attr_timestamps.npy'),
    (('obj', 'stim on_times', 'npy'), {}, 'obj.stimOn_times.npy'),
    (('obj', 'Stim On', 'npy'), {}, 'obj.stimOn.npy'),
    (('wheel moves', 'intervals', 'npy'), {}, 'wheelMoves.intervals.npy'),
    (('Trials', 'intervals', 'npy'), {}, 'trials.intervals.npy'),
    (('obj', 'attr', 'npy'), {'extra': 'raw.v12'}, 'obj.attr.raw.v12.npy'),
    (('obj', 'attr', 'npy'), {'extra': ['raw', 'v12']}, 'obj.attr.raw.v12.npy'),
    (('obj', 'attr', 'npy'), {'extra': UUID4}, f'obj.attr.{UUID4}.npy'),
])
def test_to_alf(args, kwargs, expected):
    name = spec.to_alf(*args, **kwargs)
    assert name == expected
    assert spec.is_valid(name)


@pytest.mark.parametrize('kwargs, error', [
    ({'extension': None}, TypeError),
    ({'extension': ''}, TypeError),
    ({'object': 'spikes.times'}, ValueError),
    ({'attribute': 'times.raw'}, ValueError),
    ({'namespace': 'ib.l'}, ValueError),
    ({'extension': 'tar.gz'}, ValueError),
    ({'timescale': 'ephys.clock'}, ValueError),
    ({'timescale': ('bpod', 'ephys.clock')}, ValueError),
    ({'namespace': 'ibl_rig'}, ValueError),
    ({'object': '_ibl_spikes'}, ValueError),
])
def test_to_alf_errors(kwargs, error):
    arguments = {'object': 'spikes', 'attribute': 'times', 'extension': 'npy', **kwargs}
    with pytest.raises(error):
        spec.to_alf(**arguments)


@pytest.mark.parametrize('string, expected', [
    (None, None),
    ('', ''),
    ('FooBarBaz', 'fooBarBaz'),
    ('ABC', 'aBC'),
    ('foo', 'foo'),
    ('Hello world', 'helloWorld'),
    ('motion_energy', 'motionEnergy'),
    ('passive_RFM', 'passiveRFM'),
    ('ROI Motion Energy', 'ROIMotionEnergy'),
    ('mpci ROIs', 'mpciROIs'),
    ('a_b_c', 'aBC'),
    ('wheel moves', 'wheelMoves'),
    ('ephys clock', 'ephysClock'),
    ('Trials', 'trials'),
])
def test_dromedary(string, expected):
    assert spec._dromedary(string) == expected


@pytest.mark.parametrize('name, capitalize, expected', [
    ('sparseNoise', False, 'sparse noise'),
    ('someROIDataset', False, 'some ROI dataset'),
    ('DAQData', False, 'DAQ data'),
    ('someROIsDataset', False, 'some ROIs dataset'),
    ('fooBAR', False, 'foo BAR'),
    ('fooBAR', True, 'Foo BAR'),
    ('blueChipTime', False, 'blue chip time'),
    ('blueChipTime', True, 'Blue chip time'),
    ('trials', False, 'trials'),
])
def test_readable_alf(name, capitalize, expected):
    assert spec.readableALF(name, capitalize=capitalize) == expected


# ---- path_pattern and describe -----------------------------------------------------------------

def test_path_pattern():
    assert spec.path_pattern() == (
        '(lab/Subjects/)subject/date/number/(collection/)(#revision#/)'
        '_namespace_object.attribute(:_timescale)(:.extra).extension')


def test_describe_all(capsys):
    spec.describe()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == spec.path_pattern()
    for key in SPEC_DESCRIPTION:
        assert key.upper() in lines, key
    # Part headers appear in the SPEC_DESCRIPTION order
    positions = [lines.index(key.upper()) for key in SPEC_DESCRIPTION]
    assert positions == sorted(positions)
    # Each header follows a blank line
    assert all(lines[i - 1] == '' for i in positions)


def _expected_description(parts, width):
    lines = []
    for key in parts:
        lines += ['', key.upper()]
        for line in SPEC_DESCRIPTION[key].splitlines():
            lines += textwrap.wrap(line, width, replace_whitespace=False)
    return lines


@pytest.mark.parametrize('width', [20, 40, 99])
def test_describe_width(capsys, width):
    spec.describe(width=width)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == spec.path_pattern()
    assert all(len(line) <= width for line in lines[1:])
    assert lines[1:] == _expected_description(SPEC_DESCRIPTION, width)
    # No word is lost in wrapping
    text = ''.join(''.join(lines[1:]).split())
    for key, description in SPEC_DESCRIPTION.items():
        assert key.upper() + ''.join(description.split()) in text


def test_describe_narrow_width_wraps(capsys):
    spec.describe('object', width=99)
    wide = capsys.readouterr().out.splitlines()
    spec.describe('object', width=30)
    narrow = capsys.readouterr().out.splitlines()
    assert len(narrow) > len(wide)
    assert max(len(line) for line in narrow[2:]) <= 30


@pytest.mark.parametrize('part', ['object', 'lab', 'Subjects', 'revision', 'extension'])
def test_describe_part(capsys, part):
    spec.describe(part)
    lines = capsys.readouterr().out.splitlines()
    pattern = spec.path_pattern()
    assert lines[0] == pattern
    start = pattern.index(part)
    assert lines[1] == (' ' * start + '^' * len(part)).ljust(len(pattern))  # as ONE-api's
    assert pattern[start:start + len(part)] == part
    assert lines[2] == '' and lines[3] == part.upper()
    # Only the requested part is described
    assert [k for k in SPEC_DESCRIPTION if k.upper() in lines] == [part]
    assert lines[2:] == _expected_description([part], 99)


def test_describe_unknown_part(capsys):
    with pytest.raises(ValueError) as info:
        spec.describe('foo')
    message = str(info.value)
    assert message.startswith('Unknown ALF part "foo", should be one of ')
    assert all(f'"{key}"' in message for key in SPEC_DESCRIPTION)


# ---- QC ----------------------------------------------------------------------------------------

def test_qc_members():
    assert [(m.name, m.value) for m in QC] == [
        ('CRITICAL', 50), ('FAIL', 40), ('WARNING', 30), ('NOT_SET', 0), ('PASS', 10)]
    assert sorted(QC) == [QC.NOT_SET, QC.PASS, QC.WARNING, QC.FAIL, QC.CRITICAL]
    assert issubclass(QC, int)
    assert QC.FAIL > QC.WARNING > QC.PASS > QC.NOT_SET
    assert QC.PASS == 10


@pytest.mark.parametrize('value, expected', [
    (QC.PASS, QC.PASS),
    ('PASS', QC.PASS),
    ('pass', QC.PASS),
    ('Not_Set', QC.NOT_SET),
    ('critical', QC.CRITICAL),
    (40, QC.FAIL),
    (0, QC.NOT_SET),
    ('30', QC.WARNING),
    ('50', QC.CRITICAL),
])
def test_qc_validate(value, expected):
    result = QC.validate(value)
    assert result is expected


@pytest.mark.parametrize('value', ['foo', 'PASSED', 15, '15', '-1', -10, ''])
def test_qc_validate_bad(value):
    with pytest.raises(ValueError) as info:
        QC.validate(value)
    message = str(info.value)
    assert message.startswith(f'{value} is not a valid QC')
    assert all(m.name in message for m in QC)
    assert all(str(m.value) in message for m in QC)
