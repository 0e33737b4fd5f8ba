"""The `OneRelease` class: `One` on a data release served by a static web server or S3 bucket.

A release (see `one.release.make_release`) is a folder holding cache tables, dataset files and a
``cache_info.json`` describing them.  `OneRelease` keeps a local copy of the tables in its cache
folder (by default one per URL under the ONE downloads folder), revalidated at most once per
`cache_expiry` with a conditional GET of ``cache_info.json``, and downloads dataset files when
they are loaded, with the download engine (verified against the tables' md5 and size,
resumable, parallel).  Searching, listing and loading are those of `One` on the same tables.
No login, no database.  Public import path: `one.api`.
"""
from __future__ import annotations

import logging
import time
import warnings
from datetime import timedelta
from pathlib import Path

import one.params
from one._api.local import One, _check_mode, _known
from one._api.paths import Confinement, dataset_file, record_columns
from one._lib.http_timeouts import resolve_timeout
from one._release.info import (
    INFO_NAME,
    NotARelease,
    ReleaseError,
    ReleaseInfo,
    ReleaseUnreachable,
    parse_info,
    remote_file_path,
)
from one._release.remote import ReleaseSource, is_release_url, normalise_url
from one._release.sync import (
    ReleaseState,
    check_folder,
    default_release_dir,
    local_info,
    sync_tables,
)
from one.alf.path import ALFPath

__all__ = ['OneRelease', 'DEFAULT_EXPIRY']
_logger = logging.getLogger('one.api')

DEFAULT_EXPIRY = timedelta(hours=1)
"""How long the local tables of a release are used before ``cache_info.json`` is revalidated."""

_IGNORED = ('silent', 'cache_rest')  # OneAlyx arguments that mean nothing for a release


class OneRelease(One):
    """Search, list and load a data release served by a web server or an S3 bucket.

    Parameters
    ----------
    base_url : str, optional
        The release: ``http(s)://host/path`` or ``s3://bucket/prefix`` (the folder holding
        ``cache_info.json``).  When None, the release whose copy is in `cache_dir`.
    cache_dir : str, pathlib.Path, optional
        The local folder for the release's tables and the files loaded; by default a folder
        per URL under the ONE downloads folder (`one.params.CACHE_DIR_DEFAULT`).
    mode : {'remote', 'auto', 'refresh', 'local'}
        'remote' and 'auto' revalidate the tables at most once per `cache_expiry` and download
        the files of the datasets loaded; 'refresh' revalidates before every query; 'local'
        makes no request at all (files not yet downloaded are missing).
    wildcards : bool
        See `One`.
    tables_dir : str, pathlib.Path, optional
        Where the local tables go, if not in `cache_dir`.
    profile : str, optional
        The AWS profile for an S3 bucket; by default boto3's usual credentials, or anonymous
        requests when there are none (a public bucket).
    cache_expiry : datetime.timedelta or float, optional
        How long (or how many seconds) the local tables are used before being revalidated;
        default `DEFAULT_EXPIRY` (1 hour).
    lock : str, pathlib.Path, optional
        A lock file the loads must follow (see `One`).
    timeout : float or (float, float), optional
        Read timeout, or (connect, read) timeouts, in seconds of every request; by default
        ``ONE_HTTP_TIMEOUT`` or (10, 60).

    Raises
    ------
    one.release.NotARelease
        The URL serves no valid ``cache_info.json``.
    one.release.ReleaseUnreachable
        The host cannot be reached and there is no local copy of the tables.
    one.release.ReleaseError
        The tables could not be downloaded intact (the message names the table), or
        `cache_dir` holds the copy of another release.

    Examples
    --------
    >>> one = OneRelease('https://data.example.org/mylab/2025')  # doctest: +SKIP
    >>> eids = one.search(subject='KS001')  # doctest: +SKIP
    >>> trials = one.load_object(eids[0], 'trials')  # only these files are downloaded
    ... # doctest: +SKIP
    """

    _records_loads_in_folder = True  # its folder is a download cache (see one._api.lock)

    def __init__(self, base_url=None, cache_dir=None, mode='remote', wildcards=True,
                 tables_dir=None, profile=None, cache_expiry=None, lock=None, timeout=None,
                 **kwargs):
        answer = kwargs.pop('_answer', None)
        for key in _IGNORED:
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f'OneRelease got unexpected arguments: {", ".join(kwargs)}')
        _check_mode(mode)
        folder = tables_dir or cache_dir
        state = ReleaseState.read(folder) if folder else None
        if base_url is None:
            if state is None:
                raise ValueError('OneRelease needs the URL of a release (base_url), or the '
                                 f'cache_dir of a release opened before; {folder} holds none'
                                 if folder else 'OneRelease needs the URL of a release '
                                 '(base_url)')
            base_url = state.url
        self._source = ReleaseSource(base_url, profile=profile, timeout=timeout)
        self._files = None  # the source of the dataset files, when elsewhere
        self._info: ReleaseInfo | None = None
        self._loaded_tables = None  # the tables' state when this instance loaded them
        self.base_url = self._source.url
        self.cache_dir = Path(cache_dir) if cache_dir else default_release_dir(self.base_url)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tables_dir = Path(tables_dir) if tables_dir else self.cache_dir
        if not folder:
            state = ReleaseState.read(tables_dir)
        check_folder(tables_dir, state, self.base_url)
        if isinstance(cache_expiry, (int, float)):
            cache_expiry = timedelta(seconds=cache_expiry)
        expiry = cache_expiry if cache_expiry is not None else DEFAULT_EXPIRY
        self._checked = state.checked if state else 0.0
        self.mode = mode
        have_tables = local_info(tables_dir) is not None and \
            (tables_dir / 'datasets.pqt').exists()
        if mode != 'local' and (not have_tables or answer is not None or mode == 'refresh'
                                or time.time() - self._checked >= expiry.total_seconds()):
            self._sync(tables_dir, answer=answer, have_tables=have_tables)
        elif mode == 'local' and not have_tables:
            raise ReleaseError(f'No local copy of the release {self.base_url} in {tables_dir}: '
                               'open it once without mode="local"')
        state = ReleaseState.read(tables_dir)  # what the tables loaded now are
        super().__init__(cache_dir=self.cache_dir, mode=self.mode, wildcards=wildcards,
                         tables_dir=tables_dir, lock=lock)
        self._loaded_tables = state.tables if state is not None else None
        self.cache_expiry = expiry

    def __repr__(self) -> str:
        return f'One ({"off" if self.offline else "on"}line, {self.base_url})'

    @property
    def offline(self) -> bool:
        """True in 'local' mode: no request is made."""
        return self.mode == 'local'

    @property
    def release_info(self) -> ReleaseInfo | None:
        """one.release.ReleaseInfo: the release's description (its ``cache_info.json``)."""
        if self._info is None:
            self._info = local_info(self._tables_dir)
        return self._info

    # ---- the tables -------------------------------------------------------------------------

    def _sync(self, tables_dir=None, force=False, answer=None, have_tables=True,
              strict=False) -> None:
        """Revalidate the local tables (at most once per `cache_expiry` unless asked).

        When there are local tables, a host that cannot be reached or serves no release any
        more, and (unless `strict`) a release whose tables cannot be downloaded intact, are
        logged as errors; the local tables are used until the next check, after the expiry.
        """
        tables_dir = Path(tables_dir or self._tables_dir)
        try:
            _, info = sync_tables(self._source, tables_dir, force=force, answer=answer)
        except (ReleaseUnreachable, NotARelease) as ex:
            if not have_tables:
                raise
            _logger.error('%s: the release cannot be read (%s); carrying on with the tables '
                          'downloaded before until the next check, after the cache expiry',
                          type(ex).__name__, ex)
            self._checked = time.time()
            return
        except ReleaseError as ex:
            if strict or not have_tables:
                raise
            _logger.error('%s; carrying on with the tables downloaded before', ex)
            self._checked = time.time()  # not again before the expiry
            return
        self._info = info
        self._files = None
        self._checked = time.time()

    def _tables_changed(self) -> bool:
        """Whether the local tables differ from those this instance loaded (e.g. updated by
        another instance or process sharing the cache folder)."""
        state = ReleaseState.read(self._tables_dir)
        return state is not None and state.tables != self._loaded_tables

    def refresh_cache(self, mode='auto'):
        """Revalidate the release's tables if the mode asks for it; reload them if changed.

        Parameters
        ----------
        mode : {'auto', 'remote', 'refresh', 'local'}
            'auto' and 'remote' revalidate when the last check is older than `cache_expiry`;
            'refresh' always does (a conditional GET of ``cache_info.json``); 'local' never.
            Tables that cannot be downloaded intact raise `one.release.ReleaseError` in
            'refresh' mode; otherwise the error is logged and the current tables kept.
            Tables updated in the cache folder by another instance or process are loaded too.

        Returns
        -------
        datetime.datetime
            When the tables were loaded.
        """
        if mode not in ('local', 'auto', 'remote', 'refresh'):
            raise ValueError(f'Unknown refresh type "{mode}"')
        due = mode == 'refresh' or (
            mode in ('auto', 'remote')
            and time.time() - self._checked >= self.cache_expiry.total_seconds())
        if due and not self.offline:
            self._sync(strict=mode == 'refresh')
            if self._tables_changed():
                self.load_cache()
        return One.refresh_cache(self, 'local')

    def load_cache(self, tables_dir=None, clobber=False, **kwargs):
        """Load the local tables of the release; with `clobber`, revalidate them first.

        Returns
        -------
        datetime.datetime
            When the tables were loaded (None if there were none).
        """
        if clobber and not self.offline:
            self._sync(tables_dir, strict=True)
        # the state first: tables replaced meanwhile are then seen as changed next time
        state = ReleaseState.read(tables_dir or self._tables_dir)
        loaded = One.load_cache(self, tables_dir)
        self._loaded_tables = state.tables if state is not None else None
        self._info = self._files = None
        return loaded

    # ---- the files --------------------------------------------------------------------------

    def _files_base(self) -> tuple[str, ReleaseSource] | None:
        """The URL of the release's session folders, and the source that reads it."""
        info = self.release_info
        if info is None:
            return None
        if self._files is None:
            url = self._source.resolve(info.files_url)
            same_scheme = url.partition('://')[0] == self._source.scheme
            self._files = (url, self._source if same_scheme else
                           ReleaseSource(url, profile=self._source.profile,
                                         timeout=self._source.timeout))
        return self._files

    def _download_datasets(self, dsets, update_cache=True, cache_dir=None, **kwargs) -> list:
        """Download dataset files of the release into the cache folder.

        Each file's URL is the release's files URL, the session path and the relative path
        (with the dataset UUID in the name in the 'uuid' layout); it is downloaded by the
        engine, verified against the size and md5 of the table, into
        ``cache_dir/<session path>/<rel_path>``.  Paths are confined to the cache folder as a
        local `One` confines them.

        Parameters
        ----------
        dsets : pandas.DataFrame, pandas.Series, list of dict
            Dataset records.
        update_cache : bool
            Unused (the tables of a release are not changed).
        cache_dir : str, pathlib.Path, optional
            Where to download (default: `cache_dir`).

        Returns
        -------
        list of one.alf.path.ALFPath or None
            One entry per dataset, in order; None for a dataset of an unknown session, or
            whose download failed otherwise than below (logged).

        Raises
        ------
        one._lib.confine.UnsafePath
            A dataset's session folder or ``rel_path`` leads outside the cache folder (the
            message names the dataset and the value); nothing is downloaded.
        one._download.ChecksumMismatch, one._download.SizeMismatch
            A file on the host differs from the release's tables (also when downloaded again);
            its message names the file.  Nothing bad is kept.
        one._download.DownloadConnectionError
            The host could not be reached, or did not answer within the read timeout
            (`one._download.DownloadTimeout`, naming every file that timed out and the
            limit).  The files that did arrive are kept.
        """
        from one._download import (
            ChecksumMismatch,
            DownloadConnectionError,
            DownloadTimeout,
            SizeMismatch,
            download_failure,
            download_files,
        )
        dsets = self._as_records(dsets)
        out = [None] * len(dsets)
        if dsets.empty:
            return out
        base = self._files_base()
        if base is None:
            _logger.error('No cache_info.json in %s: cannot download from %s',
                          self._tables_dir, self.base_url)
            return out
        files_url, source = base
        layout = self.release_info.layout
        guard = Confinement(cache_dir or self.cache_dir)
        ids = [str(x) for x in dsets.index.get_level_values('id')]
        eids = dsets.index.get_level_values('eid') if 'eid' in dsets.index.names else None
        session_paths = self._dataset_session_paths(dsets, ids)
        sizes, hashes = record_columns(dsets, 'file_size', 'hash')
        tasks, positions = [], []
        for i, (session_path, rel_path) in enumerate(zip(session_paths, dsets['rel_path'])):
            if session_path is None or not isinstance(rel_path, str):
                _logger.error('Cannot download dataset %s: unknown session', ids[i])
                continue
            destination = dataset_file(guard, session_path, rel_path, ids[i],
                                       self.uuid_filenames,
                                       eids[i] if eids is not None else None)
            remote = remote_file_path(session_path, rel_path, ids[i], layout)
            size, md5 = _known(sizes[i]), _known(hashes[i])
            tasks.append(source.task(f'{files_url}/{remote}', destination, size, md5))
            positions.append(i)
        outcomes = download_files(tasks, return_errors=True,
                                  timeout=self._source.timeout) if tasks else []
        for i, outcome in zip(positions, outcomes):
            if isinstance(outcome, Exception):
                _logger.error('%s', outcome)
            elif outcome is not None:
                out[i] = ALFPath(outcome)
        failure = download_failure(outcomes, (ChecksumMismatch, SizeMismatch, DownloadTimeout,
                                              DownloadConnectionError))
        if failure is not None:
            raise failure
        return out

    def _download_dataset(self, dset, cache_dir=None, **kwargs):
        """Download one dataset (a record) into `cache_dir` (default: `cache_dir`); return its
        path or None."""
        files = self._download_datasets(dset, cache_dir=cache_dir, **kwargs)
        return files[0] if files else None


def _configured_alyx(url: str) -> bool:
    """Whether `url` is the URL of a database set up in ONE's parameters."""
    try:
        clients = one.params.client_map()
    except Exception:  # noqa: BLE001 - unreadable parameters: not configured
        return False
    return one.params.client_key(url) in clients


def find_release(base_url=None, cache_dir=None, tables_dir=None, username=None, password=None,
                 mode='remote', **_) -> tuple[bool, object]:
    """Whether the arguments of `one.api.ONE` name a data release, cheaply.

    A folder already holding the copy of a release is one (no request).  Otherwise an
    ``s3://`` URL is; an ``http(s)://`` URL is one when it serves a valid ``cache_info.json``
    (one GET, whose answer is handed to `OneRelease`), unless a login is given, the URL is a
    database set up in ONE's parameters, or `mode` is 'local' (then it is a release only when
    its default cache folder holds a copy; no request is made).

    Returns
    -------
    bool
        True for a release.
    Answer or None
        The answer for ``cache_info.json`` when it was fetched.
    """
    folder = tables_dir or cache_dir
    state = ReleaseState.read(folder) if folder else None
    if not base_url:
        return state is not None, None
    if username or password or not is_release_url(str(base_url)):
        return False, None
    try:
        url = normalise_url(base_url)
    except ValueError:
        return False, None
    if url.startswith('s3://'):
        return True, None
    if state is not None and state.url == url:
        return True, None
    if _configured_alyx(url):
        return False, None
    if not folder and ReleaseState.read(default_release_dir(url)) is not None:
        return True, None
    if mode == 'local':
        return False, None
    probe = (5.0, 20.0)  # short waits for a guess, never longer than ONE_HTTP_TIMEOUT's
    source = ReleaseSource(url, timeout=tuple(map(min, probe, resolve_timeout())), retries=0)
    try:
        answer = source.fetch(f'{url}/{INFO_NAME}')
        parse_info(answer.body, answer.url)
    except ReleaseError:
        return False, None
    finally:
        source.close()
    return True, answer


def open_release(mode='remote', wildcards=True, answer=None, **kwargs) -> OneRelease:
    """`OneRelease` from the arguments of `one.api.ONE` (warning about those it ignores)."""
    ignored = sorted(k for k in kwargs if k not in (
        'base_url', 'cache_dir', 'tables_dir', 'profile', 'cache_expiry', 'lock', 'timeout',
        *_IGNORED))
    for key in ignored:
        warnings.warn(f'ONE: "{key}" is ignored for a data release')
        kwargs.pop(key)
    return OneRelease(mode=mode, wildcards=wildcards, _answer=answer, **kwargs)
