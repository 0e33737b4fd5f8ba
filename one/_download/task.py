"""What to download (`DownloadTask`) and what a transport hands back (`Body`)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from one._download.paths import quote_url


def _clean_size(size) -> int | None:
    if size is None:
        return None
    try:
        if isinstance(size, float) and math.isnan(size):
            return None
        return int(size)
    except (TypeError, ValueError):  # pd.NA and friends
        return None


def _clean_md5(digest) -> str | None:
    if not isinstance(digest, str) or not digest.strip():
        return None  # None, NaN, pd.NA, '' (Q4: an empty hash is unknown)
    return digest.strip().lower()


@dataclass(eq=False)
class DownloadTask:
    """One file to download.

    Parameters
    ----------
    url : str
        ``http(s)://...`` or ``s3://bucket/key``.
    destination : str, os.PathLike
        The local file to create (its folder is created as needed).
    size : int, optional
        Expected size in bytes (the size of the byte range when `byte_range` is given).  NaN
        and None mean unknown.
    md5 : str, optional
        Expected md5 hex digest; '' and None mean unknown.
    auth : tuple of (str, str) or requests.auth.AuthBase, optional
        HTTP authentication (a ``(username, password)`` tuple means basic auth).
    headers : mapping, optional
        Extra HTTP request headers (e.g. an Alyx token).
    clobber : bool
        Download even when the destination exists and matches.  The existing file is only
        replaced by a verified download.
    s3 : boto3 client or S3 service resource, optional
        For ``s3://`` URLs; default: a client with boto3's default credentials.
    byte_range : tuple of (int, int), optional
        ``(first_byte, n_bytes)``: download only this part of the remote file.
    """

    url: str
    destination: Path
    size: int | None = None
    md5: str | None = None
    auth: Any = None
    headers: Mapping[str, str] | None = None
    clobber: bool = False
    s3: Any = None
    byte_range: tuple[int, int] | None = None

    def __post_init__(self):
        if self.scheme in ('http', 'https'):
            self.url = quote_url(self.url)  # '#' of revision folders is not a fragment
        self.destination = Path(self.destination)
        self.size = _clean_size(self.size)
        self.md5 = _clean_md5(self.md5)
        if self.byte_range is not None:
            first, n = (int(x) for x in self.byte_range)
            if first < 0 or n < 1:
                raise ValueError(f'Invalid byte range {self.byte_range}')
            self.byte_range = (first, n)

    @property
    def scheme(self) -> str:
        """The URL scheme, lower case (``http``, ``https`` or ``s3``)."""
        return self.url.partition('://')[0].lower()


def byte_window(task: DownloadTask, offset: int) -> tuple[int, int | None, str | None]:
    """First and last byte wanted (last None: to the end) and the ``Range`` value to ask for
    when resuming at `offset` (None when the whole file is wanted from its start)."""
    first, last = 0, None
    if task.byte_range is not None:
        first = task.byte_range[0]
        last = first + task.byte_range[1] - 1
    if not offset and task.byte_range is None:
        return first, last, None
    return first, last, f'bytes={first + offset}-{"" if last is None else last}'


@dataclass
class Body:
    """One answer being read: where it starts, how long the whole file is, its data.

    The data come either from `readinto` (fills a buffer, returns the byte count, 0 at the
    end; `finish` is then called) or, when the transport can't do that, from `chunks`.
    """

    start: int
    total: int | None
    validator: str | None
    close: Callable[[], None]
    chunks: Iterator | None = None
    readinto: Callable[[memoryview], int] | None = None
    finish: Callable[[], None] | None = None
