"""When the REST client sends a request again: throttling, gateway errors, resets, timeouts.

The policy of `one.webclient.AlyxClient`, per request (a page of a list is one request):

* Every request answered 429 (throttled: the server refused it before doing anything) is sent
  again after waiting what ``Retry-After`` asks, at most `MAX_RETRY_AFTER` seconds, plus a
  random part so that throttled processes do not all come back at once.
* Queries (GET, HEAD, OPTIONS) are also sent again after a 502, 503 or 504 and after a
  connection reset or a cut answer (waiting `BACKOFF` seconds, doubled each time up to
  `MAX_BACKOFF`, randomised).
* All this until the request's deadline: no attempt starts once the next wait would end past it
  (`DEFAULT_DEADLINE`, ``ONE_REST_DEADLINE`` or ``AlyxClient(deadline=...)``).
* A query whose answer did not come within the read timeout is sent once more, never twice.
* Writes (POST, PUT, PATCH, DELETE) are never sent again once the server may have acted on
  them: not after a 5xx, a reset or a timeout.
* Any request whose connection could not be opened (refused, unknown host, connect timeout:
  nothing was sent) is tried again `connect_retries` times.

The error raised at the end is the one of the last attempt (`one._lib.http_errors`), its message
completed with the attempts made and the time waited; ``waited`` and ``attempts`` are set on it.
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
import urllib3

from one._lib.download.http_headers import retry_after as parse_retry_after
from one._lib.http_errors import (
    AlyxError,
    _is_read_timeout,
    error_from_exception,
    error_from_response,
)
from one._lib.http_timeouts import ENV_TIMEOUT

__all__ = ['ENV_DEADLINE', 'DEFAULT_DEADLINE', 'MAX_RETRY_AFTER', 'BACKOFF', 'MAX_BACKOFF',
           'RETRY_STATUSES', 'SAFE_METHODS', 'resolve_deadline', 'make_session', 'RetryPolicy']

_logger = logging.getLogger('one.webclient')

ENV_DEADLINE = 'ONE_REST_DEADLINE'
"""Environment variable: seconds a REST request may spend being retried."""

DEFAULT_DEADLINE = 300.0
"""Seconds a REST request may spend being retried (5 minutes)."""

MAX_RETRY_AFTER = 60.0
"""Longest wait honoured from a ``Retry-After`` header, in seconds."""

BACKOFF = 0.5
"""First wait after a gateway error or a reset, in seconds (doubled at each retry)."""

MAX_BACKOFF = 30.0
"""Longest wait after a gateway error or a reset, in seconds."""

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""HTTP statuses after which a query is sent again (a write: 429 only)."""

SAFE_METHODS = frozenset({'GET', 'HEAD', 'OPTIONS'})
"""Verbs whose requests may be sent again after reaching the server."""


def resolve_deadline(deadline: float | None = None) -> float:
    """The per-request deadline in seconds: `deadline`, else ``ONE_REST_DEADLINE``, else 300.

    Raises
    ------
    ValueError
        The value is not a number of seconds >= 0 (the message names the setting).
    """
    what, value = 'deadline', deadline
    if deadline is None:
        value = os.environ.get(ENV_DEADLINE, '').strip()
        if not value:
            return DEFAULT_DEADLINE
        what = f'The environment variable {ENV_DEADLINE}'
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (seconds >= 0) or isinstance(value, bool):
        raise ValueError(f'{what} must be a number of seconds >= 0, not {value!r}')
    return seconds


def make_session() -> requests.Session:
    """A `requests.Session` keeping its connections alive between requests, for `RetryPolicy`.

    urllib3 retries nothing: `RetryPolicy` decides what is sent again.
    """
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=0, pool_maxsize=16)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    return session


def _connection_not_opened(ex: requests.RequestException) -> bool:
    """True when the request failed before anything was sent (refused, DNS, connect timeout)."""
    if isinstance(ex, requests.ConnectTimeout):
        return True
    if isinstance(ex, requests.exceptions.SSLError) or \
            not isinstance(ex, requests.ConnectionError):
        return False
    seen, current = set(), ex
    while isinstance(current, BaseException) and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (urllib3.exceptions.NewConnectionError,
                                urllib3.exceptions.ConnectTimeoutError)):
            return True
        nxt = getattr(current, 'reason', None)
        if not isinstance(nxt, BaseException):
            first = current.args[0] if current.args else None
            nxt = first if isinstance(first, BaseException) else current.__cause__
        current = nxt
    return False


def _kind(ex: requests.RequestException) -> str:
    """'connect' (nothing sent), 'timeout' (no answer in time), 'reset' (connection lost
    while sending or receiving) or 'final' (TLS failures, bad URLs...)."""
    if _connection_not_opened(ex):
        return 'connect'
    if isinstance(ex, requests.exceptions.SSLError):
        return 'final'
    if isinstance(ex, requests.ReadTimeout) or (
            isinstance(ex, requests.ConnectionError) and _is_read_timeout(ex)):
        return 'timeout'
    if isinstance(ex, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return 'reset'
    return 'final'


def _note(error: BaseException, note: str, attempts: int, waited: float) -> BaseException:
    """Complete an error's message with `note`; set its ``attempts`` and ``waited``."""
    if error.args and isinstance(error.args[0], str):
        error.args = (f'{error.args[0]} {note}'.rstrip(), *error.args[1:])
    error.attempts = attempts
    error.waited = waited
    return error


@dataclass
class RetryPolicy:
    """How one REST request is retried (see the module's description).

    Parameters
    ----------
    deadline : float
        Seconds the request may spend in retries: no attempt starts after it.
    connect_retries : int
        Retries of a connection that could not be opened.
    backoff, max_backoff : float
        First and longest wait after a gateway error or a reset.
    max_retry_after : float
        Longest ``Retry-After`` wait honoured.
    """

    deadline: float = DEFAULT_DEADLINE
    connect_retries: int = 2
    backoff: float = BACKOFF
    max_backoff: float = MAX_BACKOFF
    max_retry_after: float = MAX_RETRY_AFTER

    def wait_for(self, failures: int, retry_after: float | None) -> float:
        """Seconds to wait before the next attempt, after `failures` failed ones."""
        if retry_after is not None:
            wait = min(retry_after, self.max_retry_after)
            return wait + random.uniform(0.0, 0.1 + 0.2 * wait)
        base = min(self.max_backoff, self.backoff * 2 ** max(failures - 1, 0))
        return base * random.uniform(0.5, 1.0)

    def send(self, attempt: Callable[[], requests.Response], method: str, url: str,
             rest_query: str, timeout, *, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> requests.Response:
        """Make a request, retrying it as the policy allows.

        Parameters
        ----------
        attempt : callable
            Sends the request once and returns the `requests.Response` (or raises a
            `requests.RequestException`).
        method : str
            The HTTP verb.
        url : str
            The URL (for messages; never holds credentials).
        rest_query : str
            The REST query, for the errors naming the endpoint.
        timeout : float or (float, float)
            The timeouts in force, quoted in timeout messages.
        sleep, clock : callable
            How to wait and measure time.

        Returns
        -------
        requests.Response
            The answer: a success, or an error status that is not retried (or a retried
            status when the request is a write).

        Raises
        ------
        AlyxError
            The last attempt's error (`AlyxThrottled`, `AlyxServerError`,
            `AlyxConnectionError`, `AlyxTimeout`...) once retrying stopped.
        """
        method = method.upper()
        safe = method in SAFE_METHODS
        start = clock()
        attempts = failures = connect_failures = timeouts = 0
        while True:
            attempts += 1
            try:
                response = attempt()
            except requests.RequestException as ex:
                kind = _kind(ex)
                error = error_from_exception(ex, url, timeout)
                if not isinstance(error, AlyxError):
                    raise
                waited = clock() - start
                if kind == 'connect' and connect_failures < self.connect_retries:
                    connect_failures += 1
                    delay = self.wait_for(connect_failures, None)
                elif kind == 'timeout' and safe and timeouts < 1:
                    timeouts += 1
                    delay = 0.0
                elif kind == 'reset' and safe:
                    failures += 1
                    delay = self.wait_for(failures, None)
                else:
                    if attempts > 1:
                        hint = f'; set {ENV_TIMEOUT} or timeout=… to wait longer' \
                            if kind == 'timeout' else ''
                        _note(error, f'[{attempts} attempts in {waited:.1f} s{hint}]',
                              attempts, waited)
                    raise error from None
                if waited + delay > self.deadline:
                    raise self._past_deadline(error, attempts, waited, delay) from None
                _logger.debug('%s %s failed (%s); attempt %d in %.2f s', method, url, error,
                              attempts + 1, delay)
                sleep(delay)
                continue
            status = response.status_code
            if status not in RETRY_STATUSES or not (safe or status == 429):
                return response
            failures += 1
            wanted = parse_retry_after(response.headers.get('Retry-After'))
            delay = self.wait_for(failures, wanted)
            waited = clock() - start
            if waited + delay > self.deadline:
                error = error_from_response(response, rest_query, method)
                response.close()
                raise self._past_deadline(error, attempts, waited, delay, wanted) from None
            _logger.debug('%s %s answered %d; attempt %d in %.2f s', method, url,
                          response.status_code, attempts + 1, delay)
            response.close()
            sleep(delay)

    def _past_deadline(self, error: BaseException, attempts: int, waited: float, delay: float,
                       wanted: float | None = None) -> BaseException:
        asked = f' (the server asked to wait {wanted:g} s)' if wanted else ''
        note = (f'[gave up after {attempts} attempt{"s" * (attempts > 1)} in {waited:.1f} s: '
                f'the next one, in {delay:.1f} s{asked}, would start past the deadline of '
                f'{self.deadline:g} s per request; set {ENV_DEADLINE} or deadline=… to wait '
                'longer]')
        return _note(error, note, attempts, waited)
