"""Downloads from Amazon S3 buckets.

boto3 is imported only when a function here needs it, so ``import one.remote.aws`` is cheap.
Its exceptions can still be imported from this module (``from one.remote.aws import
ClientError``); they are loaded on first access.

Credentials come from an Alyx data repository record (its ``json`` field holds
``bucket_name``, ``Access key ID``, ``Secret access key`` and optionally ``region_name``); a
repository without keys whose bucket name contains "public" is read anonymously (unsigned
requests).  Files are downloaded by the engine of `one._download`: into a temporary file
beside the destination, resumed after an interruption, checked against the object size and
moved into place only when complete.  The resources made here have connect and read timeouts
(``ONE_HTTP_TIMEOUT``, or the Alyx client's ``timeout``) and retry a call once.

Examples
--------
>>> from one.remote import aws
>>> aws.url2uri('https://bucket.s3.eu-east-1.amazonaws.com/path/to/file', True)
('s3://bucket/path/to/file', 'eu-east-1')
>>> aws.get_s3_virtual_host('s3://bucket/path/to/file', 'us-east-1')
'https://bucket.s3.us-east-1.amazonaws.com/path/to/file'
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlsplit

from one._download import DownloadTask, download_files, s3_config, safe_join

__all__ = [
    'REPO_DEFAULT', 'S3_BUCKET_IBL', 'REGION_NAME', 'get_s3_virtual_host', 'url2uri',
    'is_folder', 'get_aws_access_keys', 'get_s3_public', 'get_s3_allen', 'get_s3_from_alyx',
    's3_download_file', 's3_download_folder',
]

_logger = logging.getLogger(__name__)

REPO_DEFAULT = 'aws_cortexlab'
"""Name of the Alyx data repository of the IBL's S3 bucket."""

S3_BUCKET_IBL = 'ibl-brain-wide-map-public'
"""The IBL's public bucket."""

REGION_NAME = 'us-east-1'
"""Region of the IBL's public bucket."""

_ALLEN_BUCKET = 'allen-brain-cell-atlas'
_ALLEN_REGION = 'us-west-2'
_BOTOCORE_ERRORS = frozenset({
    'ClientError', 'NoCredentialsError', 'PartialCredentialsError', 'BotoCoreError',
    'EndpointConnectionError',
})


def __getattr__(name: str) -> Any:
    """Load botocore's exceptions (``ClientError``...) on first access."""
    if name in _BOTOCORE_ERRORS:
        from botocore import exceptions

        value = getattr(exceptions, name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def get_s3_virtual_host(uri: str, region: str) -> str:
    """Convert an S3 URI into the virtual-hosted-style HTTPS URL of its region.

    Parameters
    ----------
    uri : str
        ``s3://bucket/path/to/file``, or ``bucket/path`` without the scheme.
    region : str
        The bucket's region, e.g. ``'us-east-1'``.

    Returns
    -------
    str
        ``https://bucket.s3.<region>.amazonaws.com/path/to/file``, without the path's leading
        and trailing slashes.  As ONE-api: a URI with the ``s3://`` scheme and no path gives
        the bucket's URL ending with ``/``; a bare ``bucket/`` gives it without.

    Raises
    ------
    AssertionError
        `region` does not look like an AWS region.

    Examples
    --------
    >>> get_s3_virtual_host('s3://my-bucket/a/b.npy', 'eu-west-2')
    'https://my-bucket.s3.eu-west-2.amazonaws.com/a/b.npy'
    >>> get_s3_virtual_host('s3://my-bucket', 'us-east-1')
    'https://my-bucket.s3.us-east-1.amazonaws.com/'
    >>> get_s3_virtual_host('my-bucket/', 'us-east-1')
    'https://my-bucket.s3.us-east-1.amazonaws.com'
    """
    assert re.match(r'\w{2}-\w+-[1-3]$', region or ''), f'Invalid region "{region}"'
    if '://' in uri:
        parsed = urlsplit(uri)
        bucket, path = parsed.netloc, parsed.path.strip('/')
        return f'https://{bucket}.s3.{region}.amazonaws.com/{path}'
    bucket, _, path = uri.lstrip('/').partition('/')
    path = path.strip('/')
    return f'https://{bucket}.s3.{region}.amazonaws.com' + (f'/{path}' if path else '')


_VIRTUAL_HOST = re.compile(r'^(?P<bucket>.+?)\.s3(?:[.-](?P<region>[\w-]+?))?\.amazonaws\.com$')


def url2uri(data_path: str, return_location: bool = False):
    """Convert an S3 HTTPS URL into an ``s3://`` URI.

    Parameters
    ----------
    data_path : str
        A virtual-hosted-style URL, e.g.
        ``https://bucket.s3.eu-east-1.amazonaws.com/path/to/file``.
    return_location : bool
        Also return the region found in the host name (None when it has none).

    Returns
    -------
    str or (str, str)
        ``s3://bucket/path/to/file`` (and ``'eu-east-1'``).

    Examples
    --------
    >>> url2uri('https://bucket.s3.eu-east-1.amazonaws.com/path/to/file')
    's3://bucket/path/to/file'
    """
    parsed = urlsplit(data_path)
    host = parsed.hostname or parsed.netloc
    match = _VIRTUAL_HOST.match(host)
    if match:
        bucket, location, path = match['bucket'], match['region'], parsed.path
    elif host.startswith('s3.') or host.startswith('s3-'):  # path style: host/bucket/key
        location = host.split('.')[1] if host.startswith('s3.') else host[3:].split('.')[0]
        location = None if location == 'amazonaws' else location
        bucket, _, rest = parsed.path.lstrip('/').partition('/')
        path = '/' + rest
    else:  # any other host: take its first label as the bucket
        bucket, _, location = host.partition('.s3.')
        location = location.split('.')[0] or None
        path = parsed.path
    uri = f's3://{bucket}{path}'
    return (uri, location) if return_location else uri


def is_folder(obj_summary) -> bool:
    """Whether an S3 object summary is a folder placeholder (key ending in '/', no data).

    Parameters
    ----------
    obj_summary : boto3 ObjectSummary
        Any object with ``key`` and ``size`` attributes.

    Returns
    -------
    bool
    """
    return obj_summary.key.endswith('/') and obj_summary.size == 0


def get_aws_access_keys(alyx, repo_name: str = REPO_DEFAULT) -> tuple[dict, str]:
    """Read the S3 credentials and bucket of an Alyx data repository.

    Parameters
    ----------
    alyx : one.webclient.AlyxClient
        A connected Alyx client.
    repo_name : str
        The data repository name.

    Returns
    -------
    dict
        ``aws_access_key_id``, ``aws_secret_access_key`` and ``region_name`` (None when the
        record has none), ready for `boto3.Session`.
    str
        The bucket name.

    Raises
    ------
    KeyError
        The record's ``json`` field names no bucket (e.g. an HTTP file server repository).
    """
    repo_json = alyx.rest('data-repository', 'read', id=repo_name)['json']
    if not isinstance(repo_json, dict) or not repo_json.get('bucket_name'):
        raise KeyError(f'The data repository "{repo_name}" names no S3 bucket in its json field')
    keys = {
        'aws_access_key_id': repo_json.get('Access key ID'),
        'aws_secret_access_key': repo_json.get('Secret access key'),
        'region_name': repo_json.get('region_name'),
    }
    return keys, repo_json['bucket_name']


def _config(unsigned: bool, timeout=None):
    """The botocore configuration of our resources: timeouts, one retry, maybe unsigned."""
    if not unsigned:
        return s3_config(timeout)
    from botocore import UNSIGNED

    return s3_config(timeout, signature_version=UNSIGNED)


def _anonymous_resource(region: str):
    """An S3 resource making unsigned requests in `region`."""
    import boto3

    return boto3.Session(region_name=region).resource('s3', config=_config(True))


def get_s3_public() -> tuple[Any, str]:
    """Return an anonymous S3 resource and the name of the IBL's public bucket.

    Returns
    -------
    boto3.resources.factory.s3.ServiceResource
        An S3 resource in `REGION_NAME` making unsigned requests.
    str
        `S3_BUCKET_IBL`.
    """
    return _anonymous_resource(REGION_NAME), S3_BUCKET_IBL


def get_s3_allen() -> tuple[Any, str]:
    """Return an anonymous S3 resource and the name of the Allen brain cell atlas bucket.

    Returns
    -------
    boto3.resources.factory.s3.ServiceResource
        An S3 resource in us-west-2 making unsigned requests.
    str
        ``'allen-brain-cell-atlas'``.
    """
    return _anonymous_resource(_ALLEN_REGION), _ALLEN_BUCKET


def get_s3_from_alyx(alyx, repo_name: str = REPO_DEFAULT) -> tuple[Any, str]:
    """Return an S3 resource and bucket name for an Alyx data repository.

    A repository record without keys whose bucket name contains "public" (any case) gets an
    anonymous resource (unsigned requests); otherwise the record's keys are used, or, when it
    has none, boto3's usual credentials (environment, profile...).  The record is read before
    boto3 is imported, so a database without the repository costs no boto3 import.

    Parameters
    ----------
    alyx : one.webclient.AlyxClient
        A connected Alyx client.
    repo_name : str
        The data repository name.

    Returns
    -------
    boto3.resources.factory.s3.ServiceResource
        The S3 resource.
    str
        The bucket name.
    """
    session_keys, bucket_name = get_aws_access_keys(alyx, repo_name)
    import boto3

    no_keys = not (session_keys['aws_access_key_id'] or session_keys['aws_secret_access_key'])
    config = _config(no_keys and 'public' in bucket_name.lower(),
                     getattr(alyx, 'timeout', None))
    session = boto3.Session(**session_keys)
    return session.resource('s3', config=config), bucket_name


def s3_download_file(source, destination, s3=None, bucket_name: str | None = None,
                     overwrite: bool = False) -> Path | None:
    """Download one S3 object to a local file.

    Parameters
    ----------
    source : str or pathlib.PurePath
        The object key, e.g. ``'data/lab/Subjects/.../obj.attr.<uuid>.npy'``.
    destination : str or os.PathLike
        The local file (its folder is created).
    s3 : boto3 S3 resource or client, optional
        Default: the anonymous resource of the IBL's public bucket (`get_s3_public`).
    bucket_name : str, optional
        The bucket (default `S3_BUCKET_IBL` with the default resource).
    overwrite : bool
        Download even when the destination exists with the object's size.

    Returns
    -------
    pathlib.Path or None
        The destination, or None when the object does not exist (the error is logged).

    Raises
    ------
    botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError
        No usable credentials.
    botocore.exceptions.ClientError
        Any other S3 error reading the object's metadata (e.g. 403).
    one._download.DownloadError
        The transfer failed (after retries) or gave a file of the wrong size; the destination
        is left untouched.
    """
    from botocore.exceptions import ClientError

    destination = Path(destination)
    if s3 is None:
        s3, default_bucket = get_s3_public()
        bucket_name = bucket_name or default_bucket
    bucket_name = bucket_name or S3_BUCKET_IBL
    key = _key(source)
    destination.parent.mkdir(parents=True, exist_ok=True)
    client = _client(s3)
    try:
        size = client.head_object(Bucket=bucket_name, Key=key)['ContentLength']
    except ClientError as ex:
        if str(ex.response.get('Error', {}).get('Code')) in ('404', 'NoSuchKey'):
            _logger.error('File %s not found on %s', source, bucket_name)
            return None
        raise
    if not overwrite and destination.is_file() and destination.stat().st_size == size:
        _logger.debug('%s exists and match size -- skipping', destination)
        return destination
    task = DownloadTask(f's3://{bucket_name}/{key}', destination, size=size, clobber=True,
                        s3=client)
    (path,) = download_files([task], n_threads=1, desc=f'(S3) {destination}')
    return path


def s3_download_folder(source, destination, s3=None, bucket_name: str = S3_BUCKET_IBL,
                       overwrite: bool = False) -> list[Path]:
    """Download all the objects under an S3 prefix, in parallel, keeping their layout.

    Parameters
    ----------
    source : str or pathlib.PurePath
        The prefix (a "folder"): objects ``<source>/...`` are downloaded; folder placeholders
        and keys that merely start like it (``<source>_alt/...``) are skipped.
    destination : str or os.PathLike
        The local folder; ``<source>/a/b.npy`` goes to ``destination/a/b.npy``.
    s3 : boto3 S3 resource or client, optional
        Default: the anonymous resource of the IBL's public bucket.
    bucket_name : str
        The bucket.
    overwrite : bool
        Download even the files that exist locally with the object's size.

    Returns
    -------
    list of pathlib.Path
        The local files, in listing order (including those already present).

    Raises
    ------
    AssertionError
        `destination` exists and is not a folder.
    one._download.UnsafePath
        A key would land outside `destination` (``..`` parts).
    one._download.DownloadError
        A file could not be downloaded (raised once the others are done).
    """
    destination = Path(destination)
    if destination.exists():
        assert destination.is_dir(), f'The destination "{destination}" must be a folder'
    if s3 is None:
        s3, bucket_name = get_s3_public()
    prefix = _key(source).strip('/')
    client = _client(s3)
    paths, tasks = [], []
    paginator = client.get_paginator('list_objects_v2')
    for page in paginator.paginate(Bucket=bucket_name, Prefix=prefix):
        for obj in page.get('Contents', []):
            key, size = obj['Key'], obj['Size']
            if key.endswith('/') and size == 0:
                continue  # folder placeholder
            if prefix and not key.startswith(prefix + '/'):
                continue  # a look-alike such as <source>_alt/...
            local = safe_join(destination, key[len(prefix) + 1:] if prefix else key)
            paths.append(local)
            if not overwrite and local.is_file() and local.stat().st_size == size:
                _logger.debug('%s exists and match size -- skipping', local)
                continue
            tasks.append(DownloadTask(f's3://{bucket_name}/{key}', local, size=size,
                                      clobber=True, s3=client))
    download_files(tasks, desc=f'(S3) {destination}')
    return paths


def _key(source) -> str:
    """An S3 key from a str or a path (always with forward slashes)."""
    if isinstance(source, PurePath):
        return source.as_posix()
    return os.fspath(source)


def _client(s3):
    """The low-level client of an S3 resource (or the client itself)."""
    client = getattr(getattr(s3, 'meta', None), 'client', None)
    return client if client is not None else s3
