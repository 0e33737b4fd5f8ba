"""The S3 transport: ``get_object`` of one ``s3://bucket/key`` task (boto3 imported lazily).

S3 clients made by one-next are configured by `s3_config`: the connect and read timeouts of
`one._lib.http_timeouts`, at most `S3_ATTEMPTS` attempts per call, so that a read timeout is
retried once (by botocore for a call, by the engine while streaming a body), and a pool of
connections as large as the most concurrent downloads a bucket can get (botocore keeps 10 by
default: the other streams would open a new connection for every file).
"""
from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator

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
from one._download.http_headers import content_range, window_size
from one._download.streams import max_per_host
from one._download.task import Body, DownloadTask, byte_window
from one._lib.http_timeouts import resolve_timeout

S3_ATTEMPTS = 2
"""Attempts botocore makes per S3 call with `s3_config` (a timeout is retried once)."""


def s3_config(timeout=None, **kwargs):
    """A botocore ``Config`` with our timeouts and retries (botocore imported here).

    Parameters
    ----------
    timeout : float or (float, float), optional
        Read timeout, or (connect, read) timeouts, in seconds; see
        `one._lib.http_timeouts.resolve_timeout` (``ONE_HTTP_TIMEOUT`` by default).
    **kwargs
        Other ``Config`` settings (e.g. ``signature_version``, ``max_pool_connections``).

    Returns
    -------
    botocore.config.Config
        With ``max_pool_connections`` = `s3_pool_size` unless given.
    """
    from botocore.config import Config

    connect, read = resolve_timeout(timeout)
    kwargs.setdefault('max_pool_connections', s3_pool_size())
    return Config(connect_timeout=connect, read_timeout=read,
                  retries={'mode': 'standard', 'total_max_attempts': S3_ATTEMPTS}, **kwargs)


def s3_pool_size() -> int:
    """Connections an S3 client keeps: the most concurrent downloads from one bucket.

    A batch never downloads more files from one server (a bucket) at once than
    ``ONE_HTTP_DL_MAX_PER_HOST`` allows (32 by default, also the most streams chosen
    automatically, `one._download.streams`), whatever its number of streams: a pool of that
    size keeps a connection for every stream.
    """
    return max_per_host()


class S3Transport:
    """Opens ``s3://`` tasks with the task's client, or a default one shared by the batch.

    Parameters
    ----------
    timeout : float or (float, float), optional
        The timeouts of the default client (tasks' own clients keep their configuration).
    """

    def __init__(self, timeout=None):
        self._default = None
        self._timeout = timeout
        self._lock = threading.Lock()

    def client(self, task: DownloadTask):
        """The boto3 S3 client of a task."""
        s3 = task.s3
        if s3 is None:
            with self._lock:
                if self._default is None:
                    import boto3

                    self._default = boto3.client('s3', config=s3_config(self._timeout))
                return self._default
        client = getattr(getattr(s3, 'meta', None), 'client', None)
        return client if client is not None else s3

    def open(self, task: DownloadTask, worker: Worker, offset: int,
             validator: str | None) -> Body:
        """Ask for the object's data from byte `offset` on (resuming the object whose ETag was
        `validator`)."""
        bucket, _, key = task.url.partition('://')[2].partition('/')
        kwargs = {'Bucket': bucket, 'Key': key}
        first, last, byte_range = byte_window(task, offset)
        if byte_range:
            kwargs['Range'] = byte_range
            if offset and validator:
                kwargs['IfMatch'] = validator
        try:
            response = self.client(task).get_object(**kwargs)
        except Exception as ex:  # botocore retried the call as its configuration says
            raise self._error(task, ex, retried=True) from ex
        crange = content_range(response.get('ContentRange'))
        if crange is not None and crange[0] is not None:
            start = crange[0] - first
            total = window_size(first, last, crange[2])
        else:
            start, total = 0, response.get('ContentLength')
        stream = response['Body']
        return Body(start, total, response.get('ETag'), stream.close,
                    chunks=self._chunks(task, stream))

    def _chunks(self, task: DownloadTask, stream) -> Iterator:
        try:
            yield from stream.iter_chunks(CHUNK_SIZE)
        except Exception as ex:
            raise self._error(task, ex) from ex

    @staticmethod
    def _error(task: DownloadTask, ex: Exception, retried: bool = False) -> Exception:
        """Sort a boto3/botocore error into retryable (`Transient`) or final."""
        from botocore import exceptions as bex

        if isinstance(ex, bex.ClientError):
            error = ex.response.get('Error', {}) or {}
            code = str(error.get('Code', ''))
            status = (ex.response.get('ResponseMetadata', {}) or {}).get('HTTPStatusCode')
            if status == 416 or code == 'InvalidRange':
                size = error.get('ActualObjectSize')
                return RangeUnsatisfiable(int(size) if str(size).isdigit() else None)
            if status == 412 or code == 'PreconditionFailed':
                return Transient('the object changed since the partial download',
                                 restart=True)
            if is_retryable(status) or code in (
                    'SlowDown', 'RequestTimeout', 'InternalError', 'ServiceUnavailable'):
                return Transient(ex, status=status)
            what = 'not found' if status == 404 or code in ('404', 'NoSuchKey') else \
                f'{code} (HTTP {status})'
            return HTTPStatusError(f'Could not download {task.url} to {task.destination}: '
                                   f'{what}', task.url, task.destination, status_code=status)
        # ConnectionError: refused, connect timeouts; HTTPClientError: reset, read timeouts
        transient = (bex.ConnectionError, bex.HTTPClientError, bex.IncompleteReadError,
                     getattr(bex, 'ResponseStreamingError', bex.HTTPClientError), OSError,
                     http.client.HTTPException)
        if isinstance(ex, (*transient, urllib3.exceptions.HTTPError)):
            return Transient(ex, retried=retried)
        return DownloadError(f'Could not download {task.url} to {task.destination}: '
                             f'{describe(ex)}', task.url, task.destination)
