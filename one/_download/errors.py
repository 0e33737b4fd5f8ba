"""The errors of the download engine, and the internal signals its layers pass each other.

`DownloadError` and its subclasses are what callers see; each names the file and its URL.
`Transient`, `RangeUnsatisfiable` and `Cancelled` never leave the engine: the transports raise
them and the engine turns them into retries or into one of the public errors.
"""
from __future__ import annotations

from pathlib import Path

import requests

from one._lib import confine

RETRY_STATUS = frozenset({408, 429})
"""HTTP statuses worth retrying besides 5xx."""


def is_retryable(status: int | None) -> bool:
    """Whether an HTTP status is worth another attempt: 408, 429 and 5xx."""
    return status in RETRY_STATUS or (status or 0) >= 500


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


class DownloadTimeout(DownloadConnectionError, TimeoutError):
    """The server accepted the connection but did not answer in time, twice (one retry).

    Also a built-in `TimeoutError`.
    """


class UnsafePath(DownloadError, confine.UnsafePath):
    """A path received from a server would land outside the destination folder.

    Also a `ValueError` and a `one._lib.confine.UnsafePath` (what local loads raise).

    Attributes
    ----------
    value : str or None
        The offending path, as received.
    """

    def __init__(self, message: str, url: str | None = None, path=None, value=None):
        super().__init__(message, url, path)
        self.root = self.path
        self.value = value


_LISTED = 10  # files named in the message of a batch's timeouts


def download_failure(outcomes, kinds: tuple) -> DownloadError | None:
    """The error that a load raises for the outcomes of a batch of downloads, or None.

    Parameters
    ----------
    outcomes : list
        Per file, its path or the exception that stopped it (`download_files` with
        ``return_errors=True``).
    kinds : tuple of type
        The errors that stop a load, most important first.

    Returns
    -------
    DownloadError or None
        The first outcome of the first kind found.  Timeouts come as one `DownloadTimeout`
        whose message also names the other files that timed out (the files that arrived are
        kept).
    """
    errors = [x for x in outcomes if isinstance(x, BaseException)]
    for kind in kinds:
        found = [e for e in errors if isinstance(e, kind)]
        if not found:
            continue
        first = found[0]
        timeouts = [e for e in errors if isinstance(e, DownloadTimeout)]
        if not isinstance(first, DownloadTimeout) or len(timeouts) == 1:
            return first
        others = [e.url or str(e.path) for e in timeouts[1:]]
        listed = ', '.join(others[:_LISTED]) + \
            (f' and {len(others) - _LISTED} more' if len(others) > _LISTED else '')
        return DownloadTimeout(f'{first} [{len(timeouts)} files timed out; the others: '
                               f'{listed}]', first.url, first.path)
    return None


_CONNECT_TIMEOUTS = frozenset({'ConnectTimeoutError', 'ConnectTimeout'})
_READ_TIMEOUTS = frozenset({'ReadTimeoutError', 'ReadTimeout'})


def timeout_kind(error: BaseException | str) -> str | None:
    """'connect' or 'read' when an exception (or one it wraps) is a timeout, else None.

    Recognises urllib3's, requests' and botocore's timeout errors by class name (botocore is
    not imported) and the built-in `TimeoutError` raised by a socket read.
    """
    chain, seen = [], set()
    todo = [error] if isinstance(error, BaseException) else []
    while todo:
        ex = todo.pop(0)
        if id(ex) in seen:
            continue
        seen.add(id(ex))
        chain.append(ex)
        for nxt in (getattr(ex, 'reason', None), *ex.args[:1], ex.__cause__, ex.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    names = [{cls.__name__ for cls in type(ex).__mro__} for ex in chain]
    if any(n & _CONNECT_TIMEOUTS for n in names):
        return 'connect'
    if any(n & _READ_TIMEOUTS for n in names) or any(isinstance(ex, TimeoutError)
                                                      for ex in chain):
        return 'read'
    return None


class Transient(Exception):
    """A failure worth retrying: network error, timeout, 408, 429, 5xx, cut transfer.

    ``timeout`` is 'read' or 'connect' when the failure is a timeout (see `timeout_kind`);
    ``retried`` is True when the transport already retried it itself (botocore).
    """

    def __init__(self, error: BaseException | str, retry_after: float | None = None,
                 status: int | None = None, restart: bool = False, retried: bool = False):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.status = status
        self.restart = restart  # the partial file is unusable: start again from byte 0
        self.timeout = timeout_kind(error)
        self.retried = retried


class RangeUnsatisfiable(Exception):
    """The server answered 416 to a resume request."""

    def __init__(self, total: int | None):
        super().__init__(total)
        self.total = total


class Cancelled(BaseException):
    """Raised in worker threads after the caller was interrupted."""


def describe(ex: BaseException) -> str:
    """``ExceptionType: message`` (or only the type when the message is empty)."""
    text = str(ex)
    return f'{type(ex).__name__}: {text}' if text else type(ex).__name__
