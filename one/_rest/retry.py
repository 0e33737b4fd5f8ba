"""When the REST client sends a request again: throttling, gateway errors, resets, timeouts.

The policy of `one.webclient.AlyxClient`, for each call (``rest``, ``get``, ``post``...: the
requests of a call share one deadline, the pages of a list and a new login included):

* Every request answered 429 (throttled: the server refused it before doing anything) is sent
  again after waiting what ``Retry-After`` asks, at most `MAX_RETRY_AFTER` seconds, plus a
  random part so that throttled processes do not all come back at once.
* Queries (GET, HEAD, OPTIONS) are also sent again after a 502, 503 or 504 and after a
  connection reset or a cut answer (waiting `one._lib.backoff.BACKOFF` seconds, doubled each
  time up to `one._lib.backoff.MAX_BACKOFF`, randomised).
* All this within the call's deadline (`DEFAULT_DEADLINE`, ``ONE_REST_DEADLINE`` or
  ``AlyxClient(deadline=...)``): the time the client spent working on the call (a lazy list's
  pages count the time spent fetching them, not the time between them).  No attempt is sent
  again once the wait before it would end past the deadline, and an attempt sent again waits
  for its answer no longer than the time left (its read timeout is cut to it).  A first
  attempt is always sent, with the full timeouts.
* A query whose answer did not come within the read timeout is sent once more, never twice.
* Writes (POST, PUT, PATCH, DELETE) are never sent again once the server may have acted on
  them: not after a 5xx, a reset or a timeout.
* Any request whose connection could not be opened (refused, unknown host, connect timeout:
  nothing was sent) is tried again `connect_retries` times.

The error raised at the end is the one of the last attempt (`one._rest.errors`), its message
completed with the attempts made and the time waited; ``waited`` and ``attempts`` are set on it.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from one._download.http_headers import retry_after as parse_retry_after
from one._lib.backoff import BACKOFF, MAX_BACKOFF, retry_wait
from one._lib.http_timeouts import ENV_TIMEOUT
from one._rest.errors import (
    AlyxError,
    _exception_chain,
    _is_read_timeout,
    error_from_exception,
    error_from_response,
)

__all__ = ['ENV_DEADLINE', 'DEFAULT_DEADLINE', 'MAX_RETRY_AFTER', 'RETRY_STATUSES',
           'SAFE_METHODS', 'MIN_ATTEMPT', 'resolve_deadline', 'make_session', 'CallDeadline',
           'RetryPolicy']

_logger = logging.getLogger('one.webclient')

ENV_DEADLINE = 'ONE_REST_DEADLINE'
"""Environment variable: seconds a REST call may spend, its retries included."""

DEFAULT_DEADLINE = 300.0
"""Seconds a REST call may spend, its retries included (5 minutes)."""

MAX_RETRY_AFTER = 60.0
"""Longest wait honoured from a ``Retry-After`` header, in seconds."""

MIN_ATTEMPT = 0.5
"""An attempt is sent again only if at least this long (or the read timeout, if shorter) is
left before the deadline to wait for its answer, in seconds."""

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""HTTP statuses after which a query is sent again (a write: 429 only)."""

SAFE_METHODS = frozenset({'GET', 'HEAD', 'OPTIONS'})
"""Verbs whose requests may be sent again after reaching the server."""


def resolve_deadline(deadline: float | None = None) -> float:
    """The deadline per call in seconds: `deadline`, else ``ONE_REST_DEADLINE``, else 300.

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
    return any(isinstance(e, (NewConnectionError, ConnectTimeoutError))
               for e in _exception_chain(ex))


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


class CallDeadline:
    """The time budget of one call: `seconds` of work, counted while the call is under way.

    A lazy list's pages are fetched within the budget of the call that returned it: the time
    spent fetching them counts, the time between two of them does not.

    Parameters
    ----------
    seconds : float
        The budget.
    clock : callable
        Monotonic seconds.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self._clock = clock
        self._spent = 0.0
        self._since: float | None = None  # when the current stretch of work started
        self._depth = 0
        self._lock = threading.Lock()

    def __enter__(self) -> CallDeadline:
        with self._lock:
            if self._depth == 0:
                self._since = self._clock()
            self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._since is not None:
                self._spent += self._clock() - self._since
                self._since = None

    def elapsed(self) -> float:
        """Seconds spent working on the call so far."""
        with self._lock:
            running = self._clock() - self._since if self._since is not None else 0.0
            return self._spent + running

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past it)."""
        return self.seconds - self.elapsed()


@dataclass
class RetryPolicy:
    """How the requests of one call are retried (see the module's description).

    Parameters
    ----------
    deadline : float
        Seconds the call may spend (its retries included), when `send` is given no
        `CallDeadline`.
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
        return retry_wait(failures, retry_after, self.max_retry_after, self.backoff,
                          self.max_backoff)

    def send(self, attempt: Callable[[tuple[float, float]], requests.Response], method: str,
             url: str, rest_query: str, timeout, *, budget: CallDeadline | None = None,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> requests.Response:
        """Make a request, retrying it as the policy allows.

        Parameters
        ----------
        attempt : callable
            Sends the request once with the (connect, read) timeouts it is given and returns
            the `requests.Response` (or raises a `requests.RequestException`).
        method : str
            The HTTP verb.
        url : str
            The URL (for messages; never holds credentials).
        rest_query : str
            The REST query, for the errors naming the endpoint.
        timeout : (float, float)
            The (connect, read) timeouts of an attempt (a single number: both).
        budget : CallDeadline, optional
            The deadline of the call the request belongs to (its clock is used); by default
            one of `deadline` seconds starting now.
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
        if budget is None:
            budget = CallDeadline(self.deadline, clock)
        full = tuple(timeout) if isinstance(timeout, (tuple, list)) else (timeout, timeout)
        limits = full
        attempts = failures = connect_failures = timeouts = 0
        with budget:
            while True:
                attempts += 1
                try:
                    response = attempt(limits)
                except requests.RequestException as ex:
                    kind = _kind(ex)
                    error = error_from_exception(ex, url, limits)
                    if not isinstance(error, AlyxError):
                        raise
                    waited = budget.elapsed()
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
                    limits = self._limits(full, budget.remaining() - delay)
                    if limits is None:
                        raise self._past_deadline(error, attempts, waited, delay,
                                                  budget.seconds) from None
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
                waited = budget.elapsed()
                limits = self._limits(full, budget.remaining() - delay)
                if limits is None:
                    error = error_from_response(response, rest_query, method)
                    response.close()
                    raise self._past_deadline(error, attempts, waited, delay, budget.seconds,
                                              wanted) from None
                _logger.debug('%s %s answered %d; attempt %d in %.2f s', method, url,
                              response.status_code, attempts + 1, delay)
                response.close()
                sleep(delay)

    @staticmethod
    def _limits(full: tuple[float, float], room: float) -> tuple[float, float] | None:
        """The (connect, read) timeouts of an attempt sent again with `room` seconds left
        before the deadline: the read timeout cut to it; None when too little is left."""
        connect, read = full
        if room < min(MIN_ATTEMPT, read):
            return None
        read = min(read, room)
        return min(connect, read), read

    @staticmethod
    def _past_deadline(error: BaseException, attempts: int, waited: float, delay: float,
                       deadline: float, wanted: float | None = None) -> BaseException:
        asked = f' (the server asked to wait {wanted:g} s)' if wanted else ''
        note = (f'[gave up after {attempts} attempt{"s" * (attempts > 1)} in {waited:.1f} s: '
                f'the next one, in {delay:.1f} s{asked}, would start too close to or past the '
                f'deadline of {deadline:g} s per call; set {ENV_DEADLINE} or deadline=… to '
                'wait longer]')
        return _note(error, note, attempts, waited)
