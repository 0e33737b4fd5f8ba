"""ONE's HTTP download helpers, built on `download_files` (re-exported by `one.webclient`)."""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from one._download.batch import download_files
from one._download.errors import HTTPStatusError
from one._download.paths import quote_url, safe_join
from one._download.task import DownloadTask

_logger = logging.getLogger(__name__)


def file_record_to_url(file_records: Sequence[Mapping]) -> list[str]:
    """Return the non-null ``data_url`` of Alyx file records.

    Parameters
    ----------
    file_records : sequence of dict
        The ``file_records`` of a dataset record.

    Returns
    -------
    list of str
        The URLs, in order.

    Examples
    --------
    >>> file_record_to_url([{'data_url': 'http://h/a.npy'}, {'data_url': None}])
    ['http://h/a.npy']
    """
    return [fr['data_url'] for fr in file_records if fr.get('data_url') is not None]


def dataset_record_to_url(dataset_record: Mapping | Sequence[Mapping]) -> list[str]:
    """Return the file URLs of one Alyx dataset record, or of a list of them.

    Parameters
    ----------
    dataset_record : dict or list of dict
        Records from the ``datasets`` endpoint (with ``file_records``).

    Returns
    -------
    list of str
        The non-null ``data_url`` values of all their file records.

    Examples
    --------
    >>> dataset_record_to_url({'file_records': [{'data_url': 'http://h/a.npy'}]})
    ['http://h/a.npy']
    """
    if isinstance(dataset_record, Mapping):
        dataset_record = [dataset_record]
    urls = []
    for record in dataset_record:
        urls.extend(file_record_to_url(record.get('file_records') or []))
    return urls


def _target_file(url: str, target_dir) -> tuple[str, Path]:
    """The quoted URL and the local file: ``target_dir / <last URL segment>``."""
    quoted = quote_url(url)
    name = unquote(urlsplit(quoted).path.rstrip('/').rsplit('/', 1)[-1])
    target_dir = Path(target_dir) if target_dir else Path.home() / 'Downloads'
    return quoted, safe_join(target_dir, name.replace('\\', '/').rsplit('/', 1)[-1] or name)


def _http_task(url: str, target_dir, chunks, clobber: bool, username, password,
               headers) -> DownloadTask:
    quoted, dest = _target_file(url, target_dir)
    auth = (username, password) if username and password else None
    return DownloadTask(quoted, dest, auth=auth, headers=dict(headers) if headers else None,
                        clobber=clobber, byte_range=tuple(chunks) if chunks else None)


def http_download_file(full_link_to_file: str, chunks: tuple[int, int] | None = None, *,
                       clobber: bool = False, silent: bool = False, username: str | None = None,
                       password: str | None = None, target_dir: str | os.PathLike = '',
                       return_md5: bool = False, headers: Mapping[str, str] | None = None,
                       timeout: float | tuple[float, float] | None = None):
    """Download one file over HTTP(S) into a folder (ONE's ``http_download_file``).

    The file is written to a temporary file and moved into place only when complete; failed
    transfers are retried and resumed.

    Parameters
    ----------
    full_link_to_file : str
        The file URL.  Its path is percent-quoted (so a ``#`` in a revision folder is sent as
        ``%23``).
    chunks : tuple of (int, int), optional
        ``(first_byte, n_bytes)``: download only this byte range.
    clobber : bool
        Download even if the file already exists (it is replaced only by a complete download).
    silent : bool
        Hide the progress bar.
    username, password : str, optional
        HTTP basic authentication, used when both are given.
    target_dir : str, os.PathLike
        Destination folder (default ``~/Downloads``); the file name is the last segment of the
        URL.
    return_md5 : bool
        Also return the file's md5 hex digest.
    headers : dict, optional
        Extra request headers.
    timeout : float or (float, float), optional
        Read timeout, or (connect, read) timeouts, in seconds; by default ``ONE_HTTP_TIMEOUT``
        or (10, 60).

    Returns
    -------
    pathlib.Path or (pathlib.Path, str)
        The local file (and its md5).  An empty link gives None (or ``(None, None)``).

    Raises
    ------
    HTTPStatusError
        The server answered with an error (logged as ``<status> <url>``); also a
        `requests.HTTPError`.
    DownloadError
        The file could not be downloaded (see `download_files`).
    """
    if not full_link_to_file:
        return (None, None) if return_md5 else None
    task = _http_task(full_link_to_file, target_dir, chunks, clobber, username, password,
                      headers)
    try:
        (result,) = download_files([task], n_threads=1, progress=not silent, return_md5=True,
                                   desc=task.destination.name, timeout=timeout)
    except HTTPStatusError as ex:
        _logger.error('%s %s', ex.status_code, task.url)
        raise
    return result if return_md5 else result[0]


def http_download_file_list(links_to_file_list: Sequence[str], **kwargs):
    """Download several files in parallel (ONE's ``http_download_file_list``).

    Parameters
    ----------
    links_to_file_list : sequence of str
        The URLs (empty entries give None).
    **kwargs
        As `http_download_file`; ``target_dir`` may also be a list with one folder per link.
        ``n_threads`` sets the number of parallel downloads (default: ``ONE_HTTP_DL_THREADS``
        when set, else fitted to the files, see `download_files`).  ``timeout`` bounds the
        waits (see `http_download_file`).

    Returns
    -------
    list
        The local paths in link order; with ``return_md5=True`` a two-element list
        ``[tuple(paths), tuple(md5s)]``.

    Raises
    ------
    AssertionError
        `target_dir` is a list whose length differs from the number of links.
    DownloadError
        A file could not be downloaded (raised once the other files are done).
    """
    links = list(links_to_file_list)
    target_dir = kwargs.pop('target_dir', None)
    if isinstance(target_dir, (list, tuple)):
        assert len(target_dir) == len(links), \
            f'{len(target_dir)} target folders given for {len(links)} links'
        dirs = list(target_dir)
    else:
        dirs = [target_dir] * len(links)
    return_md5 = kwargs.pop('return_md5', False)
    silent = kwargs.pop('silent', False)
    n_threads = kwargs.pop('n_threads', None)
    timeout = kwargs.pop('timeout', None)
    options = {k: kwargs.pop(k, None) for k in ('chunks', 'username', 'password', 'headers')}
    clobber = kwargs.pop('clobber', False)
    if kwargs:
        raise TypeError(f'Unexpected keyword arguments: {", ".join(kwargs)}')
    index, tasks = [], []
    for i, (link, folder) in enumerate(zip(links, dirs)):
        if link:
            index.append(i)
            tasks.append(_http_task(link, folder, options['chunks'], clobber,
                                    options['username'], options['password'],
                                    options['headers']))
    results: list = [(None, None)] * len(links)
    done = download_files(tasks, n_threads=n_threads, progress=not silent and bool(tasks),
                          return_md5=True, timeout=timeout)
    for i, result in zip(index, done):
        results[i] = result
    if return_md5:
        return [tuple(r[0] for r in results), tuple(r[1] for r in results)]
    return [r[0] for r in results]
