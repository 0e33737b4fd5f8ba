"""A record of when the files of a data folder were last loaded.

The record is a log of JSON lines in the data folder (``.one_access.jsonl``, see
`one._lib.jsonl_log`: several processes can record at once), each
``[<path relative to the folder>, <unix time>]``; the latest line of a path wins.  A process
writes a path at most once an hour, so a loop of loads costs one write.  The log is compacted
when it grows well beyond the number of paths it describes (checked when its size has doubled
since the last check, so appends do not re-read it), and `AccessLog.forget` drops paths (files
that were deleted).

Why a record and not only the files' access times: many file systems are mounted ``noatime``
or ``relatime`` (access times updated at most daily), and a file loaded with
``download_only=True`` is never read.  ``one cache`` takes a file's last use as the latest of
the record, the access time and the modification time (the download), so files loaded by other
programs count too.
"""
from __future__ import annotations

import time
from pathlib import Path

from one._lib.jsonl_log import JsonLinesLog

__all__ = ['RECORD_NAME', 'AccessLog']

RECORD_NAME = '.one_access.jsonl'
_REWRITE_AFTER = 3600.0  # seconds before this process records the same path again
_COMPACT_FROM = 200_000  # bytes: smaller logs are never compacted
_SLACK_LINES = 1000  # compacted when it has this many lines more than twice its paths
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
        self.log = JsonLinesLog(self.root / RECORD_NAME)
        self.path = self.log.path
        self._checked_size = _COMPACT_FROM // 2  # the log's size when last checked

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
        if not keys or not self.log.append([k, round(now, 1)] for k in keys):
            return  # nothing new, or a read-only folder: loading still works, unrecorded
        for key in keys:
            _WRITTEN[f'{self.root}/{key}'] = now
        size = self.log.size()
        if size >= 2 * self._checked_size:  # re-read only when the log has doubled
            entries = self.last_loaded()
            if self.log.lines_read > 2 * len(entries) + _SLACK_LINES:
                self._rewrite(lambda e: e)
            self._checked_size = max(self.log.size(), _COMPACT_FROM // 2)

    def last_loaded(self) -> dict[str, float]:
        """The last recorded load of each path (relative, POSIX) as a unix time."""
        entries: dict[str, float] = {}
        for entry in self.log.read():
            try:
                key, when = entry
                when = float(when)
            except (ValueError, TypeError):
                continue
            if when > entries.get(key, 0.0):
                entries[key] = when
        return entries

    def forget(self, rel_paths) -> None:
        """Drop paths from the record (their files were deleted)."""
        gone = set(rel_paths)
        if gone and self.path.exists():
            self._rewrite(lambda e: {k: v for k, v in e.items() if k not in gone})

    def _rewrite(self, change) -> None:
        """Rewrite the log as one line per path (its latest load), after `change`."""
        def latest(entries):
            merged: dict[str, float] = {}
            for entry in entries:
                if len(entry) == 2 and isinstance(entry[1], (int, float)) and \
                        entry[1] > merged.get(entry[0], 0.0):
                    merged[entry[0]] = entry[1]
            return [[k, v] for k, v in sorted(change(merged).items())]

        self.log.rewrite(latest)
