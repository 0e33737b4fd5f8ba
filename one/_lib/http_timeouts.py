"""How long a request may wait: the (connect, read) timeouts of every HTTP request.

One rule for the REST client, HTTP data downloads and S3: a timeout given to the instance
(``ONE(timeout=...)``, ``OneAlyx(timeout=...)``, ``AlyxClient(timeout=...)``) wins; otherwise
the environment variable ``ONE_HTTP_TIMEOUT`` (seconds of read timeout); otherwise
`DEFAULT_TIMEOUT`.  A single number is the read timeout, and the connect timeout is never
longer than it; a ``(connect, read)`` pair is taken as given.  A read timeout is retried at
most once (`one._rest.retry` and the download engine).
"""
from __future__ import annotations

import math
import os

__all__ = ['ENV_TIMEOUT', 'DEFAULT_CONNECT_TIMEOUT', 'DEFAULT_READ_TIMEOUT', 'DEFAULT_TIMEOUT',
           'resolve_timeout', 'read_limit', 'connect_limit']

ENV_TIMEOUT = 'ONE_HTTP_TIMEOUT'
"""Environment variable: seconds of read timeout of every HTTP request (REST, data, S3)."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds allowed to open a connection, unless the read timeout is shorter."""

DEFAULT_READ_TIMEOUT = 60.0
"""Seconds allowed between two reads of an answer (the first byte included)."""

DEFAULT_TIMEOUT = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)
"""The (connect, read) timeouts in seconds when neither the instance nor the environment
sets them."""


def _seconds(value, what: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)) or isinstance(value, bool):
        raise ValueError(f'{what} must be a number of seconds greater than 0, not {value!r}')
    return seconds


def resolve_timeout(timeout=None) -> tuple[float, float]:
    """The (connect, read) timeouts in seconds to use for a request.

    Parameters
    ----------
    timeout : float, (float, float), optional
        The instance's setting: a read timeout (the connect timeout is then the shorter of it
        and `DEFAULT_CONNECT_TIMEOUT`), or a (connect, read) pair.  None: the environment
        variable ``ONE_HTTP_TIMEOUT`` (same meaning as a single number), else
        `DEFAULT_TIMEOUT`.

    Returns
    -------
    (float, float)
        The connect and read timeouts.

    Raises
    ------
    ValueError
        A value is not a positive number of seconds (the message names the setting).

    Examples
    --------
    >>> resolve_timeout(3)
    (3.0, 3.0)
    >>> resolve_timeout((5, 120))
    (5.0, 120.0)
    """
    if timeout is None:
        raw = os.environ.get(ENV_TIMEOUT, '').strip()
        if not raw:
            return DEFAULT_TIMEOUT
        read = _seconds(raw, f'The environment variable {ENV_TIMEOUT}')
        return min(DEFAULT_CONNECT_TIMEOUT, read), read
    if isinstance(timeout, (tuple, list)):
        if len(timeout) != 2:
            raise ValueError(f'timeout must be seconds or a (connect, read) pair, not {timeout!r}')
        return _seconds(timeout[0], 'The connect timeout'), _seconds(timeout[1],
                                                                       'The read timeout')
    read = _seconds(timeout, 'timeout')
    return min(DEFAULT_CONNECT_TIMEOUT, read), read


def read_limit(timeout) -> float | None:
    """The read timeout of a timeout setting (a number or a pair), for messages."""
    if isinstance(timeout, (tuple, list)):
        return timeout[1]
    return timeout


def connect_limit(timeout) -> float | None:
    """The connect timeout of a timeout setting (a number or a pair), for messages."""
    if isinstance(timeout, (tuple, list)):
        return timeout[0]
    return timeout
