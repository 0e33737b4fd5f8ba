"""A record of files whose md5 was verified, so that unchanged files are not hashed again.

The record is a log of JSON lines beside the cache tables (`one._lib.jsonl_log`: appends from
several processes at once are safe, a line cut short by a crash is skipped).  Each line holds a
file's path (relative to the data folder), size, modification time and md5.  The log is
compacted when it grows well beyond the number of files it describes.
"""
from __future__ import annotations

import os
from pathlib import Path

from one._lib.files import md5
from one._lib.jsonl_log import JsonLinesLog

__all__ = ['VerifiedFiles']

RECORD_NAME = '.one_verified.jsonl'


class VerifiedFiles:
    """The md5 verification record of one data folder.

    Parameters
    ----------
    root : str or os.PathLike
        The data folder; recorded paths are relative to it.
    record_dir : str or os.PathLike, optional
        Where to keep the record (the cache tables folder); defaults to `root`.
    """

    def __init__(self, root, record_dir=None):
        self.root = Path(root)
        self.log = JsonLinesLog(Path(record_dir or root) / RECORD_NAME)
        self._entries: dict | None = None
        self._lines = 0

    @property
    def path(self) -> Path:
        """The record file."""
        return self.log.path

    def _load(self) -> dict:
        if self._entries is None:
            self._entries = {}
            for entry in self.log.read():
                if len(entry) == 4:
                    rel, size, mtime, digest = entry
                    self._entries[rel] = (size, mtime, digest)
            self._lines = self.log.lines_read
        return self._entries

    def _key(self, file: Path) -> str:
        try:
            return Path(file).relative_to(self.root).as_posix()
        except ValueError:
            return Path(file).resolve().as_posix()

    def md5(self, file, stat: os.stat_result | None = None) -> str:
        """Return the md5 of `file`, hashing it only if it changed since it was last recorded.

        Parameters
        ----------
        file : str or os.PathLike
            A file inside the data folder.
        stat : os.stat_result, optional
            The file's stat result, if the caller already has it.

        Returns
        -------
        str
            The hexadecimal md5 digest.
        """
        stat = stat or os.stat(file)
        digest = self.known(file, stat.st_size, stat.st_mtime_ns)
        if digest is None:
            digest = md5(file)
            self.add([(file, stat.st_size, stat.st_mtime_ns, digest)])
        return digest

    def known(self, file, size: int, mtime_ns: int) -> str | None:
        """The recorded md5 of `file` if it has not changed since (same size and mtime).

        Parameters
        ----------
        file : str or os.PathLike
            A file inside the data folder.
        size, mtime_ns : int
            Its current size and modification time (``st_size``, ``st_mtime_ns``).

        Returns
        -------
        str or None
            The md5, or None when the file was never recorded or has changed.
        """
        known = self._load().get(self._key(file))
        if known and known[0] == size and known[1] == mtime_ns:
            return known[2]
        return None

    def add(self, records) -> None:
        """Record many verified files at once (in a single append to the record).

        Parameters
        ----------
        records : iterable of (file, size, mtime_ns, md5)
            Files inside the data folder, with the size and modification time they had when
            their md5 was computed.
        """
        entries = self._load()
        lines = []
        for file, size, mtime_ns, digest in records:
            key = self._key(file)
            entries[key] = (int(size), int(mtime_ns), digest)
            lines.append([key, int(size), int(mtime_ns), digest])
        if lines:
            self._write(lines)

    def _write(self, entries: list) -> None:
        if not self.log.append(entries):
            return  # a read-only folder: verification still works, it is just not remembered
        self._lines += len(entries)
        if self._lines > 1000 and self._lines > 2 * len(self._entries):
            self._compact()

    def _compact(self) -> None:
        mine = self._entries

        def merged(entries):  # what other processes appended, then what this one knows
            latest = {e[0]: e[1:] for e in entries if len(e) == 4}
            latest.update({k: list(v) for k, v in mine.items()})
            return [[k, *v] for k, v in latest.items()]

        written = self.log.rewrite(merged)
        if written is not None:
            self._entries = {e[0]: tuple(e[1:]) for e in written}
            self._lines = len(written)
