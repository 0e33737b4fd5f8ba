"""Tests for one.alf.path: parsing functions, path helpers and the ALFPath family of classes."""
import copy
import datetime
import doctest
import logging
import os
import pathlib
import pickle
from collections import OrderedDict
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from one.alf import path as alfpath
from one.alf import spec
from one.alf.exceptions import ALFInvalid
from one.alf.path import (
    ALFPath,
    PosixALFPath,
    PureALFPath,
    PurePosixALFPath,
    PureWindowsALFPath,
    WindowsALFPath,
    add_uuid_string,
    ensure_alf_path,
    filename_parts,
    folder_parts,
    full_path_parts,
    get_alf_path,
    get_session_path,
    padded_sequence,
    rel_path_parts,
    remove_uuid_string,
    session_path_parts,
    without_revision,
)

FILE_KEYS = ('namespace', 'object', 'attribute', 'timescale', 'extra', 'extension')
SESSION_KEYS = ('lab', 'subject', 'date', 'number')
FOLDER_KEYS = (*SESSION_KEYS, 'collection', 'revision')
REL_KEYS = ('collection', 'revision', *FILE_KEYS)
FULL_KEYS = (*FOLDER_KEYS, *FILE_KEYS)

UUID = 'a976e418-c8b8-4d24-be47-d05120b18341'
UUID2 = '87f60a7c-581c-4fc6-b304-183ac423312c'
SESSION = 'NYU-001/2019-10-01/001'
FULL = f'/data/cortexlab/Subjects/{SESSION}/alf/task_00/#2020-01-01#/_ibl_trials.table.pqt'
POSIX_PURE = PurePosixALFPath if os.name != 'nt' else PureWindowsALFPath
CONCRETE = WindowsALFPath if os.name == 'nt' else PosixALFPath


# =================================================================================================
# Parsing tables.  None as expected parts means the input is not valid ALF.
# =================================================================================================

FILENAMES = [
    # Every row of the table in spec section 1.4
    ('spikes.times.npy', (None, 'spikes', 'times', None, None, 'npy')),
    ('_ibl_trials.intervals.npy', ('ibl', 'trials', 'intervals', None, None, 'npy')),
    ('_ibl_trials.goCue_times_bpod.csv', ('ibl', 'trials', 'goCue_times', 'bpod', None, 'csv')),
    ('trials.goCue_times.npy', (None, 'trials', 'goCue_times', None, None, 'npy')),
    ('trials.intervals_bpod.npy', (None, 'trials', 'intervals', 'bpod', None, 'npy')),
    ('spikes.times_ephysClock.npy', (None, 'spikes', 'times', 'ephysClock', None, 'npy')),
    ('obj.attr_times.npy', (None, 'obj', 'attr_times', None, None, 'npy')),
    ('obj.attr_times_bpod.npy', (None, 'obj', 'attr_times', 'bpod', None, 'npy')),
    ('obj.attr_intervals.npy', (None, 'obj', 'attr_intervals', None, None, 'npy')),
    ('obj.attr_timestamps.npy', (None, 'obj', 'attr', 'timestamps', None, 'npy')),
    ('obj.attr_foo_bar.npy', (None, 'obj', 'attr', 'foo_bar', None, 'npy')),
    ('obj.a_b_times.npy', (None, 'obj', 'a', 'b_times', None, 'npy')),
    ('obj.times_ephys_clock.npy', (None, 'obj', 'times', 'ephys_clock', None, 'npy')),
    ('obj.attr_Times.npy', (None, 'obj', 'attr', 'Times', None, 'npy')),
    ('_ibl_wheel.timestamps_bpod.raw.v12.npy',
     ('ibl', 'wheel', 'timestamps', 'bpod', 'raw.v12', 'npy')),
    (f'obj.attr.{UUID}.npy', (None, 'obj', 'attr', None, UUID, 'npy')),
    ('_spikeglx_ephysData_g0_t0.imec0.lf.bin',
     ('spikeglx', 'ephysData_g0_t0', 'imec0', None, 'lf', 'bin')),
    ('_spikeglx_ephysData_g0_t0.imec.wiring.json',
     ('spikeglx', 'ephysData_g0_t0', 'imec', None, 'wiring', 'json')),
    ('_phy_spikes_subset.waveforms.npy', ('phy', 'spikes_subset', 'waveforms', None, None, 'npy')),
    ('channels._phy_ids.csv', (None, 'channels', '_phy_ids', None, None, 'csv')),
    ('_ns_obj.attr.npy', ('ns', 'obj', 'attr', None, None, 'npy')),
    ('ns_obj.attr.npy', (None, 'ns_obj', 'attr', None, None, 'npy')),
    ('__obj.attr.npy', (None, 'obj', 'attr', None, None, 'npy')),
    ('_ns__obj.attr.npy', ('ns', '_obj', 'attr', None, None, 'npy')),
    ('_obj.attr.npy', ('ob', 'j', 'attr', None, None, 'npy')),  # backtracking artefact, kept
    ('_ns_.attr.npy', ('ns', '_', 'attr', None, None, 'npy')),
    ('_1_obj.attr.npy', ('1', 'obj', 'attr', None, None, 'npy')),
    ('obj.ATTR.npy', (None, 'obj', 'ATTR', None, None, 'npy')),
    ('2p.raw.part01.tiff', (None, '2p', 'raw', None, 'part01', 'tiff')),
    ('obj.attr.part.1.npy', (None, 'obj', 'attr', None, 'part.1', 'npy')),
    ('obj.attr.tar.gz', (None, 'obj', 'attr', None, 'tar', 'gz')),
    ('a.b.c.d.e', (None, 'a', 'b', None, 'c.d', 'e')),
    ('_iblrig_Camera.raw.mp4', ('iblrig', 'Camera', 'raw', None, None, 'mp4')),
    ('trials.table.pqt', (None, 'trials', 'table', None, None, 'pqt')),
    ('_ibl_trials.table_bpod.extra.pqt', ('ibl', 'trials', 'table', 'bpod', 'extra', 'pqt')),
    ('spikes.times', None),
    ('obj.attr', None),
    ('obj.attr.', None),
    ('spike_train.npy', None),
    ('obj.foo-bar.npy', None),
    ('obj-1.attr.npy', None),
    ('obj.attr.#x#.npy', None),
    # More names: several extras, UUIDs, namespaces
    ('obj.attr_times_bpod.foo.bar.ext', (None, 'obj', 'attr_times', 'bpod', 'foo.bar', 'ext')),
    (f'_ns_obj.attr1.{UUID}.metadata.json',
     ('ns', 'obj', 'attr1', None, f'{UUID}.metadata', 'json')),
    (f'_ibl_trials.table.{UUID}.pqt', ('ibl', 'trials', 'table', None, UUID, 'pqt')),
    ('_ibl_spikes.times_ephysClock.raw.npy',
     ('ibl', 'spikes', 'times', 'ephysClock', 'raw', 'npy')),
    ('wheelMoves.peakVelocity_times.npy',
     (None, 'wheelMoves', 'peakVelocity_times', None, None, 'npy')),
    ('_iblqc_ephysTimeRmsAP.timestamps.npy',
     ('iblqc', 'ephysTimeRmsAP', 'timestamps', None, None, 'npy')),
    ('obj.attr.a.b.c.d.npy', (None, 'obj', 'attr', None, 'a.b.c.d', 'npy')),
    ('obj.attr_intervals_bpod.raw-1.npy', (None, 'obj', 'attr_intervals', 'bpod', 'raw-1', 'npy')),
    ('obj.attr.npy.', None),
    ('obj attr.times.npy', None),
    ('.obj.attr.npy', None),
    ('obj..attr.npy', None),
    ('', None),
]

REL_PATHS = [
    ('collection/#revision#/_namespace_obj.times_timescale.extra.foo.ext',
     ('collection', 'revision', 'namespace', 'obj', 'times', 'timescale', 'extra.foo', 'ext')),
    ('alf/spikes.times.npy', ('alf', None, None, 'spikes', 'times', None, None, 'npy')),
    ('spikes.times.npy', (None, None, None, 'spikes', 'times', None, None, 'npy')),
    ('#2020-01-01#/trials.intervals.npy',
     (None, '2020-01-01', None, 'trials', 'intervals', None, None, 'npy')),
    ('alf/probe00/pykilosort/#2024-05-06a#/clusters.metrics.pqt',
     ('alf/probe00/pykilosort', '2024-05-06a', None, 'clusters', 'metrics', None, None, 'pqt')),
    ('raw_ephys_data/probe01/_spikeglx_ephysData_g0_t0.imec0.lf.bin',
     ('raw_ephys_data/probe01', None, 'spikeglx', 'ephysData_g0_t0', 'imec0', None, 'lf', 'bin')),
    ('raw.data-v1/a_b/obj.attr.npy', ('raw.data-v1/a_b', None, None, 'obj', 'attr', None, None,
                                      'npy')),
    ('alf/#rev.1-a#/obj.attr_times_bpod.npy',
     ('alf', 'rev.1-a', None, 'obj', 'attr_times', 'bpod', None, 'npy')),
    (f'alf/_ibl_trials.table.{UUID}.pqt', ('alf', None, 'ibl', 'trials', 'table', None, UUID,
                                           'pqt')),
    ('a/#b#/c/x.y.z', None),  # the revision must be the last folder
    ('alf/#x/y#/obj.attr.npy', None),
    ('alf/spike_train.npy', None),
    ('alf/probe 00/obj.attr.npy', None),
    ('alf/##/obj.attr.npy', None),
]

SESSIONS = [
    ('/home/user/Data/labname/Subjects/subject/2020-01-01/001/alf',
     ('labname', 'subject', '2020-01-01', '001')),
    ('subj/2020-01-01/0001', (None, 'subj', '2020-01-01', '000')),  # a search: 3 digits kept
    ('a b/2020-01-01/001', (None, 'b', '2020-01-01', '001')),
    ('/home/user/Data/labname/2020-01-01/alf/001/', None),
    ('NYU-14.1/2020-01-01/1', (None, 'NYU-14.1', '2020-01-01', '1')),
    ('lab-1/Subjects/s/2020-01-01/001', ('1', 's', '2020-01-01', '001')),  # lab is \w+
    ('mainenlab/Subjects/ZFM-01935/2021-02-05/001',
     ('mainenlab', 'ZFM-01935', '2021-02-05', '001')),
    ('ZFM-01935/2021-02-05/001/alf/probe00/_phy_spikes_subset.waveforms.npy',
     (None, 'ZFM-01935', '2021-02-05', '001')),
    ('Subjects/subj/2020-01-01/001', (None, 'subj', '2020-01-01', '001')),
    ('subj/2020-13-45/001', (None, 'subj', '2020-13-45', '001')),  # no calendar check
    ('https://alyx.org/files/lab/Subjects/subj/2020-01-01/002/alf/x.y.z',
     ('lab', 'subj', '2020-01-01', '002')),
    (PureWindowsPath(r'C:\Data\lab\Subjects\subj\2020-01-01\001\alf'),
     ('lab', 'subj', '2020-01-01', '001')),
    (PurePosixPath('/data/subj/2020-01-01/12'), (None, 'subj', '2020-01-01', '12')),
    ('subj/20-01-01/001', None),
    ('subj/2020-01-01', None),
    (r'C:\Data\subj\2020-01-01\001', None),  # a str is not split on backslashes
]

FOLDERS = [
    ('lab/Subjects/subj/2020-01-01/001/alf/probe00',
     ('lab', 'subj', '2020-01-01', '001', 'alf/probe00', None)),
    ('subj/2020-01-01/001/alf/#2021-01-01#',
     (None, 'subj', '2020-01-01', '001', 'alf', '2021-01-01')),
    ('subj/2020-01-01/001/#2021-01-01#/', (None, 'subj', '2020-01-01', '001', None, '2021-01-01')),
    ('subj/2020-01-01/001', (None, 'subj', '2020-01-01', '001', None, None)),
    ('subj/2020-01-01/001/', (None, 'subj', '2020-01-01', '001', None, None)),
    ('/data/NYU-14.1/2020-01-01/2/raw.data-v1/x',
     (None, 'NYU-14.1', '2020-01-01', '2', 'raw.data-v1/x', None)),
    (PureWindowsPath(r'D:\lab\Subjects\s\2020-01-01\001\raw_video_data'),
     ('lab', 's', '2020-01-01', '001', 'raw_video_data', None)),
    (PurePosixPath('/lab/Subjects/s/2020-01-01/001/alf/#rev#'),
     ('lab', 's', '2020-01-01', '001', 'alf', 'rev')),
    ('alf/probe00', None),
    ('subj/2020-01-01/alf', None),
]

FULL_PATHS = [
    (FULL, ('cortexlab', 'NYU-001', '2019-10-01', '001', 'alf/task_00', '2020-01-01', 'ibl',
            'trials', 'table', None, None, 'pqt')),
    ('subj/2020-01-01/001/alf/spikes.times.npy',
     (None, 'subj', '2020-01-01', '001', 'alf', None, None, 'spikes', 'times', None, None, 'npy')),
    ('subj/2020-01-01/1/alf/spikes.times.npy',
     (None, 'subj', '2020-01-01', '1', 'alf', None, None, 'spikes', 'times', None, None, 'npy')),
    ('lab/Subjects/subj/2020-01-01/001',
     ('lab', 'subj', '2020-01-01', '001', *[None] * 8)),
    ('/data/subj/2020-01-01/001/', (None, 'subj', '2020-01-01', '001', *[None] * 8)),
    ('subj/2020-01-01/001/alf', (None, 'subj', '2020-01-01', '001', 'alf', *[None] * 7)),
    ('subj/2020-01-01/001/alf/probe00',
     (None, 'subj', '2020-01-01', '001', 'alf/probe00', *[None] * 7)),
    ('subj/2020-01-01/001/#2020-01-01#',
     (None, 'subj', '2020-01-01', '001', None, '2020-01-01', *[None] * 6)),
    ('subj/2020-01-01/001/alf/#2020-01-01#',
     (None, 'subj', '2020-01-01', '001', 'alf', '2020-01-01', *[None] * 6)),
    ('spikes.times.npy', (*[None] * 6, None, 'spikes', 'times', None, None, 'npy')),
    # A name with fewer than two dots is taken as a folder (it could be a collection)
    ('subj/2020-01-01/001/alf/spike_train.npy',
     (None, 'subj', '2020-01-01', '001', 'alf/spike_train.npy', *[None] * 7)),
    (f'NYU-14.1/2020-01-01/001/alf/probe00/obj.attr.{UUID}.npy',
     (None, 'NYU-14.1', '2020-01-01', '001', 'alf/probe00', None, None, 'obj', 'attr', None,
      UUID, 'npy')),
    ('https://ibl.org/public/lab/Subjects/subj/2020-01-01/001/alf/spikes.times.npy',
     ('lab', 'subj', '2020-01-01', '001', 'alf', None,
      None, 'spikes', 'times', None, None, 'npy')),
    (PureWindowsPath(r'C:\Data\lab\Subjects\subj\2020-01-01\001\alf\spikes.times.npy'),
     ('lab', 'subj', '2020-01-01', '001', 'alf', None,
      None, 'spikes', 'times', None, None, 'npy')),
    (PureWindowsALFPath(r'C:\Data\subj\2020-01-01\001\#rev#\_ibl_wheel.position.npy'),
     (None, 'subj', '2020-01-01', '001', None, 'rev', 'ibl', 'wheel', 'position', None, None,
      'npy')),
    (PurePosixPath('s.1/2020-01-01/001/raw-data.v2/_iblrig_Camera.raw.mp4'),
     (None, 's.1', '2020-01-01', '001', 'raw-data.v2', None, 'iblrig', 'Camera', 'raw', None,
      None, 'mp4')),
    ('alf/probe00/spikes.times.npy', None),  # folders without a session
    ('subj/2020-01-01/001/alf/obj.attr-x.npy', None),  # two dots, so a file: invalid name
    ('foo/bar/Subjects/baz.pie', None),
    ('subj/2020-01-01/001/#rev#/alf', None),  # revision must be the last folder
    ('subj/2020-01-01/001/alf/foo bar', None),
    ('alf', None),
]


def _as_str(path):
    return path.as_posix() if isinstance(path, PurePath) else path


def _check_parser(func, path, expected, keys):
    """Check a parsing function on one input: tuple, dict, assert_valid and the error."""
    if expected is None:
        with pytest.raises(ALFInvalid) as info:
            func(path)
        assert _as_str(path).rstrip('/') in str(info.value)
        assert func(path, assert_valid=False) == (None,) * len(keys)
        as_dict = func(path, as_dict=True, assert_valid=False)
        assert isinstance(as_dict, OrderedDict)
        assert list(as_dict.items()) == [(k, None) for k in keys]
        return
    parts = func(path)
    assert isinstance(parts, tuple)
    assert parts == expected
    assert func(path, assert_valid=False) == expected
    as_dict = func(path, as_dict=True)
    assert isinstance(as_dict, OrderedDict)
    assert tuple(as_dict) == keys
    assert tuple(as_dict.values()) == expected


@pytest.mark.parametrize('name, expected', FILENAMES)
def test_filename_parts(name, expected):
    _check_parser(filename_parts, name, expected, FILE_KEYS)
    assert spec.is_valid(name) is (expected is not None)
    # Path objects are accepted too
    if name:
        assert filename_parts(PurePosixPath(name), assert_valid=False) == (
            expected or (None,) * 6)


@pytest.mark.parametrize('name, expected', [x for x in FILENAMES if x[1]])
def test_filename_parts_consistent_with_other_parsers(name, expected):
    """The same file name parses the same way inside relative and full paths."""
    assert rel_path_parts(name) == (None, None, *expected)
    assert rel_path_parts(f'alf/probe00/#2020-01-01#/{name}') == (
        'alf/probe00', '2020-01-01', *expected)
    assert full_path_parts(f'lab/Subjects/subj/2020-01-01/001/alf/{name}') == (
        'lab', 'subj', '2020-01-01', '001', 'alf', None, *expected)
    assert full_path_parts(name) == (None,) * 6 + expected
    assert ALFPath(name).parse_alf_name(as_dict=False) == expected


@pytest.mark.parametrize('rel_path, expected', REL_PATHS)
def test_rel_path_parts(rel_path, expected):
    _check_parser(rel_path_parts, rel_path, expected, REL_KEYS)
    if expected:
        assert rel_path_parts(PurePosixPath(rel_path)) == expected
        assert rel_path_parts(PureWindowsPath(rel_path.replace('/', '\\'))) == expected


@pytest.mark.parametrize('path, expected', SESSIONS)
def test_session_path_parts(path, expected):
    _check_parser(session_path_parts, path, expected, SESSION_KEYS)


@pytest.mark.parametrize('path, expected', FOLDERS)
def test_folder_parts(path, expected):
    _check_parser(folder_parts, path, expected, FOLDER_KEYS)


@pytest.mark.parametrize('path, expected', FULL_PATHS)
def test_full_path_parts(path, expected):
    _check_parser(full_path_parts, path, expected, FULL_KEYS)


def test_parsing_table_size():
    total = len(FILENAMES) + len(REL_PATHS) + len(SESSIONS) + len(FOLDERS) + len(FULL_PATHS)
    assert total >= 60


def test_full_path_parts_folder_name_must_be_parsed():
    # The folder regex is not anchored at the end, so the last folder is checked separately
    assert folder_parts('subj/2020-01-01/001/#rev#/alf') == (
        None, 'subj', '2020-01-01', '001', None, 'rev')
    with pytest.raises(ALFInvalid, match='alf'):
        full_path_parts('subj/2020-01-01/001/#rev#/alf')


@pytest.mark.parametrize('path', [
    'subj/2020-01-01/001/#rev#/alf', 'subj/2020-01-01/001/alf/obj.attr-x.npy',
    '/a/b/obj.attr_times_bpod.foo.bar.ext', 'alf/probe00/spikes.times.npy'])
def test_full_path_parts_fails_entirely(path):
    """Without assert_valid, an invalid path gives None for every part, folders and file."""
    assert full_path_parts(path, assert_valid=False) == (None,) * 12
    parts = full_path_parts(path, as_dict=True, assert_valid=False)
    assert list(parts.items()) == [(k, None) for k in FULL_KEYS]
    assert PureALFPath(path).alf_parts == ('',) * 12


def test_backslash_strings_are_not_split():
    """Only Windows path objects are split on backslashes; a str is taken literally."""
    windows = r'C:\Data\lab\Subjects\subj\2020-01-01\001\alf\spikes.times.npy'
    with pytest.raises(ALFInvalid, match='spikes'):
        full_path_parts(windows)
    assert session_path_parts(windows, assert_valid=False) == (None,) * 4
    expected = ('lab', 'subj', '2020-01-01', '001', 'alf', None,
                None, 'spikes', 'times', None, None, 'npy')
    assert full_path_parts(PureWindowsPath(windows)) == expected
    assert full_path_parts(PureWindowsALFPath(windows)) == expected
    assert PureWindowsALFPath(windows).alf_parts == tuple(p or '' for p in expected)


# ---- property-based round trips ----------------------------------------------------------------
#
# Generator constraints, chosen so that the regexes parse the name back unambiguously:
# * object, attribute and timescale words are dromedary-case alphanumerics starting with a
#   lower-case letter or digit, so `to_alf`'s camel-casing leaves them unchanged;
#   the object never starts with '_' (to_alf forbids it; '_obj' would parse as namespace 'ob').
# * the attribute may end with '_times' or '_intervals' (kept in the attribute) but not
#   '_timestamps' (parsed as a timescale);
# * the first timescale word is never 'times' or 'intervals', which the attribute would absorb;
# * namespace: alphanumerics; extras: dot-free [\w-] words; extension: [a-z0-9] word;
# * collection folders: [\w.-] words that do not start with '.', revisions [\w.-] words;
# * subjects: [\w.-] words other than 'Subjects', '.' and '..' (path objects drop '.');
#   labs: \w words; numbers: 1-3 digits.

ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
LOWER_DIGIT = 'abcdefghijklmnopqrstuvwxyz0123456789'
WORD = ALNUM + '_'


def _word(first, rest, max_size=8):
    return st.builds(lambda a, b: a + b, st.sampled_from(first),
                     st.text(rest, max_size=max_size))


dromedary_words = _word(LOWER_DIGIT, ALNUM)
namespaces = st.text(ALNUM, min_size=1, max_size=6)
attributes = st.builds(lambda a, s: a + s, dromedary_words, st.sampled_from(['', '_times',
                                                                            '_intervals']))
timescales = st.lists(dromedary_words, min_size=1, max_size=3).filter(
    lambda ws: ws[0] not in ('times', 'intervals')).map(tuple)
extras = st.lists(st.text(WORD + '-', min_size=1, max_size=8), max_size=3)
extensions = st.text('abcdefghijklmnopqrstuvwxyz0123456789', min_size=1, max_size=5)
collections = st.lists(_word(WORD + '-', WORD + '.-'), min_size=1, max_size=3).map('/'.join)
revisions = st.text(WORD + '.-', min_size=1, max_size=12)
labs = st.text(WORD, min_size=1, max_size=10)
subjects = _word(WORD + '.-', WORD + '.-', 10).filter(
    lambda s: s not in ('Subjects', '.', '..'))
dates = st.dates(min_value=datetime.date(1900, 1, 1)).map(str)
numbers = st.integers(0, 999).flatmap(
    lambda n: st.sampled_from(sorted({str(n), str(n).zfill(3)})))
roots = st.sampled_from(['', '/', '/data/', '/mnt/s0/Data/', 'C:/Users/me/'])


@st.composite
def file_parts(draw):
    namespace = draw(st.none() | namespaces)
    timescale = draw(st.none() | timescales)
    extra = draw(extras)
    return (namespace, draw(dromedary_words), draw(attributes),
            '_'.join(timescale) if timescale else None, '.'.join(extra) or None,
            draw(extensions)), timescale, extra


@given(file_parts())
@example(((None, 'obj', 'attr', 'timestamps', None, 'npy'), ('timestamps',), []))
@example((('ibl', 'wheel', 'timestamps', 'bpod', 'raw.v12', 'npy'), ('bpod',), ['raw', 'v12']))
@settings(max_examples=300, deadline=None)
def test_filename_round_trip(generated):
    expected, timescale, extra = generated
    namespace, obj, attribute, _, _, extension = expected
    name = spec.to_alf(obj, attribute, extension, namespace=namespace, timescale=timescale,
                       extra=extra)
    assert spec.is_valid(name)
    assert filename_parts(name) == expected
    assert PureALFPath(name).dataset_name_parts == tuple(p or '' for p in expected)


@given(file_parts(), st.none() | collections, st.none() | revisions)
@settings(max_examples=300, deadline=None)
def test_rel_path_round_trip(generated, collection, revision):
    file, timescale, extra = generated
    name = spec.to_alf(file[1], file[2], file[5], namespace=file[0], timescale=timescale,
                       extra=extra)
    rel_path = '/'.join(filter(None, [collection, f'#{revision}#' if revision else None, name]))
    assert rel_path_parts(rel_path) == (collection, revision, *file)


@given(file_parts(), st.none() | labs, subjects, dates, numbers, st.none() | collections,
       st.none() | revisions, roots)
@settings(max_examples=300, deadline=None)
def test_full_path_round_trip(generated, lab, subject, date, number, collection, revision,
                              root):
    file, timescale, extra = generated
    name = spec.to_alf(file[1], file[2], file[5], namespace=file[0], timescale=timescale,
                       extra=extra)
    session = f'{lab}/Subjects/{subject}/{date}/{number}' if lab else f'{subject}/{date}/{number}'
    folders = [root + session, collection, f'#{revision}#' if revision else None]
    path = '/'.join(filter(None, [*folders, name]))
    expected = (lab, subject, date, number, collection, revision, *file)
    assert full_path_parts(path) == expected
    assert session_path_parts(path) == expected[:4]
    assert folder_parts('/'.join(filter(None, folders))) == expected[:6]
    # The same path as a Windows path object
    windows = PureWindowsALFPath(path.replace('/', '\\'))
    assert full_path_parts(windows) == expected
    assert windows.alf_parts == tuple(p or '' for p in expected)
    # The folder alone, unless its last folder has two dots and so is taken for a file
    folder = '/'.join(filter(None, folders))
    if folder.rsplit('/', 1)[-1].count('.') < 2:
        assert full_path_parts(folder) == (*expected[:6], *[None] * 6)


@given(st.text(max_size=30))
@settings(max_examples=300, deadline=None)
def test_invalid_names_always_raise_with_name(text):
    """Whatever the input, a parser returns parts or raises ALFInvalid naming the input."""
    for func in (filename_parts, rel_path_parts, session_path_parts, full_path_parts):
        try:
            parts = func(text)
        except ALFInvalid as err:
            assert text.rstrip('/') in str(err)
            assert func(text, assert_valid=False) == (None,) * len(
                func(text, as_dict=True, assert_valid=False))
        else:
            assert any(parts)


def _full_path_reference(string):
    """`full_path_parts` as the specification words it, built on the public parsers."""
    string = string.rstrip('/') or string
    name = string.rsplit('/', 1)[-1]
    try:
        if name.count('.') < 2:
            folders = folder_parts(string, as_dict=True)
            last_collection = (folders['collection'] or '').rsplit('/', 1)[-1]
            if not (name in list(folders.values())[:4] or name == last_collection
                    or name == f'#{folders["revision"]}#'):
                return None
            return (*folders.values(), *[None] * 6)
        if '/' not in string:
            return (*[None] * 6, *filename_parts(name))
        return (*folder_parts(string.rsplit('/', 1)[0]), *filename_parts(name))
    except ALFInvalid:
        return None


_SEGMENTS = st.one_of(
    st.sampled_from(['lab/Subjects/KS005/2020-01-01/001', 'NYU-14.1/2020-01-01/1', 'Subjects',
                     'lab', '2020-01-01', '001', 'alf', 'probe00', '#2020-01-01#', '#r#', '',
                     'spikes.times.npy', '_ibl_trials.table.pqt', 'obj.attr-x.npy', 'foo.bar',
                     'a b', 'x.y.z', 'C:', '.', '..']),
    st.text('ab1_-.#/ ', max_size=6),
)


@given(st.lists(_SEGMENTS, max_size=8).map('/'.join))
@example('subj/2020-01-01/001/alf//obj.attr.npy')
@example('subj/2020-01-01/001/alf/probe00/')
@example('subj/2020-01-01/001/#r#/alf')
@settings(max_examples=500, deadline=None)
def test_full_path_parts_matches_spec_algorithm(string):
    expected = _full_path_reference(string)
    assert full_path_parts(string, assert_valid=False) == (expected or (None,) * 12)
    if expected is None:
        with pytest.raises(ALFInvalid):
            full_path_parts(string)
    else:
        assert full_path_parts(string) == expected


# =================================================================================================
# Helper functions
# =================================================================================================

@pytest.mark.parametrize('path, expected', [
    ('/data/subj/2020-01-01/001/alf/spikes.times.npy', '/data/subj/2020-01-01/001'),
    ('lab/Subjects/subj/2020-01-01/1/alf', 'lab/Subjects/subj/2020-01-01/1'),
    ('/x/subj/2020-13-45/001', None),
    ('/x/2020-01-01/2020-01-01/002/003', '/x/2020-01-01/2020-01-01/002'),
    ('/x/subj/2020-01-01/0001/alf', '/x/subj/2020-01-01/0001'),  # no limit on digits
    ('/x/subj/2020-01-01/alf/001', None),
    ('subj/2020-01-01', None),
    ('2020-01-01/001', '2020-01-01/001'),  # no subject check
])
def test_get_session_path(path, expected):
    result = get_session_path(path)
    if expected is None:
        assert result is None
    else:
        assert type(result) is type(Path())
        assert result == Path(expected)
    result = get_session_path(ALFPath(path))
    assert result is None if expected is None else isinstance(result, ALFPath)
    if expected is not None:
        assert result.as_posix() == expected


def test_get_session_path_classes():
    assert get_session_path(None) is None
    windows = PureWindowsPath(r'C:\Data\subject\2020-01-01\1\trials.intervals.npy')
    result = get_session_path(windows)
    assert type(result) is PureWindowsPath
    assert result.as_posix() == 'C:/Data/subject/2020-01-01/1'
    result = get_session_path(PureWindowsALFPath(windows))
    assert type(result) is PureWindowsALFPath
    assert result == PureWindowsPath(r'C:\Data\subject\2020-01-01\1')
    assert type(get_session_path(PurePosixPath('s/2020-01-01/1'))) is PurePosixPath


def test_isdatetime():
    assert alfpath._isdatetime('2020-01-01')
    assert not alfpath._isdatetime('2020-13-01')
    assert not alfpath._isdatetime('2020-1-1x')
    assert not alfpath._isdatetime('foo')


@pytest.mark.parametrize('path, expected', [
    ('etc/etc/lab/Subjects/subj/2021-01-21/001/collection/file.attr.ext',
     'lab/Subjects/subj/2021-01-21/001/collection/file.attr.ext'),
    ('https://ibl.flatironinstitute.org/public/mainenlab/Subjects/ZFM-01935/2021-02-05/001/'
     'alf/_ibl_trials.table.pqt',
     'mainenlab/Subjects/ZFM-01935/2021-02-05/001/alf/_ibl_trials.table.pqt'),
    ('/data/subj/2021-01-21/001/', 'subj/2021-01-21/001'),
    ('collection/trials.intervals_bpod.npy', 'collection/trials.intervals_bpod.npy'),
    ('alf/#2020-01-01#/trials.intervals_bpod.npy', 'alf/#2020-01-01#/trials.intervals_bpod.npy'),
    ('/trials.intervals_bpod.npy', 'trials.intervals_bpod.npy'),
    ('/data/foo bar/trials.intervals.npy', 'trials.intervals.npy'),
    ('etc/#x#/foo/trials.intervals.npy', 'trials.intervals.npy'),
    ('lab-1/Subjects/s/2020-01-01/001', '1/Subjects/s/2020-01-01/001'),  # quirk, kept
    (Path('/data/lab/Subjects/s/2020-01-01/001/alf/x.y.z'),
     'lab/Subjects/s/2020-01-01/001/alf/x.y.z'),
    (PureWindowsPath(r'C:\data\s\2020-01-01\001\alf\x.y.z'), 's/2020-01-01/001/alf/x.y.z'),
    ('foo/bar', None),
    ('spike_train.npy', None),
    ('', None),
])
def test_get_alf_path(path, expected):
    assert get_alf_path(path) == expected


def test_add_uuid_string(caplog):
    result = add_uuid_string('/tutu/tata.part1.json', UUID)
    assert type(result) is type(Path())
    assert result == Path(f'/tutu/tata.part1.{UUID}.json')
    # A UUID object is accepted
    import uuid
    assert add_uuid_string('obj.attr.npy', uuid.UUID(UUID)) == Path(f'obj.attr.{UUID}.npy')
    # Path classes are preserved
    result = add_uuid_string(PureWindowsPath(r'C:\a\obj.attr.npy'), UUID)
    assert type(result) is PureWindowsPath and result.name == f'obj.attr.{UUID}.npy'
    result = add_uuid_string(ALFPath('a/obj.attr.npy'), UUID)
    assert isinstance(result, ALFPath) and result.extra == UUID
    # The same UUID is not added twice
    with caplog.at_level(logging.DEBUG, logger='one.alf.path'):
        caplog.clear()
        assert add_uuid_string(f'/a/obj.attr.{UUID}.npy', UUID) == Path(f'/a/obj.attr.{UUID}.npy')
        assert caplog.records[-1].levelno == logging.WARNING
        # A different UUID replaces the old one
        caplog.clear()
        result = add_uuid_string(f'/a/obj.attr.{UUID}.npy', UUID2)
        assert result == Path(f'/a/obj.attr.{UUID2}.npy')
        assert caplog.records[-1].levelno == logging.DEBUG
        assert 'Replacing' in caplog.records[-1].getMessage()


@pytest.mark.parametrize('bad', ['foo', UUID.upper(), UUID.replace('-', ''), ''])
def test_add_uuid_string_invalid(bad):
    with pytest.raises(ValueError, match='Should provide a valid UUID v4'):
        add_uuid_string('obj.attr.npy', bad)


def test_remove_uuid_string():
    result = remove_uuid_string(f'/a/b/obj.attr.{UUID}.npy')
    assert type(result) is type(Path()) and result == Path('/a/b/obj.attr.npy')
    assert remove_uuid_string(f'obj.attr.{UUID}.npy') == Path('obj.attr.npy')
    assert remove_uuid_string(f'obj.attr.raw.{UUID}.npy') == Path('obj.attr.raw.npy')
    assert remove_uuid_string('/a/obj.attr.npy') == Path('/a/obj.attr.npy')
    # Only canonical lower-case UUID strings are removed
    upper = f'obj.attr.{UUID.upper()}.npy'
    assert remove_uuid_string(upper) == Path(upper)
    result = remove_uuid_string(PureWindowsPath(rf'C:\a\obj.attr.{UUID}.npy'))
    assert type(result) is PureWindowsPath and result == PureWindowsPath(r'C:\a\obj.attr.npy')
    result = remove_uuid_string(ALFPath(f'obj.attr.{UUID}.npy'))
    assert isinstance(result, ALFPath) and result.name == 'obj.attr.npy'


def test_padded_sequence():
    result = padded_sequence('subj/2020-01-01/1')
    assert isinstance(result, ALFPath) and result.as_posix() == 'subj/2020-01-01/001'
    result = padded_sequence('/d/lab/Subjects/subj/2020-01-01/12/alf/obj.attr.npy')
    assert result.as_posix() == '/d/lab/Subjects/subj/2020-01-01/012/alf/obj.attr.npy'
    assert padded_sequence(result) == result  # idempotent
    result = padded_sequence(PurePosixPath('subj/2020-01-01/2/alf'))
    assert type(result) is PurePosixALFPath and result.as_posix() == 'subj/2020-01-01/002/alf'
    result = padded_sequence(PureWindowsPath(r'C:\subj\2020-01-01\0\alf'))
    assert type(result) is PureWindowsALFPath
    assert result == PureWindowsPath(r'C:\subj\2020-01-01\000\alf')
    assert padded_sequence('subj/2020-01-01/0002').as_posix() == 'subj/2020-01-01/002'
    with pytest.raises(ValueError):
        padded_sequence('subj/2020-01-01/alf')
    with pytest.raises(ValueError):
        padded_sequence('alf/obj.attr.npy')


def test_without_revision_function():
    result = without_revision('subj/2020-01-01/001/alf/#2020-01-01#/obj.attr.npy')
    assert type(result) is type(Path())
    assert result == Path('subj/2020-01-01/001/alf/obj.attr.npy')
    assert without_revision('/d/subj/2020-01-01/001/#r#/obj.attr.npy') == Path(
        '/d/subj/2020-01-01/001/obj.attr.npy')
    assert without_revision('/d/subj/2020-01-01/001/alf/obj.attr.npy') == Path(
        '/d/subj/2020-01-01/001/alf/obj.attr.npy')
    result = without_revision(PureWindowsPath(r'C:\s\2020-01-01\001\alf\#r#\obj.attr.npy'))
    assert result == PureWindowsPath(r'C:\s\2020-01-01\001\alf\obj.attr.npy')
    with pytest.raises(ALFInvalid, match='alf'):
        without_revision('alf/#2020-01-01#/obj.attr.npy')
    # The folders parse as a session but the date is not a real date
    with pytest.raises(ALFInvalid, match='2020-13-45'):
        without_revision('subj/2020-13-45/001/alf/#r#/obj.attr.npy')


def test_ensure_alf_path():
    alf = ALFPath('a/b')
    assert ensure_alf_path(alf) is alf
    pure = PurePosixALFPath('a/b')
    assert ensure_alf_path(pure) is pure
    assert type(ensure_alf_path(Path('a/b'))) is CONCRETE
    assert type(ensure_alf_path('a/b')) is CONCRETE
    assert ensure_alf_path('a/b') == Path('a/b')
    assert type(ensure_alf_path(PurePosixPath('a/b'))) is PurePosixALFPath
    assert type(ensure_alf_path(PureWindowsPath('a/b'))) is PureWindowsALFPath
    converted = ensure_alf_path(['a', Path('b'), PureWindowsPath('c')])
    assert isinstance(converted, list)
    assert [type(p) for p in converted] == [CONCRETE, CONCRETE, PureWindowsALFPath]
    assert ensure_alf_path(('a', 'b')) == [ALFPath('a'), ALFPath('b')]
    assert ensure_alf_path(p for p in ['x']) == [ALFPath('x')]
    assert ensure_alf_path([]) == []
    for bad in (1, None, 2.5, object()):
        with pytest.raises(TypeError, match=f'expected os.PathLike type, got {type(bad)}'):
            ensure_alf_path(bad)
    with pytest.raises(TypeError):
        ensure_alf_path([1])


def test_docstring_examples():
    result = doctest.testmod(alfpath)
    assert result.attempted > 0 and result.failed == 0


# =================================================================================================
# The ALFPath family
# =================================================================================================

def test_class_hierarchy():
    assert issubclass(PureALFPath, PurePath)
    assert issubclass(PurePosixALFPath, PurePosixPath) and issubclass(PurePosixALFPath,
                                                                      PureALFPath)
    assert issubclass(PureWindowsALFPath, PureWindowsPath) and issubclass(PureWindowsALFPath,
                                                                          PureALFPath)
    assert issubclass(ALFPath, Path) and issubclass(ALFPath, PureALFPath)
    assert issubclass(PosixALFPath, pathlib.PosixPath) and issubclass(PosixALFPath, ALFPath)
    assert issubclass(WindowsALFPath, pathlib.WindowsPath) and issubclass(WindowsALFPath, ALFPath)
    assert set(alfpath.__all__) >= {'ALFPath', 'PureALFPath', 'WindowsALFPath', 'PosixALFPath',
                                    'PureWindowsALFPath', 'PurePosixALFPath'}


def test_instantiation_picks_os_class():
    assert type(PureALFPath('a')) is POSIX_PURE
    assert type(ALFPath('a')) is CONCRETE
    assert isinstance(ALFPath('a'), Path)
    assert type(PurePosixALFPath('a')) is PurePosixALFPath
    assert type(PureWindowsALFPath('a')) is PureWindowsALFPath
    assert PureALFPath('a', 'b', 'c') == PurePath('a/b/c')
    assert ALFPath(Path('a'), 'b') == Path('a/b')
    if os.name != 'nt':
        with pytest.raises(Exception):  # noqa: B017 (NotImplementedError or UnsupportedOperation)
            WindowsALFPath('a')


@pytest.mark.parametrize('cls', [PurePosixALFPath, PureWindowsALFPath, CONCRETE])
def test_derived_paths_keep_class(cls):
    path = cls(FULL)
    derived = [path.parent, path / 'x', 'x' / path.parent, path.joinpath('a', 'b'),
               path.with_name('a.b.c'), path.with_suffix('.npy'), path.with_stem('obj.attr'),
               path.relative_to('/data'), path.parents[2], path.session_path(),
               path.with_subject('s'), path.with_lab('l'), path.with_date('2021-01-01'),
               path.with_sequence(2), path.with_collection('c'), path.with_revision('r'),
               path.without_revision(), path.with_uuid(UUID), path.without_uuid(),
               path.with_object('o'), path.with_namespace('n'), path.with_attribute('a'),
               path.with_timescale('t'), path.with_extra('e'), path.with_extension('ext'),
               path.without_lab(), path.relative_to_lab(), path.relative_to_session(),
               path.with_padded_sequence()]
    for result in derived:
        assert type(result) is cls, result


def test_pickle_and_copy():
    for path in (ALFPath(FULL), PurePosixALFPath(FULL), PureWindowsALFPath(FULL)):
        for clone in (pickle.loads(pickle.dumps(path)), copy.copy(path), copy.deepcopy(path)):
            assert type(clone) is type(path) and clone == path
            assert clone.alf_parts == path.alf_parts


@pytest.mark.parametrize('cls', [PurePosixALFPath, PureWindowsALFPath, CONCRETE])
def test_properties(cls):
    path = cls(FULL)
    assert (path.lab, path.subject, path.date, path.sequence) == (
        'cortexlab', 'NYU-001', '2019-10-01', '001')
    assert (path.collection, path.revision) == ('alf/task_00', '2020-01-01')
    assert (path.object, path.attribute, path.namespace, path.suffix, path.extra) == (
        'trials', 'table', 'ibl', '.pqt', '')
    assert path.timescale == '' and path.extension == 'pqt'
    assert path.alf_parts == ('cortexlab', 'NYU-001', '2019-10-01', '001', 'alf/task_00',
                              '2020-01-01', 'ibl', 'trials', 'table', '', '', 'pqt')
    assert path.session_parts == ('cortexlab', 'NYU-001', '2019-10-01', '001')
    assert path.dataset_name_parts == ('ibl', 'trials', 'table', '', '', 'pqt')
    # Cached per instance
    assert path.alf_parts is path.alf_parts


def test_properties_of_partial_paths():
    path = ALFPath('/a/b/obj.attr_times_bpod.foo.bar.ext')
    assert path.dataset_name_parts == ('', 'obj', 'attr_times', 'bpod', 'foo.bar', 'ext')
    assert (path.namespace, path.object, path.attribute, path.timescale, path.extra,
            path.extension) == ('', 'obj', 'attr_times', 'bpod', 'foo.bar', 'ext')
    # No session in the folders: the full path does not parse, the name does
    assert path.alf_parts == ('',) * 12
    assert path.session_parts == ('',) * 4
    assert path.lab == path.subject == path.date == path.sequence == ''
    assert path.collection == path.revision == ''
    foo = ALFPath('foo')
    assert foo.alf_parts == ('',) * 12 and foo.dataset_name_parts == ('',) * 6
    assert foo.object == foo.extension == ''
    session = PureALFPath('lab/Subjects/subj/2020-01-01/001')
    assert session.alf_parts == ('lab', 'subj', '2020-01-01', '001', *[''] * 8)
    assert session.object == '' and session.collection == ''
    folder = PureALFPath('subj/2020-01-01/001/alf/#2020-01-01#')
    assert (folder.collection, folder.revision, folder.lab) == ('alf', '2020-01-01', '')
    # Every property is a str, never None
    for p in (path, foo, session, folder):
        for name in ('lab', 'subject', 'date', 'sequence', 'collection', 'revision',
                     'namespace', 'object', 'attribute', 'timescale', 'extra', 'extension'):
            assert isinstance(getattr(p, name), str)


def test_parse_alf_path_and_name():
    path = PureALFPath(FULL)
    parsed = path.parse_alf_path()
    assert isinstance(parsed, OrderedDict) and tuple(parsed) == FULL_KEYS
    assert parsed['lab'] == 'cortexlab' and parsed['timescale'] is None
    assert path.parse_alf_path(as_dict=False) == tuple(parsed.values())
    assert PureALFPath('foo/bar/Subjects/baz.pie').parse_alf_path(as_dict=False) == (None,) * 12
    name = ALFPath('_ibl_spikes.times_ephysClock.raw.npy').parse_alf_name()
    assert name == OrderedDict(namespace='ibl', object='spikes', attribute='times',
                               timescale='ephysClock', extra='raw', extension='npy')
    assert isinstance(name, OrderedDict)
    assert PureALFPath('a/b/foo.bar').parse_alf_name(as_dict=False) == (None,) * 6


# ---- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize('path, dataset, valid, session', [
    (FULL, True, True, False),
    ('subj/2020-01-01/001', False, True, True),
    ('lab/Subjects/subj/2020-01-01/001/', False, True, True),
    ('subj/2020-01-01/001/alf', False, True, False),
    ('subj/2020-01-01/001/alf/probe00', False, True, False),
    ('spikes.times.npy', True, True, False),
    ('alf/spikes.times.npy', True, False, False),
    ('subj/2020-01-01/001/alf/spike_train.npy', False, True, False),  # could be a collection
    ('subj/2020-01-01/001/alf/obj.attr-x.npy', False, False, False),
    ('foo/bar/Subjects/baz.pie', False, False, False),
    ('subj/2020-01-01/001/#rev#/alf', False, False, False),
    ('foo', False, False, False),
])
def test_validation_pure(path, dataset, valid, session):
    for cls in (PurePosixALFPath, PureWindowsALFPath, CONCRETE):
        p = cls(path)
        assert p.is_dataset() is dataset
        assert p.is_valid_alf() is valid
        assert p.is_session_path() is session
    assert PureALFPath.is_valid_alf(path) is valid
    assert PureALFPath.is_valid_alf(Path(path)) is valid


def test_is_valid_alf_on_class():
    assert PureALFPath.is_valid_alf(FULL) is True
    assert PurePosixALFPath.is_valid_alf('subj/2020-01-01/001') is True
    assert PureALFPath.is_valid_alf('foo') is False
    assert ALFPath.is_valid_alf(FULL) is True
    assert ALFPath.is_valid_alf(PurePosixPath('alf/spikes.times.npy')) is False
    assert ALFPath(FULL).is_valid_alf() is True


def test_validation_on_disk(tmp_path):
    session = tmp_path / 'lab' / 'Subjects' / 'subj' / '2020-01-01' / '001'
    (session / 'alf').mkdir(parents=True)
    (session / 'alf' / 'spikes.times.npy').write_bytes(b'')
    (session / 'alf' / 'folder.looks.valid').mkdir()
    (session / 'alf' / 'spike_train.npy').write_bytes(b'')  # a file with one dot
    (session / 'raw_data').write_bytes(b'')  # a file named like a collection
    (session / '002').write_bytes(b'')  # a file named like a session
    root = ALFPath(tmp_path)

    dataset = ALFPath(session / 'alf' / 'spikes.times.npy')
    assert dataset.is_dataset() and dataset.is_valid_alf() and not dataset.is_session_path()

    folder = ALFPath(session / 'alf' / 'folder.looks.valid')
    assert not folder.is_dataset()  # an existing folder is not a dataset
    assert PurePosixALFPath(folder).is_dataset()  # ... though its name is valid
    assert not folder.is_valid_alf()  # it parses as a dataset but is a folder
    assert PurePosixALFPath(folder).is_valid_alf()

    one_dot = ALFPath(session / 'alf' / 'spike_train.npy')
    assert not one_dot.is_dataset()
    assert not one_dot.is_valid_alf()  # a file that parses as a collection folder

    collection_file = ALFPath(session / 'raw_data')
    assert not collection_file.is_valid_alf()
    assert ALFPath(session / 'alf').is_valid_alf()
    assert ALFPath(session / 'missing_collection').is_valid_alf()  # does not exist: parse only

    assert ALFPath(session).is_session_path()
    session_file = ALFPath(session.parent / '002')
    assert not ALFPath(session / '002').is_session_path()
    assert session_file.is_session_path()  # does not exist
    (session.parent / '002').write_bytes(b'')
    assert not session_file.is_session_path()  # now a file
    assert PurePosixALFPath(session_file).is_session_path()
    assert not root.is_session_path() and not root.is_dataset()

    assert ALFPath.is_valid_alf(str(session / 'alf' / 'spikes.times.npy'))
    assert not ALFPath.is_valid_alf(str(folder))


# ---- session helpers ---------------------------------------------------------------------------

def test_session_helpers():
    path = ALFPath(FULL)
    assert path.session_path() == Path(f'/data/cortexlab/Subjects/{SESSION}')
    assert path.session_path_short() == 'NYU-001/2019-10-01/001'
    assert path.session_path_short(include_lab=True) == 'cortexlab/NYU-001/2019-10-01/001'
    assert path.without_lab() == Path(f'/data/{SESSION}/alf/task_00/#2020-01-01#/'
                                      '_ibl_trials.table.pqt')
    assert path.relative_to_lab() == Path(f'{SESSION}/alf/task_00/#2020-01-01#/'
                                          '_ibl_trials.table.pqt')
    assert path.relative_to_session() == Path('alf/task_00/#2020-01-01#/_ibl_trials.table.pqt')
    assert path.relative_to_session().as_posix() == (
        'alf/task_00/#2020-01-01#/_ibl_trials.table.pqt')

    no_lab = ALFPath(f'/data/{SESSION}/alf')
    assert no_lab.without_lab() == no_lab
    assert no_lab.session_path_short(include_lab=True) == SESSION
    assert no_lab.relative_to_session() == Path('alf')
    with pytest.raises(ValueError):
        no_lab.relative_to_lab()

    no_session = PureALFPath('/data/alf/obj.attr.npy')
    assert no_session.session_path() is None
    assert no_session.session_path_short() is None
    assert no_session.session_path_short(include_lab=True) is None
    with pytest.raises(ValueError):
        no_session.relative_to_session()

    # The lab/Subjects folders are removed even without a session below them
    assert PureALFPath('/data/lab/Subjects/subj').without_lab() == PurePath('/data/subj')
    assert PureALFPath('lab/Subjects/subj').relative_to_lab() == PurePath('subj')

    windows = PureWindowsALFPath(r'C:\data\lab\Subjects\subj\2020-01-01\001\alf')
    assert windows.without_lab() == PureWindowsPath(r'C:\data\subj\2020-01-01\001\alf')
    assert windows.relative_to_lab() == PureWindowsPath(r'subj\2020-01-01\001\alf')
    assert windows.relative_to_session() == PureWindowsPath('alf')
    assert windows.session_path() == PureWindowsPath(r'C:\data\lab\Subjects\subj\2020-01-01\001')


# ---- with_* on the session ---------------------------------------------------------------------

def test_with_lab():
    path = ALFPath(FULL)
    assert path.with_lab('mainenlab') == Path(FULL.replace('cortexlab', 'mainenlab'))
    assert path.with_lab('mainenlab', strict=True).lab == 'mainenlab'
    no_lab = PureALFPath(f'/data/{SESSION}/alf/spikes.times.npy')
    assert no_lab.with_lab('lab') == PurePath(f'/data/lab/Subjects/{SESSION}/alf/spikes.times.npy')
    assert PureALFPath(SESSION).with_lab('lab') == PurePath(f'lab/Subjects/{SESSION}')
    with pytest.raises(ALFInvalid):
        no_lab.with_lab('lab', strict=True)
    with pytest.raises(ALFInvalid):
        PureALFPath('/data/alf/spikes.times.npy').with_lab('lab')
    for bad in ('lab-1', '', None, 'a/b', 'la b'):
        with pytest.raises(ValueError, match='Invalid lab name'):
            path.with_lab(bad)
    windows = PureWindowsALFPath(rf'C:\data\{SESSION}')
    assert windows.with_lab('lab') == PureWindowsPath(rf'C:\data\lab\Subjects\{SESSION}')


def test_with_subject():
    path = ALFPath(FULL)
    assert path.with_subject('new_subject') == Path(FULL.replace('NYU-001', 'new_subject'))
    assert path.with_subject('KS.05-a').subject == 'KS.05-a'
    for bad in ('', 'a/b', 'a b', None):
        with pytest.raises(ValueError):
            path.with_subject(bad)
    with pytest.raises(ALFInvalid):
        PureALFPath('alf/spikes.times.npy').with_subject('subj')


@pytest.mark.parametrize('date', [
    '2021-03-04', datetime.date(2021, 3, 4), datetime.datetime(2021, 3, 4, 12, 30)])
def test_with_date(date):
    path = ALFPath(FULL)
    result = path.with_date(date)
    assert result == Path(FULL.replace('2019-10-01', '2021-03-04'))
    assert result.date == '2021-03-04'


def test_with_date_errors():
    path = ALFPath(FULL)
    for bad in ('2021-3-4', '04-03-2021', '', None, 20210304):
        with pytest.raises(ValueError):
            path.with_date(bad)
    with pytest.raises(ALFInvalid):
        PureALFPath('alf/spikes.times.npy').with_date('2021-01-01')


@pytest.mark.parametrize('number, expected', [
    (5, '005'), ('002', '002'), (2, '002'), (0, '000'), ('7 ', '007'), (999, '999'),
])
def test_with_sequence(number, expected):
    path = ALFPath(FULL)
    result = path.with_sequence(number)
    assert result.sequence == expected
    assert result == Path(FULL.replace('/001/', f'/{expected}/'))
    assert PureALFPath('subj/2020-01-01/1').with_sequence(number) == PurePath(
        f'subj/2020-01-01/{expected}')


def test_with_sequence_numpy_integer():
    np = pytest.importorskip('numpy')
    assert ALFPath(FULL).with_sequence(np.int64(12)).sequence == '012'


@pytest.mark.parametrize('number', ['1e4', None, 1000, -1, 'abc', '', 2.0, True])
def test_with_sequence_errors(number):
    with pytest.raises(ValueError):
        ALFPath(FULL).with_sequence(number)


def test_with_sequence_without_session():
    with pytest.raises(ALFInvalid):
        PureALFPath('alf/spikes.times.npy').with_sequence(1)


def test_with_padded_sequence():
    assert ALFPath('NYU-001/2019-10-01/1').with_padded_sequence() == Path('NYU-001/2019-10-01/001')
    result = ALFPath.with_padded_sequence('NYU-001/2019-10-01/1/alf')
    assert isinstance(result, ALFPath) and result.as_posix() == 'NYU-001/2019-10-01/001/alf'
    result = PureALFPath.with_padded_sequence('s/2019-10-01/10')
    assert type(result) is POSIX_PURE and result.sequence == '010'
    with pytest.raises(ValueError):
        ALFPath('alf/obj.attr.npy').with_padded_sequence()


# ---- with_* on the folders ---------------------------------------------------------------------

@pytest.mark.parametrize('path, collection, expected', [
    ('sess', 'collection', 'sess/collection'),
    ('sess/obj.attr.ext', 'collection', 'sess/collection/obj.attr.ext'),
    ('sess/alf/foo', 'collection', 'sess/collection'),
    ('sess/#2020-01-01#', 'collection', 'sess/collection/#2020-01-01#'),
    ('sess/alf/#2020-01-01#/obj.attr.ext', 'collection',
     'sess/collection/#2020-01-01#/obj.attr.ext'),
    ('sess/alf/obj.attr.ext', 'a/b.c/d-e', 'sess/a/b.c/d-e/obj.attr.ext'),
    ('sess/alf/obj.attr.ext', '/alf/probe00/', 'sess/alf/probe00/obj.attr.ext'),
])
def test_with_collection(path, collection, expected):
    root = '/data/lab/Subjects/subj/2020-01-01/001'
    for cls in (PurePosixALFPath, CONCRETE):
        result = cls(path.replace('sess', root)).with_collection(collection)
        assert type(result) is cls
        assert result.as_posix() == expected.replace('sess', root)


def test_with_collection_windows():
    path = PureWindowsALFPath(r'C:\s\2020-01-01\001\alf\#r#\obj.attr.ext')
    assert path.with_collection('raw/probe00') == PureWindowsPath(
        r'C:\s\2020-01-01\001\raw\probe00\#r#\obj.attr.ext')
    # The collection is normalised with the OS flavour of PurePath
    if os.name == 'nt':
        assert path.with_collection(r'raw\probe00') == path.with_collection('raw/probe00')
    else:
        with pytest.raises(ValueError):
            path.with_collection(r'raw\probe00')


def test_with_collection_empty_removes_collection():
    # '' normalises to '.', which joins to nothing
    session = 'subj/2020-01-01/001'
    assert PureALFPath(f'{session}/alf/#r#/obj.attr.ext').with_collection('') == PurePath(
        f'{session}/#r#/obj.attr.ext')
    assert PureALFPath(f'{session}/alf').with_collection('') == PurePath(session)


def test_with_collection_errors():
    session = 'subj/2020-01-01/001'
    with pytest.raises(ALFInvalid):
        PureALFPath(f'{session}/#revision#/alf').with_collection('collection')
    with pytest.raises(ValueError, match='#invalid#'):
        PureALFPath(f'{session}/alf').with_collection('#invalid#')
    for bad in ('a b', '#', 'a/#b#', 'a*'):
        with pytest.raises(ValueError):
            PureALFPath(f'{session}/alf').with_collection(bad)
    if os.name != 'nt':
        with pytest.raises(ValueError):  # a backslash is not a separator on POSIX
            PureALFPath(f'{session}/alf').with_collection(r'raw\probe00')
    with pytest.raises(ValueError):  # no session
        PureALFPath('alf/obj.attr.ext').with_collection('collection')
    with pytest.raises(ValueError):  # not a real date, so no session
        PureALFPath('subj/2020-13-45/001/alf').with_collection('collection')


def test_with_revision():
    path = ALFPath(FULL)
    assert path.with_revision('2025-03-03') == Path(FULL.replace('2020-01-01', '2025-03-03'))
    no_revision = PureALFPath(f'{SESSION}/alf/obj.attr.npy')
    assert no_revision.with_revision('v1.2-a') == PurePath(f'{SESSION}/alf/#v1.2-a#/obj.attr.npy')
    folder = PureALFPath(f'{SESSION}/alf')
    assert folder.with_revision('r') == PurePath(f'{SESSION}/alf/#r#')
    assert PureALFPath(f'{SESSION}/alf/#old#').with_revision('new') == PurePath(
        f'{SESSION}/alf/#new#')
    assert PureALFPath(SESSION).with_revision('r') == PurePath(f'{SESSION}/#r#')
    for bad in ('#r#', 'a/b', '', 'a b', None):
        with pytest.raises(ALFInvalid):
            path.with_revision(bad)
    with pytest.raises(ALFInvalid):  # relative to the session
        PureALFPath('alf/obj.attr.npy').with_revision('r')
    with pytest.raises(ALFInvalid):
        PureALFPath('alf/probe00').with_revision('r')


def test_without_revision_method():
    path = ALFPath(FULL)
    expected = FULL.replace('/#2020-01-01#', '')
    assert path.without_revision() == Path(expected)
    assert isinstance(path.without_revision(), ALFPath)
    assert ALFPath(expected).without_revision() == Path(expected)
    assert PureALFPath(f'{SESSION}/alf/#r#').without_revision() == PurePath(f'{SESSION}/alf')
    assert PureALFPath(f'{SESSION}/alf').without_revision() == PurePath(f'{SESSION}/alf')
    assert PureALFPath(SESSION).without_revision() == PurePath(SESSION)
    with pytest.raises(ALFInvalid):
        PureALFPath('alf/#r#/obj.attr.npy').without_revision()
    with pytest.raises(ALFInvalid):
        PureALFPath('alf/#r#').without_revision()
    with pytest.raises(ALFInvalid):
        PureALFPath('subj/2020-13-45/001/alf/#r#/obj.attr.npy').without_revision()


# ---- with_* on the file name -------------------------------------------------------------------

@pytest.mark.parametrize('name, method, args, kwargs, expected', [
    ('_ns_obj.attr.ext', 'with_object', ('bar',), {}, '_ns_bar.attr.ext'),
    ('obj.attr_times.ext', 'with_object', ('wheelMoves',), {}, 'wheelMoves.attr_times.ext'),
    ('obj.attr.ext', 'with_namespace', ('ns',), {}, '_ns_obj.attr.ext'),
    ('_ibl_obj.attr.ext', 'with_namespace', ('ns',), {}, '_ns_obj.attr.ext'),
    ('_ibl_obj.attr.ext', 'with_namespace', ('',), {}, 'obj.attr.ext'),
    ('obj.attr.ext', 'with_namespace', ('',), {}, 'obj.attr.ext'),
    ('obj.attr_times_barClock.ext', 'with_attribute', ('foo',), {}, 'obj.foo_barClock.ext'),
    ('obj.attr.raw.ext', 'with_attribute', ('foo_times',), {}, 'obj.foo_times.raw.ext'),
    ('obj.attr_times_barClock.ext', 'with_timescale', ('foo',), {}, 'obj.attr_times_foo.ext'),
    ('obj.attr_times_barClock.ext', 'with_timescale', ('',), {}, 'obj.attr_times.ext'),
    ('obj.attr.raw.ext', 'with_timescale', ('bpod',), {}, 'obj.attr_bpod.raw.ext'),
    ('obj.attr.foo.ext', 'with_extra', ('extra',), {}, 'obj.attr.extra.ext'),
    ('obj.attr.foo.ext', 'with_extra', ('extra',), {'append': True}, 'obj.attr.foo.extra.ext'),
    ('obj.attr.foo.ext', 'with_extra', (['foo', 'extra'],), {}, 'obj.attr.foo.extra.ext'),
    ('obj.attr.foo.ext', 'with_extra', ('',), {}, 'obj.attr.ext'),
    ('obj.attr.ext', 'with_extra', ('a.b',), {'append': True}, 'obj.attr.a.b.ext'),
    ('obj.attr_bpod.x.y.ext', 'with_extra', (('z',),), {}, 'obj.attr_bpod.z.ext'),
    ('obj.attr.ext', 'with_extension', ('npy',), {}, 'obj.attr.npy'),
    ('obj.attr.foo.ext', 'with_extension', ('.pqt',), {}, 'obj.attr.foo.pqt'),
    ('obj.attr.ext', 'with_uuid', (UUID,), {}, f'obj.attr.{UUID}.ext'),
    (f'obj.attr.{UUID}.ext', 'with_uuid', (UUID2,), {}, f'obj.attr.{UUID2}.ext'),
    (f'obj.attr.{UUID}.ext', 'without_uuid', (), {}, 'obj.attr.ext'),
    ('obj.attr.ext', 'without_uuid', (), {}, 'obj.attr.ext'),
])
def test_with_name_parts(name, method, args, kwargs, expected):
    for cls in (PurePosixALFPath, PureWindowsALFPath, CONCRETE):
        path = cls('/data/subj/2020-01-01/001/alf', name)
        result = getattr(path, method)(*args, **kwargs)
        assert type(result) is cls
        assert result.parent == path.parent
        assert result.name == expected
        assert spec.is_valid(result.name)


def test_with_name_parts_full_example():
    path = ALFPath(FULL)
    assert path.with_object('new_object').name == '_ibl_new_object.table.pqt'
    assert path.with_uuid(UUID2).name == f'_ibl_trials.table.{UUID2}.pqt'
    assert path.with_uuid(UUID2).without_uuid() == path


@pytest.mark.parametrize('method, args', [
    ('with_object', ('o',)), ('with_namespace', ('n',)), ('with_attribute', ('a',)),
    ('with_timescale', ('t',)), ('with_extra', ('e',)), ('with_extension', ('npy',)),
    ('with_uuid', (UUID,)),
])
def test_with_name_parts_require_dataset(method, args):
    for path in (PureALFPath('subj/2020-01-01/001/alf'), PureALFPath('a/spike_train.npy')):
        with pytest.raises(ALFInvalid) as info:
            getattr(path, method)(*args)
        assert path.name in str(info.value)


def test_without_uuid_on_folder():
    folder = PureALFPath(f'subj/2020-01-01/001/{UUID}')
    assert folder.without_uuid() is folder


def test_with_name_parts_errors(tmp_path):
    path = PureALFPath('subj/2020-01-01/001/alf/obj.attr.ext')
    with pytest.raises(ValueError):
        path.with_extension('')
    with pytest.raises(ValueError):
        path.with_namespace('a_b')
    with pytest.raises(ValueError):
        path.with_object('a.b')
    with pytest.raises(ValueError):
        path.with_object('')
    with pytest.raises(ValueError):
        path.with_attribute('a-b')
    with pytest.raises(ValueError):
        path.with_timescale('a.b')
    with pytest.raises(ValueError):
        path.with_uuid('not-a-uuid')
    # An existing folder with a dataset-like name is not a dataset
    folder = ALFPath(tmp_path / 'obj.attr.ext')
    folder.mkdir()
    with pytest.raises(ALFInvalid):
        folder.with_object('foo')
    assert folder.without_uuid() is folder


@pytest.mark.parametrize('path, method, args', [
    ('/data/alf/spikes.times.npy', 'with_lab', ('lab',)),
    (f'/data/{SESSION}/alf/spikes.times.npy', 'with_lab', ('lab', True)),
    ('/data/alf/spikes.times.npy', 'with_subject', ('s',)),
    ('/data/alf/spikes.times.npy', 'with_date', ('2020-01-01',)),
    ('/data/alf/spikes.times.npy', 'with_sequence', (1,)),
    (f'/data/{SESSION}/#rev#/alf', 'with_collection', ('alf',)),
    ('/data/alf/#rev#/spikes.times.npy', 'with_revision', ('r',)),
    ('/data/alf/#rev#/spikes.times.npy', 'without_revision', ()),
    ('/data/alf/#rev#', 'without_revision', ()),
    (f'/data/{SESSION}/alf/spike_train.npy', 'with_object', ('o',)),
    (f'/data/{SESSION}/alf', 'with_uuid', (UUID,)),
])
def test_alf_invalid_names_the_path(path, method, args):
    for p in (PureALFPath(path), ALFPath(path)):
        with pytest.raises(ALFInvalid) as info:
            getattr(p, method)(*args)
        assert str(p) in str(info.value)


def test_alf_invalid_names_the_value():
    with pytest.raises(ALFInvalid, match='a/b'):
        ALFPath(FULL).with_revision('a/b')


# ---- I/O ---------------------------------------------------------------------------------------

def test_iter_datasets(tmp_path):
    for rel in ('foo.bar', 'obj.attr.ext', 'bar.baz.foo', 'alf/foo.baz.bar', 'a-b.c.d',
                'foo bar.baz.qux', 'alf/sub/x.y.z'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b'')
    (tmp_path / 'dir.attr.ext').mkdir()
    root = ALFPath(tmp_path)
    iterator = root.iter_datasets()
    assert iter(iterator) is iterator  # a generator
    found = list(iterator)
    assert found == [root / 'bar.baz.foo', root / 'obj.attr.ext']
    assert all(type(p) is CONCRETE and p.is_absolute() for p in found)
    found = list(root.iter_datasets(recursive=True))
    assert found == [root / 'alf/foo.baz.bar', root / 'alf/sub/x.y.z', root / 'bar.baz.foo',
                     root / 'obj.attr.ext']
    assert all(type(p) is CONCRETE for p in found)
    assert list(ALFPath(tmp_path / 'missing').iter_datasets()) == []
    assert list(ALFPath(tmp_path / 'obj.attr.ext').iter_datasets()) == []


def test_iter_sessions(tmp_path):
    sessions = ['lab/Subjects/subj/2020-01-01/001', 'lab/Subjects/subj/2020-01-01/002',
                'lab/Subjects/subj/2020-01-02/001', 'other/NYU-1/2021-05-05/1']
    for s in sessions:
        (tmp_path / s / 'alf').mkdir(parents=True)
        (tmp_path / s / 'alf' / 'spikes.times.npy').write_bytes(b'')
    (tmp_path / 'lab/Subjects/subj/2020-01-01/003').write_bytes(b'')  # a file, not a session
    (tmp_path / 'lab/Subjects/subj/not-a-date/001').mkdir(parents=True)
    root = ALFPath(tmp_path)
    found = list(root.iter_sessions())
    assert found == [root / s for s in sessions]
    assert all(isinstance(p, ALFPath) for p in found)
    session = root / sessions[0]
    assert list(session.iter_sessions()) == [session]
    assert list(ALFPath(tmp_path / 'lab/Subjects/subj/2020-01-02').iter_sessions()) == [
        root / sessions[2]]
