"""The `OneAlyx` class: `One` with an Alyx database and a remote file store.

In 'remote' mode searches and listings query the REST API (`one.webclient.AlyxClient`), the
sessions read are merged into the cache tables, and missing or damaged files are downloaded into
the data folder (`one._download`); in 'auto' mode the database's cache tables are downloaded
when the local ones have expired.  Public import path: `one.api`.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import re
import warnings
import weakref
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit
from uuid import UUID

import pandas as pd

import one.alf.exceptions as alferr
import one.alf.io as alfio
from one import __version__, util
from one._api.local import One, _check_mode, _dataset_id_str, _known
from one._api.paths import Confinement, record_columns, session_folder
from one.alf.path import ALFPath, rel_path_parts
from one.alf.path import remove_uuid_string as remove_uuid
from one.alf.spec import QC
from one.converters import recurse
from one.util import ensure_list

__all__ = ['OneAlyx']
_logger = logging.getLogger('one.api')

def _falls_back_to_local_tables(method):
    """Decorate a method that may query Alyx: when Alyx cannot be reached, log it once, switch
    the instance to 'local' mode and answer from the cache tables."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        from one._rest.errors import AlyxConnectionError
        try:
            return method(self, *args, **kwargs)
        except AlyxConnectionError as ex:
            if self.offline:
                raise
            self._go_offline(ex)
            return method(self, *args, **kwargs)
    return wrapper


def _version_tuple(version) -> tuple:
    """'2.10.1' -> (2, 10, 1): the leading numbers of a version string."""
    return tuple(int(x) for x in re.findall(r'\d+', str(version).split('+')[0])[:3])


class OneAlyx(One):
    """Search and load data through an Alyx database, with the cache tables of a data folder.

    Parameters
    ----------
    username, password : str, optional
        The Alyx login (the stored parameters/token when None).
    base_url : str, optional
        The Alyx database URL; the configured default when None.
    cache_dir : str, pathlib.Path, optional
        The data folder; the client's configured folder when None.
    mode : {'remote', 'auto', 'local', 'refresh'}
        'remote' queries the database; 'local' uses only the cache tables.  When the database
        cannot be reached, the mode falls back to 'local' (with a logged error).
    wildcards : bool
        See `One`.
    tables_dir : str, pathlib.Path, optional
        Where the cache tables are, if not in `cache_dir`.
    lock : str, pathlib.Path, optional
        A lock file: only the datasets it lists, in its versions, can be loaded (see `One`).
    **kwargs
        Passed to `one.webclient.AlyxClient` (silent, cache_rest, timeout, retries,
        deadline).  ``timeout`` also bounds the waits of HTTP and S3 downloads.
    """

    _records_loads_in_folder = True  # its folder is a download cache (see one._api.lock)

    def __init__(self, username=None, password=None, base_url=None, cache_dir=None,
                 mode='remote', wildcards=True, tables_dir=None, lock=None, **kwargs):
        from one._api.sessions import SessionMemo
        from one._rest.errors import AlyxConnectionError
        from one.webclient import AlyxClient
        _check_mode(mode)  # before connecting
        self._data_urls = {}
        self._sessions_read = SessionMemo()
        try:
            self._web_client = AlyxClient(username=username, password=password,
                                          base_url=base_url, cache_dir=cache_dir, **kwargs)
        except AlyxConnectionError as ex:
            _logger.error('%s: Failed to connect to Alyx (%s); using the local cache tables',
                          type(ex).__name__, ex)
            # A client that does not log in (no request is made in local mode)
            self._web_client = AlyxClient(base_url=base_url, cache_dir=cache_dir, **kwargs)
            mode = 'local'
        self._search_endpoint = 'sessions'
        super().__init__(mode=mode, wildcards=wildcards, tables_dir=tables_dir,
                         cache_dir=cache_dir, lock=lock)
        if self.mode in ('auto', 'refresh') and self._tables['_meta']['expired']:
            self._update_cache_tables()

    def load_cache(self, tables_dir=None, clobber=False, tag=None, **kwargs):
        """Load the cache tables; download newer ones from Alyx when they have expired.

        In 'auto' and 'refresh' mode (or with `clobber` or a `tag`), expired or missing tables
        are replaced by the database's when its tables (``/cache/info``) are newer.  When the
        database cannot be reached the mode falls back to 'local' (an error is logged).

        Parameters
        ----------
        tables_dir : str, pathlib.Path, optional
            The folder of the parquet tables.
        clobber : bool
            Ask the database for newer tables even if the local ones have not expired.
        tag : str, optional
            Load the tables of this Alyx release tag (kept in ``<cache_dir>/<tag>``).

        Returns
        -------
        datetime.datetime
            When the tables were loaded (None if there were none).
        """
        raw = self._tables['_meta'].get('raw') or {}
        current = sorted({t for m in raw.values()
                          for t in ensure_list(m.get('database_tags') or []) if t})
        if len(current) > 1:
            raise NotImplementedError('Cache tables with multiple tags are not supported')
        tag = tag or (current[0] if current else None)
        different_tag = tag is not None and current != [tag]
        if not different_tag:
            One.load_cache(self, tables_dir)
        expired = self._tables['_meta']['expired']
        if clobber or different_tag or (expired and self.mode in ('auto', 'refresh')):
            self._update_cache_tables(tag, tables_dir, different_tag)
        return self._tables['_meta']['loaded_time']

    def _update_cache_tables(self, tag=None, tables_dir=None, different_tag=False) -> None:
        """Download and load the database's cache tables if newer than the loaded ones."""
        from one._rest.errors import AlyxConnectionError, AlyxHTTPError
        from one.webclient import BadCacheArchive
        if self.offline:
            return
        target = Path(tables_dir) if tables_dir else None if different_tag else \
            self._tables_dir
        if target is not None and self._keeps_snapshot(target):
            return
        meta = self._tables['_meta']
        try:
            info = self.alyx.get(f'cache/info/{tag}/' if tag else 'cache/info/', expires=True)
            if tag and tag not in (info.get('database_tags') or []):
                raise ValueError(f'The database has no cache tables tagged "{tag}"')
            min_version = _version_tuple(info.get('min_api_version', '0'))
            if _version_tuple(__version__) < min_version:
                warnings.warn('Newer cache tables require ONE version '
                              f'{info.get("min_api_version")} or greater')
                return
            remote_created = datetime.fromisoformat(info['date_created'])
            local_created = meta.get('created_time')
            if local_created and not different_tag and \
                    remote_created - local_created < timedelta(minutes=1):
                _logger.info('No newer cache available')
                return
            previous = set()
            for table_meta in (meta.get('raw') or {}).values():
                origin = table_meta.get('origin') or ()
                previous |= {origin} if isinstance(origin, str) else set(origin)
            previous.discard('unknown')
            origin = info.get('origin', 'unknown')
            if previous and origin not in previous:
                warnings.warn('Downloading cache tables from another origin '
                              f'("{origin}" instead of "{", ".join(sorted(previous))}")')
            if tables_dir:
                self._tables_dir = Path(tables_dir)
            elif different_tag:
                self._tables_dir = Path(self.cache_dir) / tag
            self._tables_dir.mkdir(parents=True, exist_ok=True)
            _logger.info('Downloading remote caches...')
            self.alyx.download_cache_tables(info.get('location'), self._tables_dir)
            One.load_cache(self, self._tables_dir)
        except AlyxConnectionError as ex:
            _logger.error('%s: Failed to connect to Alyx (%s)', type(ex).__name__, ex)
            self.mode = 'local'
        except (AlyxHTTPError, BadCacheArchive) as ex:
            _logger.error('%s: Failed to load the remote cache file (%s)', type(ex).__name__, ex)
            self.mode = 'remote'

    def _keeps_snapshot(self, folder: Path) -> bool:
        """True if `folder` holds a snapshot (`snapshot`): its tables, the sessions of a query,
        are never replaced by the database's full cache tables, however old (a warning, once
        per instance, says how to update it)."""
        from one._api.snapshot import snapshot_info
        info = snapshot_info(folder)
        if info is None:
            return False
        if not getattr(self, '_told_of_snapshot', False):
            self._told_of_snapshot = True
            from one.alf.exceptions import ALFWarning
            warnings.warn(
                f'{folder} is a snapshot of a query made on {info.get("date_created")}, older '
                f'than cache_expiry ({self.cache_expiry}): its tables are kept, not replaced '
                "by the database's cache tables.  To update it, run the snapshot again "
                f'(one.snapshot("{folder}", ...) or "one snapshot {folder} ...")', ALFWarning,
                stacklevel=2)
        return True

    @staticmethod
    def setup(base_url: str | None = None, **kwargs) -> OneAlyx:
        """Configure a database's parameters (see `one.params.setup`) and connect to it.

        Parameters
        ----------
        base_url : str, optional
            The Alyx database URL; the default database when None.
        **kwargs
            Passed to `one.params.setup` (silent, username, cache_dir, ...); `password` is
            used to log in, and stored only as the parameters store it (`ALYX_PWD`).

        Returns
        -------
        OneAlyx
            An instance for the database.
        """
        import one.params
        password = kwargs.pop('password', None)
        base_url = base_url or one.params.get_default_client()
        cache_map = one.params.setup(client=base_url, **kwargs)
        return OneAlyx(base_url=base_url or one.params.get(cache_map.DEFAULT).ALYX_URL,
                       username=kwargs.get('username'), password=password,
                       silent=kwargs.get('silent', False))

    def __repr__(self) -> str:
        return f'One ({"off" if self.offline else "on"}line, {self.alyx.base_url})'

    @property
    def alyx(self):
        """one.webclient.AlyxClient: the Alyx client."""
        return self._web_client

    @property
    def cache_dir(self) -> Path:
        """pathlib.Path: the data folder (the client's)."""
        return self._web_client.cache_dir

    def _remote(self, query_type) -> bool:
        return (query_type or self.mode) == 'remote' and not self.offline

    def _forget_table_state(self) -> None:
        self._sessions_read.clear()  # the datasets merged from Alyx go with the tables

    def _memo(self):
        """`one._api.sessions.SessionMemo`: the sessions read from Alyx whose answers are
        still fresh in the REST cache (nothing while it is off or once it was cleared)."""
        return self._sessions_read.follow(self.alyx)

    # ---- search ---------------------------------------------------------------------------

    @_falls_back_to_local_tables
    @util.refresh
    def search_terms(self, query_type=None, endpoint=None) -> tuple:
        """Return the search terms `search` accepts.

        Parameters
        ----------
        query_type : str
            'remote' gives the REST filters of the endpoint (from the server's schema) and
            the extra terms of `search`; otherwise the local terms.
        endpoint : str
            The REST endpoint (default 'sessions').
        """
        if not self._remote(query_type):
            return self._search_terms
        endpoint = endpoint or self._search_endpoint
        from one._api.remote import EXTRA_TERMS
        fields = self.alyx.rest_schemes.field_names(endpoint, 'list') or []
        return tuple(sorted(set(fields) | set(EXTRA_TERMS)))

    @_falls_back_to_local_tables
    @util.refresh
    def search(self, details=False, query_type=None, **kwargs):
        """Find sessions; remotely through the Alyx sessions endpoint.

        In remote mode the terms are REST filters (case-insensitive partial matches, see
        `search_terms`): `laboratory` becomes ``lab``, `date_range` ``'YYYY-MM-DD,YYYY-MM-DD'``
        and `dataset` a django filter on the session's dataset names.  `dataset` may also be a
        list of partial names, all of which a session must hold: Alyx is asked for the
        sessions holding the first, and the datasets of those sessions are listed in a few
        batched queries (and merged into the tables, so that loading from them needs no
        further request) to check the others.  Otherwise see `One.search`.

        Returns
        -------
        one.util.LazyId
            The matching session UUIDs (pages fetched on access).
        one.util.LazyId
            (with `details`) The session records, with a `date` field.
        """
        if not self._remote(query_type):
            return super().search(details=details, query_type=query_type, **kwargs)
        from one._api.remote import add_date, search_params
        terms = self.search_terms(query_type='remote')
        kwargs, more_names, max_qc = _split_dataset_terms(kwargs, terms)
        params = search_params(kwargs, terms)
        if more_names:  # read whole: in the largest pages
            params.setdefault('limit', self.alyx.max_page_size)
        with self.alyx._fresh_until() as fresh:
            ses = self.alyx.rest(self._search_endpoint, 'list', **params)
        self._merge_search_results(ses, fresh.until)
        if more_names:  # the other names, on the sessions' datasets listed in batches
            from one._api.batch import holding_all
            from one._rest.records import record_id
            records = list(ses)
            eids = [record_id(r) for r in records]
            self._fetch_datasets_of(eids)
            keep = holding_all(self._dataset_codes(), eids, more_names, max_qc)
            ses = [r for r, hit in zip(records, keep) if hit]
        eids = util.LazyId(ses)
        if not details:
            return eids
        return eids, util.LazyId(ses, func=add_date)

    def _merge_search_results(self, ses, until: datetime | None) -> None:
        """Merge the session records of a search into the sessions table, later pages too
        (remembered until `until`, when the first page expires in the REST cache)."""
        from one._rest.pagination import PaginatedResponse
        if isinstance(ses, PaginatedResponse):
            self._update_sessions_table([r for r, fetched in zip(ses._cache, ses._fetched)
                                         if fetched], until)
            if not ses.is_complete:
                ses.add_callback(_LaterPages(self, until))
        else:
            self._update_sessions_table(list(ses), until)

    def _update_sessions_table(self, session_records: list, until: datetime | None = None):
        """Insert or update sessions-table rows from Alyx session records (remembered until
        `until`, see `one._api.sessions`).

        Returns
        -------
        datetime.datetime
            When the table was updated (None when there were no records).
        """
        from one.converters import ses2records
        records = [r for r in session_records if r]
        if not records:
            return None
        self._memo().add_summaries(records, until)
        sessions = pd.DataFrame([ses2records(r)[0] for r in records])
        sessions.index.name = 'id'
        return self._update_cache_from_records(sessions=sessions)

    # ---- remote session records -------------------------------------------------------------

    def _fetch_session(self, eid) -> dict:
        """Read a session from Alyx and merge it into the tables; return its record."""
        from one.converters import ses2records
        self._look_up_s3_meanwhile()
        with self.alyx._fresh_until() as fresh:
            record = self.alyx.rest('sessions', 'read', id=str(eid))
        for d in record.get('data_dataset_session_related') or []:
            if d.get('data_url') and d.get('id'):
                self._data_urls[str(d['id'])] = d['data_url']
        session, datasets = ses2records(record)
        self._update_cache_from_records(sessions=session, datasets=datasets)
        self._memo().add_record(str(session.name), record, fresh.until)
        return record

    def _look_up_s3_meanwhile(self) -> None:
        """Ask Alyx for the database's S3 repository in the background, once per instance:
        the first download needs it, and its round trip then overlaps a session read instead
        of delaying the download (see `_s3_bucket`)."""
        if self.__dict__.get('_s3_repository') is not None or '_s3_pending' in self.__dict__:
            return
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix='one-s3-lookup')
        self._s3_pending = (os.getpid(), pool.submit(_find_s3_repository, self.alyx))
        pool.shutdown(wait=False)

    def _s3_bucket(self) -> tuple:
        """(S3 resource, bucket) of the database's AWS data repository, looked up once.

        The answer of the background look-up is used when it was started by this process and
        comes within the time a REST call may take; otherwise (in a forked child, where the
        thread doing it does not exist) it is looked up here.

        Raises
        ------
        Exception
            The database has no such repository (`AlyxNotFound`, `KeyError`), or the look-up
            failed.
        """
        from concurrent.futures import TimeoutError as FutureTimeout
        repository = self.__dict__.get('_s3_repository')
        if repository is None:
            pid, pending = self.__dict__.pop('_s3_pending', (None, None))
            if pending is not None and pid == os.getpid():
                bound = self.alyx.deadline + sum(self.alyx.timeout) + 60
                try:
                    repository = pending.result(timeout=bound)
                except FutureTimeout:
                    _logger.debug('The S3 repository look-up took over %g s: asking again',
                                  bound)
            if repository is None:
                repository = _find_s3_repository(self.alyx)
            self._s3_repository = repository
        if isinstance(repository, Exception):
            raise repository
        return repository

    def _session_record(self, eid) -> dict:
        """The Alyx record of a session: read once, reused while the REST cache keeps it."""
        record = self._memo().record(str(eid))
        return record if record is not None else self._fetch_session(eid)

    def _ensure_session(self, eid) -> None:
        """Make sure the session's datasets read from Alyx are in the tables (no request when
        they were read, or listed in a batch, within the REST cache expiry)."""
        if not self._memo().has_datasets(str(eid)):
            self._fetch_session(eid)

    def _fetch_datasets_of(self, eids: list[str]) -> list[str]:
        """Merge the dataset records of many sessions into the tables in a few batched queries
        (`one._api.batch`); sessions read within the REST cache expiry are skipped.

        Returns
        -------
        list of str
            The sessions Alyx does not know.
        """
        from one._api.batch import fetch_records
        from one._api.s3 import aws_file_record
        from one._rest.records import data_url_of, record_id
        from one.converters import datasets2records
        memo = self._memo()
        stale = memo.stale(list(dict.fromkeys(eids)))
        if not stale:
            return []
        paths = self._session_paths(stale)
        unknown = [e for e in stale if paths.get(e) is None]
        self.alyx.rest_schemes  # noqa: B018 - read once, before the concurrent queries
        with self.alyx._fresh_until() as fresh:
            sessions, records = fetch_records(self.alyx, stale, unknown,
                                              self._datasets_per_session())
        self._update_sessions_table(sessions, fresh.until)
        known = set(stale) - set(unknown)
        known.update(record_id(r) for r in sessions)
        s3_files = {}
        for record in records:
            dset_id, data_url = record_id(record), data_url_of(record)
            if dset_id and data_url:
                self._data_urls[dset_id] = data_url
                s3_files[dset_id] = aws_file_record(record)
        memo.add_s3_files(s3_files, fresh.until)
        datasets = datasets2records(records)
        if not datasets.empty:
            self._update_cache_from_records(datasets=datasets)
        memo.add_datasets([e for e in stale if e in known], fresh.until)
        return [e for e in stale if e not in known]

    def _fetch_summaries(self, eids: list[str]) -> None:
        """Ask Alyx for the list records of the sessions not read lately, in batches."""
        from one._api.batch import fetch_session_records
        memo = self._memo()
        wanted = [e for e in dict.fromkeys(eids) if memo.summary(e) is None]
        if wanted:
            with self.alyx._fresh_until() as fresh:
                records = fetch_session_records(self.alyx, wanted)
            self._update_sessions_table(records, fresh.until)

    def _datasets_per_session(self) -> float | None:
        """The mean number of datasets of the sessions in the tables (None when empty)."""
        codes = self._dataset_codes()
        n_sessions = len(codes.eids) if codes.n_rows else 0
        return codes.n_rows / n_sessions if n_sessions else None

    def _prefetch_remote(self, eids: list[str]) -> None:
        """In remote mode, list the datasets of the sessions in batched queries."""
        from one._rest.errors import AlyxConnectionError
        if not self._remote(None):
            return
        try:
            unknown = self._fetch_datasets_of(eids)
        except AlyxConnectionError as ex:
            self._go_offline(ex)
            return
        if unknown:
            shown = ', '.join(unknown[:5]) + (', ...' if len(unknown) > 5 else '')
            warnings.warn(f'{len(unknown)} session(s) not found on {self.alyx.base_url}: '
                          f'{shown}', alferr.ALFWarning, stacklevel=3)

    @_falls_back_to_local_tables
    @util.refresh
    def list_datasets(self, eid=None, filename=None, collection=None, revision=None, qc=QC.FAIL,
                      ignore_qc_not_set=False, details=False, query_type=None,
                      default_revisions_only=False, keep_eid_index=False):
        """List the datasets of a session; in remote mode the session is read from Alyx.

        The session's records are merged into the cache tables first (a session read within
        the REST cache expiry is not read again), then the listing is that of
        `One.list_datasets` (see there for the parameters).  With a list of sessions, their
        datasets are listed in a few batched queries and a list of listings is returned, one
        per session.
        """
        from one.converters import _is_listlike
        if _is_listlike(eid):  # many sessions: their datasets in batched queries
            eid = self.to_eid(list(eid))
            if self._remote(query_type):
                self._prefetch_remote([str(e) for e in eid if e])
        elif eid is not None and self._remote(query_type):
            eid = self.to_eid(eid)
            if eid:
                self._ensure_session(eid)
        elif eid is None and self._remote(query_type):
            warnings.warn('Unable to list all remote datasets')
        return super().list_datasets(
            eid, filename=filename, collection=collection, revision=revision, qc=qc,
            ignore_qc_not_set=ignore_qc_not_set, details=details, query_type='local',
            default_revisions_only=default_revisions_only, keep_eid_index=keep_eid_index)

    @_falls_back_to_local_tables
    @util.refresh
    @util.parse_id
    def get_details(self, eid, full: bool = False, query_type=None):
        """Return a session's details; in remote mode from Alyx.

        A session read from Alyx (or found by a search) within the REST cache expiry is not
        asked for again.  With a list of sessions, a list of details is returned; their
        summaries (without `full`) are asked for in batched queries.

        Returns
        -------
        dict
            (remote) With `full`, the Alyx session record; otherwise its subject, start_time,
            number, lab, projects, url, task_protocol, local_path and date.
        """
        if isinstance(eid, list):
            if self._remote(query_type) and not full:
                self._fetch_summaries([str(e) for e in eid if e])
            return [self.get_details(e, full=full, query_type=query_type) for e in eid]
        if not self._remote(query_type):
            return super().get_details(eid, full=full)
        if full:
            return copy.deepcopy(self._session_record(eid))
        record = self._memo().summary(str(eid)) or self._session_record(eid)
        fields = ('subject', 'start_time', 'number', 'lab', 'projects', 'url', 'task_protocol')
        out = {k: v for k, v in record.items() if k in fields}
        out['projects'] = ','.join(ensure_list(out.get('projects') or []))
        out['date'] = datetime.fromisoformat(out['start_time']).date()
        out['local_path'] = session_folder(self.cache_dir, out, eid)
        return out

    # ---- conversions with a remote fallback ------------------------------------------------

    @recurse
    @_falls_back_to_local_tables
    @util.refresh
    @util.parse_id
    def eid2path(self, eid, query_type=None):
        """Return the local session folder of an experiment ID.

        The cache tables are asked first; in remote mode (or when the tables do not know the
        session and the mode is not 'local') the session is read from Alyx.

        Parameters
        ----------
        eid : uuid.UUID, str, pathlib.Path, dict, list
            An experiment ID in any form `to_eid` accepts, or a list of them.
        query_type : str, optional
            'remote' asks Alyx even if the tables know the session.

        Returns
        -------
        one.alf.path.ALFPath, None, list
            ``cache_dir/lab/Subjects/subject/YYYY-MM-DD/NNN``; None when no session has this ID.
        """
        if not self._remote(query_type):
            path = super().eid2path(eid)
            if path or self._offline_for(query_type):
                return path
        summary = self._memo().summary(str(eid))
        if summary is not None:
            return session_folder(self.cache_dir, summary, eid)
        with self.alyx._fresh_until() as fresh:
            records = list(self.alyx.rest('sessions', 'list', django=f'pk,{eid}'))
        if not records:
            return None
        self._update_sessions_table(records[:1], fresh.until)
        return session_folder(self.cache_dir, records[0], eid)

    @recurse
    @_falls_back_to_local_tables
    @util.refresh
    def path2eid(self, path_obj, query_type=None):
        """Return the experiment UUID of a session folder (or of a path below it).

        The cache tables are asked first; in remote mode (or when the tables do not know the
        session and the mode is not 'local') Alyx is searched by subject, date and number.

        Parameters
        ----------
        path_obj : str, pathlib.Path, list
            A path containing ``subject/YYYY-MM-DD/NNN``, or a list of them.
        query_type : str, optional
            'remote' asks Alyx even if the tables know the session.

        Returns
        -------
        uuid.UUID, None, list
            The UUID; None when the path holds no session or no session matches.
        """
        if not self._remote(query_type):
            eid = super().path2eid(path_obj)
            if eid or self._offline_for(query_type):
                return eid
        session_path = ALFPath(path_obj).session_path()
        if session_path is None:
            return None
        subject, day, number = session_path.parts[-3:]
        eids, records = self.search(subject=subject, date_range=day, number=int(number),
                                    details=True, query_type='remote')
        lab = session_path.lab
        if lab and len(eids) > 1:  # a subject name may be used by several labs
            eids = [e for e, d in zip(eids, records) if d.get('lab') == lab]
        return eids[0] if len(eids) else None

    @recurse
    @_falls_back_to_local_tables
    @util.refresh
    def path2url(self, filepath, query_type=None):
        """Return the data server URL of a local dataset file.

        Parameters
        ----------
        filepath : str, pathlib.Path, list
            A local dataset path (or a list of them).
        query_type : str, optional
            'remote' asks Alyx for the dataset's file record; otherwise the URL is made from
            the cache tables.

        Returns
        -------
        str, None, list
            The URL (None when the tables do not know the file, outside remote mode).

        Raises
        ------
        one.alf.exceptions.ALFObjectNotFound
            (remote) Alyx has no existing file record for this file.
        """
        if not self._remote(query_type):
            return super().path2url(filepath)
        eid = self.path2eid(filepath)
        path = ALFPath(filepath)
        records = list(self.alyx.rest('datasets', 'list', session=str(eid), name=path.name)) \
            if eid else []
        # several collections may hold a dataset of this name: keep the one of this path
        rel_path = path.relative_to_session().as_posix() if path.session_path() else None
        url = None
        for record in records:
            for file_record in record.get('file_records') or []:
                data_url = file_record.get('data_url')
                if not (data_url and file_record.get('exists')):
                    continue
                url_path = remove_uuid(PurePosixPath(unquote(urlsplit(data_url).path)))
                if rel_path is None or url_path.as_posix().endswith('/' + rel_path):
                    url = data_url
                    break
            if url:
                break
        if url is None:
            raise alferr.ALFObjectNotFound(f'File record for {filepath} not found on Alyx')
        return url

    # ---- probe insertions and dataset types -------------------------------------------------

    def _require_remote(self, what: str) -> None:
        if self.offline:
            raise NotImplementedError(f'{what} requires a connection to the Alyx database')

    @util.refresh
    def pid2eid(self, pid, query_type=None) -> tuple:
        """Return the session UUID and the label (e.g. 'probe00') of a probe insertion.

        Requires the Alyx database.
        """
        self._require_remote('Converting probe IDs')
        record = self.alyx.rest('insertions', 'read', id=str(pid))
        return UUID(str(record['session'])), record['name']

    @util.refresh
    @util.parse_id
    def eid2pid(self, eid, query_type=None, details=False) -> tuple:
        """Return the probe insertion UUIDs and labels of a session (and the records).

        When the session's record was read from Alyx within the REST cache expiry (e.g. by
        `list_datasets` or a load), its ``probe_insertion`` records are used and no request is
        made; otherwise the insertions endpoint is asked.  Requires the Alyx database.
        """
        self._require_remote('Converting probe IDs')
        if not eid:
            return (None,) * (3 if details else 2)
        session = self._memo().record(str(eid))
        if session is not None and isinstance(session.get('probe_insertion'), list):
            records = copy.deepcopy(session['probe_insertion'])  # the insertion records
        else:
            records = list(self.alyx.rest('insertions', 'list', session=str(eid)))
        pids = [UUID(str(x['id'])) for x in records]
        labels = [x['name'] for x in records]
        return (pids, labels, records) if details else (pids, labels)

    @_falls_back_to_local_tables
    def search_insertions(self, details=False, query_type=None, **kwargs):
        """Find probe insertions through the Alyx insertions endpoint.

        The terms are the endpoint's REST filters (see
        ``search_terms(query_type='remote', endpoint='insertions')``), plus `laboratory`,
        `number` (the session number) and `dataset` (a partial dataset name).

        In 'local' mode (`query_type` 'local', or no connection to Alyx) the cache's insertions
        table is searched instead (see `One._search_insertions`): nothing is found, with a
        warning, when the cache has none.

        Returns
        -------
        one.util.LazyId or list of uuid.UUID
            The probe insertion UUIDs.
        list of dict
            (with `details`) The insertion records.
        """
        if (query_type or self.mode) == 'local' or self.offline:
            return self._search_insertions(details=details, **kwargs)
        from one._api.remote import search_params
        fields = self.alyx.rest_schemes.field_names('insertions', 'list') or []
        terms = tuple(sorted(set(fields) | {'dataset', 'laboratory', 'number', 'django'}))
        params = search_params(kwargs, terms, dataset_filter='datasets__name__icontains',
                               number_field='experiment_number')
        ins = self.alyx.rest('insertions', 'list', **params)
        pids = util.LazyId(ins)
        return (pids, ins) if details else pids

    def dataset2type(self, dset) -> str:
        """Return the dataset type of a dataset (its UUID, or a name/relative path in the
        cache tables).  Requires the Alyx database."""
        self._require_remote('dataset2type')
        try:
            dset_id = _dataset_id_str(dset)
        except (ValueError, TypeError):
            table = self._tables['datasets']
            name = str(dset)
            rel_paths = table['rel_path'].astype(str)
            hits = table.index.get_level_values('id')[
                (rel_paths == name).to_numpy() | rel_paths.str.endswith('/' + name).to_numpy()]
            ids = sorted(set(hits))
            if len(ids) != 1:
                raise ValueError(f'Unrecognized name or UUID: {dset}') from None
            dset_id = ids[0]
        return self.alyx.rest('datasets', 'read', id=dset_id)['dataset_type']

    def describe_dataset(self, dataset_type=None):
        """Print and return a dataset type's Alyx record (all of them when None).

        `dataset_type` may be a dataset type name, or a dataset (see `dataset2type`).
        Requires the Alyx database.
        """
        from one._rest.errors import AlyxNotFound
        self._require_remote('describe_dataset')
        if not dataset_type:
            return self.alyx.rest('dataset-types', 'list')
        try:
            _dataset_id_str(dataset_type)
            is_id = True
        except (ValueError, TypeError):
            is_id = False
        out = None
        if not is_id:
            with contextlib.suppress(AlyxNotFound):
                out = self.alyx.rest('dataset-types', 'read', id=str(dataset_type))
        if out is None:
            out = self.alyx.rest('dataset-types', 'read', id=self.dataset2type(dataset_type))
        print(out['description'])
        return out

    def describe_revision(self, revision: str, full: bool = False):
        """Print the description of a revision (and return its Alyx record with `full`).

        Parameters
        ----------
        revision : str
            The revision name, without the '#' signs.
        full : bool
            Return the record.

        Returns
        -------
        dict or None
            The revision record with `full`; otherwise, or when there is no such revision,
            None ('revision "<name>" not found' is printed).  Requires the Alyx database.
        """
        from one._rest.errors import AlyxNotFound
        self._require_remote('describe_revision')
        try:
            record = self.alyx.rest('revisions', 'read', id=str(revision).strip('#'))
        except AlyxNotFound:
            print(f'revision "{revision}" not found')
            return None
        print(record.get('description') or '')
        return record if full else None

    @util.parse_id
    def type2datasets(self, eid, dataset_type, details=False):
        """Return the relative paths (or with `details` the datasets table) of a session's
        datasets of the given dataset type(s).  Requires the Alyx database."""
        from one.converters import datasets2records
        self._require_remote('type2datasets')
        if isinstance(dataset_type, str):
            restriction = f'session__id,{eid},dataset_type__name,{dataset_type}'
        elif isinstance(dataset_type, (list, tuple)):
            restriction = f'session__id,{eid},dataset_type__name__in,{list(dataset_type)}'
        else:
            raise TypeError('dataset_type must be a str or str list')
        datasets = datasets2records(self.alyx.rest('datasets', 'list', django=restriction))
        return datasets if details else datasets['rel_path'].sort_values().to_numpy()

    def list_aggregates(self, relation: str, identifier: str = None, dataset=None,
                        revision=None, assert_unique=False) -> pd.DataFrame:
        """List the datasets aggregated over a relation (datasets without a session).

        Parameters
        ----------
        relation : str
            What the data were aggregated over, e.g. 'subjects' or 'tags' (the folder after
            'aggregates' in the relative path, case-insensitive).
        identifier : str, optional
            Keep the datasets whose identifier (the folders after the relation, e.g.
            'lab/subject') contains this string.
        dataset : str, dict, list, optional
            File name filter (wildcards), or a dict of ALF parts.
        revision : str, optional
            Revision filter (wildcards).
        assert_unique : bool
            Raise if several datasets match.

        Returns
        -------
        pandas.DataFrame
            The matching dataset records (index 'id'), with 'relation' and 'identifier'
            columns; rel_path starts with 'aggregates/'.  Requires the Alyx database.
        """
        from one.converters import datasets2records
        self._require_remote('list_aggregates')
        from one._rest.records import data_url_of, record_id
        raw = self.alyx.rest('datasets', 'list', django='session__isnull,True',
                             limit=self.alyx.max_page_size)  # read whole
        for record in raw:
            data_url, dataset_id = data_url_of(record), record_id(record)
            if data_url and dataset_id:
                self._data_urls[dataset_id] = data_url
        records = datasets2records(raw)
        records = records.reset_index(level='eid', drop=True)
        if records.empty:
            return records.assign(relation=pd.Series(dtype=object),
                                  identifier=pd.Series(dtype=object))
        rel_paths = records['rel_path'].astype(str).str.replace(
            r'^.*?(?=aggregates/)', '', n=1, regex=True)
        records = records.assign(rel_path=rel_paths)
        in_aggregates = rel_paths.str.startswith('aggregates/')
        records = records[in_aggregates.to_numpy()]
        parts = records['rel_path'].str.split('/')
        records = records.assign(relation=parts.map(lambda x: x[1].lower() if len(x) > 2
                                                    else ''))
        records = records[(records['relation'] == relation.lower()).to_numpy()]

        def path2id(rel_path) -> str:
            folders = (rel_path_parts(rel_path, assert_valid=False)[0] or '').split('/')
            position = [x.lower() for x in folders].index(relation.lower()) + 1
            return '/'.join(folders[position:])

        records = records.assign(identifier=records['rel_path'].map(path2id))
        if identifier is not None:
            records = records[records['identifier'].str.contains(
                identifier, regex=False).to_numpy()]
        return util.filter_datasets(records, filename=dataset, revision=revision,
                                    wildcards=True, assert_unique=assert_unique)

    def load_aggregate(self, relation: str, identifier: str, dataset=None, revision=None,
                       download_only: bool = False):
        """Load one dataset aggregated over a relation (a subject, a tag, ...).

        Parameters
        ----------
        relation : str
            What the data were aggregated over, e.g. 'subjects' or 'tags'.
        identifier : str
            The identifier within the relation, e.g. 'lab/subject' for subjects.
        dataset : str, dict, list, optional
            File name filter (wildcards); 'object.attribute' gets any extension.
        revision : str, optional
            Revision filter (wildcards).
        download_only : bool
            Return the file path instead of the loaded data.

        Returns
        -------
        object or one.alf.path.ALFPath
            The loaded data (e.g. a DataFrame for a parquet table), or the path.

        Raises
        ------
        one.alf.exceptions.ALFObjectNotFound
            No dataset matches, or its file is neither on disk nor downloadable.
        one.alf.exceptions.ALFMultipleObjectsFound
            Several datasets match.
        """
        if self.wildcards and isinstance(dataset, str) and len(dataset.split('.')) == 2:
            dataset += '.*'
        records = self.list_aggregates(relation, identifier, dataset=dataset,
                                       revision=revision, assert_unique=True)
        if records.empty:
            raise alferr.ALFObjectNotFound(
                f'{dataset or "dataset"} not found for {relation}/{identifier}')
        records = records.assign(session_path='')
        file, = self._check_filesystem(records, update_exists=False)
        if not file:
            raise alferr.ALFObjectNotFound(
                f'Dataset file {records["rel_path"].iat[0]} not found on disk or on the server')
        return file if download_only else alfio.load_file_content(file)

    def snapshot(self, out_dir, eids=None, **search_terms) -> dict:
        """Save the cache tables of the sessions of a query into a folder, to work from
        without the database.

        The sessions (`eids`, or those a remote search finds), all their datasets and probe
        insertions are asked for in batched queries and written to `out_dir` as cache tables
        (``sessions.pqt``, ``datasets.pqt``, ``insertions.pqt``) with a ``cache_info.json``
        naming the database, the date, the query and the counts.  Then
        ``ONE(mode='local', tables_dir=out_dir, cache_dir=...)`` searches, lists and loads
        (what was downloaded) with no database, and 'remote' or 'auto' instances may start
        from these tables (``tables_dir=out_dir``): workers of `one.parallel.map_sessions`,
        for example, query nothing to know what the sessions hold.

        Running it again into the same folder updates it: the sessions found are replaced
        with their current records (datasets and insertions included), other sessions are
        kept.  The update is made under the folder's lock; each file is replaced atomically.

        Parameters
        ----------
        out_dir : str, pathlib.Path
            The folder of the snapshot (created if missing).
        eids : list, optional
            The sessions (UUIDs or UUID strings).  Unknown ones are left out with a warning.
        **search_terms
            Otherwise, the sessions found by ``search(query_type='remote', **search_terms)``
            (all the sessions of the database when none is given).

        Returns
        -------
        dict
            The ``cache_info.json`` written (``counts``: the rows of each table).

        Raises
        ------
        ValueError
            Both `eids` and search terms, or a malformed session id.
        NotImplementedError
            The instance is in 'local' mode.

        Examples
        --------
        >>> one.snapshot('~/snapshots/ks023', subject='KS023', dataset='trials')  # doctest: +SKIP
        >>> local = ONE(mode='local', tables_dir='~/snapshots/ks023',
        ...             cache_dir=one.cache_dir)                                 # doctest: +SKIP
        """
        from one._api.snapshot import snapshot
        return snapshot(self, Path(out_dir).expanduser(), eids=eids, **search_terms)

    # ---- downloads --------------------------------------------------------------------------

    def _load_candidates(self, eid, query_type) -> pd.DataFrame:
        from one._rest.errors import AlyxConnectionError
        if self._remote(query_type):
            try:
                self._ensure_session(eid)
            except AlyxConnectionError as ex:
                self._go_offline(ex)
        return super()._load_candidates(eid, query_type)

    def _go_offline(self, error: Exception) -> None:
        """Say once that Alyx cannot be reached, and carry on from the local tables."""
        _logger.error('%s: Alyx cannot be reached (%s); carrying on in local mode from the '
                      'cache tables', type(error).__name__, error)
        self.mode = 'local'

    def _offline_for(self, query_type) -> bool:
        return self.offline or (query_type or self.mode) == 'local'

    @_falls_back_to_local_tables
    @util.refresh
    @util.parse_id
    def load_collection(self, eid, collection, object=None, revision=None, query_type=None,
                        download_only=False, check_hash=True, **kwargs):
        """Load all objects of a collection (see `One.load_collection`); in remote mode the
        session's datasets are read from Alyx first."""
        if self._remote(query_type):
            self._ensure_session(eid)
        return super().load_collection(
            eid, collection, object=object, revision=revision, query_type=query_type,
            download_only=download_only, check_hash=check_hash, **kwargs)

    def _download_datasets(self, dsets, update_cache=True, keep_uuid=None, **kwargs) -> list:
        """Download dataset files into the cache folder: from S3 if possible, else over HTTP.

        When every dataset is on AWS (all ``exists_aws`` values True, or no such column), the
        files are first downloaded from the S3 bucket of the database (see `_download_aws`);
        the datasets S3 did not give are then downloaded over HTTP.  HTTP URLs are the
        datasets' Alyx ``data_url`` when known, otherwise the data server URL of the session
        path and relative path with the dataset UUID before the extension.  Sizes and md5 sums
        come from the records and a file is kept only when they match.  Failed files give None
        (and are logged).  When a file from the data server stays bad (its size or md5 differs
        from the record, also after a second download), the dataset's file record on Alyx is
        tagged ``'mismatch_hash': True`` in its ``json`` field, for the database's maintainers.

        Parameters
        ----------
        dsets : pandas.DataFrame, pandas.Series, list of dict
            Dataset records.
        update_cache : bool
            Set ``exists_aws`` to False in the cache table for datasets missing or bad on S3.
        keep_uuid : bool, optional
            Keep the dataset UUID in the file names; default `uuid_filenames`.

        Returns
        -------
        list of one.alf.path.ALFPath or None
            One entry per dataset, in order.

        Raises
        ------
        one._download.DownloadTimeout
            The data server accepted requests but did not answer within the read timeout,
            twice; the message names the files' URLs and the limit.  The other files are kept.
        """
        from one._api.remote import download_task, tag_mismatched_file_record, uuid_url_path
        from one._api.s3 import not_on_aws_reason
        from one._download import (
            ChecksumMismatch,
            DownloadTimeout,
            SizeMismatch,
            UnsafePath,
            download_failure,
            download_files,
        )
        dsets = self._as_records(dsets)
        if dsets.empty:
            return []
        keep_uuid = self.uuid_filenames if keep_uuid is None else keep_uuid
        out = [None] * len(dsets)
        not_s3 = not_on_aws_reason(dsets)
        if not_s3 is None:
            try:
                out = self._download_aws(dsets, update_exists=update_cache, keep_uuid=keep_uuid)
            except Exception as ex:  # noqa: BLE001 - any failure of S3: HTTP instead
                not_s3 = f'{type(ex).__name__}: {ex}'
        if not_s3 is not None:
            _logger.debug('Not downloading from S3: %s', not_s3)
        pending = [i for i, file in enumerate(out) if file is None]
        if not pending:
            return out
        ids = [str(x) for x in dsets.index.get_level_values('id')]
        session_paths = self._dataset_session_paths(dsets, ids)
        par = self.alyx._par
        login = getattr(par, 'HTTP_DATA_SERVER_LOGIN', None)
        auth = (login, getattr(par, 'HTTP_DATA_SERVER_PWD', None) or '') if login else None
        guard = Confinement(self.cache_dir)  # one for the batch
        rel_paths, sizes, hashes = record_columns(dsets, 'rel_path', 'file_size', 'hash')
        tasks, positions = [], []
        for i in pending:
            dset_id, session_path = ids[i], session_paths[i]
            rel_path = rel_paths[i]
            if session_path is None or not isinstance(rel_path, str):
                _logger.error('Cannot download dataset %s: unknown session path', dset_id)
                continue
            url = self._data_urls.get(dset_id) or self.alyx.rel_path2url(
                uuid_url_path(PurePosixPath(str(session_path), rel_path).as_posix(), dset_id))
            size, md5 = _known(sizes[i]), _known(hashes[i])
            try:
                task = download_task(url, guard, session_path, rel_path, size, md5, auth,
                                     uuid_name=dset_id if keep_uuid else None)
            except (UnsafePath, ValueError) as ex:
                _logger.error('Refusing to download dataset %s: %s', dset_id, ex)
                continue
            tasks.append(task)
            positions.append(i)
        outcomes = download_files(tasks, progress=None, return_errors=True,
                                  timeout=self.alyx.timeout) if tasks else []
        for i, outcome in zip(positions, outcomes):
            if not isinstance(outcome, Exception):
                out[i] = ALFPath(outcome)
                continue
            _logger.error('%s', outcome)
            if isinstance(outcome, (ChecksumMismatch, SizeMismatch)):
                tag_mismatched_file_record(self.alyx, ids[i])  # the server's file stays bad
        timed_out = download_failure(outcomes, (DownloadTimeout,))
        if timed_out is not None:  # a hung server: say so, naming the files and the limit
            raise timed_out
        return out

    def _download_aws(self, dsets, update_exists=True, keep_uuid=None, **_) -> list:
        """Download datasets from the S3 bucket of the database's AWS data repository.

        The bucket and its credentials come from the Alyx data repository 'aws_cortexlab'
        (`one.remote.aws.get_s3_from_alyx`; anonymous for a public bucket).  The datasets'
        Alyx records (those listed in batches by `prefetch` or `list_datasets` while fresh in
        the REST cache, else 100 ids per query) give each one's S3 file record: the first
        existing one in a repository whose name starts with 'aws'.  When the known records
        show no file on S3, neither the bucket nor anything else is asked for.  The object key
        is its repository path and relative path, with the dataset UUID before the extension;
        a record whose path is not a plain relative path ending with the dataset's
        ``rel_path`` is refused.
        The files are downloaded in parallel, verified against the size and md5 of the records
        and moved into place only when good, to where `_check_filesystem` looks for them
        (``cache_dir/<session path>/<rel_path>``).  After a failure of S3 itself (credentials,
        connection...) no further file is tried.

        Parameters
        ----------
        dsets : pandas.DataFrame, pandas.Series or iterable of pandas.Series
            Dataset records of the cache table.
        update_exists : bool
            Set ``exists_aws`` to False in the cache table (when it has that column) for the
            datasets that are not on S3, or whose S3 file is missing or differs from the record.
        keep_uuid : bool, optional
            Keep the dataset UUID in the file names; default `uuid_filenames`.

        Returns
        -------
        list of one.alf.path.ALFPath or None
            One entry per dataset, in order; None where S3 did not give the file.

        Raises
        ------
        Exception
            The S3 bucket or the dataset records could not be obtained, e.g.
            `one._rest.errors.AlyxNotFound` (no such data repository), `KeyError` (the
            repository names no bucket) or a connection error.
        """
        from one._api.remote import local_destination
        from one._api.s3 import (
            BadS3Record,
            aws_file_record,
            dataset_records,
            download_s3,
            is_dataset_failure,
            s3_key,
            s3_task,
        )
        from one._download import UnsafePath
        dsets = self._as_records(dsets)
        if dsets.empty:
            return []
        keep_uuid = self.uuid_filenames if keep_uuid is None else keep_uuid
        ids = [str(x) for x in dsets.index.get_level_values('id')]
        # Records listed in batches tell which datasets have a file on S3: when none does,
        # the bucket is not needed (and not asked for)
        s3_files = self._memo().s3_files(ids)
        records = {}
        if len(s3_files) < len(ids) or any(s3_files.values()):
            s3, bucket = self._s3_bucket()
            missing = [i for i in ids if i not in s3_files]
            if missing:
                records = dataset_records(self.alyx, missing)
                s3_files.update({i: aws_file_record(r) for i, r in records.items()})
        else:
            if update_exists:
                self._set_column('exists_aws', ids, False)
            return [None] * len(ids)
        if 'eid' in dsets.index.names:
            eids = [str(x) for x in dsets.index.get_level_values('eid')]
        else:
            eids = self._eids_of_datasets(ids)
        paths = self._session_paths([e for e in eids if e])
        guard = Confinement(self.cache_dir)  # one for the batch
        tasks, positions, not_on_s3 = [], [], []
        rel_paths, sizes, hashes = record_columns(dsets, 'rel_path', 'file_size', 'hash')
        for i, (dset_id, eid) in enumerate(zip(ids, eids)):
            session_path = paths.get(eid) if eid else None
            rel_path = rel_paths[i]
            if session_path is None or not isinstance(rel_path, str):
                continue  # the HTTP download reports it
            record = records.get(dset_id) or {}
            file_record = s3_files.get(dset_id)
            if file_record is None:
                _logger.debug('Dataset %s has no file on S3', dset_id)
                not_on_s3.append(dset_id)
                continue
            try:
                key = s3_key(file_record, rel_path, dset_id)
                destination = local_destination(guard, session_path, rel_path,
                                                dset_id if keep_uuid else None)
            except BadS3Record as ex:
                _logger.warning('%s', ex)
                not_on_s3.append(dset_id)
                continue
            except UnsafePath:
                continue  # a bad relative path in the cache table: refused by HTTP too
            size, md5 = _known(sizes[i]), _known(hashes[i])
            tasks.append(s3_task(bucket, key, destination, size or _known(record.get('file_size')),
                                 md5 or _known(record.get('hash')), s3))
            positions.append(i)
        out = [None] * len(ids)
        failure = None
        for i, outcome in zip(positions, download_s3(tasks)):
            if outcome is None:
                continue  # not started after a failure of S3
            if not isinstance(outcome, Exception):
                out[i] = ALFPath(outcome)
            elif is_dataset_failure(outcome):
                _logger.debug('Dataset %s not downloaded from S3: %s', ids[i], outcome)
                not_on_s3.append(ids[i])
            else:
                failure = failure or outcome
        if failure is not None:
            _logger.debug('S3 downloads stopped: %s', failure)
            self._s3_repository = None  # a new client next time
        if update_exists:
            self._set_column('exists_aws', not_on_s3, False)
        return out

    def _download_dataset(self, dset, cache_dir=None, **kwargs):
        """Download one dataset (a record); return its path or None."""
        files = self._download_datasets(self._as_records(dset), **kwargs)
        return files[0] if files else None


class _LaterPages:
    """Merges the session records of a search's later pages, remembered until the first page
    expires (a weak reference: the search results do not keep the instance alive)."""

    def __init__(self, one: OneAlyx, until: datetime | None):
        self._one = weakref.ref(one)
        self._until = until

    def __call__(self, records: list) -> None:
        one = self._one()
        if one is not None:
            one._update_sessions_table(records, self._until)


def _find_s3_repository(alyx):
    """(S3 resource, bucket) of the database's AWS data repository, or the exception saying
    it has none (AlyxNotFound, KeyError: not asked again); other errors are raised."""
    from one._rest.errors import AlyxNotFound
    from one.remote import aws
    try:
        return aws.get_s3_from_alyx(alyx)
    except (AlyxNotFound, KeyError) as ex:
        return ex


def _split_dataset_terms(kwargs: dict, terms) -> tuple[dict, list, int]:
    """A list given as the remote `dataset` search term: its first name for Alyx, the others
    (and the QC level of `dataset_qc_lte`) to check on the listed datasets."""
    from one._tables.views import qc_code
    from one.converters import _is_listlike
    key = next((k for k in kwargs if util.autocomplete(k, terms) == 'dataset'), None)
    if key is None or not _is_listlike(kwargs[key]):
        return kwargs, [], 0
    names = [str(x) for x in kwargs[key]]
    if not names:
        raise ValueError('The "dataset" search term is an empty list')
    qc_key = next((k for k in kwargs if util.autocomplete(k, terms) == 'dataset_qc_lte'), None)
    max_qc = qc_code(kwargs[qc_key] if qc_key else QC.CRITICAL)
    return {**kwargs, key: names[0]}, names[1:], max_qc
