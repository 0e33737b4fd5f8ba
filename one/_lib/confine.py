"""Paths built from table or server data, kept inside the folder they belong to.

A cache table or a server says where a dataset lives (a session's lab, subject, date and
number, a dataset's ``rel_path``, an S3 key, a URL path...).  Those values are data, not
trusted paths: `confine` joins them to a root folder (the cache folder) and refuses any result
that would lead outside it, so that nothing outside the cache is read or written because a table
said so.

Refused, with `UnsafePath` naming the value and why:

* an absolute value (``/etc/passwd``, ``\\\\server\\share``), a Windows drive (``C:``) in any part;
* ``..`` parts climbing above the value's own start (``a/../b`` is fine, ``../b`` is not);
* a NUL character, or an empty value where a file is expected;
* a path that leaves the root once symbolic links are resolved (a link inside the cache
  pointing out of it, or a dangling one).

This module is shared by the disk layer (local loads, `eid2path`) and the network layer
(download destinations, `one._download.paths.safe_join`); releases use it too.

Examples
--------
>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> confine(root, 'lab/Subjects/KS001/2024-01-01/001', 'alf/trials.table.pqt').relative_to(
...     root).as_posix()
'lab/Subjects/KS001/2024-01-01/001/alf/trials.table.pqt'
>>> confine(root, '../outside.npy', what='dataset 1')  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
one._lib.confine.UnsafePath: Refusing dataset 1: "../outside.npy" climbs out of ...
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePath

__all__ = ['UnsafePath', 'Confinement', 'confine', 'relative_parts']

_DRIVE = re.compile(r'^[A-Za-z]:')


class UnsafePath(ValueError):
    """A path built from table or server data would lead outside its root folder.

    Attributes
    ----------
    root : pathlib.Path or None
        The folder the path had to stay in (the cache folder).
    value : str or None
        The offending value, as given.
    """

    root = value = None

    def __init__(self, message: str, root=None, value=None):
        super().__init__(message)
        self.root = None if root is None else Path(root)
        self.value = value


def _text(value) -> str:
    if isinstance(value, PurePath):
        return value.as_posix()
    text = os.fspath(value)
    return os.fsdecode(text) if isinstance(text, bytes) else text


def relative_parts(value, root=None, what: str = '', allow_empty: bool = False) -> list[str]:
    """Check a relative path given as data and return its normalised parts (no I/O).

    Back-slashes count as separators; empty and ``.`` parts are dropped and ``a/..`` pairs
    cancel out.

    Parameters
    ----------
    value : str, os.PathLike
        A relative path, e.g. a dataset's ``rel_path`` or a session folder.
    root : str, os.PathLike, optional
        The folder the value is relative to, named in the error.
    what : str
        What the value belongs to, named in the error, e.g. ``'dataset <uuid>'``.
    allow_empty : bool
        Accept a value naming no part (e.g. the empty session folder of an aggregate).

    Returns
    -------
    list of str
        The parts, e.g. ``['alf', 'trials.table.pqt']``.

    Raises
    ------
    UnsafePath
        The value is absolute, has a drive, a NUL character or climbs above its start, or is
        empty (unless `allow_empty`).
    """
    text = value if isinstance(value, str) else _text(value)
    text = text.replace('\\', '/')
    raw = text.split('/')
    if '\x00' not in text and ':' not in text and text[:1] != '/' and '' not in raw \
            and '.' not in raw and '..' not in raw:
        return raw  # the usual case, checked without a loop
    prefix = f'Refusing {what}: ' if what else 'Refusing the path '
    where = f'the folder "{root}"' if root is not None else 'its folder'
    if '\x00' in text:
        raise UnsafePath(f'{prefix}{value!r} contains a NUL character', root, value)
    if text.startswith('/') or _DRIVE.match(text):
        raise UnsafePath(f'{prefix}"{value}" is absolute; it must be relative to {where}',
                         root, value)
    parts: list[str] = []
    for part in raw:
        if part in ('', '.'):
            continue
        if part == '..':
            if not parts:
                raise UnsafePath(f'{prefix}"{value}" climbs out of {where}', root, value)
            parts.pop()
        elif _DRIVE.match(part):
            raise UnsafePath(f'{prefix}"{value}" contains a drive ("{part[:2]}")', root, value)
        else:
            parts.append(part)
    if not parts and not allow_empty:
        raise UnsafePath(f'{prefix}"{value}" names no file in {where}', root, value)
    return parts


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Confinement:
    """Join data-given relative paths to a root folder, refusing every escape.

    Resolving symbolic links costs a system call per folder level; an instance remembers the
    folders it resolved, so use one instance for a batch of paths (e.g. the files of one load)
    and a new one later (the disk may have changed).

    Parameters
    ----------
    root : str, os.PathLike
        The folder every path must stay in.  It need not exist (nothing below it can then be a
        link).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._root = os.fspath(self.root)
        self._real_root = os.path.realpath(self.root)
        self._real_folders: dict[str, str] = {}

    def __call__(self, *relative, what: str = '', resolve: bool = True,
                 allow_empty: bool = False) -> Path:
        return Path(self.join(*relative, what=what, resolve=resolve, allow_empty=allow_empty))

    def join(self, *relative, what: str = '', resolve: bool = True,
             allow_empty: bool = False) -> str:
        """Return ``root / relative[0] / relative[1] ...``, checked to stay inside `root`.

        Parameters
        ----------
        *relative : str, os.PathLike
            Relative paths, each checked on its own (none may climb above its own start), e.g.
            a session folder and a dataset's ``rel_path``.
        what : str
            What the path belongs to, for the error, e.g. ``'dataset <uuid> of session <eid>'``.
        resolve : bool
            Also refuse a path that leaves `root` through a symbolic link.
        allow_empty : bool
            Accept a result naming no part below `root`.

        Returns
        -------
        pathlib.Path
            The joined path (not resolved: links inside `root` are kept as given); `join`
            returns it as a str.

        Raises
        ------
        UnsafePath
            A value is absolute, has a drive, a NUL or climbs out, or the path leads out of
            `root` through a symbolic link.
        """
        parts = []
        for value in relative:
            parts += relative_parts(value, self.root, what, allow_empty=True)
        if not parts and not allow_empty:
            shown = '/'.join(_text(v) for v in relative)
            prefix = f'Refusing {what}: ' if what else 'Refusing the path '
            raise UnsafePath(f'{prefix}"{shown}" names no file in the folder "{self.root}"',
                             self.root, shown)
        path = os.path.join(self._root, *parts)
        if resolve and parts:
            self._check_links(parts, relative, what)
        return path

    def _check_links(self, parts: list, relative: tuple, what: str) -> None:
        parent = '/'.join(parts[:-1])
        real_parent = self._real_folders.get(parent)
        if real_parent is None:
            real_parent = os.path.realpath(os.path.join(self._root, *parts[:-1]))
            self._real_folders[parent] = real_parent
        real = os.path.join(real_parent, parts[-1])
        if os.path.islink(real):
            real = os.path.realpath(real)
        if not _inside(real, self._real_root):
            shown = '/'.join(_text(v) for v in relative)
            prefix = f'Refusing {what}: ' if what else 'Refusing the path '
            raise UnsafePath(
                f'{prefix}"{shown}" leads to {real} through a symbolic link, outside the '
                f'folder "{self.root}"; only data inside the folder is read or written',
                self.root, shown)


def confine(root: str | os.PathLike, *relative, what: str = '', resolve: bool = True,
            allow_empty: bool = False) -> Path:
    """Return ``root / relative...``, refusing a path that would lead outside `root`.

    See `Confinement` (this is a one-off call of it) and the module's docstring for what is
    refused.

    Parameters
    ----------
    root : str, os.PathLike
        The folder the path must stay in, e.g. the cache folder.
    *relative : str, os.PathLike
        Relative paths from table or server data, each checked on its own.
    what : str
        What the path belongs to, named in the error (e.g. ``'dataset <uuid>'``).
    resolve : bool
        Also refuse a path leaving `root` through a symbolic link.
    allow_empty : bool
        Accept an empty result (`root` itself).

    Returns
    -------
    pathlib.Path
        The joined path.

    Raises
    ------
    UnsafePath
        The path would lead outside `root`.
    """
    return Confinement(root)(*relative, what=what, resolve=resolve, allow_empty=allow_empty)
