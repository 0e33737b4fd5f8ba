"""A record of when the files of a data folder were last loaded.

The record is an append-only log of JSON lines in the data folder (``.one_access.jsonl``),
each ``[<path relative to the folder>, <unix time>]``; the latest line of a path wins.  Appends
of one short write to a file opened with O_APPEND are atomic, so several processes can record at
once; a line cut short by a crash is skipped.  A process writes a path at most once an hour, so
a loop of loads costs one write.  The log is compacted (rewritten atomically, under a lock) when
it grows well beyond the number of paths it describes, and `AccessLog.forget` drops paths (files
that were deleted).

Why a record and not only the files' access times: many file systems are mounted ``noatime``
or ``relatime`` (access times updated at most daily), and a file loaded with
``download_only=True`` is never read.  `last_used` takes the latest of the record, the access
time and the modification time (the download), so files loaded by other programs count too.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from one._lib.files import write_bytes_atomic
from one._lib.locks import file_lock

__all__ = ['RECORD_NAME', 'AccessLog']

RECORD_NAME = '.one_access.jsonl'
_REWRITE_AFTER = 3600.0  # seconds before this process records the same path again
_WRITTEN: dict[str, float] = {}  # what this process recorded (absolute path), and when


class AccessLog:
    """The load record of one data folder.

    Parameters
    ----------
    root : str or os.PathLike
        The data folder; recorded paths are relative to it.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.path = self.root / RECORD_NAME

    def _key(self, file) -> str | None:
        try:
            return Path(file).relative_to(self.root).as_posix()
        except ValueError:
            return None  # not in the folder

    def touch(self, files, when: float | None = None) -> None:
        """Record that `files` (inside the folder) were loaded now (or at `when`)."""
        now = time.time() if when is None else float(when)
        keys = []
        for file in files:
            key = self._key(file)
            if key is None:
                continue
            last = _WRITTEN.get(f'{self.root}/{key}', -_REWRITE_AFTER)
            if when is None and now - last < _REWRITE_AFTER:
                continue
            keys.append(key)
        if not keys:
            return
        data = ''.join(json.dumps([k, round(now, 1)]) + '\n' for k in keys).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            return  # a read-only folder: loading still works, it is just not recorded
        for key in keys:
            _WRITTEN[f'{self.root}/{key}'] = now
        with contextlib.suppress(OSError):
            if self.path.stat().st_size > 200_000:
                entries, lines = self._read()
                if lines > 2 * len(entries) + 1000:
                    self._rewrite(lambda e: e)

    def _read(self) -> tuple[dict[str, float], int]:
        entries, lines = {}, 0
        try:
            with open(self.path, encoding='utf-8') as f:
                for line in f:
                    lines += 1
                    try:
                        key, when = json.loads(line)
                        when = float(when)
                    except (ValueError, TypeError):
                        continue  # a line cut short by a crash
                    if when > entries.get(key, 0.0):
                        entries[key] = when
        except FileNotFoundError:
            pass
        return entries, lines

    def last_loaded(self) -> dict[str, float]:
        """The last recorded load of each path (relative, POSIX) as a unix time."""
        return self._read()[0]

    def last_used(self, rel_path: str, stat: os.stat_result, recorded: dict | None = None):
        """The latest of the recorded load, the access time and the modification time."""
        recorded = self.last_loaded() if recorded is None else recorded
        return max(recorded.get(rel_path, 0.0), stat.st_atime, stat.st_mtime)

    def forget(self, rel_paths) -> None:
        """Drop paths from the record (their files were deleted)."""
        gone = set(rel_paths)
        if gone and self.path.exists():
            self._rewrite(lambda e: {k: v for k, v in e.items() if k not in gone})

    def _rewrite(self, change) -> None:
        with contextlib.suppress(OSError), file_lock(self.path.with_name(RECORD_NAME + '.lock'),
                                                     timeout=30):
            entries = change(self._read()[0])
            body = ''.join(json.dumps([k, v]) + '\n' for k, v in sorted(entries.items()))
            write_bytes_atomic(self.path, body.encode(), fsync=False)
