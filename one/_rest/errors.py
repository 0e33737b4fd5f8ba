"""The errors raised by the Alyx REST client, and the translation of HTTP failures into them.

Every error says what happened and where (the URL or REST query), and never contains a token or
a password.  Each class also subclasses the matching standard or `requests` exception, so code
written against `requests` (``except requests.HTTPError``, ``ex.response.status_code``) or the
standard library (``except ConnectionError``, ``except TimeoutError``) keeps working:

====================  ======================================  ===================================
class                 raised when                              also an instance of
====================  ======================================  ===================================
AlyxHTTPError         any other error status                   requests.HTTPError
AlyxBadRequest        400 (field errors)                       AlyxHTTPError
AlyxAuthError         wrong credentials, 403                   AlyxHTTPError
TokenExpired          token rejected, no way to log in again   AlyxAuthError
AlyxNotFound          404 (names the endpoint and id)          AlyxHTTPError, LookupError
AlyxThrottled         429 (``retry_after``: seconds asked)     AlyxHTTPError
AlyxServerError       5xx (carries the body text)              AlyxHTTPError
AlyxInvalidResponse   a success status with a non-JSON body    requests.exceptions.InvalidJSONError
AlyxConnectionError   no connection (refused, DNS, reset)      requests.ConnectionError,
                                                               ConnectionError
AlyxSSLError          TLS handshake or certificate failure     requests.exceptions.SSLError
AlyxTimeout           no answer in time                        requests.Timeout, TimeoutError
AlyxConnectTimeout    no connection in time                    requests.ConnectTimeout and both
                                                               of the above
AlyxPaginationError   the pages of a list answer disagree      RuntimeError
                      (records missing or repeated)
====================  ======================================  ===================================

All of them also derive from `AlyxError`, so ``except AlyxError`` catches any client failure.
"""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import requests

from one._lib.http_timeouts import connect_limit, read_limit

__all__ = [
    'AlyxError', 'AlyxHTTPError', 'AlyxBadRequest', 'AlyxAuthError', 'TokenExpired',
    'AlyxNotFound', 'AlyxThrottled', 'AlyxServerError', 'AlyxInvalidResponse',
    'AlyxConnectionError', 'AlyxSSLError', 'AlyxTimeout', 'AlyxConnectTimeout',
    'AlyxPaginationError', 'error_from_response', 'error_from_exception', 'response_detail',
]

_MAX_BODY = 2000  # characters of a response body quoted in an error message


class AlyxError(Exception):
    """Base class of every error raised by the Alyx REST client."""


class AlyxHTTPError(requests.HTTPError, AlyxError):
    """The server answered with an error status.

    Attributes
    ----------
    status_code : int
        The HTTP status (also in ``errno`` and ``response.status_code``).
    url : str
        The URL requested.
    rest_query : str
        The REST query (URL without the server root).
    detail : str
        What the server said: the ``detail`` field of a JSON body, or the body text.
    """

    def __init__(self, message: str, *, response: requests.Response | None = None,
                 status_code: int | None = None, url: str = '', rest_query: str = '',
                 detail: str = ''):
        super().__init__(message, response=response)
        if status_code is None and response is not None:
            status_code = response.status_code
        self.status_code = status_code
        self.errno = status_code  # like the original, which passed the status as first arg
        self.url = url
        self.rest_query = rest_query
        self.detail = detail


class AlyxBadRequest(AlyxHTTPError):
    """The server rejected the request's parameters or data (400)."""


class AlyxAuthError(AlyxHTTPError):
    """The server refused the credentials or the token (400 on login, 401 or 403)."""


class TokenExpired(AlyxAuthError):
    """The server no longer accepts the token and the client could not log in again."""


class AlyxNotFound(AlyxHTTPError, LookupError):
    """No record or endpoint at this URL (404).

    Attributes
    ----------
    endpoint : str
        The REST endpoint, e.g. 'sessions'.
    record_id : str or None
        The record id (or name) requested, when the query addressed one record.
    """

    def __init__(self, message: str, *, endpoint: str = '', record_id: str | None = None,
                 **kwargs):
        super().__init__(message, **kwargs)
        self.endpoint = endpoint
        self.record_id = record_id


class AlyxThrottled(AlyxHTTPError):
    """The server refused the request because too many were sent (429).

    Attributes
    ----------
    retry_after : float or None
        The seconds the server asked to wait (``Retry-After``), when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class AlyxServerError(AlyxHTTPError):
    """The server failed while handling the request (5xx); ``detail`` holds the body text."""


class AlyxInvalidResponse(requests.exceptions.InvalidJSONError, AlyxError):
    """The server answered with a success status but the body is not the JSON expected."""


class AlyxConnectionError(requests.ConnectionError, ConnectionError, AlyxError):
    """The server could not be reached (connection refused or reset, unknown host)."""


class AlyxSSLError(requests.exceptions.SSLError, AlyxConnectionError):
    """The TLS connection failed (handshake, protocol or certificate verification)."""


class AlyxTimeout(requests.Timeout, TimeoutError, AlyxError):
    """The server did not answer within the client's timeout."""


class AlyxConnectTimeout(requests.ConnectTimeout, AlyxConnectionError, AlyxTimeout):
    """No connection to the server could be made within the client's timeout."""


class AlyxPaginationError(AlyxError, RuntimeError):
    """The pages of a list answer could not be made to agree with the count announced.

    Attributes
    ----------
    query : str
        The query whose answer was paginated.
    count : int
        The number of records the server announced.
    received : int
        The number of distinct records received.
    """

    def __init__(self, message: str, *, query: str = '', count: int = 0, received: int = 0):
        super().__init__(message)
        self.query, self.count, self.received = query, count, received


def _seconds(limit) -> str:
    return f'{round(limit, 2):g}' if isinstance(limit, (int, float)) else str(limit)


def _shorten(text: str, limit: int = _MAX_BODY) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f'... [{len(text) - limit} more]'


def response_detail(response: requests.Response) -> str:
    """Return what an error response says, as text.

    A JSON body gives its ``detail`` field (or its field errors, e.g. ``name: This field is
    required.``); any other body is returned as text (HTML tags stripped), shortened.
    """
    try:
        body = response.json()
    except ValueError:
        text = response.text or ''
        if '<' in text and '>' in text:  # an HTML error page: keep the words
            text = re.sub(r'(?s)<(script|style).*?</\1>', ' ', text)
            text = re.sub(r'<[^>]+>', ' ', text)
        return _shorten(re.sub(r'\s+', ' ', text))
    if isinstance(body, dict):
        if 'detail' in body:
            return _shorten(str(body['detail']))
        parts = []
        for key, value in body.items():
            if key == 'status_code':
                continue
            if isinstance(value, list):
                value = ' '.join(map(str, value))
            parts.append(f'{key}: {value}' if key not in ('non_field_errors', 'error')
                         else str(value))
        return _shorten('; '.join(parts))
    return _shorten(json.dumps(body))


def _split_rest_query(rest_query: str) -> tuple[str, str | None]:
    """Return the endpoint and record id addressed by a REST query like '/sessions/<id>'."""
    path = urlsplit(rest_query).path.strip('/')
    parts = [p for p in path.split('/') if p]
    endpoint = parts[0] if parts else ''
    record_id = parts[1] if len(parts) > 1 else None
    return endpoint, record_id


def error_from_response(response: requests.Response, rest_query: str = '',
                        method: str | None = None) -> AlyxHTTPError:
    """Build the error matching a failed response.

    Parameters
    ----------
    response : requests.Response
        The response with an error status.
    rest_query : str
        The REST query sent (used to name the endpoint and record).
    method : str, optional
        The HTTP verb, for the message (defaults to the request's).

    Returns
    -------
    AlyxHTTPError
        An instance of the most specific subclass.
    """
    status = response.status_code
    url = response.url or rest_query
    if response.request is not None and response.request.url:
        url = response.request.url
    method = (method or getattr(response.request, 'method', None) or 'GET').upper()
    detail = response_detail(response)
    kwargs = dict(response=response, status_code=status, url=url, rest_query=rest_query,
                  detail=detail)
    reason = response.reason or ''
    where = f'{method} {url}'
    if status == 404:
        endpoint, record_id = _split_rest_query(rest_query or urlsplit(url).path)
        what = (f'no record "{record_id}" in endpoint "{endpoint}"' if record_id
                else f'endpoint "{endpoint}" not found')
        msg = f'404 Not Found: {what} ({where})'
        if detail and not detail.lower().startswith('page not found'):
            msg += f': {_shorten(detail, 300)}'
        return AlyxNotFound(msg, endpoint=endpoint, record_id=record_id, **kwargs)
    if status in (401, 403):
        return AlyxAuthError(f'{status} {reason or "Forbidden"}: {detail} ({where})', **kwargs)
    if status == 429:
        from one._download.http_headers import retry_after

        wait = retry_after(response.headers.get('Retry-After'))
        asked = '' if wait is None else f' (Retry-After: {wait:g} s)'
        return AlyxThrottled(f'429 Too Many Requests: the server throttles the requests of this '
                             f'account{asked}: {detail} ({where})', retry_after=wait, **kwargs)
    if status == 400:
        return AlyxBadRequest(f'400 Bad Request: {detail} ({where})', **kwargs)
    if status >= 500:
        return AlyxServerError(
            f'{status} {reason or "Server Error"}: the server failed on {where}: {detail}',
            **kwargs)
    return AlyxHTTPError(f'{status} {reason}: {detail} ({where})', **kwargs)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """The exceptions wrapped by a requests/urllib3 exception, outermost first."""
    chain, seen = [], set()
    current: object = exc
    while isinstance(current, BaseException) and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        nxt = getattr(current, 'reason', None)
        if not isinstance(nxt, BaseException):
            first = current.args[0] if current.args else None
            nxt = first if isinstance(first, BaseException) else current.__cause__
        current = nxt
    return chain


def _root_reason(exc: BaseException) -> str:
    """The most specific message found in a chain of requests/urllib3 exceptions."""
    reason = str(_exception_chain(exc)[-1])
    # urllib3 prefixes its messages with the connection object's repr; keep the message
    match = re.search(r'(\[SSL[^\]]*\][^\'")]*(?:\([^)]*\))?|\[Errno -?\d+\][^\'")]*)', reason)
    if match:
        return match.group(1).strip()
    reason = re.sub(r'^<[^>]+>:\s*', '', reason)
    return reason.strip() or type(exc).__name__


def _is_read_timeout(exc: BaseException) -> bool:
    from urllib3.exceptions import ReadTimeoutError

    return any(isinstance(e, (ReadTimeoutError, TimeoutError)) for e in _exception_chain(exc))


def error_from_exception(exc: requests.RequestException, url: str,
                         timeout: float | tuple | None = None) -> AlyxError:
    """Translate a `requests` exception raised while talking to the server.

    Parameters
    ----------
    exc : requests.RequestException
        The exception raised by `requests`.
    url : str
        The URL requested (it must not contain credentials).
    timeout : float or tuple, optional
        The timeout in force, quoted in timeout messages.

    Returns
    -------
    AlyxError
        An `AlyxSSLError`, `AlyxConnectTimeout`, `AlyxTimeout`, `AlyxConnectionError` or
        `AlyxInvalidResponse`; other exceptions are returned unchanged.
    """
    host = urlsplit(url).netloc or url
    reason = _root_reason(exc)
    request = getattr(exc, 'request', None)
    if isinstance(exc, requests.exceptions.SSLError):
        return AlyxSSLError(f'TLS/SSL failure talking to {host} ({url}): {reason}',
                            request=request)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return AlyxConnectTimeout(
            f'Timed out connecting to {host} after {_seconds(connect_limit(timeout))} s '
            f'({url}). Check your internet connection and the Alyx database firewall',
            request=request)
    if isinstance(exc, requests.Timeout) or (isinstance(exc, requests.ConnectionError)
                                             and _is_read_timeout(exc)):
        return AlyxTimeout(f'{host} did not answer within {_seconds(read_limit(timeout))} s '
                           f'({url}; read timeout)', request=request)
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return AlyxConnectionError(
            f'The connection to {host} broke while reading the answer ({url}): {reason}',
            request=request)
    if isinstance(exc, requests.ConnectionError):
        return AlyxConnectionError(
            f"Can't connect to {host} ({url}): {reason}.\nCheck your internet connections "
            'and Alyx database firewall', request=request)
    if isinstance(exc, requests.exceptions.InvalidJSONError):
        return AlyxInvalidResponse(f'Invalid JSON from {url}: {reason}', request=request)
    return exc
