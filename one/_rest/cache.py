"""A folder of cached REST responses, each with its own expiry time.

One file per query, named by the sha1 of the query, holding the JSON array
``[response, "<expiry ISO datetime>"]`` (the format ONE-api uses, so existing caches and
fixtures keep working).  Files are written atomically (temporary file + rename): a reader in
another thread or process sees the previous response or the new one, never a partial file.  A
damaged file (written by something else) is deleted and treated as absent.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from one._lib.files import write_bytes_atomic

__all__ = ['CachedResponse', 'RestCache', 'cache_key']

_logger = logging.getLogger(__name__)


class CachedResponse(NamedTuple):
    """A response read from the cache."""

    response: Any
    """The decoded JSON response."""
    expiry: datetime | None
    """When the response stops being fresh (None if the file gave no valid date)."""

    def is_fresh(self, now: datetime) -> bool:
        """True while `now` is before the expiry time."""
        return self.expiry is not None and now < self.expiry


def cache_key(query: str) -> str:
    """Return the cache file name of a REST query: the hex sha1 of its UTF-8 bytes.

    Examples
    --------
    >>> cache_key('/docs')
    '1baff95c2d0e31059720a3716ad5b5a34b61a207'
    """
    return hashlib.sha1(query.encode('utf-8')).hexdigest()


class RestCache:
    """The REST response cache stored in one folder.

    Parameters
    ----------
    folder : str, os.PathLike
        Where the response files live (created on the first write).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        """The file holding the response with this key."""
        return self.folder / key

    def read(self, key: str) -> CachedResponse | None:
        """Return the cached response for `key`, or None if there is none (or it was damaged).

        The response is returned whether or not it has expired; see `CachedResponse.is_fresh`.
        """
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        try:
            response, expiry = json.loads(raw)
            expiry = datetime.fromisoformat(expiry) if expiry else None
        except (ValueError, TypeError):
            _logger.debug('Deleting corrupted cache file %s', path)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return CachedResponse(response, expiry)

    def write(self, key: str, response: Any, expiry: datetime) -> Path:
        """Store `response` under `key` until `expiry`, atomically.

        Parameters
        ----------
        key : str
            The cache key (see `cache_key`).
        response : JSON-serialisable
            The decoded JSON response.
        expiry : datetime.datetime
            When the response stops being fresh.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps([response, expiry.isoformat()]).encode('utf-8')
        # no fsync: a cache only needs atomicity, not durability
        return write_bytes_atomic(self.path(key), data, fsync=False)

    def delete(self, key: str) -> bool:
        """Remove one cached response; return True if it existed."""
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def clear(self) -> int:
        """Remove every file in the cache folder (including leftover temporary files).

        Returns
        -------
        int
            The number of files removed.
        """
        n = 0
        try:
            entries = list(os.scandir(self.folder))
        except (FileNotFoundError, NotADirectoryError):
            return 0
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    n += 1
        return n
