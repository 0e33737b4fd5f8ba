"""Reading a data release from its host: a web server (``http(s)://``) or an S3 bucket.

`ReleaseSource` knows the release's base URL.  It fetches small files (``cache_info.json``)
itself, conditionally (``If-None-Match`` / ``If-Modified-Since``), and hands everything else
to the download engine as `one._lib.download.DownloadTask` objects (verified, resumable,
parallel).  An S3 bucket is read with the usual boto3 credentials (environment, profile...);
when there are none, anonymously (a public bucket).  boto3 and requests are imported when first
needed.
"""
from __future__ import annotations

import email.utils
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from one._lib.download.paths import quote_url
from one._lib.download.s3_transport import s3_config
from one._lib.download.task import DownloadTask
from one._lib.http_timeouts import resolve_timeout
from one._lib.release_info import (
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


def _http_time(value) -> datetime | None:
    """An HTTP date as an aware datetime (UTC when it gives no zone), None if unreadable."""
    try:
        stamp = email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        return None
    if stamp is not None and stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp


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
        Retries of a small file's GET after a connection error, a timeout or HTTP 429/5xx.
    """

    def __init__(self, url: str, profile: str | None = None, timeout=None,
                 retries: int = 2):
        self.url = normalise_url(url)
        self.scheme = self.url.partition('://')[0]
        self.profile = profile
        self.timeout = resolve_timeout(timeout)
        self.retries = retries
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
            The file does not exist (HTTP 404, 403, 410; S3 NoSuchKey, AccessDenied).
        ReleaseUnreachable
            The host could not be reached.
        ReleaseError
            Any other failure.
        """
        scheme = url.partition('://')[0].lower()
        if scheme == 's3':
            return self._fetch_s3(url, etag, last_modified)
        return self._fetch_http(url, etag, last_modified)

    def _http(self):
        with self._lock:
            if self._session is None:
                import requests
                from urllib3.util.retry import Retry

                session = requests.Session()
                n = self.retries
                retry = Retry(total=n, connect=n, read=min(n, 1), backoff_factor=0.2,
                              status_forcelist=(429, 500, 502, 503, 504),
                              allowed_methods=('GET',), raise_on_status=False)
                adapter = requests.adapters.HTTPAdapter(max_retries=retry)
                session.mount('http://', adapter)
                session.mount('https://', adapter)
                self._session = session
            return self._session

    def _fetch_http(self, url: str, etag, last_modified) -> Answer:
        import requests

        headers = {'Accept-Encoding': 'identity'}
        if etag:
            headers['If-None-Match'] = etag
        elif last_modified:
            headers['If-Modified-Since'] = last_modified
        try:
            r = self._http().get(quote_url(url), headers=headers, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as ex:
            raise ReleaseUnreachable(f'Could not reach {url}: {ex}') from ex
        except requests.RequestException as ex:
            raise ReleaseError(f'Could not read {url}: {ex}') from ex
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
            stamp, now = _http_time(modified), _http_time(r.headers.get('Date'))
            now = now or datetime.now(timezone.utc)
            fresh = stamp is not None and (now - stamp).total_seconds() >= 2
        return Answer(url, 200, r.content, new_etag, modified, fresh)

    # ---- S3 -----------------------------------------------------------------------------------

    @property
    def s3(self):
        """The boto3 S3 client (credentials from boto3's chain, or anonymous without any)."""
        with self._lock:
            if self._s3 is None:
                import boto3
                from botocore import UNSIGNED
                from botocore.config import Config

                session = boto3.Session(profile_name=self.profile) if self.profile \
                    else boto3.Session()
                config = s3_config(self.timeout)  # timeouts, a call tried twice
                if session.get_credentials() is None:
                    config = config.merge(Config(signature_version=UNSIGNED))
                self._s3 = session.client('s3', config=config)
            return self._s3

    def _fetch_s3(self, url: str, etag, last_modified) -> Answer:
        from botocore import exceptions as bex

        bucket, _, key = url.partition('://')[2].partition('/')
        kwargs = {'Bucket': bucket, 'Key': key}
        if etag:
            kwargs['IfNoneMatch'] = etag
        elif last_modified and _http_time(last_modified):
            kwargs['IfModifiedSince'] = _http_time(last_modified)
        try:
            response = self.s3.get_object(**kwargs)
            body = response['Body'].read()
        except bex.ClientError as ex:
            status = (ex.response.get('ResponseMetadata') or {}).get('HTTPStatusCode')
            code = str((ex.response.get('Error') or {}).get('Code', ''))
            if status == 304 or code == '304':
                return Answer(url, 304, etag=etag, last_modified=last_modified)
            if status in (403, 404) or code in ('NoSuchKey', 'NoSuchBucket', 'AccessDenied'):
                raise NotARelease(f'No release at {url}: {code or status}') from ex
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

    def task(self, url: str, destination, size=None, md5=None) -> DownloadTask:
        """A download task of the engine for a file of the release."""
        if url.partition('://')[0].lower() == 's3':
            return DownloadTask(url, destination, size=size, md5=md5, s3=self.s3)
        return DownloadTask(url, destination, size=size, md5=md5)

    def close(self) -> None:
        """Close the HTTP connections kept for small files."""
        if self._session is not None:
            self._session.close()
            self._session = None
