"""An inter-process lock on a file, released by the operating system when its owner dies.

Built on `filelock.FileLock`, which holds an OS lock (``flock`` on POSIX, ``LockFileEx`` on
Windows) on an open lock file.  The kernel drops the lock when the owning process exits for any
reason, including SIGKILL, so a lock whose owner died never blocks anyone and there is nothing to
"break": a live owner's lock is never taken away.  The lock file itself stays in place after
release (unlinking it would let two processes lock different inodes of the same name).  On file
systems without OS locks, filelock falls back to a lock file that records its owner's pid and
is broken only when that process is gone.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import filelock

__all__ = ['LockTimeout', 'file_lock']


class LockTimeout(TimeoutError):
    """The lock could not be acquired in time (another live process holds it)."""


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, timeout: float | None = 60.0,
              poll_interval: float = 0.02) -> Iterator[Path]:
    """Hold an exclusive inter-process lock on `path` for the duration of the block.

    The lock also excludes other threads of the same process (each call opens its own lock).

    Parameters
    ----------
    path : str, os.PathLike
        The lock file (created if missing; its folder must exist).
    timeout : float, optional
        Seconds to wait for a live owner to release the lock; None waits for ever.
    poll_interval : float
        Seconds between attempts while waiting.

    Yields
    ------
    pathlib.Path
        The lock file path.

    Raises
    ------
    LockTimeout
        Another live process held the lock for longer than `timeout`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> lock_path = pathlib.Path(tempfile.mkdtemp()) / '.ONE.lock'
    >>> with file_lock(lock_path):
    ...     pass  # only one process at a time runs this
    """
    path = Path(path)
    lock = filelock.FileLock(path, timeout=-1 if timeout is None else timeout,
                             thread_local=False)
    try:
        lock.acquire(poll_interval=poll_interval)
    except filelock.Timeout:
        raise LockTimeout(f'Could not lock "{path}" within {timeout} s: another process '
                          'is still writing the files it protects') from None
    try:
        yield path
    finally:
        lock.release()
