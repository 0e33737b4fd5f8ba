"""The HTTP(S) transport: send one request (or a resume request), hand back its body.

Plain HTTP(S) requests go straight through urllib3, one connection pool per origin and thread,
kept between files and batches (requests' per-request machinery cost more than the rest of a
small file's download).  Requests that need more go through a `requests.Session`: a proxy from
the environment, a client certificate, credentials in the URL, or an authentication object
other than a ``(username, password)`` tuple.  Either way the environment's proxies, CA bundle
(``REQUESTS_CA_BUNDLE``) and ``.netrc`` credentials are honoured as requests would, redirects
are followed (credentials dropped when leaving the host) and compressed answers decoded.
"""
from __future__ import annotations

import contextlib
import http.client
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from one._download.connections import Worker
from one._download.defaults import CHUNK_SIZE
from one._download.errors import (
    DownloadError,
    HTTPStatusError,
    RangeUnsatisfiable,
    Transient,
    describe,
    is_retryable,
)
from one._download.http_headers import (
    basic_auth,
    content_range,
    is_pair,
    retry_after,
    strip_auth,
    window_size,
    without_auth,
)
from one._download.paths import quote_url
from one._download.task import Body, DownloadTask, byte_window

_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 30  # as requests
_HEADERS = {**requests.utils.default_headers(), 'Accept-Encoding': 'identity'}


class _Answer:
    """An HTTP answer, from urllib3 or from requests, as `HTTPTransport._body` reads it.

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
                raise Transient(ex) from ex

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
        raise Transient(ex) from ex


class HTTPTransport:
    """Opens ``http(s)://`` tasks; shared by the worker threads of one batch.

    Parameters
    ----------
    timeout : float or (float, float), optional
        (connect, read) timeouts in seconds; None waits for ever.
    """

    def __init__(self, timeout):
        self.timeout = timeout
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

    def open(self, task: DownloadTask, worker: Worker, offset: int,
             validator: str | None) -> Body:
        """Ask for the task's data from byte `offset` on (resuming an answer whose ETag or
        Last-Modified was `validator`)."""
        headers = dict(_HEADERS)
        if task.headers:
            headers.update(task.headers)
        first, last, byte_range = byte_window(task, offset)
        if byte_range:
            headers['Range'] = byte_range
            if offset and validator:
                headers['If-Range'] = validator
        env = self._env_settings(task.url)
        auth = task.auth or env['netrc']
        if env['direct'] and (auth is None or is_pair(auth)):
            if auth is not None:  # like requests: basic auth replaces any Authorization header
                headers = without_auth(headers)
                headers['Authorization'] = basic_auth(*auth)
            answer = self._send_direct(task, worker, headers)
        else:
            answer = None
        if answer is None:
            answer = self._send_requests(task, worker, headers, auth, env)
        try:
            return self._body(task, answer, offset, first, last)
        except BaseException:
            answer.close()
            raise

    def _send_direct(self, task: DownloadTask, worker: Worker,
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
                                    f'{describe(ex)}', task.url, task.destination) from ex
            except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as ex:
                raise Transient(ex) from ex
            location = r.headers.get('Location') if r.status in _REDIRECT_STATUS else None
            if not location:
                return _Answer.from_urllib3(r, url)
            try:  # read the (short) body, so that the connection can be used again
                r.read()
            except Exception:  # noqa: BLE001 - a connection in an unknown state is closed
                r.close()
            r.release_conn()
            new = quote_url(urljoin(url, location))
            if urlsplit(new).scheme.lower() not in ('http', 'https'):
                raise DownloadError(f'Could not download {task.url} to {task.destination}: '
                                    f'redirected to {new}', task.url, task.destination)
            if strip_auth(url, new):
                headers = without_auth(headers)
            url = new
        raise DownloadError(f'Could not download {task.url} to {task.destination}: more than '
                            f'{_MAX_REDIRECTS} redirects', task.url, task.destination)

    def _send_requests(self, task: DownloadTask, worker: Worker, headers: dict, auth,
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
            raise Transient(ex) from ex
        except (requests.RequestException, ValueError) as ex:  # bad URL, too many redirects
            raise DownloadError(f'Could not download {task.url} to {task.destination}: '
                                f'{describe(ex)}', task.url, task.destination) from ex
        return _Answer.from_requests(r)

    def _body(self, task: DownloadTask, r: _Answer, offset: int, first: int,
              last: int | None) -> Body:
        status, headers = r.status, r.headers
        if status == 416 and offset:
            crange = content_range(headers.get('Content-Range'))
            total = None if crange is None or crange[2] is None else crange[2] - first
            r.close()
            raise RangeUnsatisfiable(total)
        if is_retryable(status):
            raise Transient(f'HTTP {status} {r.reason}', retry_after(
                headers.get('Retry-After')), status=status)
        if status == 206:
            crange = content_range(headers.get('Content-Range'))
            if crange is None or crange[0] is None:
                raise Transient(f'invalid Content-Range "{headers.get("Content-Range")}"',
                                restart=True)
            start = crange[0] - first
            total = window_size(first, last, crange[2])
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
        body = Body(start, total, validator, r.close)
        fp = r.fp
        if encoding in ('', 'identity') and isinstance(fp, http.client.HTTPResponse):
            # Read the body straight from http.client, bypassing urllib3's copies
            def readinto(buffer: memoryview) -> int:
                try:
                    return fp.readinto(buffer)
                except (OSError, http.client.HTTPException, ValueError) as ex:
                    raise Transient(ex) from ex

            def finish() -> None:
                if fp.isclosed():  # all read: give the connection back to the pool
                    with contextlib.suppress(Exception):
                        r.release()

            body.readinto, body.finish = readinto, finish
        else:
            body.chunks = r.chunks()
        return body
