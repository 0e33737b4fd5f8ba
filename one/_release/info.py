"""The description of a data release (``cache_info.json``): its schema, and where its files are.

A release is a folder that any static host can serve: the cache tables (``sessions.pqt``,
``datasets.pqt``), the dataset files, and ``cache_info.json``, which says what the tables are
(their file, md5, size and row count) and how the dataset files are addressed.  It is a superset
of the ``cache_info.json`` Alyx puts in its ``cache.zip`` (``date_created``, ``origin``,
``tables.<name>.nrecs`` and ``size``), so both read it the same way::

    {
     "format": "one-release",
     "format_version": 1,
     "origin": "mylab",
     "date_created": "2025-03-01 14:02",
     "tag": "2025_Q1",
     "counts": {"sessions": 24, "datasets": 1210, "bytes": 3101554},
     "tables": {
      "sessions": {"file": "sessions.pqt", "md5": "...", "size": 7310, "nrecs": 24},
      "datasets": {"file": "datasets.pqt", "md5": "...", "size": 51822, "nrecs": 1210}
     },
     "files": {"layout": "path", "url": "."},
     "archive": {"file": "cache.zip", "md5": "...", "size": 57711}
    }

``files.layout`` is ``"path"`` (a dataset is at ``<url>/<session path>/<rel_path>``) or
``"uuid"`` (the dataset UUID is inserted before the extension of the file name, as on IBL's
public S3 bucket: ``alf/_ibl_trials.choice.<uuid>.npy``).  ``files.url`` is where the session
folders are: relative to the folder of ``cache_info.json`` (``"."``, ``"../../data"``) or
absolute (``https://...``, ``s3://bucket/prefix``).  Table ``file`` names are relative to the
folder of ``cache_info.json`` too.

Nothing here does I/O but `TableInfo.of_file`, which hashes a table just written.  Paths
received from a release are checked before they are used for a URL or a local file: a dataset's
as a local `One` checks it (`one._lib.confine.relative_parts`), the file names of
``cache_info.json`` more strictly (`release_path`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from one._lib.confine import UnsafePath, relative_parts
from one._lib.files import md5
from one.alf.exceptions import ALFError
from one.alf.path import uuid_in_name

__all__ = ['FORMAT', 'FORMAT_VERSION', 'INFO_NAME', 'ARCHIVE_NAME', 'LAYOUTS', 'ReleaseError',
           'NotARelease', 'ReleaseUnreachable', 'TableInfo', 'ReleaseInfo', 'parse_info',
           'build_info', 'table_entries', 'dump_info', 'release_path', 'remote_file_path']

FORMAT = 'one-release'
"""The ``format`` value of a release's ``cache_info.json``."""

FORMAT_VERSION = 1
"""The ``format_version`` written; a release with a higher one is refused."""

INFO_NAME = 'cache_info.json'
ARCHIVE_NAME = 'cache.zip'

LAYOUTS = ('path', 'uuid')
"""How dataset files are addressed: by relative path, or with the dataset UUID in the name."""

_TABLE_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
_MD5 = re.compile(r'^[0-9a-f]{32}$')
_ABSOLUTE_URL = re.compile(r'^(https?|s3)://', re.IGNORECASE)
_REQUIRED_TABLES = ('sessions', 'datasets')


class ReleaseError(ALFError):
    """A data release could not be read, or its description is invalid."""

    explanation = 'The data release could not be opened (see the message for what was wrong).'

    def __init__(self, *args, terse: bool = True):
        super().__init__(*args, terse=terse)


class NotARelease(ReleaseError):
    """The URL serves no release: no (valid) ``cache_info.json`` there."""


class ReleaseUnreachable(ReleaseError, ConnectionError):
    """The host of a release could not be reached."""


@dataclass(frozen=True)
class TableInfo:
    """One cache table of a release: its file (relative to the release) and what it holds."""

    name: str
    file: str
    md5: str | None = None
    size: int | None = None
    nrecs: int | None = None

    @classmethod
    def of_file(cls, path, nrecs: int) -> TableInfo:
        """The entry of a table file just written: named after its stem, hashed and sized.

        Parameters
        ----------
        path : str or os.PathLike
            The table file, in the folder of ``cache_info.json``.
        nrecs : int
            The number of rows it holds.

        Returns
        -------
        TableInfo
            Its entry in ``cache_info.json``.
        """
        path = Path(path)
        return cls(path.stem, path.name, md5(path), path.stat().st_size, nrecs)


@dataclass(frozen=True)
class ReleaseInfo:
    """A parsed ``cache_info.json``.

    Attributes
    ----------
    tables : dict of str to TableInfo
        At least ``sessions`` and ``datasets``.
    layout : {'path', 'uuid'}
        How the dataset files are named (see the module docstring).
    files_url : str
        Where the session folders are, relative to the release (``'.'``) or absolute.
    raw : dict
        The whole JSON object.
    """

    tables: dict
    layout: str = 'path'
    files_url: str = '.'
    origin: str = ''
    date_created: str = ''
    tag: str | None = None
    format_version: int = FORMAT_VERSION
    counts: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)


def release_path(text, what: str = 'path') -> str:
    """Check a file name of a release's ``cache_info.json`` and return it.

    What `one._lib.confine.relative_parts` refuses (absolute, drive, NUL, climbing out), and
    also any path that is not plain (an empty, ``.`` or ``..`` part, a back-slash), so that it
    names the same file on every host.

    Parameters
    ----------
    text : str
        E.g. the ``file`` of a table.
    what : str
        What the path is, for the error message.

    Returns
    -------
    str
        `text` unchanged.

    Raises
    ------
    one._lib.confine.UnsafePath
        Not a plain relative path (the message says why).

    Examples
    --------
    >>> release_path('datasets.pqt')
    'datasets.pqt'
    >>> release_path('../../etc/passwd')  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    one._lib.confine.UnsafePath: Refusing the release path: "../../etc/passwd" climbs out...
    """
    if not isinstance(text, str) or not text:
        raise UnsafePath(f'Refusing the release {what} {text!r}: not a relative path',
                         value=text)
    relative_parts(text, what=f'the release {what}')
    if '\\' in text or any(p in ('', '.', '..') for p in text.split('/')):
        raise UnsafePath(f'Refusing the release {what} "{text}": not a plain relative path '
                         '(an empty, "." or ".." part, or a back-slash)', value=text)
    return text


def remote_file_path(session_path: str, rel_path: str, dataset_id: str, layout: str) -> str:
    """Where a dataset file is below the release's files URL.

    The session path and ``rel_path`` are checked each on its own, as a local `One` checks them
    (`one._lib.confine.relative_parts`), and normalised (``alf/./a.b.npy`` is ``alf/a.b.npy``).

    Parameters
    ----------
    session_path : str
        ``lab/Subjects/subject/date/NNN`` ('' for files outside sessions).
    rel_path : str
        The dataset's path relative to the session (``collection/#revision#/name``).
    dataset_id : str
        The dataset UUID (used by the 'uuid' layout, and named in errors).
    layout : {'path', 'uuid'}
        See the module docstring.

    Returns
    -------
    str
        The relative path, e.g. ``lab/Subjects/KS001/2024-01-15/001/alf/a.b.npy`` or
        ``lab/.../alf/a.b.<uuid>.npy``.

    Raises
    ------
    one._lib.confine.UnsafePath
        A value is absolute, has a drive or a NUL, or climbs out of its folder; the message
        names the dataset and the value.
    """
    what = f'dataset {dataset_id}'
    parts = relative_parts(session_path, what=f'{what} (session folder)', allow_empty=True)
    parts += relative_parts(rel_path, what=f'{what} (rel_path)')
    path = '/'.join(parts)
    return uuid_in_name(path, str(dataset_id)) if layout == 'uuid' else path


def _error(where: str, problem: str) -> NotARelease:
    return NotARelease(f'{where} is not a valid release description: {problem}')


def _optional_int(value, key: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _error(where, f'"{key}" must be a non-negative integer, not {value!r}')
    return value


def _table(name: str, entry, where: str) -> TableInfo:
    if not _TABLE_NAME.match(name):
        raise _error(where, f'invalid table name {name!r}')
    if not isinstance(entry, dict):
        raise _error(where, f'the entry of table "{name}" is not an object')
    file = entry.get('file', f'{name}.pqt')
    try:
        release_path(file, f'file of table "{name}"')
    except UnsafePath as ex:
        raise _error(where, str(ex)) from None
    md5 = entry.get('md5')
    if md5 is not None and not (isinstance(md5, str) and _MD5.match(md5.lower())):
        raise _error(where, f'the md5 of table "{name}" is not an md5 hex digest: {md5!r}')
    return TableInfo(name, file, md5.lower() if md5 else None,
                     _optional_int(entry.get('size'), f'tables.{name}.size', where),
                     _optional_int(entry.get('nrecs'), f'tables.{name}.nrecs', where))


def _files_url(url, where: str) -> str:
    if not isinstance(url, str) or not url:
        raise _error(where, f'"files.url" must be a URL or a relative path, not {url!r}')
    if _ABSOLUTE_URL.match(url):
        return url.rstrip('/')
    if '://' in url or url.startswith(('/', '\\')) or '\\' in url or '\x00' in url:
        raise _error(where, f'"files.url" must be http(s)://, s3:// or relative: {url!r}')
    return url.rstrip('/') or '.'


def parse_info(data: bytes | str | dict, where: str = INFO_NAME) -> ReleaseInfo:
    """Read and check a release description.

    A ``cache_info.json`` without ``format`` (as Alyx writes in ``cache.zip``) is read as a
    release in the 'path' layout with its files beside it, when it lists the tables.

    Parameters
    ----------
    data : bytes, str or dict
        The JSON text, or the parsed object.
    where : str
        Where it was read from (a URL), for error messages.

    Returns
    -------
    ReleaseInfo

    Raises
    ------
    NotARelease
        Not JSON, not an object, of another format or a newer version, or with invalid
        entries (the message says which).
    """
    if isinstance(data, dict):
        raw = data
    else:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as ex:
            raise _error(where, f'not JSON ({ex})') from None
    if not isinstance(raw, dict):
        raise _error(where, 'not a JSON object')
    fmt = raw.get('format')
    if fmt is not None and fmt != FORMAT:
        raise _error(where, f'format "{fmt}" is not "{FORMAT}"')
    version = raw.get('format_version', FORMAT_VERSION) if fmt else FORMAT_VERSION
    if isinstance(version, bool) or not isinstance(version, int):
        raise _error(where, f'"format_version" must be an integer, not {version!r}')
    if version > FORMAT_VERSION:
        raise NotARelease(f'{where} describes a release of format version {version}; this '
                          f'version of ONE reads up to {FORMAT_VERSION}: please upgrade')
    tables_raw = raw.get('tables')
    if not isinstance(tables_raw, dict):
        raise _error(where, 'no "tables" object')
    tables = {name: _table(name, entry, where) for name, entry in tables_raw.items()}
    missing = [t for t in _REQUIRED_TABLES if t not in tables]
    if missing:
        raise _error(where, f'no {" or ".join(missing)} table')
    files = raw.get('files') or {}
    if not isinstance(files, dict):
        raise _error(where, '"files" is not an object')
    layout = files.get('layout', 'path')
    if layout not in LAYOUTS:
        raise _error(where, f'unknown files layout {layout!r} (expected one of {LAYOUTS})')
    tag = raw.get('tag')
    counts = raw.get('counts') if isinstance(raw.get('counts'), dict) else {}
    return ReleaseInfo(tables=tables, layout=layout,
                       files_url=_files_url(files.get('url', '.'), where),
                       origin=str(raw.get('origin') or ''),
                       date_created=str(raw.get('date_created') or ''),
                       tag=None if tag is None else str(tag), format_version=version,
                       counts=counts, raw=raw)


def table_entries(tables: list[TableInfo]) -> dict:
    """The ``tables`` object of a ``cache_info.json``: each table's file, md5, size and rows."""
    return {t.name: {'file': t.file, 'md5': t.md5, 'size': t.size, 'nrecs': t.nrecs}
            for t in tables}


def build_info(tables: list[TableInfo], origin: str, date_created: str, tag: str | None = None,
               layout: str = 'path', files_url: str = '.', counts: dict | None = None,
               archive: dict | None = None) -> dict:
    """The ``cache_info.json`` object of a release (see the module docstring).

    Raises
    ------
    ValueError
        An unknown layout, or a files URL `parse_info` would refuse.
    """
    if layout not in LAYOUTS:
        raise ValueError(f'Unknown layout {layout!r}: expected one of {LAYOUTS}')
    info = {
        'format': FORMAT,
        'format_version': FORMAT_VERSION,
        'origin': origin,
        'date_created': date_created,
        'tag': tag,
        'counts': dict(counts or {}),
        'tables': table_entries(tables),
        'files': {'layout': layout, 'url': files_url},
    }
    if archive:
        info['archive'] = dict(archive)
    try:
        parse_info(info, 'the new cache_info.json')
    except NotARelease as ex:
        raise ValueError(ex.message) from None
    return info


def dump_info(info: dict) -> bytes:
    """The JSON bytes of a release description (stable key order, one key per line)."""
    return (json.dumps(info, indent=1) + '\n').encode()
