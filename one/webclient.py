"""A client for the Alyx REST API, with token login, a response cache and lazy pagination.

`AlyxClient` logs in with a token (``POST /auth-token``), keeps the token per database and user
in the parameter files (readable by their owner only; see `one.params`) and logs in again once
if the server says the token is no longer valid.  Its `rest` method is driven by the server's
schema (``/api/schema``, OpenAPI 3, or the older ``/docs``), and ``get/post/put/patch/delete``
send raw queries.  List answers are paginated by the server; `get` returns them as a lazy
sequence that fetches pages on demand.

GET answers are cached on disk in ``<cache_dir>/.rest`` for 5 minutes by default (``expires``,
``clobber``, `no_cache`); cache files are written atomically, so no process ever reads a partial
one.  Failures raise specific errors (see `one._rest.errors`), each a subclass of the
matching `requests` or standard exception, saying what happened and where, never showing a
token or password.

The HTTP download helpers of ONE-api are re-exported here (``http_download_file``...), with
``N_THREADS``: the number of parallel downloads ``ONE_HTTP_DL_THREADS`` sets, read when used (4,
ONE's default, when it is not set; a bad value raises a ValueError naming the variable).
one-next's downloads choose their number of streams from the files unless that variable or an
``n_threads`` argument sets it (`one._download.streams`).

Examples
--------
>>> alyx = AlyxClient(base_url='https://alyx.example.org', username='me')  # doctest: +SKIP
>>> sessions = alyx.rest('sessions', 'list', subject='ZFM-01935')  # doctest: +SKIP
>>> alyx.rest('sessions', 'read', id=sessions[0]['id'])['n_trials']  # doctest: +SKIP
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from getpass import getpass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.error import HTTPError  # one.webclient.HTTPError, as in ONE-api
from urllib.parse import urlsplit

import requests

import one
import one.params
from one._download import (  # HTTP file downloads, re-exported (ONE-api's names)
    dataset_record_to_url,
    file_record_to_url,
    http_download_file,
    http_download_file_list,
)
from one._lib.confine import Confinement, UnsafePath
from one._lib.files import atomic_open, temp_name
from one._lib.http_timeouts import DEFAULT_TIMEOUT, resolve_timeout  # noqa: F401 - public
from one._lib.urls import update_url_params
from one._rest.cache import RestCache, cache_key
from one._rest.errors import (
    AlyxAuthError,
    AlyxBadRequest,
    AlyxConnectionError,
    AlyxConnectTimeout,
    AlyxError,
    AlyxHTTPError,
    AlyxInvalidResponse,
    AlyxNotFound,
    AlyxPaginationError,
    AlyxServerError,
    AlyxSSLError,
    AlyxThrottled,
    AlyxTimeout,
    TokenExpired,
    error_from_exception,
    error_from_response,
    response_detail,
)
from one._rest.pagination import LIST_PAGE_LIMIT, MAX_PAGE_LIMIT
from one._rest.pagination import PaginatedResponse as _PaginatedResponse
from one._rest.retry import CallDeadline, RetryPolicy, make_session, resolve_deadline
from one._rest.schema import (
    RestScheme,
    RestSchemeCoreApi,
    RestSchemeOpenApi,
    validate_endpoint_action,
)

__all__ = [
    'AlyxClient', 'no_cache', 'update_url_params', 'RestScheme', 'RestSchemeCoreApi',
    'RestSchemeOpenApi', 'validate_endpoint_action', 'BadCacheArchive',
    'AlyxError', 'AlyxHTTPError', 'AlyxBadRequest', 'AlyxAuthError', 'TokenExpired',
    'AlyxNotFound', 'AlyxThrottled', 'AlyxServerError', 'AlyxInvalidResponse',
    'AlyxConnectionError', 'AlyxSSLError', 'AlyxTimeout', 'AlyxConnectTimeout',
    'AlyxPaginationError', 'MAX_PAGE_LIMIT', 'LIST_PAGE_LIMIT',
    # HTTP file downloads, implemented in one._download
    'http_download_file', 'http_download_file_list', 'file_record_to_url',
    'dataset_record_to_url', 'N_THREADS',  # noqa: F822 - module __getattr__
]

_logger = logging.getLogger(__name__)

_SCHEMA_EXPIRY = timedelta(weeks=1)
_CACHE_TABLE_SUFFIXES = ('.pqt', '.json')


def __getattr__(name: str):
    if name == 'N_THREADS':  # ONE's setting, read at use (see one._download.defaults)
        from one._download.defaults import n_threads

        return n_threads()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


class BadCacheArchive(ValueError):
    """A downloaded cache archive is damaged, has no tables, or has unsafe member names."""


class _JSONEncoder(json.JSONEncoder):
    """A JSON encoder that also writes UUIDs, dates, paths and numpy values.

    UUIDs and paths become strings, dates ISO strings, numpy scalars and arrays numbers and
    lists; any other unknown type raises TypeError.
    """

    def default(self, o):
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, (datetime, date)):
            return o.isoformat()
        if isinstance(o, PurePath):
            return o.as_posix()
        if type(o).__module__ == 'numpy' and hasattr(o, 'tolist'):
            return o.tolist()
        return super().default(o)


def _cache_response(method: Callable) -> Callable:
    """Decorate `AlyxClient._generic_request` with the on-disk REST response cache.

    The wrapped method takes two more keyword arguments:

    expires : datetime.timedelta, bool, float, optional
        How long the response stays fresh: the client's ``default_expiry`` (5 minutes) when
        None or False; True caches it already expired (never reused while the server answers);
        a number is seconds.
    clobber : bool
        Ignore any cached response (the new one is still cached).

    Only requests whose verb matches the client's ``cache_mode`` ('GET', or '*' for all) are
    cached; ``cache_mode=None`` turns the cache off.  When the server cannot be reached, an
    expired cached response is returned with a RuntimeWarning.  The expiry of each cached answer
    is told to the client's open `AlyxClient._fresh_until` blocks.
    """
    @functools.wraps(method)
    def wrapper(self, reqfunction, rest_query, *args, expires=None, clobber=False, **kwargs):
        verb = _verb(reqfunction)
        mode = self.cache_mode
        if not mode or not (mode == '*' or verb.casefold() == str(mode).casefold()):
            return method(self, reqfunction, rest_query, *args, **kwargs)
        if expires is True:
            lifetime = timedelta(0)
        elif isinstance(expires, timedelta):
            lifetime = expires
        elif isinstance(expires, (int, float)) and not isinstance(expires, bool) and expires:
            lifetime = timedelta(seconds=expires)
        else:
            lifetime = self.default_expiry
        query = self._rest_path(rest_query)
        key = cache_key(query if verb == 'get' else f'{verb.upper()} {query}')
        cache = RestCache(self.rest_cache_dir)
        cached = None if clobber else cache.read(key)
        if cached is not None and cached.is_fresh(datetime.now()):
            _logger.debug('Returning cached response for %s', query)
            self._answer_expires(cached.expiry)
            return cached.response
        try:
            response = method(self, reqfunction, rest_query, *args, **kwargs)
        except requests.ConnectionError:
            if cached is None:
                raise
            warnings.warn('Failed to connect, returning cached response', RuntimeWarning,
                          stacklevel=3)
            self._answer_expires(cached.expiry)
            return cached.response
        expiry = datetime.now() + lifetime
        try:
            cache.write(key, response, expiry)
        except (OSError, TypeError, ValueError) as ex:  # an unwritable cache is not fatal
            _logger.debug('Could not cache the response of %s: %s', query, ex)
            expiry = None
        self._answer_expires(expiry)
        return response
    return wrapper


def _token_rejected(r: requests.Response) -> bool:
    """True when the server refused the request because of the token ("Invalid token.")."""
    if r.status_code not in (401, 403):
        return False
    detail = response_detail(r).lower()
    return 'token' in detail and ('invalid' in detail or 'expired' in detail)


def _verb(reqfunction) -> str:
    """The lower-case HTTP verb of a request function (e.g. `requests.get`) or name."""
    name = reqfunction if isinstance(reqfunction, str) else reqfunction.__name__
    return name.lower()


class _Freshness:
    """The earliest expiry of the cached REST answers received while it is open (see
    `AlyxClient._fresh_until`)."""

    def __init__(self):
        self._until: datetime | None = None
        self._uncached = False

    def note(self, expiry: datetime | None) -> None:
        if expiry is None:
            self._uncached = True
        elif self._until is None or expiry < self._until:
            self._until = expiry

    @property
    def until(self) -> datetime | None:
        """When the first of the answers expires in the REST cache; None when an answer was not
        cached (or none was received)."""
        return None if self._uncached else self._until


_SECRET_PARAMETERS = ('TOKEN', 'ALYX_PWD', 'HTTP_DATA_SERVER_PWD')
"""Parameters a pickled client leaves out (the receiving process reads its own)."""


class AlyxClient:
    """A client of an Alyx database's REST API.

    Parameters
    ----------
    base_url : str, optional
        The database URL, e.g. ``'https://openalyx.internationalbrainlab.org'``; the default
        database of the parameters when None.
    username : str, optional
        The login name; the ``ALYX_LOGIN`` parameter when None.
    password : str, optional
        The password; when given (or with a `username`) the client logs in at once,
        otherwise at the first request (with a stored token if there is one).
    cache_dir : str, os.PathLike, optional
        The data folder (also the root of the REST cache); the client's configured folder when
        None.
    silent : bool
        Never prompt or print; missing credentials raise an error instead.
    cache_rest : {'GET', '*', None}
        Which requests are cached: GET only, all, or none.
    timeout : float or (float, float), optional
        Seconds to wait for the server's answer (the read timeout; the connect timeout is
        never longer), or a (connect, read) pair.  Default: the environment variable
        ``ONE_HTTP_TIMEOUT``, else `DEFAULT_TIMEOUT` (10 s, 60 s).  It also bounds the
        instance's HTTP downloads.  A query left unanswered is sent once more, never twice.
    retries : int
        How many times a connection that could not be opened is tried again.
    deadline : float, optional
        Seconds a call (`rest`, `get`, `post`...: the pages of a list and a new login
        included) may spend being retried after throttling (429, honouring ``Retry-After``)
        and, for queries only, gateway errors (502, 503, 504) or connection resets: a write the
        server may have acted on is never sent twice (see `one._rest.retry`).  Default:
        the environment variable ``ONE_REST_DEADLINE``, else 300.

    Attributes
    ----------
    base_url : str
        The database URL (no trailing '/').
    user : str or None
        The logged-in user.
    silent : bool
        Whether the client prompts and prints.
    default_expiry : datetime.timedelta
        How long cached GET responses stay fresh (5 minutes).
    rest_cache_dir : pathlib.Path
        The REST cache folder, ``<cache_dir>/.rest``.
    cache_mode : str or None
        See `cache_rest`.
    timeout : (float, float)
        The (connect, read) timeouts in seconds.
    deadline : float
        See `deadline`.
    page_size : int
        Records asked for per page of a list query that does not give its own ``limit``
        (`LIST_PAGE_LIMIT`, 1,000): a search gives its first records quickly even when it
        matches a large part of the database; its other pages are fetched as they are read.
    max_page_size : int
        The largest page asked for (`MAX_PAGE_LIMIT`, 10,000): by queries whose answer is read
        whole (batched listings, re-reading an answer whose pages disagreed).  A list answer
        longer than its page comes in several pages, which the server may not keep in the same
        order (`one._rest.pagination` checks them).
    """

    def __init__(self, base_url: str | None = None, username: str | None = None,
                 password: str | None = None, cache_dir: str | os.PathLike | None = None,
                 silent: bool = False, cache_rest: str | None = 'GET', *,
                 timeout: float | tuple[float, float] | None = None, retries: int = 2,
                 deadline: float | None = None):
        self.silent = silent
        self._par = one.params.get(client=base_url, silent=silent, username=username,
                                   cache_dir=cache_dir)
        self.base_url = str(base_url or self._par.ALYX_URL).rstrip('/')
        if cache_dir:
            self._par = self._par.set('CACHE_DIR', str(cache_dir))
        Path(self._par.CACHE_DIR).mkdir(parents=True, exist_ok=True)
        self._headers = {'Accept': 'application/json', 'ONE-API-Version': one.__version__}
        self.user: str | None = None
        self._credentials: tuple[str, str] | None = None  # kept to log in again
        self.default_expiry = timedelta(minutes=5)
        self.rest_cache_dir = Path(self._par.CACHE_DIR) / '.rest'
        self.cache_mode = cache_rest
        self.timeout = resolve_timeout(timeout)
        self.deadline = resolve_deadline(deadline)
        self.page_size = LIST_PAGE_LIMIT
        self.max_page_size = MAX_PAGE_LIMIT
        self._retries = retries
        self._rest_cache_generation = 0  # counts clear_rest_cache calls
        self._session = make_session()
        self._auth_lock = threading.RLock()
        self._thread_state()
        self._rest_schemes: RestScheme | None = None
        if username or password:
            self.authenticate(username=username, password=password)

    def __repr__(self) -> str:
        state = f'user "{self.user}"' if self.is_logged_in else 'not logged in'
        return f'<{type(self).__name__} {self.base_url}, {state}>'

    def __getstate__(self) -> dict:
        """The client's state without a secret: no password, token or data server password
        (`__setstate__` reads those of the receiving process's parameter files)."""
        state = self.__dict__.copy()
        state['_credentials'] = None
        state['_headers'] = {k: v for k, v in self._headers.items() if k != 'Authorization'}
        par = self._par.as_dict()
        state['_par'] = one.params.IBLParams.from_dict(
            {**par, **{k: None for k in _SECRET_PARAMETERS if k in par}})
        for name in ('_session', '_auth_lock', '_calls', '_watches', '_watch_lock'):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault('deadline', resolve_deadline())  # pickled by older versions
        self.__dict__.setdefault('page_size', LIST_PAGE_LIMIT)
        self.__dict__.setdefault('max_page_size', MAX_PAGE_LIMIT)
        self.__dict__.setdefault('_rest_cache_generation', 0)
        self._session = make_session()
        self._auth_lock = threading.RLock()
        self._thread_state()
        self._read_secrets()

    def _read_secrets(self) -> None:
        """Take the secrets a pickle leaves out from this process's parameter files: the
        stored tokens (the user's is used at once), the Alyx and data server passwords."""
        try:
            stored = one.params._read_client(one.params._key_from_url(self.base_url)) or {}
        except Exception:  # noqa: BLE001 - no readable parameters: log in when needed
            stored = {}
        for key in _SECRET_PARAMETERS:
            value = stored.get(key)
            if key == 'HTTP_DATA_SERVER_PWD' and not value:
                value = os.environ.get('ONE_HTTP_DATA_SERVER_PWD')
            if value is not None:
                self._par = self._par.set(key, value)
        token = self._stored_token(self.user) if self.user else None
        if token:
            self._headers['Authorization'] = f'Token {token}'

    def _thread_state(self) -> None:
        """The state shared by the client's threads, which is never pickled."""
        self._calls = threading.local()  # the call under way in each thread (its deadline)
        self._watches: list[_Freshness] = []  # the open `_fresh_until` blocks
        self._watch_lock = threading.Lock()

    # --- properties -----------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        """pathlib.Path: The data folder (created when set)."""
        return Path(self._par.CACHE_DIR)

    @cache_dir.setter
    def cache_dir(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.rest_cache_dir == self.cache_dir / '.rest':
            self.rest_cache_dir = folder / '.rest'
        self._par = self._par.set('CACHE_DIR', str(folder))

    @property
    def is_logged_in(self) -> bool:
        """bool: True once a user is set and the token header is present."""
        return bool(self.user) and 'Authorization' in self._headers

    @property
    def _token(self) -> str | None:
        """The current token (never printed or logged)."""
        auth = self._headers.get('Authorization', '')
        return auth[6:] if auth.startswith('Token ') else None

    @property
    def rest_schemes(self) -> RestScheme:
        """RestScheme: The server's REST schema, fetched once (and cached for a week)."""
        if self._rest_schemes is None:
            try:
                schema = self.get('/api/schema', expires=_SCHEMA_EXPIRY)
                self._rest_schemes = RestSchemeOpenApi(schema)
            except AlyxNotFound:
                schema = self.get('/docs', expires=_SCHEMA_EXPIRY)
                self._rest_schemes = RestSchemeCoreApi(schema)
        return self._rest_schemes

    # --- authentication -------------------------------------------------------------------
    def _stored_token(self, username: str) -> str | None:
        tokens = getattr(self._par, 'TOKEN', None) or {}
        entry = tokens.get(username) or {}
        return entry.get('token') if isinstance(entry, dict) else None

    def _set_token(self, username: str, token: str | None, persist: bool) -> None:
        """Record a user's token in memory (headers, params) and, if `persist`, on disk."""
        tokens = dict(getattr(self._par, 'TOKEN', None) or {})
        if token is None:
            tokens.pop(username, None)
            self._headers.pop('Authorization', None)
        else:
            tokens[username] = {'token': token}
            self._headers['Authorization'] = f'Token {token}'
        self._par = self._par.set('TOKEN', tokens)
        if persist:
            one.params._store_token(self.base_url, username, token)

    def authenticate(self, username: str | None = None, password: str | None = None,
                     cache_token: bool = True, force: bool = False) -> None:
        """Log in: use the user's stored token, or request a new one with the password.

        Parameters
        ----------
        username : str, optional
            The login name: the ``ALYX_LOGIN`` parameter, then the current user, by default.
        password : str, optional
            The password.  Giving one always requests a new token.  Otherwise the password
            given earlier, the ``ALYX_PWD`` parameter or ``$ONE_ALYX_PWD`` is used, or it is
            prompted for (not in silent mode).
        cache_token : bool
            Store the new token in the parameter file (mode 0600).
        force : bool
            Request a new token even if one is stored.

        Raises
        ------
        AlyxAuthError
            Wrong credentials, or none available in silent mode.
        AlyxConnectionError
            The server cannot be reached (also a builtin ConnectionError).
        """
        username = username or getattr(self._par, 'ALYX_LOGIN', None) or self.user
        if not username:
            if self.silent:
                raise AlyxAuthError(f'No Alyx username for {self.base_url}: pass username=… '
                                    'or set ALYX_LOGIN with one.params.setup()')
            username = input('Enter Alyx username:')
        if password is not None:
            force = True
            self._credentials = (username, password)
        if not force:
            token = self._stored_token(username)
            if token:
                self._headers['Authorization'] = f'Token {token}'
                self.user = username
                return
        if password is None:
            password = self._known_password(username)
        if password is None:
            if self.silent:
                msg = (f'No password or cached token in silent mode for user "{username}" on '
                       f'{self.base_url}. Please run the following to re-authenticate:\n'
                       f'AlyxClient(base_url="{self.base_url}", username="{username}", '
                       'password=…)')
                warnings.warn(msg, UserWarning, stacklevel=2)
                raise AlyxAuthError(msg)
            password = getpass(f'Enter Alyx password for "{username}":')
        if self._stored_token(username) or self.is_logged_in:
            self._set_token(username, None, persist=cache_token)
        url = f'{self.base_url}/auth-token'
        r = self._send('POST', url, {'Accept': 'application/json'},
                       {'username': username, 'password': password}, None, '/auth-token')
        if r.status_code == 400:
            detail = response_detail(r)
            raise AlyxAuthError(
                f'Wrong credentials for {self.base_url}: {detail} '
                f'(user = {username}, password = *****)',
                response=r, url=url, rest_query='/auth-token', detail=detail)
        if r.status_code != 200:
            raise error_from_response(r, '/auth-token', 'POST')
        try:
            body = r.json()
            token = body['token']
            assert isinstance(token, str) and token and set(body) == {'token'}
        except (ValueError, KeyError, TypeError, AssertionError):
            raise AlyxInvalidResponse(
                f'Unexpected answer to the login request at {url} (no token in it)',
                response=r) from None
        self._credentials = (username, password)
        self._set_token(username, token, persist=cache_token)
        self.user = username
        if not self.silent:
            print(f'Connected to {self.base_url} as user "{self.user}"')

    def logout(self) -> None:
        """Forget the user's token (in memory and on disk) and clear the REST cache."""
        if not self.is_logged_in:
            return
        user = self.user
        self._set_token(user, None, persist=True)
        self._credentials = None
        self.user = None
        self.clear_rest_cache()
        if not self.silent:
            print(f'{user} logged out from {self.base_url}')

    def _known_password(self, username: str) -> str | None:
        """The password given earlier for this user, ``ALYX_PWD`` or ``$ONE_ALYX_PWD``."""
        if self._credentials and self._credentials[0] == username:
            return self._credentials[1]
        return getattr(self._par, 'ALYX_PWD', None) or os.environ.get('ONE_ALYX_PWD')

    def _relogin(self) -> None:
        """Log in again after the server rejected the token (once per rejection).

        Raises
        ------
        TokenExpired
            In silent mode, when no password is known to log in again.
        """
        user = self.user or getattr(self._par, 'ALYX_LOGIN', None)
        if user:
            self._set_token(user, None, persist=True)
        if self.silent and (not user or self._known_password(user) is None):
            self.user = None
            raise TokenExpired(
                f'The login token of user "{user}" on {self.base_url} is no longer valid '
                'and no password is known to log in again (silent mode): call '
                'authenticate(password=…) or pass password=… to the client')
        self.authenticate(username=user, force=True)

    # --- requests ---------------------------------------------------------------------------
    def _rest_path(self, rest_query: str) -> str:
        """The query relative to the server root, with a leading '/'.

        Absolute URLs on this server lose the server root; absolute URLs on another host or
        scheme (e.g. pagination links written by a proxy) are reduced to their path and
        query, so that the token is only ever sent to `base_url`.
        """
        query = str(rest_query)
        if query.startswith(self.base_url):
            query = query[len(self.base_url):]
        elif re.match(r'^[a-z][a-z0-9+.-]*://', query, re.IGNORECASE):
            parts = urlsplit(query)
            base_path = urlsplit(self.base_url).path.rstrip('/')
            path = parts.path
            if base_path and path.startswith(base_path + '/'):
                path = path[len(base_path):]
            query = path + (f'?{parts.query}' if parts.query else '')
        return '/' + query.lstrip('/')

    # How the client waits and measures time (tests replace them to skip the waits)
    _sleep = staticmethod(time.sleep)
    _clock = staticmethod(time.monotonic)

    def _retry_policy(self) -> RetryPolicy:
        return RetryPolicy(deadline=self.deadline, connect_retries=self._retries)

    @contextmanager
    def _call(self, budget: CallDeadline | None = None) -> Iterator[CallDeadline]:
        """The deadline of the call under way in this thread: the requests made inside the
        block share it (`one._rest.retry`).

        Parameters
        ----------
        budget : CallDeadline, optional
            The deadline to use (a lazy list's own, for its pages); by default that of the
            call already under way in this thread, else a new one of `deadline` seconds.
        """
        current = getattr(self._calls, 'budget', None)
        if budget is None:
            budget = current or CallDeadline(self.deadline, self._clock)
        self._calls.budget = budget
        try:
            with budget:
                yield budget
        finally:
            self._calls.budget = current

    @contextmanager
    def _fresh_until(self) -> Iterator[_Freshness]:
        """Watch the REST answers received inside the block, in any thread: ``until`` gives
        when the first of them expires in the REST cache (None when one was not cached).
        Something kept from these answers must not be reused past that time."""
        watch = _Freshness()
        with self._watch_lock:
            self._watches.append(watch)
        try:
            yield watch
        finally:
            with self._watch_lock:
                self._watches.remove(watch)

    def _answer_expires(self, expiry: datetime | None) -> None:
        """Tell the open `_fresh_until` blocks when an answer expires in the REST cache."""
        with self._watch_lock:
            for watch in self._watches:
                watch.note(expiry)

    def _send(self, verb: str, url: str, headers: dict, data, files,
              rest_query: str = '') -> requests.Response:
        """Send a request, retried as `one._rest.retry.RetryPolicy` allows within the
        deadline of the call under way."""
        sent = []

        def attempt(timeout: tuple[float, float]) -> requests.Response:
            if sent:
                _rewind(files)
            sent.append(True)
            return self._session.request(verb.upper(), url, headers=headers, data=data,
                                         files=files, timeout=timeout)

        with self._call() as budget:
            return self._retry_policy().send(attempt, verb, url, rest_query or url,
                                             self.timeout, budget=budget, sleep=self._sleep,
                                             clock=self._clock)

    @_cache_response
    def _generic_request(self, reqfunction, rest_query: str, data=None, files=None):
        """Send a request to the server and return its decoded JSON answer.

        Parameters
        ----------
        reqfunction : callable or str
            The verb: a `requests` function (``requests.get``) or its name.
        rest_query : str
            The query, relative to the server root or absolute.
        data : dict, list, str, optional
            The body; dicts and lists are sent as JSON (unless there are files).
        files : dict, optional
            Files to upload (multipart form).

        Returns
        -------
        dict, list or None
            The answer (None for 204 No Content).
        """
        with self._call():  # a new login and the request sent again share the deadline
            return self._request_json(reqfunction, rest_query, data, files)

    def _request_json(self, reqfunction, rest_query: str, data, files):
        """`_generic_request` without the REST cache."""
        with self._auth_lock:  # never read the headers while another thread logs in
            if not self.is_logged_in:
                self.authenticate(username=self.user)
            headers = dict(self._headers)
        query = self._rest_path(rest_query)
        url = self.base_url + query
        verb = _verb(reqfunction)
        if isinstance(data, (dict, list)) and files is None:
            data = json.dumps(data, cls=_JSONEncoder)
            headers['Content-Type'] = 'application/json'
        if query.startswith('/docs'):
            headers['Accept'] = 'application/coreapi+json'
        elif query.startswith('/api/schema'):
            headers['Accept'] = 'application/vnd.oai.openapi+json'
            headers['Accept-Version'] = '3.0'
        r = self._send(verb, url, headers, data, files, query)
        if _token_rejected(r):
            with self._auth_lock:  # one login, even if several threads were refused
                if self._headers.get('Authorization') in (None, headers.get('Authorization')):
                    _logger.debug('Token rejected by %s; logging in again', self.base_url)
                    self._relogin()
                headers['Authorization'] = self._headers['Authorization']
            _rewind(files)  # uploads are read again
            r = self._send(verb, url, headers, data, files, query)
            if _token_rejected(r):
                raise TokenExpired(
                    f'{self.base_url} rejected the token of user "{self.user}" again right '
                    f'after a new login ({verb.upper()} {url})', response=r, url=url,
                    rest_query=query, detail=response_detail(r))
        if r.status_code == 204:
            return None
        if r.status_code in (200, 201):
            try:
                return r.json()
            except ValueError:
                kind = r.headers.get('Content-Type', 'unknown content type')
                raise AlyxInvalidResponse(
                    f'{verb.upper()} {url} answered {r.status_code} with {kind}, not JSON: '
                    f'{response_detail(r)[:300]}', response=r) from None
        raise error_from_response(r, query, verb)

    def get(self, rest_query: str, **kwargs):
        """GET a REST query; paginated answers become a lazy sequence.

        Parameters
        ----------
        rest_query : str
            E.g. ``'/sessions?subject=ZFM-01935'`` or a full URL on this server.
        **kwargs
            ``expires`` and ``clobber`` for the REST cache.

        Returns
        -------
        dict, list or one.webclient._PaginatedResponse
            The record, or the list of records; a lazily fetched sequence when the server
            has more records than it returned in the first page (its pages are fetched within
            the deadline of this call, see `one._rest.retry`).
        """
        with self._call() as budget:
            rep = self._generic_request(requests.get, rest_query, **kwargs)
        if isinstance(rep, dict) and set(rep) == {'count', 'next', 'previous', 'results'}:
            if len(rep['results']) < rep['count']:
                cache_args = {k: v for k, v in kwargs.items() if k in ('expires', 'clobber')}
                return _PaginatedResponse(self, rep, cache_args, budget=budget)
            return rep['results']
        return rep

    def post(self, rest_query: str, data=None, files=None):
        """POST `data` (and `files`) to a REST query; return the created record."""
        return self._generic_request(requests.post, rest_query, data=data, files=files)

    def put(self, rest_query: str, data=None, files=None):
        """PUT `data` (a whole record) to a REST query; return the record."""
        return self._generic_request(requests.put, rest_query, data=data, files=files)

    def patch(self, rest_query: str, data=None, files=None):
        """PATCH `data` (some fields) to a REST query; return the record."""
        return self._generic_request(requests.patch, rest_query, data=data, files=files)

    def delete(self, rest_query: str):
        """DELETE the record of a REST query."""
        return self._generic_request(requests.delete, rest_query)

    # --- schema-driven REST -----------------------------------------------------------------
    def list_endpoints(self) -> list[str]:
        """Print and return the server's endpoint names."""
        endpoints = self.rest_schemes.endpoints
        print(endpoints)
        return endpoints

    def print_endpoint_info(self, endpoint: str, action: str | None = None) -> None:
        """Print the URL, description and fields of an endpoint's actions."""
        return self.rest_schemes.print_endpoint_info(endpoint, action)

    def _check_endpoint(self, endpoint: str) -> None:
        if endpoint not in self.rest_schemes.endpoints:
            raise ValueError(f'REST endpoint "{endpoint}" does not exist. Available endpoints '
                             f'are \n       {self.rest_schemes.endpoints}')

    def rest(self, url: str | None = None, action: str | None = None, id=None, data=None,
             files=None, no_cache: bool = False, **kwargs):
        """Query a REST endpoint, checked against the server's schema.

        Parameters
        ----------
        url : str, optional
            The endpoint, e.g. 'sessions' (a query string forces the 'list' action).  Without
            it, the endpoints are printed.
        action : str, optional
            'list', 'read', 'create', 'update', 'partial_update' or 'delete'.  Without it, the
            endpoint's actions are printed.
        id : str, uuid.UUID, optional
            The record for read/update/partial_update/delete (a URL gives its last segment);
            for list, a filter on the primary key.
        data : dict, optional
            The record data for create/update/partial_update.
        files : dict, optional
            Files to upload with create/update.
        no_cache : bool
            Bypass the REST cache (the answer is neither read from nor kept in it).
        **kwargs
            Query filters for 'list' (lists become comma-separated values), and ``expires``
            for the cache.

        Returns
        -------
        dict, list, one.webclient._PaginatedResponse or None
            The answer; None after printing help or when required arguments are missing.

        Raises
        ------
        ValueError
            Unknown endpoint or action.

        Examples
        --------
        >>> alyx.rest('sessions', 'list', subject='ZFM-01935',
        ...           date_range=['2024-03-11', '2024-03-12'])  # doctest: +SKIP
        >>> eid = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'
        >>> alyx.rest('sessions', 'read', id=eid)  # doctest: +SKIP
        """
        with self._call():  # its requests (a list's pages too) share the deadline
            return self._rest(url, action, id, data, files, no_cache, **kwargs)

    def _rest(self, url, action, id, data, files, no_cache, **kwargs):  # noqa: A002 - ONE's
        """`rest`, within the deadline of the call."""
        if not url:
            print('Available endpoints:\n    ' + '\n    '.join(self.rest_schemes.endpoints))
            return None
        url = url.lstrip('/')
        endpoint = re.split(r'[/?]', url, maxsplit=1)[0]
        self._check_endpoint(endpoint)
        if '?' in url:
            action = 'list'
        if not action:
            print(f'Actions for endpoint "{endpoint}": {self.rest_schemes.actions(endpoint)}')
            self.print_endpoint_info(endpoint)
            return None
        action = action.replace('-', '_')
        actions = self.rest_schemes.actions(endpoint)
        if action not in actions:
            raise ValueError(f'Action "{action}" for REST endpoint "{endpoint}" does not '
                             f'exist. Available actions are: {actions}')
        cache_args = {'clobber': no_cache, 'expires': kwargs.pop('expires', False) or no_cache}
        template = self.rest_schemes.url(endpoint, action)
        if action in ('read', 'update', 'partial_update', 'delete') and id is None:
            _logger.warning(f'REST action "{action}" requires an id: {template}')
            return None
        if action in ('create', 'update', 'partial_update') and data is None:
            print(f'Fields of {endpoint} / {action}: '
                  f'{self.rest_schemes.field_names(endpoint, action)}')
            _logger.warning(f'REST action "{action}" of "{endpoint}" requires data')
            return None
        if id is not None and not isinstance(id, uuid.UUID):
            id = str(id).rstrip('/')
            if '/' in id:  # a record URL
                id = id.rsplit('/', 1)[-1]
        if action == 'list':
            if id is not None:
                django = kwargs.get('django')
                kwargs['django'] = f'{django},pk,{id}' if django else f'pk,{id}'
            if kwargs.get('django', '') is None:
                kwargs.pop('django')
            names = set(self.rest_schemes.field_names(endpoint, action) or [])
            unknown = set(kwargs) - names
            if unknown:
                warnings.warn(f"Error: Unsupported fields '{unknown}' in query parameters "
                              f'for endpoint {endpoint}.', UserWarning, stacklevel=2)
            params = {k: ','.join(map(_query_value, _as_list(v))) for k, v in kwargs.items()}
            if 'limit' not in params and self.page_size:
                params['limit'] = str(int(self.page_size))
            return self.get('/' + update_url_params(url, params), **cache_args)
        record = f'/{endpoint}/{id}'
        if action == 'read':
            return self.get(record, **cache_args)
        if action == 'create':
            return self.post('/' + endpoint, data=data, files=files)
        if action == 'update':
            return self.put(record, data=data, files=files)
        if action == 'partial_update':
            return self.patch(record, data=data, files=files)
        return self.delete(record)

    # --- JSON fields ------------------------------------------------------------------------
    def json_field_write(self, endpoint: str, uuid: str, field_name: str, data) -> Any:
        """Replace a JSON field of a record with `data`; return the field as written.

        Warnings
        --------
        This overwrites the whole field.
        """
        self._check_endpoint(endpoint)
        ret = self.rest(endpoint, 'partial_update', id=uuid, data={field_name: data})
        return ret[field_name]

    def json_field_update(self, endpoint: str, uuid: str, field_name: str = 'json',
                          data: dict | None = None) -> Any:
        """Merge `data` into a record's JSON field (a dict); return the field.

        A field that holds something else than a dict is returned unchanged, with a warning.
        """
        self._check_endpoint(endpoint)
        current = self.rest(endpoint, 'read', id=uuid, no_cache=True)[field_name]
        if current is None:
            current = {}
        if not isinstance(current, dict):
            _logger.warning(f'Current json field "{field_name}" of {endpoint} {uuid} does '
                            'not contain a dict, aborting update')
            return current
        current.update(data or {})
        ret = self.rest(endpoint, 'partial_update', id=uuid, data={field_name: current})
        return ret[field_name]

    def json_field_remove_key(self, endpoint: str, uuid: str, field_name: str = 'json',
                              key: str | None = None) -> Any:
        """Remove `key` from a record's JSON field; return the field."""
        self._check_endpoint(endpoint)
        current = self.rest(endpoint, 'read', id=uuid, no_cache=True)[field_name]
        if current is None:
            return None
        if isinstance(current, str):
            _logger.warning(f'Cannot remove key "{key}": field "{field_name}" of {endpoint} '
                            f'{uuid} holds a string, not a dict')
            return None
        if key not in current:
            _logger.warning(f'Key "{key}" not found in field "{field_name}" of {endpoint} '
                            f'{uuid}')
            return current
        current = {k: v for k, v in current.items() if k != key}
        ret = self.rest(endpoint, 'partial_update', id=uuid, data={field_name: current})
        return ret[field_name]

    def json_field_delete(self, endpoint: str, uuid: str, field_name: str) -> None:
        """Set a record's JSON field to null."""
        self._check_endpoint(endpoint)
        ret = self.rest(endpoint, 'partial_update', id=uuid, data={field_name: None})
        return ret[field_name]

    # --- REST cache -------------------------------------------------------------------------
    def clear_rest_cache(self) -> None:
        """Delete every cached REST response.

        What instances using this client kept from the answers (e.g. the sessions a `OneAlyx`
        read) is forgotten too.
        """
        RestCache(self.rest_cache_dir).clear()
        self._rest_cache_generation += 1

    # --- files ------------------------------------------------------------------------------
    def rel_path2url(self, path: str | os.PathLike) -> str:
        """Return the data server URL of a relative file path."""
        path = str(path).replace('\\', '/').strip('/')
        assert not re.match(r'^[a-z]+://', path), f'{path} is already a URL'
        return f'{self._par.HTTP_DATA_SERVER.rstrip("/")}/{path}'

    def _validate_file_url(self, url: str) -> str:
        """Return the URL of a file on the data server (relative paths are completed)."""
        if re.match(r'^[a-z]+://', str(url)):
            server = self._par.HTTP_DATA_SERVER.rstrip('/')
            assert str(url).startswith(server), \
                f'{url} is not on the data server {server}'
            return str(url)
        return self.rel_path2url(url)

    def download_file(self, url, **kwargs):
        """Download one file (a URL string) or many (a list of URLs) from the data server.

        Parameters
        ----------
        url : str or list of str
            Absolute URLs on the data server, or paths relative to it.
        **kwargs
            Passed to `http_download_file` / `http_download_file_list`; ``silent``,
            ``target_dir``, ``username`` and ``password`` default to the client's silent flag,
            data folder and data server credentials.

        Returns
        -------
        pathlib.Path or list
            The downloaded file(s) (see the download functions for ``return_md5``).
        """
        module = sys.modules[__name__]  # look the helpers up here, so they can be replaced
        kwargs.setdefault('silent', self.silent)
        kwargs.setdefault('target_dir', self._par.CACHE_DIR)
        kwargs.setdefault('username', self._par.HTTP_DATA_SERVER_LOGIN)
        kwargs.setdefault('password', self._par.HTTP_DATA_SERVER_PWD)
        kwargs.setdefault('timeout', self.timeout)
        try:
            if isinstance(url, (str, PurePath)):
                return module.http_download_file(self._validate_file_url(url), **kwargs)
            return module.http_download_file_list(
                [self._validate_file_url(u) for u in url], **kwargs)
        except (requests.HTTPError, HTTPError) as ex:
            status = getattr(ex, 'status_code', None) or getattr(ex, 'code', None) or \
                getattr(getattr(ex, 'response', None), 'status_code', None)
            if status == 401 and ex.args and isinstance(ex.args[0], str):
                hint = ('\nThe data server refused the credentials: check the '
                        'HTTP_DATA_SERVER_LOGIN and HTTP_DATA_SERVER_PWD parameters '
                        '(one.params.setup)')
                ex.args = (ex.args[0] + hint, *ex.args[1:])
                if isinstance(ex, HTTPError):
                    ex.msg = f'{ex.msg}{hint}'
            raise

    def download_cache_tables(self, source: str | None = None,
                              destination: str | os.PathLike | None = None) -> list[Path]:
        """Download the server's cache tables archive and extract its tables.

        Parameters
        ----------
        source : str, optional
            The archive URL (the ``location`` given by ``/cache/info``); by default
            ``<base_url>/cache.zip``.  A relative URL is taken relative to `base_url`.
        destination : str, os.PathLike, optional
            The folder receiving the tables; the data folder by default.

        Returns
        -------
        list of pathlib.Path
            The extracted files (the ``.pqt`` tables and ``.json`` metadata files).

        Raises
        ------
        BadCacheArchive
            The archive is damaged, holds no table, or has a member whose name is absolute or
            contains '..' (nothing is extracted then).
        AlyxHTTPError, AlyxConnectionError
            The download failed.
        """
        source = source or f'{self.base_url}/cache.zip'
        if not re.match(r'^[a-z][a-z0-9+.-]*://', source, re.IGNORECASE):
            source = f'{self.base_url}/{source.lstrip("/")}'
        destination = Path(destination or self.cache_dir)
        destination.mkdir(parents=True, exist_ok=True)
        headers = {'Accept': 'application/zip, application/octet-stream, */*'}
        auth = None
        if source.startswith(self.base_url + '/'):  # only Alyx gets the token
            if not self.is_logged_in:
                self.authenticate(username=self.user)
            headers['Authorization'] = self._headers['Authorization']
        else:
            server = (getattr(self._par, 'HTTP_DATA_SERVER', '') or '').rstrip('/')
            login = getattr(self._par, 'HTTP_DATA_SERVER_LOGIN', None)
            if server and source.startswith(server + '/') and login:
                auth = (login, self._par.HTTP_DATA_SERVER_PWD or '')
        archive = temp_name(destination / 'cache.zip')
        try:
            self._download_to(source, archive, headers, auth)
            return _extract_cache_tables(archive, destination, source)
        finally:
            archive.unlink(missing_ok=True)

    def _download_to(self, url: str, path: Path, headers: dict, auth) -> None:
        """Stream a URL into a file, checking the size announced by the server."""
        def attempt(timeout: tuple[float, float]) -> requests.Response:
            return self._session.get(url, headers=headers, auth=auth, stream=True,
                                     timeout=timeout)

        try:
            with self._call() as budget, self._retry_policy().send(
                    attempt, 'GET', url, self._rest_path(url), self.timeout, budget=budget,
                    sleep=self._sleep, clock=self._clock) as r:
                if r.status_code != 200:
                    raise error_from_response(r, self._rest_path(url), 'GET')
                expected = r.headers.get('Content-Length')
                n = 0
                with open(path, 'wb') as f:
                    for chunk in r.iter_content(chunk_size=1 << 20):
                        f.write(chunk)
                        n += len(chunk)
        except requests.RequestException as ex:
            if isinstance(ex, AlyxError):
                raise
            raise error_from_exception(ex, url, self.timeout) from None
        if expected is not None and 'Content-Encoding' not in r.headers \
                and int(expected) != n:
            raise AlyxConnectionError(
                f'Incomplete download of {url}: {n} of {expected} bytes received')


def _unsafe_member(name: str) -> bool:
    """True for archive member names that could write outside the destination folder."""
    if not name or '\x00' in name:
        return True
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(
            ('/', '\\')):
        return True
    return '..' in posix.parts or '..' in windows.parts


def _extract_cache_tables(archive: Path, destination: Path, source: str) -> list[Path]:
    """Check a cache archive and extract its tables and metadata atomically."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as ex:
        raise BadCacheArchive(f'{source} is not a valid zip archive: {ex}') from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        unsafe = [m.filename for m in members if _unsafe_member(m.filename)]
        if unsafe:
            names = ', '.join(f'"{name}"' for name in unsafe)
            raise BadCacheArchive(
                f'Refusing to extract {source}: member(s) {names} would be written outside '
                f'{destination} (absolute path or "..")')
        try:
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as ex:
            raise BadCacheArchive(f'{source} is damaged: {ex}') from None
        if bad is not None:
            raise BadCacheArchive(f'{source} is damaged: bad CRC for member {bad}')
        wanted = [m for m in members if m.filename.lower().endswith(_CACHE_TABLE_SUFFIXES)]
        if not any(m.filename.lower().endswith('.pqt') for m in wanted):
            raise BadCacheArchive(f'{source} holds no cache table (.pqt): '
                                  f'{[m.filename for m in members]}')
        try:  # nothing written outside, not even through a symbolic link in destination
            guard = Confinement(destination)
            targets = [guard(m.filename, what=f'{source} member') for m in wanted]
        except UnsafePath as ex:
            raise BadCacheArchive(str(ex)) from None
        files = []
        for member, target in zip(wanted, targets):
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, atomic_open(target, 'wb', fsync=False) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            files.append(target)
    return files


def _rewind(files) -> None:
    """Put uploaded file objects back at their start, so that they can be sent (again)."""
    for f in (files or {}).values():
        fobj = f[1] if isinstance(f, tuple) and len(f) > 1 else f
        if hasattr(fobj, 'seek'):
            fobj.seek(0)


def _as_list(value) -> list:
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if type(value).__module__ == 'numpy' and hasattr(value, 'tolist'):
        value = value.tolist()
        return value if isinstance(value, list) else [value]
    return [value]


def _query_value(value) -> str:
    """A query parameter value as text (UUIDs, dates and booleans included)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


@contextmanager
def no_cache(ac: AlyxClient | None = None) -> Iterator[AlyxClient]:
    """Turn the REST cache of a client off inside a ``with`` block.

    Parameters
    ----------
    ac : AlyxClient, optional
        The client; a new default client when None.

    Yields
    ------
    AlyxClient
        The client, with ``cache_mode = None`` until the block ends.

    Examples
    --------
    >>> with no_cache(one.alyx):  # doctest: +SKIP
    ...     eids = one.search(subject='ZFM-01935')
    """
    ac = ac or AlyxClient()
    mode = ac.cache_mode
    ac.cache_mode = None
    try:
        yield ac
    finally:
        ac.cache_mode = mode


