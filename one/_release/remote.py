"""Reading a data release from its host: a web server (``http(s)://``) or an S3 bucket.

`ReleaseSource` knows the release's base URL.  It fetches small files (``cache_info.json``)
itself, conditionally (``If-None-Match`` / ``If-Modified-Since``), and hands everything else
to the download engine as `one._download.DownloadTask` objects (verified, resumable,
parallel).  HTTP requests follow the REST client's retry policy (`one._rest.retry`); an S3
bucket is read with the usual boto3 credentials (environment, profile...) and, when there are
none, anonymously (a public bucket), with the clients' configuration of `one.remote.aws`.
boto3, requests and the download engine are imported when first needed.
"""
from __future__ import annotations

import email.utils
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from one._lib.http_timeouts import resolve_timeout
from one._release.info import (
    INFO_NAME,
    NotARelease,
    ReleaseError,
    ReleaseUnreachable,
)

__all__ = ['Answer', 'ReleaseSource', 'normalise_url', 'resolve_url', 'is_release_url']

_SCHEMES = ('http', 'https', 's3')


def is_release_url(url) -> bool:
    """Whether `url` has a scheme a release can be served with (http, https, s3)."""
    return isinstance(url, str) and url.partition('://')[0].lower() in _SCHEMES \
        and '://' in url


def normalise_url(url: str) -> str:
    """The base URL of a release: no trailing '/', no trailing ``/cache_info.json``.

    Raises
    ------
    ValueError
        Not an ``http(s)://`` or ``s3://bucket[/prefix]`` URL.

    Examples
    --------
    >>> normalise_url('https://example.org/data/v1/cache_info.json')
    'https://example.org/data/v1'
    >>> normalise_url('S3://bucket/prefix/')
    's3://bucket/prefix'
    """
    text = str(url).strip()
    if not is_release_url(text):
        raise ValueError(f'Not a release URL: "{url}" (expected http(s)://... or '
                         's3://bucket/prefix)')
    scheme, _, rest = text.partition('://')
    rest = rest.rstrip('/')
    if rest.endswith('/' + INFO_NAME):
        rest = rest[:-len(INFO_NAME) - 1]
    host = rest.partition('/')[0]
    if not host or '?' in rest or '#' in rest:
        raise ValueError(f'Not a release URL: "{url}" (no host or bucket, or a query)')
    return f'{scheme.lower()}://{rest}'


def resolve_url(base: str, ref: str) -> str:
    """The URL of `ref` (absolute, or relative to the folder `base`), without trailing '/'.

    Relative references may climb with ``..`` but not above the host or bucket.

    Raises
    ------
    NotARelease
        `ref` climbs above the host or bucket of `base`.

    Examples
    --------
    >>> resolve_url('s3://bucket/caches/v1', '../../data')
    's3://bucket/data'
    >>> resolve_url('https://h.org/rel', 'sessions.pqt')
    'https://h.org/rel/sessions.pqt'
    """
    if is_release_url(ref):
        return ref.rstrip('/')
    scheme, _, rest = base.partition('://')
    host, _, path = rest.partition('/')
    parts = [p for p in path.split('/') if p]
    for part in ref.split('/'):
        if part in ('', '.'):
            continue
        if part == '..':
            if not parts:
                raise NotARelease(f'The release at {base} refers to "{ref}", which is above '
                                  f'{scheme}://{host}')
            parts.pop()
        else:
            parts.append(part)
    return f'{scheme}://{host}' + ''.join('/' + p for p in parts)


@dataclass
class Answer:
    """The answer to a (conditional) GET of a small file.

    ``status`` is 200 (``body`` holds the data) or 304 (not modified since the validators).
    ``fresh_validators`` is False when the ``Last-Modified`` date is too close to the server's
    clock to tell two versions of the file apart (a change within the same second).
    """

    url: str
    status: int
    body: bytes | None = None
    etag: str | None = None
    last_modified: str | None = None
    fresh_validators: bool = True


class ReleaseSource:
    """The host of a release.

    Parameters
    ----------
    url : str
        ``http(s)://host/path`` or ``s3://bucket/prefix``: the folder of ``cache_info.json``.
    profile : str, optional
        An AWS profile name for an S3 bucket (default: boto3's usual credentials; anonymous
        requests when there are none).
    timeout : float or (float, float), optional
        Read timeout, or (connect, read) timeouts, in seconds of HTTP and S3 requests; by
        default ``ONE_HTTP_TIMEOUT`` or (10, 60) (`one._lib.http_timeouts`).
    retries : int
        Retries of a small file's GET whose connection could not be opened.  Other failures
        are retried as the REST client's queries are (`one._rest.retry`: a read timeout
        once; 429, 502, 503, 504 and resets within ``ONE_REST_DEADLINE``); with 0, nothing is
        retried.
    """

    def __init__(self, url: str, profile: str | None = None, timeout=None,
                 retries: int = 2):
        self.url = normalise_url(url)
        self.scheme = self.url.partition('://')[0]
        self.profile = profile
        self.timeout = resolve_timeout(timeout)
        self.retries = retries
        self.signed = None  # whether S3 requests are signed (known once the client is made)
        self._s3 = None
        self._session = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f'ReleaseSource({self.url!r})'

    @property
    def info_url(self) -> str:
        """The URL of the release's ``cache_info.json``."""
        return f'{self.url}/{INFO_NAME}'

    def resolve(self, ref: str) -> str:
        """The URL of `ref`, absolute or relative to the release (see `resolve_url`)."""
        return resolve_url(self.url, ref)

    # ---- small files ------------------------------------------------------------------------

    def fetch(self, url: str, etag: str | None = None,
              last_modified: str | None = None) -> Answer:
        """GET a small file, conditionally when validators are given.

        Raises
        ------
        NotARelease
            The file does not exist (HTTP 401, 403, 404, 410; S3 NoSuchKey, NoSuchBucket).
        ReleaseUnreachable
            The host could not be reached, or did not answer in time.
        ReleaseError
            Any other failure, e.g. an S3 bucket refusing access (the message says whether
            the request was signed and what to do).
        """
        scheme = url.partition('://')[0].lower()
        if scheme == 's3':
            return self._fetch_s3(url, etag, last_modified)
        return self._fetch_http(url, etag, last_modified)

    def _http(self):
        from one._rest.retry import make_session

        with self._lock:
            if self._session is None:
                self._session = make_session()
            return self._session

    def _fetch_http(self, url: str, etag, last_modified) -> Answer:
        import requests

        from one._download.http_headers import http_date
        from one._download.paths import quote_url
        from one._rest.errors import AlyxConnectionError, AlyxError, AlyxTimeout
        from one._rest.retry import RetryPolicy, resolve_deadline

        headers = {'Accept-Encoding': 'identity'}
        if etag:
            headers['If-None-Match'] = etag
        elif last_modified:
            headers['If-Modified-Since'] = last_modified
        session = self._http()
        policy = RetryPolicy(deadline=resolve_deadline() if self.retries else 0.0,
                             connect_retries=self.retries)
        try:
            r = policy.send(lambda timeout: session.get(quote_url(url), headers=headers,
                                                        timeout=timeout),
                            'GET', url, INFO_NAME, self.timeout)
        except (AlyxConnectionError, AlyxTimeout) as ex:
            raise ReleaseUnreachable(f'Could not reach {url}: {_reason(ex, url)}') from ex
        except (AlyxError, requests.RequestException) as ex:
            raise ReleaseError(f'Could not read {url}: {_reason(ex, url)}') from ex
        if r.status_code == 304:
            return Answer(url, 304, etag=etag, last_modified=last_modified)
        if r.status_code in (401, 403, 404, 410):
            raise NotARelease(f'No release at {url}: HTTP {r.status_code} {r.reason}')
        if r.status_code != 200:
            raise ReleaseError(f'Could not read {url}: HTTP {r.status_code} {r.reason}')
        new_etag = r.headers.get('ETag')
        if new_etag and new_etag.startswith('W/'):
            new_etag = None  # weak: not a byte-for-byte promise
        modified = r.headers.get('Last-Modified')
        fresh = True
        if not new_etag and modified:
            stamp = http_date(modified)
            now = http_date(r.headers.get('Date')) or datetime.now(timezone.utc)
            fresh = stamp is not None and (now - stamp).total_seconds() >= 2
        return Answer(url, 200, r.content, new_etag, modified, fresh)

    # ---- S3 -----------------------------------------------------------------------------------

    @property
    def s3(self):
        """The boto3 S3 client (credentials from `profile` or boto3's chain, or anonymous
        without any), with the timeouts of `one.remote.aws`'s clients.

        Raises
        ------
        ReleaseError
            The AWS profile does not exist.
        """
        with self._lock:
            if self._s3 is None:
                import boto3
                from botocore.exceptions import ProfileNotFound

                from one.remote.aws import _config
                try:
                    session = boto3.Session(profile_name=self.profile) if self.profile \
                        else boto3.Session()
                    signed = bool(self.profile) or session.get_credentials() is not None
                except ProfileNotFound as ex:
                    raise ReleaseError(f'Cannot read the release {self.url}: {ex}; name a '
                                       'profile of your AWS configuration, or none for the '
                                       'default credentials') from None
                self._s3 = session.client('s3', config=_config(not signed, self.timeout))
                self.signed = signed
            return self._s3

    def _access_denied(self, url: str, code) -> ReleaseError:
        if not self.signed:
            return ReleaseError(f'{url}: an anonymous request was refused ({code}); the bucket '
                                'is not public: pass profile= or configure AWS credentials')
        who = f'the AWS profile "{self.profile}"' if self.profile else \
            "boto3's default AWS credentials"
        return ReleaseError(f'{url}: a request signed with {who} was refused ({code}); check '
                            'those credentials, or pass another profile=')

    def _fetch_s3(self, url: str, etag, last_modified) -> Answer:
        from botocore import exceptions as bex

        from one._download.http_headers import http_date

        bucket, _, key = url.partition('://')[2].partition('/')
        kwargs = {'Bucket': bucket, 'Key': key}
        if etag:
            kwargs['IfNoneMatch'] = etag
        elif http_date(last_modified):
            kwargs['IfModifiedSince'] = http_date(last_modified)
        client = self.s3
        try:
            response = client.get_object(**kwargs)
            body = response['Body'].read()
        except bex.ClientError as ex:
            status = (ex.response.get('ResponseMetadata') or {}).get('HTTPStatusCode')
            code = str((ex.response.get('Error') or {}).get('Code', ''))
            if status == 304 or code == '304':
                return Answer(url, 304, etag=etag, last_modified=last_modified)
            if status == 404 or code in ('NoSuchKey', 'NoSuchBucket'):
                raise NotARelease(f'No release at {url}: {code or status}') from ex
            if status in (401, 403) or code in _DENIED:
                raise self._access_denied(url, code or status) from ex
            raise ReleaseError(f'Could not read {url}: {code} (HTTP {status})') from ex
        except (bex.EndpointConnectionError, bex.ConnectTimeoutError,
                bex.ReadTimeoutError, bex.ConnectionClosedError) as ex:
            raise ReleaseUnreachable(f'Could not reach {url}: {ex}') from ex
        except bex.BotoCoreError as ex:
            raise ReleaseError(f'Could not read {url}: {ex}') from ex
        modified = response.get('LastModified')
        return Answer(url, 200, body, response.get('ETag'),
                      email.utils.format_datetime(modified.astimezone(timezone.utc), usegmt=True)
                      if modified else None)

    # ---- large files ----------------------------------------------------------------------

    def task(self, url: str, destination, size=None, md5=None):
        """A download task of the engine (`one._download.DownloadTask`) for a file of the
        release."""
        from one._download.task import DownloadTask

        if url.partition('://')[0].lower() == 's3':
            return DownloadTask(url, destination, size=size, md5=md5, s3=self.s3)
        return DownloadTask(url, destination, size=size, md5=md5)

    def close(self) -> None:
        """Close the HTTP connections kept for small files."""
        if self._session is not None:
            self._session.close()
            self._session = None


_DENIED = ('AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'ExpiredToken',
           'InvalidToken', 'SignatureDoesNotMatch')


def _reason(error: BaseException, url: str) -> str:
    """The first sentence of a connection error's message, without the URL (said already) nor
    the REST client's advice about Alyx databases."""
    text = str(error).split('\n')[0].replace(f' ({url})', '').replace(f'{url}; ', '')
    return text.split('. Check your internet connection')[0].rstrip('.')
