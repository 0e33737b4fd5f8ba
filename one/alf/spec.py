"""The ALF naming grammar: spec strings, the regular expressions built from them, and QC levels.

A full ALF path reads::

    (lab/Subjects/)subject/date/number/(collection/)(#revision#/)_namespace_object.attribute_timescale.extra.extension

The spec strings and default part patterns below are public: users build their own patterns
from them, so they are kept character for character as in ONE.
"""
from __future__ import annotations

import functools
import re
import textwrap
import uuid as uuid_module
from enum import IntEnum
from pathlib import PurePath

__all__ = [
    'SPEC_DESCRIPTION', 'SESSION_SPEC', 'COLLECTION_SPEC', 'FILE_SPEC', 'REL_PATH_SPEC',
    'FULL_SPEC', 'QC', 'path_pattern', 'describe', 'regex', 'is_valid', 'is_session_path',
    'is_uuid_string', 'is_uuid', 'to_alf', 'readableALF',
]

SPEC_DESCRIPTION = {
    'lab': 'Optional. The laboratory that recorded the data; a single word (letters, digits, '
           'underscores).',
    'Subjects': 'Optional. The literal folder name "Subjects", present only when a lab folder '
                'precedes the subject.',
    'subject': 'The nickname of the animal. Letters, digits, underscores, dots and hyphens are '
               'allowed.',
    'date': 'The day the session was recorded, written yyyy-mm-dd.',
    'number': 'The session number within that day for that subject: one to three digits, by '
              'convention zero-padded to three (001, 002, ...).',
    'collection': 'Optional. One or more folders inside the session that group datasets, e.g. '
                  'by device or by probe ("alf/probe00", "raw_video_data").',
    'revision': 'Optional. A folder named between pound signs, e.g. "#2024-01-31#", always the '
                'last folder before the file. It holds a newer version of datasets of the same '
                'collection. Labels sort lexicographically, so ISO dates work well.',
    'namespace': 'Optional. A prefix between underscores, e.g. "_ibl_" or "_phy_", marking data '
                 'specific to a project, a piece of hardware or a program rather than a '
                 'shared standard.',
    'object': 'What the file describes, e.g. "trials", "spikes", "wheelMoves". All files of '
              'one object have the same number of rows, so together they form a table whose '
              'columns are the attributes.\nAn attribute that is the name of another object '
              'holds integer indices (from 0) into the rows of that object: '
              '"spikes.clusters.npy" points into the rows of the "clusters" object.',
    'attribute': 'Which column of the object the file holds, e.g. "times", "amplitudes", '
                 '"intervals". Written in dromedary case; "_times" and "_intervals" may follow '
                 'a name after an underscore ("stimOn_times").\n"times" holds event times in '
                 'seconds; "intervals" has two columns, start and end; "timestamps" holds '
                 'either one time per sample or a few (sample, time) pairs to interpolate '
                 'between.',
    'timescale': 'Optional. The clock that times are expressed in when it is not the universal '
                 'one, after an underscore: "spikes.times_ephysClock.npy".',
    'extra': 'Optional. Any number of further dot-separated parts before the extension, e.g. a '
             'dataset UUID or a part number. Files that differ only in their extra parts are '
             'pieces of one dataset, taken in lexicographic order.',
    'extension': 'The file format: .npy (numpy arrays, the first dimension being the rows), '
                 '.tsv/.csv/.pqt (tables), .json, .bin (flat binary, described by a metadata '
                 'file), videos and others.',
}

SESSION_SPEC = '({lab}/Subjects/)?{subject}/{date}/{number}'
COLLECTION_SPEC = r'({collection}/)?(#{revision}#/)?'
FILE_SPEC = r'_?{namespace}?_?{object}\.{attribute}(?:_{timescale})?(?:\.{extra})*\.{extension}$'
REL_PATH_SPEC = COLLECTION_SPEC + FILE_SPEC
FULL_SPEC = SESSION_SPEC + '/' + REL_PATH_SPEC

_DEFAULT = (
    ('lab', r'\w+'),
    ('subject', r'[\w.-]+'),
    ('date', r'\d{4}-\d{2}-\d{2}'),
    ('number', r'\d{1,3}'),
    ('collection', r'[\w./-]+'),
    ('revision', r'[\w.-]+'),
    ('namespace', '(?<=_)[a-zA-Z0-9]+'),
    ('object', r'\w+'),
    ('attribute', r'(?:_[a-z]+_)?[a-zA-Z0-9]+(?:_times(?=[_.])|_intervals(?=[_.]))?'),
    ('timescale', r'\w+'),
    ('extra', r'[.\w-]+'),
    ('extension', r'\w+'),
)
_DEFAULT_PATTERNS = dict(_DEFAULT)
_PLACEHOLDER = re.compile(r'{(\w+)}')


class QC(IntEnum):
    """Data quality levels; a higher value is worse.

    ``sorted(QC)`` gives NOT_SET, PASS, WARNING, FAIL, CRITICAL, the order used by the ordered
    ``qc`` categorical of the cache tables.
    """

    CRITICAL = 50
    FAIL = 40
    WARNING = 30
    NOT_SET = 0
    PASS = 10

    @staticmethod
    def validate(v: QC | str | int) -> QC:
        """Return the QC member named or numbered by `v`.

        Parameters
        ----------
        v : QC, str, int
            A member, a member name (any case), or a member value (int or numeric string).

        Returns
        -------
        QC
            The matching member.

        Raises
        ------
        ValueError
            `v` names or numbers no member; the message lists the allowed values.
        """
        if isinstance(v, QC):
            return v
        allowed = ', '.join(f'{m.name} ({m.value})' for m in QC)
        if isinstance(v, str):
            if v.strip().lstrip('-').isdigit():
                v = int(v)
            else:
                try:
                    return QC[v.strip().upper()]
                except KeyError:
                    raise ValueError(f'{v} is not a valid QC; expected one of {allowed}') from None
        try:
            return QC(v)
        except (ValueError, TypeError):
            raise ValueError(f'{v} is not a valid QC; expected one of {allowed}') from None


def _named(pattern: str, name: str) -> str:
    """Wrap `pattern` in a named group."""
    return f'(?P<{name}>{pattern})'


@functools.lru_cache(maxsize=512)
def _compiled(spec: str, overrides: tuple) -> re.Pattern:
    patterns = {**_DEFAULT_PATTERNS, **dict(overrides)}

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        return _named(patterns[name], name) if name in patterns else match.group(0)

    return re.compile(_PLACEHOLDER.sub(substitute, spec))


def regex(spec: str = FULL_SPEC, **kwargs) -> re.Pattern:
    """Compile an ALF spec string into a regular expression with one named group per part.

    Parameters
    ----------
    spec : str
        A spec string with ``{part}`` placeholders, e.g. `FULL_SPEC` or ``'^{lab}$'``.
    **kwargs
        Patterns replacing the default pattern of a part; a value of None keeps the default.

    Returns
    -------
    re.Pattern
        The compiled pattern (compiled once per distinct spec and overrides).

    Raises
    ------
    KeyError
        A keyword is not the name of an ALF part.

    Examples
    --------
    >>> regex(COLLECTION_SPEC, collection=r'probe\\d{2}').pattern
    '((?P<collection>probe\\\\d{2})/)?(#(?P<revision>[\\\\w.-]+)#/)?'
    """
    for name in kwargs:
        if name not in _DEFAULT_PATTERNS:
            raise KeyError(f'Unknown field "{name}"')
    overrides = tuple((k, v) for k, v in kwargs.items() if v is not None)
    return _compiled(spec, overrides)


def path_pattern() -> str:
    """Return the full ALF path pattern in a human-readable form (documentation only)."""
    return ''.join(c for c in FULL_SPEC if c not in '{}?*\\$')


def describe(part: str | None = None, width: int = 99) -> None:
    """Print a description of the ALF path pattern, or of one of its parts.

    Parameters
    ----------
    part : str, optional
        One of the keys of `SPEC_DESCRIPTION`; all parts are described when None (or empty).
    width : int
        The maximum line width of the descriptions.

    Raises
    ------
    ValueError
        `part` is not an ALF part.
    """
    full = path_pattern()
    print(full)
    if part:
        if part not in SPEC_DESCRIPTION:
            names = '", "'.join(SPEC_DESCRIPTION)
            raise ValueError(f'Unknown ALF part "{part}", should be one of "{names}"')
        start = full.index(part)
        # carets under the part, the line padded to the pattern's width (as ONE-api prints it)
        print((' ' * start + '^' * len(part)).ljust(len(full)))
        parts = [part]
    else:
        parts = list(SPEC_DESCRIPTION)
    for name in parts:
        print('\n' + name.upper())
        for line in SPEC_DESCRIPTION[name].splitlines() or ['']:
            print('\n'.join(textwrap.wrap(line, width, replace_whitespace=False)))


def is_valid(filename: str) -> bool:
    """Return True if `filename` is a valid ALF dataset file name.

    Examples
    --------
    >>> is_valid('spikes.times.npy')
    True
    >>> is_valid('spike_train.npy')
    False
    """
    return regex(FILE_SPEC).match(filename) is not None


_SESSION_END = None
_DATE_NUMBER = re.compile(r'/\d{4}-\d{2}-\d{2}/\d')


def _session_search(pattern: re.Pattern, string: str) -> re.Match | None:
    """``pattern.search(string)`` for a pattern that starts with the session spec, made fast.

    A plain search retries the pattern at every character, which is quadratic in the length of
    long folder names (``/home/me/ONE/openalyx.internationalbrainlab.org/...``).  Every match
    holds ``/date/number``, and its start lies at most three folders (``lab/Subjects/subject``)
    before that, so the search can begin three folders before the first ``/date/digit``: the
    leftmost match, hence the result, is the same.  (The session spec has no look-behind or
    anchor that could see the skipped characters.)
    """
    first = _DATE_NUMBER.search(string)
    if first is None:
        return None
    start = first.start()
    for _ in range(3):
        start = string.rfind('/', 0, start)
        if start < 0:
            break
    return pattern.search(string, start + 1)


def is_session_path(path_object) -> bool:
    """Return True if the path ends with ``(lab/Subjects/)subject/date/number``.

    Purely syntactic: the path need not exist and the date is not checked against a calendar.
    """
    global _SESSION_END
    if _SESSION_END is None:
        _SESSION_END = re.compile(regex(SESSION_SPEC).pattern + '$')
    if isinstance(path_object, PurePath):
        path_object = path_object.as_posix()
    path = str(path_object).strip('/')
    return _session_search(_SESSION_END, path) is not None


def is_uuid(uuid, versions: tuple = (4, 3)) -> bool:
    """Return True if `uuid` is a UUID (object, string, bytes or int) of one of `versions`."""
    if not isinstance(uuid, uuid_module.UUID):
        try:
            if isinstance(uuid, str):
                uuid = uuid_module.UUID(uuid)
            elif isinstance(uuid, bytes):
                uuid = uuid_module.UUID(bytes=uuid)
            elif isinstance(uuid, int) and not isinstance(uuid, bool):
                uuid = uuid_module.UUID(int=uuid)
            else:
                return False
        except (ValueError, TypeError):
            return False
    return uuid.version in versions


def is_uuid_string(string) -> bool:
    """Return True if `string` is a canonical (lower-case, hyphenated) UUID string, v3 to v5."""
    if not isinstance(string, str) or len(string) != 36:
        return False
    if not is_uuid(string, (3, 4, 5)):
        return False
    return str(uuid_module.UUID(string)) == string


_WORD_SPLIT = re.compile(r'[_\s]+')
_ALL_CAPS = re.compile(r'^[A-Z]+s?$')


def _dromedary(string: str | None) -> str | None:
    """Convert a string to dromedary (lower camel) case, keeping all-capital words."""
    if not string:
        return string
    words = [w for w in _WORD_SPLIT.split(string) if w]
    if not words:
        return ''
    if len(words) == 1:
        return words[0][0].lower() + words[0][1:]
    first = words[0] if _ALL_CAPS.match(words[0]) else words[0].lower()
    rest = (w if _ALL_CAPS.match(w) else w.capitalize() for w in words[1:])
    return first + ''.join(rest)


_KEPT_SUFFIX = re.compile(r'(_times|_timestamps|_intervals)$')


def to_alf(object: str, attribute: str, extension: str, namespace: str | None = None,
           timescale: str | tuple | None = None, extra: str | tuple | list | None = None) -> str:
    """Build an ALF file name from its parts.

    Parameters
    ----------
    object, attribute, extension : str
        The required parts; the object and attribute are converted to dromedary case.
    namespace : str, optional
        A namespace without underscores, e.g. 'ibl'.
    timescale : str or tuple of str, optional
        One or more timescale names, converted to dromedary case and joined with '_'.
    extra : str or sequence of str, optional
        Extra dot-separated parts, e.g. 'raw.v12' or ('raw', 'v12').

    Returns
    -------
    str
        The file name.

    Raises
    ------
    TypeError
        No extension was given.
    ValueError
        A part contains a dot, the namespace contains an underscore, or the object starts
        with an underscore.

    Examples
    --------
    >>> to_alf('wheel', 'timestamps', '.npy', 'ibl', 'bpod', ('raw', 'v12'))
    '_ibl_wheel.timestamps_bpod.raw.v12.npy'
    """
    if not extension:
        raise TypeError('An extension must be provided')
    extension = extension.lstrip('.')
    timescales = [timescale] if isinstance(timescale, str) else list(timescale or [])
    for name, value in (('object', object), ('attribute', attribute), ('namespace', namespace),
                        ('extension', extension), *(('timescale', t) for t in timescales)):
        if value and '.' in value:
            raise ValueError(f'ALF parts must not contain a period: {name} "{value}"')
    if namespace and '_' in namespace:
        raise ValueError(f'Namespace must not contain extra underscores: "{namespace}"')
    if object.startswith('_'):
        raise ValueError(f'Object must not contain a leading underscore: "{object}"; '
                         'use the namespace argument instead')
    timescale_str = '_'.join(filter(None, (_dromedary(t) for t in timescales)))
    suffix = _KEPT_SUFFIX.search(attribute)
    if suffix:
        attribute = _dromedary(attribute[:suffix.start()]) + suffix.group(0)
    else:
        attribute = _dromedary(attribute)
    if isinstance(extra, str):
        extra = extra.split('.')
    parts = [
        (f'_{namespace}_' if namespace else '') + _dromedary(object),
        attribute + (f'_{timescale_str}' if timescale_str else ''),
        *(extra or []),
        extension,
    ]
    return '.'.join(parts)


_CAMEL_SPLIT = re.compile(r'[A-Z](?=[a-rt-z0-9])|(?<=[a-z0-9])[A-Z]')


def readableALF(name: str, capitalize: bool = False) -> str:
    """Turn a dromedary-case ALF name into space-separated words.

    Examples
    --------
    >>> readableALF('someROIDataset')
    'some ROI dataset'
    >>> readableALF('fooBAR', capitalize=True)
    'Foo BAR'
    """
    starts = [0, *(m.start() for m in _CAMEL_SPLIT.finditer(name)), len(name)]
    words = [name[a:b] for a, b in zip(starts[:-1], starts[1:]) if b > a]
    words = [w if _ALL_CAPS.match(w) else w.lower() for w in words]
    out = ' '.join(words)
    if capitalize and out:
        out = out[0].upper() + out[1:]
    return out
