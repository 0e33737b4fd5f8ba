"""Parse and build ALF paths: module functions and the `ALFPath` family of pathlib classes.

The parsing functions return the parts of a path as a tuple (or an ordered dict with
``as_dict=True``); on a name that is not ALF they raise `ALFInvalid`, or return ``None`` parts
when ``assert_valid=False``.  Parsing is memoised per distinct string, so indexing millions of
files whose relative paths repeat costs little more than a dictionary look-up each.

Examples
--------
>>> filename_parts('_ibl_trials.goCue_times_bpod.csv')
('ibl', 'trials', 'goCue_times', 'bpod', None, 'csv')
>>> ALFPath('lab/Subjects/subj/2020-01-01/001/alf/spikes.times.npy').collection
'alf'
"""
from __future__ import annotations

import functools
import logging
import os
import pathlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import datetime

from one.alf import spec
from one.alf.exceptions import ALFInvalid
from one.alf.spec import COLLECTION_SPEC, FILE_SPEC, REL_PATH_SPEC, SESSION_SPEC

__all__ = [
    'ALFPath', 'PureALFPath', 'WindowsALFPath', 'PosixALFPath', 'PureWindowsALFPath',
    'PurePosixALFPath',
    'filename_parts', 'rel_path_parts', 'session_path_parts', 'folder_parts', 'full_path_parts',
    'get_session_path', 'get_alf_path', 'add_uuid_string', 'remove_uuid_string',
    'padded_sequence', 'without_revision', 'ensure_alf_path',
]

_logger = logging.getLogger(__name__)

_FOLDER_SPEC = SESSION_SPEC + '/' + COLLECTION_SPEC
_FILE_KEYS = ('namespace', 'object', 'attribute', 'timescale', 'extra', 'extension')
_SESSION_KEYS = ('lab', 'subject', 'date', 'number')
_FOLDER_KEYS = (*_SESSION_KEYS, 'collection', 'revision')
_FULL_KEYS = (*_FOLDER_KEYS, *_FILE_KEYS)
_REL_KEYS = ('collection', 'revision', *_FILE_KEYS)
_COLLECTION_REVISION = re.compile(spec.regex(COLLECTION_SPEC).pattern + '$')
_LAB_PREFIX = re.compile(r'(?P<lab>\w+)/Subjects/')


@functools.cache
def _spec_pattern(spec_str: str) -> tuple:
    """The compiled pattern of a spec and the names of its groups, in order."""
    pattern = spec.regex(spec_str)
    return pattern, tuple(pattern.groupindex)


@functools.lru_cache(maxsize=1 << 16)
def _groups(spec_str: str, string: str, anchored: bool) -> tuple | None:
    """Return the named groups of the spec's pattern in `string`, or None (memoised).

    Unanchored searches are only made with specs that start with the session spec.
    """
    pattern, names = _spec_pattern(spec_str)
    match = pattern.match(string) if anchored else spec._session_search(pattern, string)
    return match.group(*names) if match else None


def _to_str(path) -> str:
    if type(path) is str:
        return path
    return path.as_posix() if isinstance(path, pathlib.PurePath) else str(path)


def _path_parts(path, spec_str: str, anchored: bool, as_dict: bool, assert_valid: bool,
                keys: tuple, name: str | None = None):
    string = _to_str(path)
    groups = _groups(spec_str, string, anchored)
    if groups is None:
        if assert_valid:
            raise ALFInvalid(name or string)
        groups = (None,) * len(keys)
    return OrderedDict(zip(keys, groups)) if as_dict else groups


def filename_parts(filename, as_dict: bool = False, assert_valid: bool = True):
    """Return the parts of an ALF file name.

    Parameters
    ----------
    filename : str or pathlib.PurePath
        A file name such as ``'_ibl_trials.goCue_times_bpod.csv'``.
    as_dict : bool
        Return an ordered dict instead of a tuple.
    assert_valid : bool
        Raise `ALFInvalid` for a non-ALF name; otherwise return None for every part.

    Returns
    -------
    tuple or OrderedDict
        namespace, object, attribute, timescale, extra, extension (None when absent).

    Examples
    --------
    >>> filename_parts('obj.attr_timestamps.npy')
    (None, 'obj', 'attr', 'timestamps', None, 'npy')
    """
    return _path_parts(filename, FILE_SPEC, True, as_dict, assert_valid, _FILE_KEYS)


def rel_path_parts(rel_path, as_dict: bool = False, assert_valid: bool = True):
    """Return the parts of a path relative to the session folder.

    Returns
    -------
    tuple or OrderedDict
        collection, revision, namespace, object, attribute, timescale, extra, extension.

    Examples
    --------
    >>> rel_path_parts('alf/#2020-01-01#/spikes.times.npy')
    ('alf', '2020-01-01', None, 'spikes', 'times', None, None, 'npy')
    """
    return _path_parts(rel_path, REL_PATH_SPEC, True, as_dict, assert_valid, _REL_KEYS)


def session_path_parts(session_path, as_dict: bool = False, assert_valid: bool = True):
    """Return lab, subject, date and number of the session found anywhere in a path.

    Examples
    --------
    >>> session_path_parts('/home/user/Data/labname/Subjects/subject/2020-01-01/001/alf')
    ('labname', 'subject', '2020-01-01', '001')
    """
    return _path_parts(session_path, SESSION_SPEC, False, as_dict, assert_valid, _SESSION_KEYS)


def folder_parts(folder_path, as_dict: bool = False, assert_valid: bool = True):
    """Return the session, collection and revision parts of a folder path.

    Returns
    -------
    tuple or OrderedDict
        lab, subject, date, number, collection, revision.
    """
    name = string = _to_str(folder_path)
    if not string.endswith('/'):
        string += '/'
    return _path_parts(string, _FOLDER_SPEC, False, as_dict, assert_valid, _FOLDER_KEYS, name)


def full_path_parts(path, as_dict: bool = False, assert_valid: bool = True):
    """Return the folder and file parts of a full ALF path.

    A last component with fewer than two dots is taken as a folder.

    Returns
    -------
    tuple or OrderedDict
        lab, subject, date, number, collection, revision, namespace, object, attribute,
        timescale, extra, extension.

    Raises
    ------
    ALFInvalid
        With `assert_valid`, when the folders hold no session or the name is not ALF.
    """
    string = _to_str(path)
    parts = _full_groups(string.rstrip('/') or string)
    if parts is None:
        if assert_valid:
            raise ALFInvalid(string.rstrip('/') or string)
        parts = (None,) * 12
    return OrderedDict(zip(_FULL_KEYS, parts)) if as_dict else parts


_NO_FOLDER = (None,) * 6
_NO_FILE = (None,) * 6


def _full_groups(string: str) -> tuple | None:
    """The 12 parts of a full path without trailing '/', or None if it is not ALF."""
    head, sep, name = string.rpartition('/')
    if name.count('.') < 2:  # a folder
        folders = _groups(_FOLDER_SPEC, string + '/', False)
        if folders is None or not _folder_name_parsed(name, folders):
            return None
        return folders + _NO_FILE
    files = _groups(FILE_SPEC, name, True)
    if files is None:
        return None
    if not sep:  # a file name alone
        return _NO_FOLDER + files
    folders = _groups(_FOLDER_SPEC, head if head.endswith('/') else head + '/', False)
    return None if folders is None else folders + files


def _folder_name_parsed(name: str, folders: tuple) -> bool:
    """True if the last folder of a path is one of the parts that were parsed from it."""
    lab, subject, date, number, collection, revision = folders
    if name in (lab, subject, date, number):
        return True
    if revision and name == f'#{revision}#':
        return True
    return bool(collection) and collection.rsplit('/', 1)[-1] == name


def _isdatetime(s: str) -> bool:
    """Return True if `s` is a real date written ``YYYY-MM-DD``."""
    try:
        datetime.strptime(s, '%Y-%m-%d')
        return True
    except (ValueError, TypeError):
        return False


def get_session_path(path):
    """Return the session folder of a path, or None if it holds no session.

    The session folder is the first folder made of digits that follows a real date
    ``YYYY-MM-DD``; the returned path has the class of the input (a str gives a pathlib.Path).

    Examples
    --------
    >>> get_session_path('/data/subj/2020-01-01/001/alf/spikes.times.npy').as_posix()
    '/data/subj/2020-01-01/001'
    """
    if path is None:
        return None
    if isinstance(path, str):
        path = pathlib.Path(path)
    parts = path.parts
    for i in range(1, len(parts)):
        if parts[i].isdigit() and _isdatetime(parts[i - 1]):
            return path.__class__(*parts[:i + 1])
    return None


def get_alf_path(path) -> str | None:
    """Return the ALF part of a path or URL: from the lab (or subject) folder onwards.

    Without a session, the collection and file name (or the file name alone) are returned if
    valid; otherwise None.

    Examples
    --------
    >>> get_alf_path('etc/etc/lab/Subjects/subj/2021-01-21/001/collection/file.attr.ext')
    'lab/Subjects/subj/2021-01-21/001/collection/file.attr.ext'
    """
    string = _to_str(path).strip('/')
    match = spec._session_search(spec.regex(SESSION_SPEC), string)
    if match:
        return string[match.start():]
    name = string.rsplit('/', 1)[-1]
    if spec.is_valid(name):
        if spec.regex(REL_PATH_SPEC).match(string):
            return string
        return name
    return None


def add_uuid_string(file_path, uuid):
    """Insert a dataset UUID before the extension: ``obj.attr.npy`` -> ``obj.attr.<uuid>.npy``.

    Raises
    ------
    ValueError
        `uuid` is a string that is not a canonical UUID.
    """
    if isinstance(uuid, str) and not spec.is_uuid_string(uuid):
        raise ValueError('Should provide a valid UUID v4')
    uuid = str(uuid)
    if isinstance(file_path, str):
        file_path = pathlib.Path(file_path)
    name_parts = file_path.stem.split('.')
    if spec.is_uuid(name_parts[-1]):
        if name_parts[-1] == uuid:
            _logger.warning('UUID already found in file name %s: not adding', file_path)
            return file_path
        _logger.debug('Replacing %s with %s in %s', name_parts[-1], uuid, file_path)
        name_parts = name_parts[:-1]
    return file_path.parent / f'{".".join(name_parts)}.{uuid}{file_path.suffix}'


def uuid_in_name(path: str, uuid: str) -> str:
    """A POSIX path with a dataset UUID inserted before the extension of its file name, as
    data servers name files (``alf/a.b.npy`` -> ``alf/a.b.<uuid>.npy``); pure text, unchecked.

    Examples
    --------
    >>> uuid_in_name('alf/#2020-01-01#/a.b.npy', 'u')
    'alf/#2020-01-01#/a.b.u.npy'
    """
    path = pathlib.PurePosixPath(path)
    return str(path.with_name(f'{path.stem}.{uuid}{path.suffix}'))


def remove_uuid_string(file_path):
    """Remove a dataset UUID from before the extension, if there is one."""
    if isinstance(file_path, str):
        file_path = pathlib.Path(file_path)
    name_parts = file_path.stem.split('.')
    if spec.is_uuid_string(name_parts[-1]):
        file_path = file_path.with_name('.'.join(name_parts[:-1]) + file_path.suffix)
    return file_path


def padded_sequence(file_path):
    """Return the path with its session number zero-padded to three digits.

    Raises
    ------
    ValueError
        The path holds no session.
    """
    file_path = ensure_alf_path(file_path)
    session_path = get_session_path(file_path)
    if not session_path:
        raise ValueError(f'path must include a valid ALF session path, e.g. '
                         f'subject/YYYY-MM-DD/001: {file_path}')
    padded = session_path.parent / str(int(session_path.name)).zfill(3)
    return padded.joinpath(file_path.relative_to(session_path))


def without_revision(file_path):
    """Return the path with its revision folder removed.

    Raises
    ------
    ALFInvalid
        The path holds no session.
    """
    if isinstance(file_path, str):
        file_path = pathlib.Path(file_path)
    *session, collection, _revision = folder_parts(file_path.parent, assert_valid=False)
    session_path = get_session_path(file_path)
    if session[1] is None or session_path is None:  # no session, or not a real date
        raise ALFInvalid(str(file_path))
    return session_path.joinpath(*filter(None, [collection]), file_path.name)


def ensure_alf_path(path):
    """Convert a path, a str or an iterable of them to the matching ALF path class.

    Raises
    ------
    TypeError
        The input is neither path-like nor iterable.
    """
    if isinstance(path, PureALFPath):
        return path
    if isinstance(path, pathlib.Path):
        return ALFPath(path)
    if isinstance(path, pathlib.PurePosixPath):
        return PurePosixALFPath(path)
    if isinstance(path, pathlib.PureWindowsPath):
        return PureWindowsALFPath(path)
    if isinstance(path, pathlib.PurePath):
        return PureALFPath(path)
    if isinstance(path, str):
        return ALFPath(path)
    if isinstance(path, Iterable):
        return [ensure_alf_path(p) for p in path]
    raise TypeError(f'expected os.PathLike type, got {type(path)} instead')


class _ClassOrInstanceMethod:
    """A method that also works when called on the class with a path as first argument."""

    def __init__(self, func):
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, instance, owner):
        if instance is not None:
            return functools.partial(self.func, instance)

        @functools.wraps(self.func)
        def on_class(path, *args, **kwargs):
            return self.func(path if isinstance(path, owner) else owner(path), *args, **kwargs)
        return on_class


_LAB_NAME = re.compile(r'^\w+$')
_SUBJECT_NAME = re.compile(r'^[\w.-]+$')
_DATE_STR = re.compile(r'^\d{4}-\d{2}-\d{2}$')
_SEQUENCE = re.compile(r'^\d{1,3}$')
_COLLECTION_NAME = re.compile(r'^[\w./-]+$')
_REVISION_NAME = re.compile(r'^[\w.-]+$')
_NAMESPACE_NAME = re.compile(r'^[a-zA-Z0-9]+$')


class PureALFPath(pathlib.PurePath):
    """A pure path with ALF parsing: its parts as properties, and ``with_*`` methods.

    Instantiating `PureALFPath` gives a `PurePosixALFPath` or a `PureWindowsALFPath`, as
    `pathlib.PurePath` does.  Properties return ``''`` for absent parts.
    """

    def __new__(cls, *args, **kwargs):
        if cls is PureALFPath:
            cls = PureWindowsALFPath if os.name == 'nt' else PurePosixALFPath
        return pathlib.PurePath.__new__(cls, *args, **kwargs)

    # ---- parsing --------------------------------------------------------------------------

    def parse_alf_path(self, as_dict: bool = True):
        """Return the 12 ALF parts of this path (None for absent parts)."""
        return full_path_parts(self, assert_valid=False, as_dict=as_dict)

    def parse_alf_name(self, as_dict: bool = True):
        """Return the 6 ALF parts of this path's name (None for absent parts)."""
        return filename_parts(self.name, assert_valid=False, as_dict=as_dict)

    @functools.cached_property
    def dataset_name_parts(self) -> tuple:
        """namespace, object, attribute, timescale, extra, extension ('' when absent)."""
        return tuple(p or '' for p in self.parse_alf_name(as_dict=False))

    @functools.cached_property
    def session_parts(self) -> tuple:
        """lab, subject, date, number ('' when absent)."""
        return tuple(p or '' for p in session_path_parts(self, assert_valid=False))

    @functools.cached_property
    def alf_parts(self) -> tuple:
        """All 12 ALF parts, from lab to extension ('' when absent)."""
        return tuple(p or '' for p in self.parse_alf_path(as_dict=False))

    @property
    def lab(self) -> str:
        """The lab name, or ''."""
        return self.session_parts[0]

    @property
    def subject(self) -> str:
        """The subject name, or ''."""
        return self.session_parts[1]

    @property
    def date(self) -> str:
        """The session date string, or ''."""
        return self.session_parts[2]

    @property
    def sequence(self) -> str:
        """The session number string as written in the path, or ''."""
        return self.session_parts[3]

    @property
    def collection(self) -> str:
        """The collection, or ''."""
        return self.alf_parts[4]

    @property
    def revision(self) -> str:
        """The revision label without pound signs, or ''."""
        return self.alf_parts[5]

    @property
    def namespace(self) -> str:
        """The namespace of the file name, or ''."""
        return self.dataset_name_parts[0]

    @property
    def object(self) -> str:
        """The ALF object of the file name, or ''."""
        return self.dataset_name_parts[1]

    @property
    def attribute(self) -> str:
        """The attribute of the file name, or ''."""
        return self.dataset_name_parts[2]

    @property
    def timescale(self) -> str:
        """The timescale of the file name, or ''."""
        return self.dataset_name_parts[3]

    @property
    def extra(self) -> str:
        """The extra parts of the file name, joined by dots, or ''."""
        return self.dataset_name_parts[4]

    @property
    def extension(self) -> str:
        """The extension of an ALF file name without the dot, or ''."""
        return self.dataset_name_parts[5]

    # ---- validation -----------------------------------------------------------------------

    def is_dataset(self) -> bool:
        """True if the name is a valid ALF dataset name."""
        return spec.is_valid(self.name)

    @_ClassOrInstanceMethod
    def is_valid_alf(self) -> bool:
        """True if the path parses as an ALF folder or dataset path."""
        try:
            return any(full_path_parts(self))
        except ALFInvalid:
            return False

    def is_session_path(self) -> bool:
        """True if the path ends with a session folder."""
        return spec.is_session_path(self)

    # ---- session --------------------------------------------------------------------------

    def session_path(self):
        """The session folder (including any root), or None."""
        return get_session_path(self)

    def session_path_short(self, include_lab: bool = False) -> str | None:
        """``subject/date/number`` (``lab/subject/date/number`` with lab), or None."""
        parts = self.session_parts if include_lab else self.session_parts[1:]
        if not any(parts):
            return None
        return '/'.join(p for p in parts if p)

    def without_lab(self):
        """The path with its ``lab/Subjects/`` folders removed."""
        string = self.as_posix()
        match = _LAB_PREFIX.search(string)
        if not match:
            return self
        return self.__class__(string[:match.start()] + string[match.end():])

    def relative_to_lab(self):
        """The part of the path after ``lab/Subjects/``.

        Raises
        ------
        ValueError
            The path has no lab folder.
        """
        match = _LAB_PREFIX.search(self.as_posix())
        if not match:
            raise ValueError(f'{self} does not contain a lab/Subjects folder')
        return self.__class__(self.as_posix()[match.end():])

    def relative_to_session(self):
        """The part of the path after the session folder.

        Raises
        ------
        ValueError
            The path holds no session.
        """
        session_path = self.session_path()
        if not session_path:
            raise ValueError(f'{self} does not contain a session path')
        return self.relative_to(session_path)

    # ---- with_* on the session parts --------------------------------------------------------

    @staticmethod
    def _session_match(string: str):
        return spec._session_search(spec.regex(SESSION_SPEC), string)

    def _replace_session_part(self, part: str, value: str):
        string = self.as_posix()
        match = self._session_match(string)
        if not match:
            raise ALFInvalid(str(self))
        return self.__class__(string[:match.start(part)] + value + string[match.end(part):])

    def with_lab(self, lab: str, strict: bool = False):
        """Return the path with the lab folder replaced, or inserted before the subject.

        Raises
        ------
        ValueError
            `lab` is not a valid lab name.
        ALFInvalid
            The path holds no session, or (with `strict`) no lab.
        """
        if not isinstance(lab, str) or not _LAB_NAME.match(lab):
            raise ValueError(f'Invalid lab name: {lab!r}')
        if not self.subject or (strict and not self.lab):
            raise ALFInvalid(str(self))
        string = self.as_posix()
        match = self._session_match(string)
        start = match.start('lab') if match.group('lab') is not None else match.start('subject')
        return self.__class__(string[:start] + f'{lab}/Subjects/' +
                              string[match.start('subject'):])

    def with_subject(self, subject: str):
        """Return the path with the subject replaced."""
        if not isinstance(subject, str) or not _SUBJECT_NAME.match(subject):
            raise ValueError(f'Invalid subject name: {subject!r}')
        if not self.subject:
            raise ALFInvalid(str(self))
        return self._replace_session_part('subject', subject)

    def with_date(self, date):
        """Return the path with the session date replaced (str, date or datetime)."""
        if date is not None and not isinstance(date, str):
            date = str(date)[:10]
        if not isinstance(date, str) or not _DATE_STR.match(date):
            raise ValueError(f'Invalid date: {date!r}')
        if not self.date:
            raise ALFInvalid(str(self))
        return self._replace_session_part('date', date)

    def with_sequence(self, number):
        """Return the path with the session number replaced, zero-padded to three digits."""
        if isinstance(number, str):
            number = int(number.strip())
        if isinstance(number, bool) or not _SEQUENCE.match(str(number)):
            raise ValueError(f'Invalid sequence number: {number!r}')
        if not self.sequence:
            raise ALFInvalid(str(self))
        return self._replace_session_part('number', str(number).zfill(3))

    @_ClassOrInstanceMethod
    def with_padded_sequence(self):
        """Return the path with its session number zero-padded to three digits."""
        return padded_sequence(self)

    # ---- with_* on the folders ------------------------------------------------------------

    def _folders_below_session(self):
        """(session path, collection, revision, file name or None) of this path."""
        session_path = self.session_path()
        if session_path is None:
            raise ValueError(f'{self} does not contain a session path')
        relative = self.relative_to(session_path)
        name = None
        if self.is_dataset():
            name = relative.name
            relative = relative.parent
        folder = relative.as_posix().strip('.').strip('/')
        match = _COLLECTION_REVISION.match(folder + '/' if folder else '')
        if not match:
            raise ALFInvalid(str(self))
        return session_path, match.group('collection'), match.group('revision'), name

    def with_collection(self, collection: str):
        """Return the path with its collection replaced (a revision folder is kept).

        Raises
        ------
        ValueError
            `collection` is not a valid collection, or the path holds no session.
        ALFInvalid
            The folders below the session are not a collection and revision.
        """
        collection = pathlib.PurePath(collection).as_posix().strip('/')
        if not _COLLECTION_NAME.match(collection) or '#' in collection:
            raise ValueError(f'Invalid collection name: {collection!r}')
        session_path, _, revision, name = self._folders_below_session()
        parts = [collection, f'#{revision}#' if revision else None, name]
        return session_path.joinpath(*filter(None, parts))

    def with_revision(self, revision: str):
        """Return the path with its revision folder replaced or added.

        Raises
        ------
        ALFInvalid
            `revision` is not a valid label, or the path holds no session.
        """
        if not isinstance(revision, str) or not _REVISION_NAME.match(revision):
            raise ALFInvalid(f'Invalid revision: {revision!r}')
        if self.is_dataset():
            return self.without_revision().parent / f'#{revision}#' / self.name
        return self.without_revision() / f'#{revision}#'

    def without_revision(self):
        """Return the path without its revision folder.

        Raises
        ------
        ALFInvalid
            The path holds no session (datasets) or is not a valid ALF folder.
        """
        if self.is_dataset():
            return without_revision(self)
        if not self.is_valid_alf():
            raise ALFInvalid(str(self))
        if self.name.startswith('#') and self.name.endswith('#'):
            return self.parent
        return self

    # ---- with_* on the file name ----------------------------------------------------------

    def _name_match(self) -> re.Match:
        if not self.is_dataset():
            raise ALFInvalid(str(self))
        return spec.regex(FILE_SPEC).match(self.name)

    def _with_checked_name(self, name: str):
        if not spec.is_valid(name):
            raise ValueError(f'Invalid ALF file name: {name}')
        return self.with_name(name)

    def with_object(self, obj: str):
        """Return the path with the object of its file name replaced."""
        match = self._name_match()
        if not obj or not re.fullmatch(r'\w+', obj):
            raise ValueError(f'Invalid object name: {obj!r}')
        name = self.name
        return self._with_checked_name(name[:match.start('object')] + obj +
                                       name[match.end('object'):])

    def with_namespace(self, ns: str):
        """Return the path with the namespace replaced, added, or removed when ''."""
        match = self._name_match()
        if ns and not _NAMESPACE_NAME.match(ns):
            raise ValueError(f'Invalid namespace: {ns!r}')
        prefix = f'_{ns}_' if ns else ''
        return self._with_checked_name(prefix + self.name[match.start('object'):])

    def with_attribute(self, attr: str):
        """Return the path with the attribute replaced (the timescale is kept)."""
        match = self._name_match()
        if not attr or not re.fullmatch(r'\w+', attr):
            raise ValueError(f'Invalid attribute: {attr!r}')
        name = self.name
        return self._with_checked_name(name[:match.start('attribute')] + attr +
                                       name[match.end('attribute'):])

    def with_timescale(self, timescale: str):
        """Return the path with the timescale replaced, added, or removed when ''."""
        match = self._name_match()
        if timescale and not re.fullmatch(r'\w+', timescale):
            raise ValueError(f'Invalid timescale: {timescale!r}')
        name = self.name
        end = match.end('timescale') if match.group('timescale') else match.end('attribute')
        new = f'_{timescale}' if timescale else ''
        return self._with_checked_name(name[:match.end('attribute')] + new + name[end:])

    def with_extra(self, extra, append: bool = False):
        """Return the path with the extra parts replaced (or appended to with `append`)."""
        match = self._name_match()
        if not isinstance(extra, str):
            extra = '.'.join(extra or [])
        if append and match.group('extra'):
            extra = '.'.join(filter(None, [match.group('extra'), extra]))
        name = self.name
        stem_end = match.end('timescale') if match.group('timescale') else match.end('attribute')
        ext = match.group('extension')
        return self._with_checked_name(
            name[:stem_end] + (f'.{extra}' if extra else '') + f'.{ext}')

    def with_extension(self, ext: str):
        """Return the path with the extension replaced."""
        self._name_match()
        if not ext:
            raise ValueError(f'Invalid extension: {ext!r}')
        return self.with_suffix('.' + ext.lstrip('.'))

    def with_uuid(self, uuid):
        """Return the dataset path with a UUID inserted before the extension."""
        if not self.is_dataset():
            raise ALFInvalid(str(self))
        return add_uuid_string(self, uuid)

    def without_uuid(self):
        """Return the dataset path with any UUID before the extension removed."""
        return remove_uuid_string(self) if self.is_dataset() else self


class PurePosixALFPath(pathlib.PurePosixPath, PureALFPath):
    """A pure POSIX path with ALF parsing."""



class PureWindowsALFPath(pathlib.PureWindowsPath, PureALFPath):
    """A pure Windows path with ALF parsing."""



class ALFPath(pathlib.Path, PureALFPath):
    """A concrete path with ALF parsing and listing of sessions and datasets.

    Instantiating `ALFPath` gives a `PosixALFPath` or a `WindowsALFPath`.
    """

    def __new__(cls, *args, **kwargs):
        if cls is ALFPath:
            cls = WindowsALFPath if os.name == 'nt' else PosixALFPath
        return pathlib.Path.__new__(cls, *args, **kwargs)

    def is_dataset(self) -> bool:
        """True if the name is a valid ALF dataset name and the path is not a folder."""
        return spec.is_valid(self.name) and not self.is_dir()

    @_ClassOrInstanceMethod
    def is_valid_alf(self) -> bool:
        """True if the path parses as ALF, and as a dataset exactly when it is a file."""
        try:
            parts = full_path_parts(self, as_dict=True)
        except ALFInvalid:
            return False
        if self.is_file():
            return parts['object'] is not None
        if self.is_dir():
            return parts['object'] is None
        return True

    def is_session_path(self) -> bool:
        """True if the path ends with a session folder and is not a file."""
        return spec.is_session_path(self) and not self.is_file()

    def iter_datasets(self, recursive: bool = False) -> Iterator[ALFPath]:
        """Yield the valid ALF dataset files in this folder (and below with `recursive`).

        Paths are absolute when this path is, and sorted.
        """
        found = []
        if recursive:
            for root, _dirs, files in os.walk(self):
                found.extend(os.path.join(root, f) for f in files if spec.is_valid(f))
        else:
            try:
                with os.scandir(self) as entries:
                    found = [e.path for e in entries if spec.is_valid(e.name) and not e.is_dir()]
            except (FileNotFoundError, NotADirectoryError):
                found = []
        yield from sorted(self.__class__(p) for p in found)

    def iter_sessions(self, pattern: str = '*') -> Iterator[ALFPath]:
        """Yield this folder if it is a session, then every session folder below it, sorted."""
        if self.is_session_path():
            yield self
        for path in sorted(self.rglob(pattern)):
            if path.is_dir() and spec.is_session_path(path):
                yield path


class PosixALFPath(pathlib.PosixPath, ALFPath):
    """A concrete POSIX path with ALF parsing."""



class WindowsALFPath(pathlib.WindowsPath, ALFPath):
    """A concrete Windows path with ALF parsing."""

