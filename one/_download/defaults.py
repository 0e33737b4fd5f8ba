"""The download engine's tunable defaults.

``N_THREADS`` (ONE's name) is read when asked for, not at import: a bad
``ONE_HTTP_DL_THREADS`` then raises a ValueError naming the variable where the value is used.
"""
from __future__ import annotations

from one._lib.backoff import BACKOFF, MAX_BACKOFF
from one._lib.http_timeouts import DEFAULT_TIMEOUT

__all__ = ['ONE_DEFAULT_THREADS', 'CHUNK_SIZE', 'PIPE_THRESHOLD', 'RETRIES', 'TIMEOUT', 'BACKOFF',
           'MAX_BACKOFF', 'MAX_RETRY_AFTER', 'n_threads']

ONE_DEFAULT_THREADS = 4
"""ONE's number of parallel downloads when ``ONE_HTTP_DL_THREADS`` is not set."""

CHUNK_SIZE = 1 << 20
"""Bytes read, written and hashed at a time (1 MiB)."""

PIPE_THRESHOLD = 16 * CHUNK_SIZE
"""Transfers at least this long are hashed in a helper thread, overlapping the download."""

RETRIES = 4
"""Default number of retries after a failed attempt (connection error, 408, 429, 5xx)."""

TIMEOUT = DEFAULT_TIMEOUT
"""Default (connect, read) timeouts in seconds of HTTP requests, unless ``ONE_HTTP_TIMEOUT``
sets them (see `one._lib.http_timeouts`)."""

MAX_RETRY_AFTER = 300.0
"""Longest ``Retry-After`` delay honoured, in seconds."""


def __getattr__(name: str):
    if name == 'N_THREADS':
        return n_threads()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def n_threads() -> int:
    """``N_THREADS``: the number of parallel downloads ``ONE_HTTP_DL_THREADS`` sets, else 4.

    ONE's setting, kept for scripts that read it: one-next's downloads choose their number of
    streams per batch (`one._download.streams.choose_streams`) unless
    ``ONE_HTTP_DL_THREADS`` or an ``n_threads`` argument sets it.

    Raises
    ------
    ValueError
        ``ONE_HTTP_DL_THREADS`` is not a whole number >= 1 (the message names it).
    """
    from one._download.streams import configured_streams

    return configured_streams() or ONE_DEFAULT_THREADS
