"""The locked partial file of one download (``.<name>.part`` beside the destination).

The partial file is hidden (leading dot) because ``name.ext.part`` would otherwise be a valid
ALF dataset name and could be picked up by a folder scan.  `remove_if_idle` is how anyone else
(``one cache prune``) removes a partial file: under its lock, so never while a download writes
or resumes it.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import time
from pathlib import Path

from one._download.paths import hidden

try:  # POSIX advisory locks; Windows uses filelock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_logger = logging.getLogger(__name__)

_PART_SUFFIX = '.part'
_LOCK_SUFFIX = '.lock'
STALE_AFTER = 6 * 3600.0
"""Seconds without a write after which a partial file that cannot be locked (a private-name
file, or a file system without locks) is taken as abandoned."""
_NO_LOCK_ERRNOS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                             getattr(errno, 'ENOTSUP', errno.EOPNOTSUPP)})


class Part:
    """The partial file of one download, held exclusively by this process.

    On POSIX the partial file itself is locked (``flock`` on the open descriptor), and every
    change to it goes through that descriptor, so the lock always covers the file at that
    name: whoever renames or removes it does so while holding the lock, and whoever obtains the
    lock checks that the name still points to the file it locked.  ``exclusive`` is False where
    no lock is available (some network file systems): the file then has a private name and is
    never resumed, and the atomic rename alone keeps the destination correct.  On Windows a
    `filelock` lock file guards the partial file.
    """

    def __init__(self, dest: Path):
        self.path = hidden(dest, _PART_SUFFIX)
        self.fd: int | None = None
        self.exclusive = True
        self.committed = False
        self._filelock = None
        if fcntl is None:  # pragma: no cover - Windows
            import filelock

            self._filelock = filelock.FileLock(str(hidden(dest, _LOCK_SUFFIX)))
            self._filelock.acquire()
            return
        self.fd = self._lock(self.path)
        if self.fd is None:
            self.exclusive = False
            self.path = hidden(dest, f'.{secrets.token_hex(4)}{_PART_SUFFIX}')

    @staticmethod
    def _lock(path: Path) -> int | None:
        """Open and lock `path`, waiting for its holder; None where flock is unavailable."""
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                try:
                    now = os.stat(path)
                except FileNotFoundError:
                    now = None
            except OSError as ex:
                os.close(fd)
                if ex.errno not in _NO_LOCK_ERRNOS:
                    raise
                _logger.debug('No file lock for %s (%s): using a private file', path, ex)
                with contextlib.suppress(OSError):  # only if empty: it could hold data
                    if os.stat(path).st_size == 0:
                        os.unlink(path)
                return None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                return fd
            os.close(fd)  # renamed or removed by its holder before we got it: start again

    def size(self) -> int:
        """Bytes in the partial file."""
        if self.fd is not None:
            return os.fstat(self.fd).st_size
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def reset(self) -> None:
        """Empty the partial file (keeping the lock)."""
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
        else:
            _unlink(self.path)

    def open(self, offset: int):
        """A binary file object writing from `offset` (the rest is cut off)."""
        if self.fd is None:
            return open(self.path, 'ab' if offset else 'wb')
        os.ftruncate(self.fd, offset)
        os.lseek(self.fd, offset, os.SEEK_SET)
        return open(self.fd, 'wb', closefd=False)

    def write(self, data) -> None:
        """Make `data` the whole content of the partial file, in one write."""
        if self.fd is None:
            with open(self.path, 'wb') as f:
                f.write(data)
            return
        done = 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], done)
        os.ftruncate(self.fd, len(data))

    def commit(self, dest: Path) -> None:
        """Move the complete file over `dest` (still locked, so nobody else can touch it)."""
        os.replace(self.path, dest)
        self.committed = True  # from now on the name may belong to another process

    def close(self, keep: bool) -> None:
        """Release the file; an empty file, or any when not `keep`, is removed first."""
        try:
            if not self.committed and (not keep or not self.exclusive or self.size() == 0):
                _unlink(self.path)  # still ours: we hold the lock
        except OSError:
            pass
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if self._filelock is not None:  # pragma: no cover - Windows
                self._filelock.release()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --------------------------------------------------------------------------------------------
# Removing partial files left by downloads (cache housekeeping)
# --------------------------------------------------------------------------------------------
def is_partial_name(name: str) -> bool:
    """True for the name of a download's partial file (``.<name>.part``)."""
    return name.startswith('.') and name.endswith(_PART_SUFFIX) and len(name) > 6


def _is_private_name(name: str) -> bool:
    """``.<name>.<8 hex digits>.part``: the private partial file of a download without locks."""
    head, _, tail = name[:-len(_PART_SUFFIX)].rpartition('.')
    return len(head) > 1 and len(tail) == 8 and all(c in '0123456789abcdef' for c in tail)


def is_idle(path, stale_after: float = STALE_AFTER) -> bool:
    """True if no download is writing the partial file `path` now (see `remove_if_idle`)."""
    return _if_idle(Path(path), stale_after, lambda p: True)


def remove_if_idle(path, stale_after: float = STALE_AFTER) -> bool:
    """Remove the partial file `path` unless a download is writing it.

    The file's lock is taken without waiting and held while the file is unlinked, and the name
    must still be the locked file, so a download that resumes it at that moment either finds
    it gone (and starts again) or keeps it.  A partial file that cannot be locked (a private
    name, or a file system without locks) is removed only when it has not been written for
    `stale_after` seconds.

    Returns
    -------
    bool
        True if the file was removed.
    """
    return _if_idle(Path(path), stale_after, _unlink_if_there)


def _unlink_if_there(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _if_stale(path: Path, stale_after: float, action) -> bool:
    try:
        stat = os.lstat(path)
    except OSError:
        return False
    return time.time() - stat.st_mtime >= stale_after and action(path)


def _if_idle(path: Path, stale_after: float, action) -> bool:
    """Run ``action(path)`` holding the partial file's lock if no download holds it."""
    if fcntl is None:  # pragma: no cover - Windows: the filelock file beside it
        import filelock

        lock = filelock.FileLock(str(path.with_name(path.name[:-len(_PART_SUFFIX)] +
                                                    _LOCK_SUFFIX)))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        try:
            return action(path)
        finally:
            lock.release()
    if _is_private_name(path.name):
        return _if_stale(path, stale_after, action)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    except OSError:
        return False  # gone, or a link (not a download's file)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a download holds it
        except OSError as ex:
            if ex.errno in _NO_LOCK_ERRNOS:
                return _if_stale(path, stale_after, action)
            return False
        held = os.fstat(fd)
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            return False
        if (now.st_ino, now.st_dev) != (held.st_ino, held.st_dev):
            return False  # replaced since it was opened: leave the new one alone
        return action(path)
    finally:
        os.close(fd)  # releases the lock, after the unlink
