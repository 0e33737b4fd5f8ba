"""An append-only log of JSON lines that several processes write at once.

Each entry is one line holding a JSON array.  An append is a ``write`` to a file opened with
``O_APPEND``, which POSIX and Windows make atomic for a regular local file (a large batch the
system writes in parts excepted), so processes appending together neither lose nor interleave
lines.  A line cut short by a crash is skipped when read, and the next append starts on a line
of its own.  The log is compacted by `JsonLinesLog.rewrite` (atomically, under a lock file
beside it).  A process appending without the lock between the compaction's read and its
``os.replace`` loses that line: the logs built on this (the md5 verification record, the load
record) are caches of facts that are found again, so a lost line costs one more hash or an
older "last used" time, never wrong data.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from one._lib.files import write_bytes_atomic
from one._lib.locks import file_lock

__all__ = ['JsonLinesLog']


class JsonLinesLog:
    """The JSON-lines file at `path`.

    Parameters
    ----------
    path : str or os.PathLike
        The log file (created on the first append).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.lines_read = 0
        """How many lines (complete or not) the last `read` went through."""

    def read(self) -> Iterator[list]:
        """The entries, oldest first (lines that are not a JSON array are skipped)."""
        self.lines_read = 0
        try:
            with open(self.path, encoding='utf-8') as f:
                for line in f:
                    self.lines_read += 1
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
                    if isinstance(entry, list):
                        yield entry
        except FileNotFoundError:
            return

    def append(self, entries: Iterable[list]) -> bool:
        """Append entries in one write; False if the folder cannot be written (read-only)."""
        data = ''.join(json.dumps(e) + '\n' for e in entries).encode()
        if not data:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size:  # (lseek and read: Windows has no os.pread; appends go to the end)
                    os.lseek(fd, size - 1, os.SEEK_SET)
                    if os.read(fd, 1) != b'\n':  # a line cut short by a crash: end it
                        data = b'\n' + data
                view = memoryview(data)
                while view:  # a large batch may be written in several parts
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError:
            return False
        return True

    def size(self) -> int:
        """The size of the file in bytes (0 when there is none)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def rewrite(self, change) -> list | None:
        """Replace the log by ``change(entries)``, atomically and under the log's lock.

        Parameters
        ----------
        change : callable
            Given the entries read under the lock (a list), returns those to keep.

        Returns
        -------
        list or None
            The entries written (None if the log could not be locked or written).
        """
        with contextlib.suppress(OSError), file_lock(
                self.path.with_name(self.path.name + '.lock'), timeout=30):
            entries = list(change(list(self.read())))
            body = ''.join(json.dumps(e) + '\n' for e in entries).encode()
            write_bytes_atomic(self.path, body, fsync=False)
            return entries
        return None
