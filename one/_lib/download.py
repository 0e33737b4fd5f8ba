"""Parallel, resumable and verified file downloads over HTTP(S) and S3.

How one file is downloaded
--------------------------
1. Unless ``clobber`` is set, a destination that already exists and matches the expected size
   and md5 is kept: nothing is downloaded.
2. The data are streamed into ``.<name>.part`` beside the destination in 1 MiB blocks, and
   hashed (md5) as they arrive.  That partial file is locked (``flock``) while it is written,
   so that processes downloading the same file never write it at the same time: the second one
   waits, then finds the verified file and skips it.  A partial file left by an interrupted
   transfer, or by a process that died (the kernel drops its lock), is resumed with an HTTP
   ``Range`` request; its bytes are hashed first.
3. The size and md5 are checked; only then is the file moved over the destination with
   `os.replace`.  A bad file is thrown away and downloaded once more from scratch; if it is bad
   again, `ChecksumMismatch` or `SizeMismatch` is raised and the destination is left untouched.

An answer shorter than 1 MiB with a known length (most ALF datasets) is read whole into memory
instead, hashed there, and written to the (locked) partial file in one write only once its size
and md5 are right; then renamed as above.  A bad or cut small answer never reaches the disk.

Plain HTTP(S) requests go straight through urllib3, one connection pool per origin and thread,
kept between files and batches (requests' per-request machinery cost more than the rest of a
small file's download).  Requests that need more go through a `requests.Session`: a proxy from
the environment, a client certificate, credentials in the URL, or an authentication object
other than a ``(username, password)`` tuple.  Either way the environment's proxies, CA bundle
(``REQUESTS_CA_BUNDLE``) and ``.netrc`` credentials are honoured as requests would, redirects
are followed (credentials dropped when leaving the host) and compressed answers decoded.

Connection errors, timeouts and HTTP 408, 429 and 5xx answers are retried with exponential
backoff (honouring ``Retry-After``); a large transfer cut in the middle resumes where it
stopped (a small one starts again).
Errors that retrying cannot fix (404, 403, a file that stays bad...) raise at once.  Every error
is a `DownloadError` naming the file and its URL.

The partial file is hidden (leading dot) because ``name.ext.part`` would otherwise be a valid
ALF dataset name and could be picked up by a folder scan.  It is removed when a download fails
for a reason that resuming cannot fix; after a connection failure or an interruption it is
kept, to be resumed.

`download_files` is the engine; `http_download_file`, `http_download_file_list`,
`file_record_to_url` and `dataset_record_to_url` are ONE's helpers built on it (re-exported by
`one.webclient`).  `safe_join` and `url_to_local_path` turn paths received from a server into
local paths that cannot leave the cache folder.
"""
from __future__ import annotations

import base64
import contextlib
import email.utils
import errno
import hashlib
import http.client
import logging
import math
import os
import queue
import random
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests
import urllib3

from one._lib.files import show_progress

try:  # POSIX advisory locks; Windows uses filelock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    'N_THREADS', 'CHUNK_SIZE', 'RETRIES', 'TIMEOUT', 'BACKOFF', 'DownloadTask', 'download_files',
    'safe_join', 'url_to_local_path', 'http_download_file', 'http_download_file_list',
    'file_record_to_url', 'dataset_record_to_url', 'DownloadError', 'ChecksumMismatch',
    'SizeMismatch', 'HTTPStatusError', 'DownloadConnectionError', 'UnsafePath',
]

_logger = logging.getLogger(__name__)

N_THREADS = int(os.environ.get('ONE_HTTP_DL_THREADS', 4))
"""Default number of parallel downloads (environment variable ``ONE_HTTP_DL_THREADS``)."""

CHUNK_SIZE = 1 << 20
"""Bytes read, written and hashed at a time (1 MiB)."""

PIPE_THRESHOLD = 16 * CHUNK_SIZE
"""Transfers at least this long are hashed in a helper thread, overlapping the download."""

RETRIES = 4
"""Default number of retries after a failed attempt (connection error, 408, 429, 5xx)."""

TIMEOUT = (10.0, 60.0)
"""Default (connect, read) timeouts in seconds of HTTP requests."""

BACKOFF = 0.5
"""Default first retry delay in seconds; it doubles at each retry (with jitter)."""

MAX_BACKOFF = 30.0
"""Longest delay between two attempts, in seconds, unless the server asks for more."""

MAX_RETRY_AFTER = 300.0
"""Longest ``Retry-After`` delay honoured, in seconds."""

_RETRY_STATUS = frozenset({408, 429})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 30  # as requests
_HEADERS = {**requests.utils.default_headers(), 'Accept-Encoding': 'identity'}
_CPUS = os.cpu_count() or 1
_PART_SUFFIX = '.part'
_NO_LOCK_ERRNOS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                             getattr(errno, 'ENOTSUP', errno.EOPNOTSUPP)})
_LOCK_SUFFIX = '.lock'


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class DownloadError(OSError):
    """A file could not be downloaded.  The message names the file and its URL.

    Attributes
    ----------
    url : str or None
        The remote file.
    path : pathlib.Path or None
        The local destination.
    """

    def __init__(self, message: str, url: str | None = None, path=None):
        super().__init__(message)
        self.url = url
        self.path = None if path is None else Path(path)

    def __reduce__(self):  # keep the attributes across processes
        return _rebuild_error, (type(self), self.args, self.__dict__)


def _rebuild_error(cls: type, args: tuple, state: dict) -> DownloadError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ChecksumMismatch(DownloadError):
    """The downloaded file's md5 differs from the expected one (also after a re-download)."""

    def __init__(self, message: str, url: str | None = None, path=None,
                 expected: str | None = None, actual: str | None = None):
        super().__init__(message, url, path)
        self.expected, self.actual = expected, actual


class SizeMismatch(DownloadError):
    """The remote or downloaded file's size differs from the expected one."""

    def __init__(self, message: str, url: str | None = None, path=None,
                 expected: int | None = None, actual: int | None = None):
        super().__init__(message, url, path)
        self.expected, self.actual = expected, actual


class HTTPStatusError(DownloadError, requests.HTTPError):
    """The server answered with an error status (after the retries, for 408, 429 and 5xx).

    Also a `requests.HTTPError`, so code written for ONE's HTTP errors still catches it.

    Attributes
    ----------
    status_code : int
        The HTTP status of the last answer.
    """

    def __init__(self, message: str, url: str | None = None, path=None,
                 status_code: int | None = None, response=None):
        super().__init__(message, url, path)
        self.status_code = status_code
        self.response = response


class DownloadConnectionError(DownloadError, requests.ConnectionError, ConnectionError):
    """The server could not be reached, or kept failing mid-transfer, after all retries.

    Also a `requests.ConnectionError` and a built-in `ConnectionError`.
    """


class UnsafePath(DownloadError, ValueError):
    """A path received from a server would land outside the destination folder."""


class _Transient(Exception):
    """A failure worth retrying: network error, timeout, 408, 429, 5xx, cut transfer."""

    def __init__(self, error: BaseException | str, retry_after: float | None = None,
                 status: int | None = None, restart: bool = False):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.status = status
        self.restart = restart  # the partial file is unusable: start again from byte 0


class _RangeUnsatisfiable(Exception):
    """The server answered 416 to a resume request."""

    def __init__(self, total: int | None):
        super().__init__(total)
        self.total = total


class _Cancelled(BaseException):
    """Raised in worker threads after the caller was interrupted."""


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------
_DRIVE = re.compile(r'^[A-Za-z]:')


def safe_join(root: str | os.PathLike, rel_path: str | os.PathLike) -> Path:
    """Join a relative path received from elsewhere to `root`, refusing any escape.

    The path is normalised first: back-slashes count as separators, empty and ``.`` parts are
    dropped and ``a/..`` pairs cancel out.  Absolute paths, drive or UNC paths, paths that climb
    above `root` and empty paths are refused.  Symbolic links are not resolved (a link inside
    the cache is the user's choice).

    Parameters
    ----------
    root : str, os.PathLike
        The folder the result must stay inside.
    rel_path : str, os.PathLike
        A relative path, e.g. a dataset's ``rel_path`` or an S3 key suffix.

    Returns
    -------
    pathlib.Path
        ``root / <normalised rel_path>``.

    Raises
    ------
    UnsafePath
        The path is absolute, has a drive, climbs out of `root` or is empty.

    Examples
    --------
    >>> safe_join('/data', 'lab/Subjects/./subj/x.npy').as_posix()
    '/data/lab/Subjects/subj/x.npy'
    >>> safe_join("/data", "../etc/passwd")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    one._lib.download.UnsafePath: Refusing the path "../etc/passwd": it climbs out of "/data"
    """
    if isinstance(rel_path, PurePath):
        text = rel_path.as_posix()
    else:
        text = os.fspath(rel_path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    text = text.replace('\\', '/')
    if '\x00' in text:
        raise UnsafePath(f'Refusing the path {rel_path!r}: it contains a NUL character',
                         path=root)
    if text.startswith('/') or _DRIVE.match(text):
        raise UnsafePath(f'Refusing the path "{rel_path}": it is absolute, not relative to '
                         f'"{root}"', path=root)
    parts: list[str] = []
    for part in text.split('/'):
        if part in ('', '.'):
            continue
        if part == '..':
            if not parts:
                raise UnsafePath(f'Refusing the path "{rel_path}": it climbs out of "{root}"',
                                 path=root)
            parts.pop()
        elif _DRIVE.match(part):
            raise UnsafePath(f'Refusing the path "{rel_path}": it contains a drive', path=root)
        else:
            parts.append(part)
    if not parts:
        raise UnsafePath(f'Refusing the path "{rel_path}": it names no file under "{root}"',
                         path=root)
    return Path(root).joinpath(*parts)


def url_to_local_path(url: str, cache_dir: str | os.PathLike, keep_uuid: bool = False) -> Path:
    """Return where a data file URL is stored in a ONE cache folder.

    The URL's (percent-decoded) path is reduced to its ALF part (from the lab folder on, see
    `one.alf.path.get_alf_path`), or, for aggregate datasets, to the part from ``aggregates/``
    on.  The dataset UUID that file servers put before the extension is removed unless
    `keep_uuid` is True.

    Parameters
    ----------
    url : str
        A data file URL, e.g.
        ``https://host/lab/Subjects/subj/2020-01-01/001/alf/obj.attr.<uuid>.npy``.
    cache_dir : str, os.PathLike
        The cache folder.
    keep_uuid : bool
        Keep the UUID in the file name.

    Returns
    -------
    pathlib.Path
        E.g. ``cache_dir/lab/Subjects/subj/2020-01-01/001/alf/obj.attr.npy``.

    Raises
    ------
    UnsafePath
        The URL path would land outside `cache_dir` (``..`` parts).

    Examples
    --------
    >>> url = ('http://h/lab/Subjects/s/2024-03-14/001/alf/_ibl_trials.choice.'
    ...        '901e18bb-99bf-48f4-a5a4-5d9f695a8581.npy')
    >>> url_to_local_path(url, '/cache').as_posix()
    '/cache/lab/Subjects/s/2024-03-14/001/alf/_ibl_trials.choice.npy'
    """
    from one.alf.path import get_alf_path, remove_uuid_string

    path = unquote(urlsplit(_quote_url(url)).path)
    # Normalise first, so that '..' parts can't smuggle the path out via get_alf_path
    rel = safe_join('/', path.lstrip('/').replace('\\', '/')).as_posix().lstrip('/')
    if 'aggregates/' in rel:
        rel = rel[rel.index('aggregates/'):]
    else:
        rel = get_alf_path(rel) or rel.rsplit('/', 1)[-1]
    if not keep_uuid:
        rel = remove_uuid_string(PurePath(rel)).as_posix()
    return safe_join(cache_dir, rel)


def _quote_url(url: str) -> str:
    """Percent-quote a URL's path (``#`` in revision folders becomes ``%23``), idempotently."""
    scheme, sep, rest = url.partition('://')
    if not sep:
        scheme, rest = '', url
    netloc, slash, path = rest.partition('/')
    path, qmark, query = path.partition('?')
    path = quote(unquote(path), safe="/~!$&'()*+,;=:@")
    return f'{scheme}{sep}{netloc}{slash}{path}{qmark}{query}'


def _byte_window(task, offset: int) -> tuple[int, int | None, str | None]:
    """First and last byte wanted (last None: to the end) and the ``Range`` value to ask for
    when resuming at `offset` (None when the whole file is wanted from its start)."""
    first, last = 0, None
    if task.byte_range is not None:
        first = task.byte_range[0]
        last = first + task.byte_range[1] - 1
    if not offset and task.byte_range is None:
        return first, last, None
    return first, last, f'bytes={first + offset}-{"" if last is None else last}'


def _hidden(dest: Path, suffix: str) -> Path:
    return dest.with_name(f'.{dest.name}{suffix}')


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------
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
            self.url = _quote_url(self.url)  # '#' of revision folders is not a fragment
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


@dataclass
class _Body:
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


# --------------------------------------------------------------------------------------------
# Locks
# --------------------------------------------------------------------------------------------
class _Part:
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
        self.path = _hidden(dest, _PART_SUFFIX)
        self.fd: int | None = None
        self.exclusive = True
        self.committed = False
        self._filelock = None
        if fcntl is None:  # pragma: no cover - Windows
            import filelock

            self._filelock = filelock.FileLock(str(_hidden(dest, _LOCK_SUFFIX)))
            self._filelock.acquire()
            return
        self.fd = self._lock(self.path)
        if self.fd is None:
            self.exclusive = False
            self.path = _hidden(dest, f'.{secrets.token_hex(4)}{_PART_SUFFIX}')

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


# --------------------------------------------------------------------------------------------
# HTTP sessions and progress
# --------------------------------------------------------------------------------------------
class _Connections:
    """The HTTP connections of one download thread, kept between files and between batches.

    Plain HTTP(S) requests go straight through urllib3: one connection pool per origin (and
    certificate setting), of one connection since the thread makes one request at a time.  A
    `requests.Session` (created when first needed) serves the requests that need what only
    requests does: proxies, client certificates, authentication objects, credentials in the URL.
    """

    def __init__(self):
        self._pools: dict[tuple[str, Any], urllib3.HTTPConnectionPool] = {}
        self._session: requests.Session | None = None

    def pool(self, origin: str, verify) -> urllib3.HTTPConnectionPool:
        """The urllib3 pool of `origin` (``scheme://host[:port]``)."""
        key = (origin, verify)
        pool = self._pools.get(key)
        if pool is None:
            kwargs: dict[str, Any] = {'maxsize': 1, 'block': False, 'retries': False}
            if origin[:6].lower() == 'https:':
                if verify is False:
                    kwargs['cert_reqs'] = 'CERT_NONE'
                else:  # True: requests' own bundle (certifi), else a file or folder
                    ca = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify in (True, None) \
                        else os.fspath(verify)
                    kwargs['cert_reqs'] = 'CERT_REQUIRED'
                    kwargs['ca_cert_dir' if os.path.isdir(ca) else 'ca_certs'] = ca
            pool = self._pools[key] = urllib3.connection_from_url(origin, **kwargs)
        return pool

    @property
    def session(self) -> requests.Session:
        """A requests session (for the requests the urllib3 pools don't serve)."""
        if self._session is None:
            session = requests.Session()
            # The environment (proxies, CA bundle, .netrc) is read once per host by the engine:
            # requests would otherwise scan os.environ on every request
            session.trust_env = False
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4,
                                                    max_retries=0)
            session.mount('http://', adapter)
            session.mount('https://', adapter)
            self._session = session
        return self._session

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._session is not None:
            self._session.close()
            self._session = None


class _ConnectionCache:
    """Idle `_Connections` kept between batches, so that connections are reused."""

    def __init__(self, maxsize: int = 16):
        self._idle: list[_Connections] = []
        self._lock = threading.Lock()
        self.maxsize = maxsize

    def get(self) -> _Connections:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Connections()

    def put(self, connections: _Connections) -> None:
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(connections)
                return
        connections.close()

    def forget(self) -> None:
        """Drop the idle connections without closing them (a forked child must not use them)."""
        self._idle = []
        self._lock = threading.Lock()


_CONNECTIONS = _ConnectionCache()
if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_CONNECTIONS.forget)


class _NoProgress:
    def add(self, n: int) -> None:
        pass

    def grow(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Progress(_NoProgress):
    """One tqdm bar (bytes) shared by all the files of a batch; updates throttled."""

    def __init__(self, total: int, desc: str):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total or None, unit='B', unit_scale=True, unit_divisor=1024,
                         desc=desc, miniters=1, mininterval=0.2)
        self._lock = threading.Lock()
        self._pending = 0
        self._last = 0.0

    def add(self, n: int) -> None:
        with self._lock:
            self._pending += n
            now = time.monotonic()
            if now - self._last >= 0.2:
                self._bar.update(self._pending)
                self._pending, self._last = 0, now

    def grow(self, n: int) -> None:
        with self._lock:
            self._bar.total = (self._bar.total or 0) + n
            self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._bar.update(self._pending)
                self._pending = 0
            self._bar.close()


class _Worker:
    """What one download thread owns: a read buffer and (lazily) its HTTP connections."""

    def __init__(self):
        self.buffer = memoryview(bytearray(CHUNK_SIZE))
        self._connections: _Connections | None = None

    @property
    def connections(self) -> _Connections:
        if self._connections is None:
            self._connections = _CONNECTIONS.get()
        return self._connections

    def close(self) -> None:
        if self._connections is not None:
            _CONNECTIONS.put(self._connections)
            self._connections = None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay in seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


_CONTENT_RANGE = re.compile(r'\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*', re.I)


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """Parse ``bytes first-last/total`` (or ``bytes */total``) into integers (None for '*')."""
    match = _CONTENT_RANGE.fullmatch(value or '')
    if not match:
        return None
    first, last, total = match.groups()
    return (None if first is None else int(first), None if last is None else int(last),
            None if total == '*' else int(total))


def _window_size(first: int, last: int | None, full: int | None) -> int | None:
    """Size of the requested window ``first..last`` (None: to the end) of a `full`-byte file."""
    if last is None:
        return None if full is None else full - first
    return last + 1 - first if full is None else min(full, last + 1) - first


class _NoHash:
    """Stands in for an md5 object when no md5 is wanted."""

    def update(self, data) -> None:
        pass

    def hexdigest(self) -> None:
        return None


class _HashPipe:
    """Feeds an md5 object from a helper thread, so that hashing overlaps the transfer.

    The reader takes a free buffer (`take`), fills it, writes it to the file and hands it over
    (`submit`); the helper thread hashes it (hashlib releases the GIL) and frees it.  Data that
    arrive in other buffers go through `update`, which copies them.  Use as a context manager:
    leaving it stops the thread.
    """

    def __init__(self, hasher, n_buffers: int = 4):
        self._hasher = hasher
        self._buffers = [memoryview(bytearray(CHUNK_SIZE)) for _ in range(n_buffers)]
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(n_buffers):
            self._free.put(i)
        self._thread = threading.Thread(target=self._run, daemon=True, name='one-md5')
        self._thread.start()

    def _run(self) -> None:
        update, buffers = self._hasher.update, self._buffers
        while (item := self._todo.get()) is not None:
            i, n = item
            update(buffers[i][:n])
            self._free.put(i)

    def take(self) -> tuple[int, memoryview]:
        """A free buffer (waits while all are being hashed)."""
        i = self._free.get()
        return i, self._buffers[i]

    def submit(self, i: int, n: int) -> None:
        """Hash the first `n` bytes of buffer `i`, then free it."""
        self._todo.put((i, n))

    def release(self, i: int) -> None:
        """Give back an unused buffer."""
        self._free.put(i)

    def update(self, chunk) -> None:
        view = memoryview(chunk)
        for start in range(0, len(view), CHUNK_SIZE):
            piece = view[start:start + CHUNK_SIZE]
            i, buffer = self.take()
            buffer[:len(piece)] = piece
            self.submit(i, len(piece))

    def __enter__(self) -> _HashPipe:
        return self

    def __exit__(self, *exc) -> None:
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.__exit__()
        return self._hasher.hexdigest()


def _hash_file(path: Path, nbytes: int, buffer: memoryview, wanted: bool = True):
    """An md5 object fed with the first `nbytes` of a file (a `_NoHash` if not `wanted`)."""
    if not wanted:
        return _NoHash()
    h = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb', buffering=0) as f:
        left = nbytes
        while left > 0:
            n = f.readinto(buffer[:min(left, len(buffer))])
            if not n:
                break
            h.update(buffer[:n])
            left -= n
    return h


class _Answer:
    """An HTTP answer, from urllib3 or from requests, as `_Engine._http_body` reads it.

    ``fp`` is the underlying `http.client.HTTPResponse` (read with ``readinto``), ``release``
    gives the connection back once the body is read, ``chunks()`` yields the decoded body
    instead (compressed answers) and ``response()`` is a `requests.Response` for error reports.
    """

    def __init__(self, status: int, reason: str | None, headers: Mapping, fp,
                 close: Callable[[], None], release: Callable[[], None],
                 chunks: Callable[[], Iterator], response: Callable[[], Any]):
        self.status, self.reason, self.headers, self.fp = status, reason, headers, fp
        self.close, self.release, self.chunks, self.response = close, release, chunks, response

    @classmethod
    def from_urllib3(cls, r: urllib3.HTTPResponse, url: str) -> _Answer:
        def close() -> None:
            r.close()
            r.release_conn()

        def chunks() -> Iterator:
            try:
                yield from r.stream(CHUNK_SIZE, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as ex:
                raise _Transient(ex) from ex

        def response() -> requests.Response:
            resp = requests.Response()
            resp.status_code, resp.reason, resp.url = r.status, r.reason, url
            resp.headers = requests.structures.CaseInsensitiveDict(r.headers)
            resp.encoding = requests.utils.get_encoding_from_headers(resp.headers)
            try:
                resp._content = r.read(1 << 16, decode_content=True)  # the start of the text
            except Exception:  # noqa: BLE001 - only a courtesy for error reports
                resp._content = b''
            return resp

        return cls(r.status, r.reason, r.headers, getattr(r, '_fp', None), close,
                   r.release_conn, chunks, response)

    @classmethod
    def from_requests(cls, r: requests.Response) -> _Answer:
        return cls(r.status_code, r.reason, r.headers, getattr(r.raw, '_fp', None), r.close,
                   r.raw.release_conn, lambda: _iter_content(r), lambda: r)


def _iter_content(r: requests.Response) -> Iterator:
    try:
        yield from r.iter_content(CHUNK_SIZE)
    except (requests.ConnectionError, requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError, OSError,
            http.client.HTTPException) as ex:
        raise _Transient(ex) from ex


def _is_pair(auth) -> bool:
    """Whether `auth` is a ``(username, password)`` tuple (basic authentication)."""
    return isinstance(auth, tuple) and len(auth) == 2


def _basic_auth(username, password) -> str:
    """The ``Authorization`` value of HTTP basic authentication (latin-1, as requests)."""
    def raw(x) -> bytes:
        return x if isinstance(x, bytes) else str(x).encode('latin1')

    return 'Basic ' + base64.b64encode(raw(username) + b':' + raw(password)).decode('ascii')


def _without_auth(headers: dict) -> dict:
    """A copy of `headers` without ``Authorization`` (whatever its case)."""
    return {k: v for k, v in headers.items() if k.lower() != 'authorization'}


_DEFAULT_PORTS = {'http': 80, 'https': 443}


def _strip_auth(old: str, new: str) -> bool:
    """Whether a redirect from `old` to `new` must drop the ``Authorization`` header: when it
    leads to another host, port or scheme, except from http to https (requests' rule)."""
    o, n = urlsplit(old), urlsplit(new)
    if o.hostname != n.hostname:
        return True
    if o.scheme == 'http' and o.port in (80, None) and n.scheme == 'https' \
            and n.port in (443, None):
        return False
    default = (_DEFAULT_PORTS.get(o.scheme), None)
    if o.scheme == n.scheme and o.port in default and n.port in default:
        return False
    return o.port != n.port or o.scheme != n.scheme


def _incomplete(size: int, total: int) -> _Transient:
    """The error of an answer of `size` bytes where `total` were announced."""
    if size > total:  # the partial file is unusable
        return _Transient(f'the answer is longer than the announced {total} bytes', restart=True)
    return _Transient(f'the transfer stopped after {size} of {total} bytes')


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _describe(ex: BaseException) -> str:
    text = str(ex)
    return f'{type(ex).__name__}: {text}' if text else type(ex).__name__


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------
class _Engine:
    """Downloads tasks one at a time (called from several worker threads)."""

    def __init__(self, retries: int, timeout, backoff: float, need_md5: bool,
                 progress: _NoProgress, cancel: threading.Event):
        self.retries = max(0, int(retries))
        self.timeout = timeout
        self.backoff = max(0.0, float(backoff))
        self.need_md5 = need_md5
        self.progress = progress
        self.cancel = cancel
        self._dirs: set[Path] = set()
        self._s3_default = None
        self._s3_lock = threading.Lock()
        self._env: dict[str, dict] = {}
        connect, read = timeout if isinstance(timeout, (tuple, list)) else (timeout, timeout)
        self._urllib3_timeout = urllib3.Timeout(connect=connect, read=read)

    def _env_settings(self, url: str) -> dict:
        """Proxies, CA bundle and .netrc credentials from the environment, once per host."""
        origin = '/'.join(url.split('/', 3)[:3])
        settings = self._env.get(origin)
        if settings is None:
            with requests.Session() as env:  # trust_env=True: what requests would use
                merged = env.merge_environment_settings(url, {}, True, None, None)
            proxies = merged.get('proxies') or {}
            settings = {'proxies': proxies, 'verify': merged.get('verify'),
                        'cert': merged.get('cert'),
                        'netrc': requests.utils.get_netrc_auth(url)}
            # Straight through urllib3 unless a proxy or client certificate is involved, or
            # credentials are in the URL
            settings['direct'] = (not settings['cert'] and '@' not in origin
                                  and requests.utils.select_proxy(url, proxies) is None)
            self._env[origin] = settings
        return settings

    # ---- one task ---------------------------------------------------------------------------
    def run(self, task: DownloadTask, worker: _Worker) -> tuple[Path, str | None]:
        """Download one task (or keep its verified file); return the path and the md5."""
        dest = task.destination
        want_md5 = self.need_md5 or task.md5 is not None
        kept, bad = self._existing(task, want_md5, worker)
        if kept is not None:
            return dest, kept or None
        parent = dest.parent
        if parent not in self._dirs:
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as ex:
                raise DownloadError(f'Could not create the folder of {dest} to download '
                                    f'{task.url}: {ex}', task.url, dest) from ex
            self._dirs.add(parent)
        try:
            part = _Part(dest)
        except OSError as ex:
            raise DownloadError(f'Could not create the partial file of {dest} (downloading '
                                f'{task.url}): {ex}', task.url, dest) from ex
        keep = False  # keep the partial file, to resume it later?
        try:
            if part.exclusive:  # another process may have downloaded it meanwhile
                kept, _ = self._existing(task, want_md5, worker, known_bad=bad)
                if kept is not None:
                    return dest, kept or None
            digest = self._fetch(task, worker, part)
            part.commit(dest)
        except (DownloadConnectionError, _Cancelled):
            keep = True
            raise
        except HTTPStatusError as ex:
            keep = ex.status_code in _RETRY_STATUS or (ex.status_code or 0) >= 500
            raise
        except DownloadError:
            raise
        except OSError as ex:
            raise DownloadError(f'Could not write {dest} (downloading {task.url}): {ex}',
                                task.url, dest) from ex
        except BaseException:  # KeyboardInterrupt...
            keep = True
            raise
        finally:
            part.close(keep)
        return dest, digest

    def _existing(self, task: DownloadTask, want_md5: bool, worker: _Worker,
                  known_bad: tuple | None = None) -> tuple[str | None, tuple | None]:
        """Check the destination file.

        Returns ('' or its md5, None) when it exists and matches the task; otherwise (None,
        the file's identity when its md5 was found wrong, so that it is not hashed twice).
        """
        if task.clobber:
            return None, None
        try:
            st = os.stat(task.destination)
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        if not stat.S_ISREG(st.st_mode) or task.size is not None and st.st_size != task.size:
            return None, None
        identity = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        if identity == known_bad:
            return None, known_bad
        digest = ''
        if want_md5:
            digest = _hash_file(task.destination, st.st_size, worker.buffer).hexdigest()
            if task.md5 is not None and digest != task.md5:
                _logger.debug('%s exists but its md5 differs: downloading it again',
                              task.destination)
                return None, identity
        if task.size is None:
            self.progress.grow(st.st_size)
        self.progress.add(st.st_size)
        return digest, None

    def _expected_window(self, task: DownloadTask) -> int | None:
        if task.byte_range is not None:
            return task.size if task.size is not None else task.byte_range[1]
        return task.size

    def _fetch(self, task: DownloadTask, worker: _Worker, part: _Part) -> str:
        """Stream the task into `part` (resuming it if possible), verify it, return the md5."""
        opener = self._open_s3 if task.scheme == 's3' else self._open_http
        expected = self._expected_window(task)
        hashing = task.md5 is not None or self.need_md5
        failures = 0           # consecutive failed attempts
        restarted = False      # a bad file was already downloaded again from scratch
        validator = None       # ETag / Last-Modified of the answer being resumed
        counted = 0            # bytes of this task shown on the progress bar
        reached = 0            # the most bytes the partial file ever had
        grown = task.size is not None
        last_error: _Transient | None = None
        while True:
            offset = self._part_offset(part, part.exclusive and (task.md5 is not None
                                                                 or validator is not None),
                                       expected)
            self.progress.add(offset - counted)
            counted = offset
            body = None
            pending = None  # a small file's verified data, still to be written
            try:
                if offset and expected is not None and offset == expected:
                    hasher = _hash_file(part.path, offset, worker.buffer, hashing)  # done
                    size = offset
                else:
                    body = opener(task, worker, offset, validator if offset else None)
                    if body.start != offset:
                        if body.start:  # resumed elsewhere than asked: start afresh
                            raise _Transient(f'the server resumed at byte {body.start} '
                                             f'instead of {offset}', restart=True)
                        self.progress.add(-counted)
                        offset = counted = 0
                    if expected is not None and body.total is not None \
                            and body.total != expected:
                        raise SizeMismatch(
                            f'{task.url} is {body.total} bytes on the server, not the expected '
                            f'{expected}: not downloaded to {task.destination}',
                            task.url, task.destination, expected, body.total)
                    if not grown and body.total is not None:
                        self.progress.grow(body.total)
                        grown = True
                    validator = body.validator
                    hasher = (_hash_file(part.path, offset, worker.buffer, hashing) if offset
                              else hashlib.md5(usedforsecurity=False) if hashing else _NoHash())
                    size = offset
                    if not offset and body.total is not None and body.readinto is not None \
                            and body.total < len(worker.buffer):
                        # A small answer: read whole into memory, written only once verified
                        data = self._read_whole(body, worker.buffer[:body.total + 1])
                        size = len(data)
                        if size != body.total:
                            raise _incomplete(size, body.total)
                        hasher.update(data)
                        self.progress.add(size)
                        counted, pending = size, data
                    else:
                        if hashing and body.total is not None and _CPUS > 1 \
                                and body.total - offset >= PIPE_THRESHOLD:
                            hasher = _HashPipe(hasher)
                        with part.open(offset) as f, \
                                (hasher if isinstance(hasher, _HashPipe)
                                 else contextlib.nullcontext()):
                            size += self._stream(body, f.write, hasher if hashing else None,
                                                 worker.buffer)
                        counted = size
                        if body.total is not None and size != body.total:
                            raise _incomplete(size, body.total)
            except _Transient as ex:
                last_error = ex
                if body is not None:
                    counted = part.size()
                # An attempt that brought at least 1 MiB of new data resets the count
                if counted >= reached + CHUNK_SIZE:
                    failures, reached = 0, counted
                else:
                    failures += 1
                if ex.restart:
                    part.reset()
                    validator = None
                if failures > self.retries:
                    raise self._final_error(task, last_error, failures) from \
                        (ex.error if isinstance(ex.error, BaseException) else None)
                delay = self._delay(failures, ex.retry_after)
                _logger.debug('Retrying %s in %.2f s (%s)', task.url, delay, ex)
                if self.cancel.wait(delay):
                    raise _Cancelled from None
                continue
            except _RangeUnsatisfiable as ex:
                # Asked for bytes past the end: the part is complete, or longer than the file
                if ex.total is not None and ex.total == offset:
                    hasher, size = _hash_file(part.path, offset, worker.buffer, hashing), offset
                else:
                    part.reset()
                    validator = None
                    failures += 1
                    if failures > self.retries:
                        raise DownloadError(f'Could not resume {task.url} into {part.path}: the '
                                            'server refused the byte range', task.url,
                                            task.destination) from None
                    continue
            finally:
                if body is not None:
                    body.close()
            digest = hasher.hexdigest()
            problem = self._check(task, expected, size, digest, restarted)
            if problem is None:
                if pending is not None:
                    part.write(pending)
                return digest
            part.reset()
            self.progress.add(-counted)
            counted = 0
            validator = None
            if restarted:
                raise problem
            _logger.warning('%s: downloading it again', problem)
            restarted = True

    def _stream(self, body: _Body, write: Callable, hasher, buffer: memoryview) -> int:
        """Write (and hash, when `hasher` is given) the data of an answer; return the size."""
        add, cancelled = self.progress.add, self.cancel.is_set
        pipe = hasher if isinstance(hasher, _HashPipe) else None
        update = None if hasher is None else hasher.update
        size = 0
        if body.readinto is None:  # the transport gives its own chunks
            for chunk in body.chunks:
                write(chunk)
                if update is not None:
                    update(chunk)
                n = len(chunk)
                size += n
                add(n)
                if cancelled():
                    raise _Cancelled
            return size
        readinto, i = body.readinto, None
        while True:  # read straight into our buffers: no copy, no allocation
            if pipe is not None:
                i, buffer = pipe.take()
            n = readinto(buffer)
            if not n:
                if pipe is not None:
                    pipe.release(i)
                break
            view = buffer if n == len(buffer) else buffer[:n]
            write(view)
            if pipe is not None:
                pipe.submit(i, n)
            elif update is not None:
                update(view)
            size += n
            add(n)
            if cancelled():
                raise _Cancelled
        if body.finish is not None:
            body.finish()
        return size

    def _read_whole(self, body: _Body, view: memoryview) -> memoryview:
        """Read an answer into `view` (one byte longer than the announced size, so that a longer
        answer is noticed); return the part of `view` filled."""
        readinto, got, end = body.readinto, 0, len(view)
        while got < end:
            n = readinto(view[got:])
            if not n:
                if body.finish is not None:
                    body.finish()
                break
            got += n
        if self.cancel.is_set():
            raise _Cancelled
        return view[:got]

    @staticmethod
    def _check(task: DownloadTask, expected: int | None, size: int, digest: str,
               restarted: bool) -> DownloadError | None:
        again = ' (also after downloading it again)' if restarted else ''
        if expected is not None and size != expected:
            return SizeMismatch(f'The download of {task.url} to {task.destination} has {size} '
                                f'bytes, not the expected {expected}{again}', task.url,
                                task.destination, expected, size)
        if task.md5 is not None and digest != task.md5:
            return ChecksumMismatch(f'The download of {task.url} to {task.destination} has md5 '
                                    f'{digest}, not the expected {task.md5}{again}', task.url,
                                    task.destination, task.md5, digest)
        return None

    @staticmethod
    def _part_offset(part: _Part, resumable: bool, expected: int | None) -> int:
        """Bytes of the partial file to resume from; an unusable one is emptied."""
        size = part.size()
        if size and resumable and (expected is None or size <= expected):
            return size
        if size:
            part.reset()
        return 0

    def _delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        base = min(MAX_BACKOFF, self.backoff * 2 ** (failures - 1))
        return base * (0.5 + random.random() / 2)

    def _final_error(self, task: DownloadTask, error: _Transient,
                     attempts: int) -> DownloadError:
        what = f'Could not download {task.url} to {task.destination} ({attempts} attempts)'
        if error.status is not None:
            return HTTPStatusError(f'{what}: {error}', task.url, task.destination,
                                   status_code=error.status)
        return DownloadConnectionError(f'{what}: {error}', task.url, task.destination)

    # ---- HTTP -------------------------------------------------------------------------------
    def _open_http(self, task: DownloadTask, worker: _Worker, offset: int,
                   validator: str | None) -> _Body:
        headers = dict(_HEADERS)
        if task.headers:
            headers.update(task.headers)
        first, last, byte_range = _byte_window(task, offset)
        if byte_range:
            headers['Range'] = byte_range
            if offset and validator:
                headers['If-Range'] = validator
        env = self._env_settings(task.url)
        auth = task.auth or env['netrc']
        if env['direct'] and (auth is None or _is_pair(auth)):
            if auth is not None:  # like requests: basic auth replaces any Authorization header
                headers = _without_auth(headers)
                headers['Authorization'] = _basic_auth(*auth)
            answer = self._send_direct(task, worker, headers)
        else:
            answer = None
        if answer is None:
            answer = self._send_requests(task, worker, headers, auth, env)
        try:
            return self._http_body(task, answer, offset, first, last)
        except BaseException:
            answer.close()
            raise

    def _send_direct(self, task: DownloadTask, worker: _Worker,
                     headers: dict) -> _Answer | None:
        """Send the request with urllib3 (following redirects); None when a redirect leads
        where only requests can go (a proxy...)."""
        url = task.url
        for _ in range(_MAX_REDIRECTS + 1):
            scheme, netloc, path, query, _fragment = urlsplit(url)
            env = self._env_settings(url)
            if not env['direct']:
                return None
            target = (path or '/') + (f'?{query}' if query else '')
            try:
                pool = worker.connections.pool(f'{scheme}://{netloc}', env['verify'])
                r = pool.urlopen('GET', target, headers=headers, retries=False, redirect=False,
                                 assert_same_host=False, timeout=self._urllib3_timeout,
                                 preload_content=False, decode_content=False)
            except (urllib3.exceptions.LocationValueError, ValueError) as ex:  # a bad URL
                raise DownloadError(f'Could not download {task.url} to {task.destination}: '
                                    f'{_describe(ex)}', task.url, task.destination) from ex
            except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as ex:
                raise _Transient(ex) from ex
            location = r.headers.get('Location') if r.status in _REDIRECT_STATUS else None
            if not location:
                return _Answer.from_urllib3(r, url)
            try:  # read the (short) body, so that the connection can be used again
                r.read()
            except Exception:  # noqa: BLE001 - a connection in an unknown state is closed
                r.close()
            r.release_conn()
            new = _quote_url(urljoin(url, location))
            if urlsplit(new).scheme.lower() not in ('http', 'https'):
                raise DownloadError(f'Could not download {task.url} to {task.destination}: '
                                    f'redirected to {new}', task.url, task.destination)
            if _strip_auth(url, new):
                headers = _without_auth(headers)
            url = new
        raise DownloadError(f'Could not download {task.url} to {task.destination}: more than '
                            f'{_MAX_REDIRECTS} redirects', task.url, task.destination)

    def _send_requests(self, task: DownloadTask, worker: _Worker, headers: dict, auth,
                       env: dict) -> _Answer:
        """Send the request with requests (proxies, client certificates, auth objects...)."""
        try:
            # Prepared here and sent with Session.send: Session.request would merge session
            # settings and the environment again for every file (a fifth of the CPU per file)
            request = requests.Request('GET', task.url, headers=headers, auth=auth).prepare()
            r = worker.connections.session.send(
                request, stream=True, timeout=self.timeout, proxies=env['proxies'],
                verify=env['verify'], cert=env['cert'], allow_redirects=True)
        except (requests.ConnectionError, requests.Timeout) as ex:
            raise _Transient(ex) from ex
        except (requests.RequestException, ValueError) as ex:  # bad URL, too many redirects
            raise DownloadError(f'Could not download {task.url} to {task.destination}: '
                                f'{_describe(ex)}', task.url, task.destination) from ex
        return _Answer.from_requests(r)

    def _http_body(self, task: DownloadTask, r: _Answer, offset: int, first: int,
                   last: int | None) -> _Body:
        status, headers = r.status, r.headers
        if status == 416 and offset:
            crange = _content_range(headers.get('Content-Range'))
            total = None if crange is None or crange[2] is None else crange[2] - first
            r.close()
            raise _RangeUnsatisfiable(total)
        if status in _RETRY_STATUS or status >= 500:
            raise _Transient(f'HTTP {status} {r.reason}', _retry_after(
                headers.get('Retry-After')), status=status)
        if status == 206:
            crange = _content_range(headers.get('Content-Range'))
            if crange is None or crange[0] is None:
                raise _Transient(f'invalid Content-Range "{headers.get("Content-Range")}"',
                                 restart=True)
            start = crange[0] - first
            total = _window_size(first, last, crange[2])
        elif 200 <= status < 300 and status != 204:
            if task.byte_range is not None:
                raise DownloadError(f'{task.url}: the server ignored the byte range and sent '
                                    f'the whole file (HTTP {status})', task.url,
                                    task.destination)
            start = 0
            length = headers.get('Content-Length')
            total = int(length) if length and length.isdigit() else None
        else:
            message = (f'HTTP {status} {r.reason}: could not download {task.url} to '
                       f'{task.destination}')
            raise HTTPStatusError(message, task.url, task.destination, status_code=status,
                                  response=r.response())
        encoding = headers.get('Content-Encoding', '').strip().lower()
        if encoding not in ('', 'identity'):
            total = None  # Content-Length counts the encoded bytes
        etag = headers.get('ETag')
        validator = etag if etag and not etag.startswith('W/') else headers.get('Last-Modified')
        body = _Body(start, total, validator, r.close)
        fp = r.fp
        if encoding in ('', 'identity') and isinstance(fp, http.client.HTTPResponse):
            # Read the body straight from http.client, bypassing urllib3's copies
            def readinto(buffer: memoryview) -> int:
                try:
                    return fp.readinto(buffer)
                except (OSError, http.client.HTTPException, ValueError) as ex:
                    raise _Transient(ex) from ex

            def finish() -> None:
                if fp.isclosed():  # all read: give the connection back to the pool
                    with contextlib.suppress(Exception):
                        r.release()

            body.readinto, body.finish = readinto, finish
        else:
            body.chunks = r.chunks()
        return body

    # ---- S3 ---------------------------------------------------------------------------------
    def _s3_client(self, task: DownloadTask):
        s3 = task.s3
        if s3 is None:
            with self._s3_lock:
                if self._s3_default is None:
                    import boto3

                    self._s3_default = boto3.client('s3')
                return self._s3_default
        client = getattr(getattr(s3, 'meta', None), 'client', None)
        return client if client is not None else s3

    def _open_s3(self, task: DownloadTask, worker: _Worker, offset: int,
                 validator: str | None) -> _Body:
        bucket, _, key = task.url.partition('://')[2].partition('/')
        kwargs = {'Bucket': bucket, 'Key': key}
        first, last, byte_range = _byte_window(task, offset)
        if byte_range:
            kwargs['Range'] = byte_range
            if offset and validator:
                kwargs['IfMatch'] = validator
        try:
            response = self._s3_client(task).get_object(**kwargs)
        except Exception as ex:
            raise self._s3_error(task, ex) from ex
        crange = _content_range(response.get('ContentRange'))
        if crange is not None and crange[0] is not None:
            start = crange[0] - first
            total = _window_size(first, last, crange[2])
        else:
            start, total = 0, response.get('ContentLength')
        stream = response['Body']
        return _Body(start, total, response.get('ETag'), stream.close,
                     chunks=self._s3_chunks(task, stream))

    def _s3_chunks(self, task: DownloadTask, stream) -> Iterator:
        try:
            yield from stream.iter_chunks(CHUNK_SIZE)
        except Exception as ex:
            raise self._s3_error(task, ex) from ex

    def _s3_error(self, task: DownloadTask, ex: Exception) -> Exception:
        """Sort a boto3/botocore error into retryable (`_Transient`) or final."""
        from botocore import exceptions as bex

        if isinstance(ex, bex.ClientError):
            error = ex.response.get('Error', {}) or {}
            code = str(error.get('Code', ''))
            status = (ex.response.get('ResponseMetadata', {}) or {}).get('HTTPStatusCode')
            if status == 416 or code == 'InvalidRange':
                size = error.get('ActualObjectSize')
                return _RangeUnsatisfiable(int(size) if str(size).isdigit() else None)
            if status == 412 or code == 'PreconditionFailed':
                return _Transient('the object changed since the partial download',
                                  restart=True)
            if status in _RETRY_STATUS or (status or 0) >= 500 or code in (
                    'SlowDown', 'RequestTimeout', 'InternalError', 'ServiceUnavailable'):
                return _Transient(ex, status=status)
            what = 'not found' if status == 404 or code in ('404', 'NoSuchKey') else \
                f'{code} (HTTP {status})'
            return HTTPStatusError(f'Could not download {task.url} to {task.destination}: '
                                   f'{what}', task.url, task.destination, status_code=status)
        # ConnectionError: refused, connect timeouts; HTTPClientError: reset, read timeouts
        transient = (bex.ConnectionError, bex.HTTPClientError, bex.IncompleteReadError,
                     getattr(bex, 'ResponseStreamingError', bex.HTTPClientError), OSError,
                     http.client.HTTPException)
        if isinstance(ex, transient):
            return _Transient(ex)
        try:
            import urllib3

            if isinstance(ex, urllib3.exceptions.HTTPError):
                return _Transient(ex)
        except ImportError:  # pragma: no cover
            pass
        return DownloadError(f'Could not download {task.url} to {task.destination}: '
                             f'{_describe(ex)}', task.url, task.destination)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------
def download_files(tasks: Iterable[DownloadTask], n_threads: int | None = None,
                   progress: bool | None = None, retries: int = RETRIES,
                   timeout: float | tuple[float, float] | None = TIMEOUT, *,
                   backoff: float = BACKOFF, return_md5: bool = False,
                   raise_on_error: bool = True, desc: str = 'Downloading') -> list:
    """Download files in parallel, verified and resumable (see the module documentation).

    Parameters
    ----------
    tasks : iterable of DownloadTask
        The files to download.
    n_threads : int, optional
        Number of parallel downloads; default `N_THREADS` (``ONE_HTTP_DL_THREADS``, 4).
    progress : bool, optional
        Show one tqdm progress bar (bytes) for the whole batch.  By default shown only when
        stderr is a terminal.
    retries : int
        Retries after a failed attempt (connection error, timeout, HTTP 408, 429, 5xx, cut
        transfer).  An attempt that moved the transfer on by at least 1 MiB resets the count.
    timeout : float or (float, float), optional
        HTTP (connect, read) timeouts in seconds; None waits for ever.  S3 downloads use the
        client's own configuration.
    backoff : float
        First retry delay in seconds, doubled at each retry (randomised by up to -50 %, at most
        `MAX_BACKOFF`).  A ``Retry-After`` header overrides it (at most `MAX_RETRY_AFTER`).
    return_md5 : bool
        Also return each file's md5 (hashing kept files when needed).
    raise_on_error : bool
        When a file fails, raise its error once all the other files are done (the first failed
        file in task order; the others are logged).  When False, failed files give None.
    desc : str
        Label of the progress bar.

    Returns
    -------
    list
        The destination paths (`pathlib.Path`), in task order; with `return_md5`, tuples
        ``(path, md5)``.

    Raises
    ------
    DownloadError
        A file could not be downloaded: `HTTPStatusError` (e.g. 404, or 5xx after the
        retries), `DownloadConnectionError`, `SizeMismatch`, `ChecksumMismatch` (after one
        re-download).  The destination of a failed file is never modified.
    ValueError
        A URL's scheme is neither http(s) nor s3, or `n_threads` is below 1.

    Examples
    --------
    >>> tasks = [DownloadTask(url, cache / rel, size=size, md5=md5)
    ...          for url, rel, size, md5 in records]                    # doctest: +SKIP
    >>> paths = download_files(tasks)                                   # doctest: +SKIP
    """
    tasks = list(tasks)
    for task in tasks:
        if not isinstance(task, DownloadTask):
            raise TypeError(f'Expected DownloadTask objects, got {type(task).__name__}')
        if task.scheme not in ('http', 'https', 's3'):
            raise ValueError(f'Cannot download "{task.url}": only http(s):// and s3:// URLs '
                             'are supported')
    if not tasks:
        return []
    n_threads = N_THREADS if n_threads is None else int(n_threads)
    if n_threads < 1:
        raise ValueError(f'n_threads must be at least 1, not {n_threads}')
    bar: _NoProgress = _NoProgress()
    if show_progress(progress):
        bar = _Progress(sum(t.size for t in tasks if t.size is not None), desc)
    cancel = threading.Event()
    engine = _Engine(retries, timeout, backoff, return_md5, bar, cancel)
    results: list = [None] * len(tasks)
    errors: list = [None] * len(tasks)
    # Largest first, so that big files start early and small ones fill the gaps
    order = iter(sorted(range(len(tasks)), key=lambda i: -(tasks[i].size or 0)))
    order_lock = threading.Lock()

    def work() -> None:
        worker = _Worker()
        try:
            while not cancel.is_set():
                with order_lock:
                    i = next(order, None)
                if i is None:
                    return
                try:
                    results[i] = engine.run(tasks[i], worker)
                except Exception as ex:  # noqa: BLE001 - reported below
                    errors[i] = ex
        except _Cancelled:
            return
        finally:
            worker.close()

    try:
        n_workers = min(n_threads, len(tasks))
        if n_workers == 1:
            work()
        else:
            threads = [threading.Thread(target=work, daemon=True, name=f'one-download-{i}')
                       for i in range(n_workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    except BaseException:
        cancel.set()  # workers stop after their current chunk; partial files are kept
        raise
    finally:
        bar.close()

    failed = [(i, ex) for i, ex in enumerate(errors) if ex is not None]
    for _, ex in failed[1 if raise_on_error else 0:]:
        _logger.error('%s', ex)
    if failed and raise_on_error:
        raise failed[0][1]
    if return_md5:
        return [(None, None) if r is None else r for r in results]
    return [None if r is None else r[0] for r in results]


# --------------------------------------------------------------------------------------------
# ONE's download helpers (re-exported by one.webclient)
# --------------------------------------------------------------------------------------------
def file_record_to_url(file_records: Sequence[Mapping]) -> list[str]:
    """Return the non-null ``data_url`` of Alyx file records.

    Parameters
    ----------
    file_records : sequence of dict
        The ``file_records`` of a dataset record.

    Returns
    -------
    list of str
        The URLs, in order.

    Examples
    --------
    >>> file_record_to_url([{'data_url': 'http://h/a.npy'}, {'data_url': None}])
    ['http://h/a.npy']
    """
    return [fr['data_url'] for fr in file_records if fr.get('data_url') is not None]


def dataset_record_to_url(dataset_record: Mapping | Sequence[Mapping]) -> list[str]:
    """Return the file URLs of one Alyx dataset record, or of a list of them.

    Parameters
    ----------
    dataset_record : dict or list of dict
        Records from the ``datasets`` endpoint (with ``file_records``).

    Returns
    -------
    list of str
        The non-null ``data_url`` values of all their file records.

    Examples
    --------
    >>> dataset_record_to_url({'file_records': [{'data_url': 'http://h/a.npy'}]})
    ['http://h/a.npy']
    """
    if isinstance(dataset_record, Mapping):
        dataset_record = [dataset_record]
    urls = []
    for record in dataset_record:
        urls.extend(file_record_to_url(record.get('file_records') or []))
    return urls


def _target_file(url: str, target_dir) -> tuple[str, Path]:
    """The quoted URL and the local file: ``target_dir / <last URL segment>``."""
    quoted = _quote_url(url)
    name = unquote(urlsplit(quoted).path.rstrip('/').rsplit('/', 1)[-1])
    target_dir = Path(target_dir) if target_dir else Path.home() / 'Downloads'
    return quoted, safe_join(target_dir, name.replace('\\', '/').rsplit('/', 1)[-1] or name)


def _http_task(url: str, target_dir, chunks, clobber: bool, username, password,
               headers) -> DownloadTask:
    quoted, dest = _target_file(url, target_dir)
    auth = (username, password) if username and password else None
    return DownloadTask(quoted, dest, auth=auth, headers=dict(headers) if headers else None,
                        clobber=clobber, byte_range=tuple(chunks) if chunks else None)


def http_download_file(full_link_to_file: str, chunks: tuple[int, int] | None = None, *,
                       clobber: bool = False, silent: bool = False, username: str | None = None,
                       password: str | None = None, target_dir: str | os.PathLike = '',
                       return_md5: bool = False, headers: Mapping[str, str] | None = None):
    """Download one file over HTTP(S) into a folder (ONE's ``http_download_file``).

    The file is written to a temporary file and moved into place only when complete; failed
    transfers are retried and resumed.

    Parameters
    ----------
    full_link_to_file : str
        The file URL.  Its path is percent-quoted (so a ``#`` in a revision folder is sent as
        ``%23``).
    chunks : tuple of (int, int), optional
        ``(first_byte, n_bytes)``: download only this byte range.
    clobber : bool
        Download even if the file already exists (it is replaced only by a complete download).
    silent : bool
        Hide the progress bar.
    username, password : str, optional
        HTTP basic authentication, used when both are given.
    target_dir : str, os.PathLike
        Destination folder (default ``~/Downloads``); the file name is the last segment of the
        URL.
    return_md5 : bool
        Also return the file's md5 hex digest.
    headers : dict, optional
        Extra request headers.

    Returns
    -------
    pathlib.Path or (pathlib.Path, str)
        The local file (and its md5).  An empty link gives None (or ``(None, None)``).

    Raises
    ------
    HTTPStatusError
        The server answered with an error (logged as ``<status> <url>``); also a
        `requests.HTTPError`.
    DownloadError
        The file could not be downloaded (see `download_files`).
    """
    if not full_link_to_file:
        return (None, None) if return_md5 else None
    task = _http_task(full_link_to_file, target_dir, chunks, clobber, username, password,
                      headers)
    try:
        (result,) = download_files([task], n_threads=1, progress=not silent, return_md5=True,
                                   desc=task.destination.name)
    except HTTPStatusError as ex:
        _logger.error('%s %s', ex.status_code, task.url)
        raise
    return result if return_md5 else result[0]


def http_download_file_list(links_to_file_list: Sequence[str], **kwargs):
    """Download several files in parallel (ONE's ``http_download_file_list``).

    Parameters
    ----------
    links_to_file_list : sequence of str
        The URLs (empty entries give None).
    **kwargs
        As `http_download_file`; ``target_dir`` may also be a list with one folder per link.
        ``n_threads`` (default `N_THREADS`) sets the number of parallel downloads.

    Returns
    -------
    list
        The local paths in link order; with ``return_md5=True`` a two-element list
        ``[tuple(paths), tuple(md5s)]``.

    Raises
    ------
    AssertionError
        `target_dir` is a list whose length differs from the number of links.
    DownloadError
        A file could not be downloaded (raised once the other files are done).
    """
    links = list(links_to_file_list)
    target_dir = kwargs.pop('target_dir', None)
    if isinstance(target_dir, (list, tuple)):
        assert len(target_dir) == len(links), \
            f'{len(target_dir)} target folders given for {len(links)} links'
        dirs = list(target_dir)
    else:
        dirs = [target_dir] * len(links)
    return_md5 = kwargs.pop('return_md5', False)
    silent = kwargs.pop('silent', False)
    n_threads = kwargs.pop('n_threads', None)
    options = {k: kwargs.pop(k, None) for k in ('chunks', 'username', 'password', 'headers')}
    clobber = kwargs.pop('clobber', False)
    if kwargs:
        raise TypeError(f'Unexpected keyword arguments: {", ".join(kwargs)}')
    index, tasks = [], []
    for i, (link, folder) in enumerate(zip(links, dirs)):
        if link:
            index.append(i)
            tasks.append(_http_task(link, folder, options['chunks'], clobber,
                                    options['username'], options['password'],
                                    options['headers']))
    results: list = [(None, None)] * len(links)
    done = download_files(tasks, n_threads=n_threads, progress=not silent and bool(tasks),
                          return_md5=True)
    for i, result in zip(index, done):
        results[i] = result
    if return_md5:
        return [tuple(r[0] for r in results), tuple(r[1] for r in results)]
    return [r[0] for r in results]
