"""The `One` class: search, list and load the ALF data of a local folder.

`One` answers queries from the cache tables of a data folder (``sessions.pqt`` and
``datasets.pqt``) and loads the files below it.  Every method validates its arguments, asks the
table layer which datasets it means (`one._tables.views`, `one.util`), makes sure the files
are there and loads them.  Public import path: `one.api`.

Identifiers handed back to users are `uuid.UUID` objects.  The tables hold ids as strings until
`One._cache` is first read, then as UUIDs (ONE-api's shape); every internal lookup takes either.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from uuid import UUID

import numpy as np
import pandas as pd

import one.alf.exceptions as alferr
import one.alf.io as alfio
import one.params
from one import util
from one._api.lock import LockMixin
from one._api.messages import (
    check_data_folder,
    matching_collections,
    missing_files_hint,
    not_found_message,
    several_collections_error,
)
from one._api.paths import Confinement, dataset_file, record_columns
from one._lib.values import known as _known
from one._lib.verified import VerifiedFiles
from one._tables import formats
from one._tables.uuid_index import key_for
from one._tables.views import (
    DatasetCodes,
    SessionCodes,
    path_codes_of,
    qc_code,
    qc_codes_of,
    to_uuid,
    user_frame,
)
from one.alf.cache import (
    _merge_tables,
    default_cache,
    make_parquet_db,
    read_tables,
    remove_table_files,
    save_tables,
    user_shaped,
)
from one.alf.path import rel_path_parts
from one.alf.spec import QC, to_alf
from one.converters import ConversionMixin, session_record2path
from one.util import Bunch, ensure_list

__all__ = ['One']
# ONE's logger name, which users' logging configuration refers to
_logger = logging.getLogger('one.api')

SAVE_ON_DELETE = os.environ.get('ONE_SAVE_ON_DELETE', '').casefold() in ('true', '1')
"""bool: save the cache tables when a One instance is deleted (env ONE_SAVE_ON_DELETE).

The switch users set is ``one.api.SAVE_ON_DELETE`` (see `_save_on_delete`)."""
REVISION_LAST_BEFORE = os.environ.get('ONE_REVISION_LAST_BEFORE') or None
"""str: default revision of the load methods (env ONE_REVISION_LAST_BEFORE)."""

_MODES = ('local', 'auto', 'refresh', 'remote')
_STRING_TERMS = {'subject': 'subject', 'task_protocol': 'task_protocol',
                 'laboratory': 'lab', 'projects': 'projects'}


def _check_mode(mode) -> None:
    """Raise ValueError naming the allowed modes if `mode` is not one of them."""
    if not isinstance(mode, str) or mode not in _MODES:
        allowed = ', '.join(f'"{m}"' for m in _MODES)
        raise ValueError(f'Mode "{mode}" not recognized; expected one of {allowed}')


#: The warning `One._check_filesystem` logs for a present file that differs from its record.
_MISMATCH_WARNINGS = {'size': 'local file size mismatch on dataset: %s',
                      'md5': 'local md5 mismatch on dataset: %s'}


class _TablesLock:
    """The lock of a `One`'s tables and views: re-entrant, and pickled or copied as a new lock
    (a copy of an instance has its own)."""

    __slots__ = ('_lock',)

    def __init__(self):
        self._lock = threading.RLock()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    def __reduce__(self):
        return type(self), ()


def _lookups_ready(table) -> None:
    """Have pandas build the hash table of a sessions table's index now (the caller holds the
    tables' lock).

    pandas builds it on the first lookup by label (``get_loc``, ``.loc``), and a lookup made
    in another thread while it is being filled can miss a key the index holds (seen with
    pandas 2.2 and an index of UUIDs, whose hashing runs Python code).
    """
    index = getattr(table, 'index', None)
    if index is not None and len(index) and not isinstance(index, pd.MultiIndex):
        with contextlib.suppress(Exception):  # only a warm-up: a failing lookup is the caller's
            index.get_loc(index[0])


def _standard_indexes(tables: dict) -> None:
    """Give a handed-out sessions or datasets table that lost ONE's index (``reset_index()``, a
    RangeIndex) that index again, from its id columns (`formats.standard_index`).

    Raises
    ------
    one.alf.cache.TableFormatError
        The table has no id columns to set it from.
    """
    for name in ('sessions', 'datasets'):
        table = tables.get(name)
        if isinstance(table, pd.DataFrame) and not formats.has_standard_index(table, name):
            tables[name] = formats.standard_index(table, name, what=f"one._cache['{name}']")
            _logger.warning(f"one._cache['{name}'] had the index {list(table.index.names)}: "
                            f'indexed again by {list(tables[name].index.names)}')


def _save_on_delete() -> bool:
    """The value of ``one.api.SAVE_ON_DELETE`` when deleting a One (ONE-api's switch).

    ``one.api`` re-exports the value of this module at import; a user changes it there
    (``one.api.SAVE_ON_DELETE = True``), so that is where it is read.
    """
    api = sys.modules.get('one.api')
    return bool(getattr(api, 'SAVE_ON_DELETE', SAVE_ON_DELETE))


class One(ConversionMixin, LockMixin):
    """Search, list and load the ALF data of a local folder through its cache tables.

    Parameters
    ----------
    cache_dir : str, pathlib.Path
        The data folder; the default ONE folder when None.
    mode : {'local', 'auto', 'refresh', 'remote'}
        'local' uses the tables as loaded; 'auto' reloads them when older than `cache_expiry`
        (24 hours); 'refresh' reloads them before every query.  A plain `One` has no database:
        'remote' queries fall back to the local tables with a warning.
    wildcards : bool
        In list and load filters, patterns are shell wildcards (True) or regular expressions
        (False).  In `search`, string queries are regular expressions (True) or plain substrings
        (False).
    tables_dir : str, pathlib.Path
        Where the cache tables are, if not in `cache_dir`.
    lock : str, pathlib.Path, optional
        A lock file (see `save_lock`): loading a dataset it does not list, or another version
        of one it lists, raises `one.alf.exceptions.DatasetNotLocked`.

    Examples
    --------
    >>> one = One(cache_dir='/data/ALF')  # doctest: +SKIP
    >>> eids = one.search(subject='KS023', dataset='trials')  # doctest: +SKIP
    >>> trials = one.load_object(eids[0], 'trials')  # doctest: +SKIP
    """

    _search_terms = ('dataset', 'datasets', 'date_range', 'laboratory', 'number', 'projects',
                     'subject', 'task_protocol', 'dataset_qc_lte')
    uuid_filenames = None

    def __init__(self, cache_dir=None, mode='local', wildcards=True, tables_dir=None, lock=None):
        _check_mode(mode)
        if not getattr(self, 'cache_dir', None):  # a subclass may have set it
            self.cache_dir = cache_dir or one.params.get_cache_dir()
        self._tables_dir = tables_dir or self.cache_dir
        self.cache_expiry = timedelta(hours=24)
        self.mode = mode
        self.wildcards = wildcards
        self.record_loaded = False
        self.uuid_filenames = False
        self._verified = None
        self._codes_key = self._codes = None
        self._handed_out = False
        # held while the views are built or checked, the tables handed out, replaced or merged
        # into, so that threads querying one instance see them whole
        self._tables_lock = _TablesLock()
        self._init_lock(lock)
        self._reset_cache()
        if mode == 'remote' and self.offline:
            warnings.warn('One has no database connection: mode "remote" uses the local cache '
                          'tables (use OneAlyx for remote queries)')
        One.load_cache(self)

    def __repr__(self) -> str:
        return f'One ({"off" if self.offline else "on"}line, {self.cache_dir})'

    def __reduce__(self):
        """Pickle as a small recipe: folders, mode and settings, never a password or token,
        the tables only where they differ from those on disk (see `one._api.pickling`)."""
        from one._api.pickling import reduce_one
        return reduce_one(self)

    def __copy__(self):
        from one._api.pickling import rebuild, recipe_of
        return rebuild(type(self), recipe_of(self), reuse=False)

    def __deepcopy__(self, memo):
        return self.__copy__()

    def __del__(self):
        if _save_on_delete() and getattr(self, '_tables', None) is not None:
            with contextlib.suppress(Exception):  # never raise from a destructor
                self.save_cache()

    @property
    def offline(self) -> bool:
        """True if mode is 'local' or there is no database connection."""
        return self.mode == 'local' or not getattr(self, '_web_client', None)

    # ---- cache tables ---------------------------------------------------------------------

    @property
    def _cache(self) -> Bunch:
        """The cache tables, in ONE-api's shape (as many scripts and libraries read them).

        A Bunch of the tables (``sessions``, ``datasets``, ...) and ``_meta``.  Ids are
        `uuid.UUID` objects (sessions indexed by ``id``, datasets by ``(eid, id)``) and string
        columns hold plain strings.  The tables are those the instance queries: reading, editing
        them in place (``one._cache.datasets.loc[(eid, did), 'qc'] = 'FAIL'``), replacing one
        (``one._cache['datasets'] = df``) or merging records into them
        (``merge_tables(one._cache, datasets=...)``) is seen by the next search, listing and
        load, and `save_cache` saves them.

        Until first read, the tables hold ids as strings (cheaper to load); the first read
        puts them in that shape (a second or so for a million datasets).
        """
        if not self._handed_out:
            self._hand_out()
        return self._tables

    @_cache.setter
    def _cache(self, tables) -> None:
        with self._tables_lock:
            self._tables = tables
            self._handed_out = True  # the user's tables, in whatever shape
            self._codes_key = self._codes = None

    def _hand_out(self) -> None:
        """Give the tables ONE-api's shape and carry the views over to them.

        Each table is replaced by a shallow copy in that shape (`user_shaped`), so that a
        query running meanwhile in another thread keeps reading the tables it started with.
        The index levels keep their order (lower-case hex order is UUID order), so the
        integer codes of the views still hold; only the string values behind them change.
        """
        with self._tables_lock:
            if self._handed_out:
                return
            tables = self._tables
            codes = self._codes
            before = {name: tables.get(name) for name in ('datasets', 'sessions')}
            shaped = {name: user_shaped(table, copy=True) for name, table in tables.items()
                      if not str(name).startswith('_') and isinstance(table, pd.DataFrame)}
            _lookups_ready(shaped.get('sessions'))  # before other threads can see it
            tables.update(shaped)
            self._handed_out = True
            self._codes_key = self._codes = None
            datasets = tables.get('datasets')
            if codes is None or not isinstance(datasets, pd.DataFrame) or \
                    codes[0].table is not before['datasets']:
                return
            dataset_codes = codes[0].with_index(datasets)
            dataset_codes.keep_parts(codes[0], ['rel', 'names0', 'names1', 'pairs'])
            session_codes = codes[1]
            if session_codes.table is before['sessions']:
                session_codes = SessionCodes(tables['sessions'], previous=session_codes)
            self._codes = (dataset_codes, session_codes)

    def _reset_cache(self) -> None:
        """Replace the tables with empty ones (in the shape of strings ids, as loaded)."""
        tables = default_cache()
        tables['_meta']['expired'] = False
        self._set_tables(tables)

    def _forget_table_state(self) -> None:
        """Forget what was known of the tables being replaced (a hook for subclasses)."""

    def _set_tables(self, tables) -> None:
        """Run on new tables, as loaded (ids as strings, not handed out)."""
        with self._tables_lock:
            self._forget_table_state()
            self._tables = tables
            self._handed_out = False
            self._codes_key = self._codes = None

    def _remove_table_files(self, tables=None) -> list:
        """Delete the cache table files (and cache_info.json); return the deleted paths."""
        tables = tables or [t for t in self._tables if not t.startswith('_')]
        return remove_table_files(self._tables_dir, tables)

    _remove_cache_table_files = _remove_table_files

    def load_cache(self, tables_dir=None, **kwargs):
        """Load the cache tables from a folder.

        Parameters
        ----------
        tables_dir : str, pathlib.Path, optional
            The folder of the parquet tables; by default the current tables folder.

        Returns
        -------
        datetime.datetime
            When the tables were loaded (None if there were none).
        """
        tables_dir = Path(tables_dir or self._tables_dir or self.cache_dir)
        tables = read_tables(tables_dir)  # (a query meanwhile answers from the old tables)
        with self._tables_lock:  # swapped at once: no query sees empty tables in between
            self._tables_dir = tables_dir
            self._set_tables(tables)
        meta = tables['_meta']
        meta.setdefault('expired', False)
        if meta['loaded_time'] is None:
            meta['expired'] = True
            if self.offline:
                check_data_folder(self)
        elif meta.get('created_time'):
            meta['expired'] = datetime.now() - meta['created_time'] > self.cache_expiry
        return meta['loaded_time']

    def refresh_cache(self, mode='auto'):
        """Reload the cache tables if the mode asks for it.

        Parameters
        ----------
        mode : {'local', 'refresh', 'auto', 'remote'}
            'refresh' reloads; 'auto' reloads when the tables were loaded longer than
            `cache_expiry` ago; 'local' and 'remote' do nothing.

        Returns
        -------
        datetime.datetime
            When the tables were loaded.
        """
        if mode in ('local', 'remote'):
            pass
        elif mode == 'auto':
            loaded_time = self._tables['_meta']['loaded_time']
            if not loaded_time or datetime.now() - loaded_time >= self.cache_expiry:
                _logger.info('Cache expired, refreshing')
                self.load_cache()
        elif mode == 'refresh':
            self.load_cache(clobber=True)
        else:
            raise ValueError(f'Unknown refresh type "{mode}"')
        return self._tables['_meta']['loaded_time']

    def save_cache(self, save_dir=None, force=False, clobber=False):
        """Save the cache tables if they were modified since loaded or saved.

        The tables already in `save_dir` are re-read under an inter-process lock and the
        in-memory records merged into them, so records saved by other processes are kept; every
        file is replaced atomically.  Rows repeating the index of an earlier row are dropped.
        Nothing is written when every table is empty (unless `clobber`).

        Parameters
        ----------
        save_dir : str, pathlib.Path, optional
            Where to save; the cache folder by default.
        force : bool
            Save even if nothing was modified.
        clobber : bool
            Write the in-memory tables as they are, without merging with those on disk.
        """
        meta = self._tables['_meta']
        modified = meta.get('modified_time') or datetime.min
        update_time = max(meta.get(x) or datetime.min for x in ('loaded_time', 'saved_time'))
        if not (force or clobber) and modified < update_time:
            return
        tables = [v for k, v in self._tables.items()
                  if not str(k).startswith('_') and isinstance(v, pd.DataFrame)]
        if not clobber and all(t.empty for t in tables):
            return  # as ONE-api: empty tables are not written
        save_dir = Path(save_dir or self.cache_dir)
        save_tables(self._tables, save_dir, clobber=clobber)
        meta['saved_time'] = datetime.now()
        meta['saved_dir'] = str(save_dir)  # (a save elsewhere than the tables folder: see
        # one._api.pickling, which sends what the tables folder does not hold)

    def _update_cache_from_records(self, strict=False, **kwargs):
        """Insert or update records of the cache tables (see `one.alf.cache.merge_tables`).

        Returns
        -------
        datetime.datetime
            When the tables were updated, or None if nothing was given.
        """
        with self._tables_lock:
            return _merge_tables(self._tables, kwargs, strict=strict,
                                 as_uuid=self._handed_out)

    def _views(self) -> tuple[DatasetCodes, SessionCodes]:
        """Integer-coded views of the tables, following every change of the tables.

        Until the tables are handed out (`_cache`), only this class changes them, and always
        with a new table or a new ``modified_time``: the views are checked when those change.
        Once handed out, users may edit the tables in place at any time: the views are checked
        on every call (the parts derived from columns, by `ColumnWatch`: identities under
        copy-on-write, a comparison of raw values otherwise), and a table that lost ONE's
        index (``reset_index()``) is given it again.
        """
        with self._tables_lock:
            tables = self._tables
            if self._handed_out:
                _standard_indexes(tables)
            datasets, sessions = tables['datasets'], tables['sessions']
            key = (id(datasets), id(datasets.index), len(datasets), id(sessions),
                   id(sessions.index), len(sessions), (tables.get('_meta') or {}).get(
                       'modified_time'))
            codes = self._codes
            if codes is not None and not self._handed_out and key == self._codes_key:
                return codes
            dataset_codes, session_codes = codes if codes is not None else (None, None)
            if dataset_codes is not None and dataset_codes.follows(datasets):
                dataset_codes.validate()
            else:
                dataset_codes = DatasetCodes(datasets, previous=dataset_codes)
            if session_codes is not None and session_codes.follows(sessions):
                session_codes.validate()
            else:
                session_codes = SessionCodes(sessions, previous=session_codes)
                _lookups_ready(sessions)
            self._codes = (dataset_codes, session_codes)
            self._codes_key = key  # holds the tables: their ids cannot be reused meanwhile
            return self._codes

    def _dataset_codes(self) -> DatasetCodes:
        return self._views()[0]

    def _session_codes(self) -> SessionCodes:
        return self._views()[1]

    # ---- search ---------------------------------------------------------------------------

    @util.refresh
    def search_terms(self, query_type=None) -> tuple:
        """Return the search terms `search` accepts."""
        return self._search_terms

    def _check_query_type(self, query_type) -> None:
        if query_type == 'remote' and self.offline:
            warnings.warn('One has no database connection: query_type "remote" uses the local '
                          'cache tables')

    @util.refresh
    def search(self, details=False, query_type=None, **kwargs):
        """Find sessions matching all the given criteria.

        Parameters
        ----------
        dataset : str, list
            Sessions must hold, for each item, an existing dataset whose relative path contains
            it (a regular expression when `wildcards` is True).
        datasets : str, list
            Sessions must hold, for each item, an existing dataset whose file name matches it
            entirely (a regular expression).
        dataset_qc_lte : str, int, one.alf.spec.QC
            With `dataset(s)`, the matching datasets must have this QC or better; alone,
            sessions holding any existing dataset with this QC or better.
        date_range : str, datetime.date, list
            A day, or a pair of days (inclusive; None leaves an end open).
        laboratory, subject, task_protocol, projects : str, list
            Sessions whose field contains any of the values (regular expressions when
            `wildcards` is True; plain substrings otherwise).
        number : int, str, list
            The session number(s).
        details : bool
            Also return the session records.
        query_type : str
            Ignored by a plain One (there is no database).

        Returns
        -------
        list of uuid.UUID
            Matching session IDs, sorted by date, subject and number, most recent first.
        list of Bunch
            (with `details`) The session records, in the same order.

        Raises
        ------
        ValueError
            A search term is unknown or ambiguous.

        Examples
        --------
        >>> eids = one.search(subject='^KS023$', date=['2019-12-01', None])  # doctest: +SKIP
        >>> eids = one.search(dataset=['trials', 'spikes'],
        ...                   dataset_qc_lte='WARNING')  # doctest: +SKIP
        """
        self._check_query_type(query_type)
        terms = self.search_terms(query_type='local')
        queries = {util.autocomplete(k, terms): v for k, v in kwargs.items()}
        dataset_codes, views = self._views()
        sessions = views.table
        mask = np.ones(len(sessions), dtype=bool)
        for key, column in _STRING_TERMS.items():
            if key in queries and mask.any():
                values = [str(v) for v in ensure_list(queries[key])]
                mask &= views.contains(column, values, regex=self.wildcards)
        if 'date_range' in queries and mask.any():
            start, end = util.validate_date_range(queries['date_range'])
            mask &= (views.dates >= start.to_datetime64()) & (views.dates <= end.to_datetime64())
        if 'number' in queries and mask.any():
            numbers = [int(x) for x in ensure_list(queries['number'])]
            mask &= sessions['number'].isin(numbers).to_numpy()
        if mask.any() and queries.keys() & {'dataset', 'datasets', 'dataset_qc_lte'}:
            mask &= self._sessions_with_datasets(queries, dataset_codes, views)
        positions = views.ordered(np.flatnonzero(mask))
        if positions.size == 0:
            return ([], None) if details else []
        eids = [views.uuid(i) for i in positions]
        if details:
            found = sessions.iloc[positions].reset_index(drop=True)
            return eids, found.to_dict('records', into=Bunch)
        return eids

    def _search_insertions(self, details=False, **kwargs):
        """Find probe insertions in the cache's insertions table (no database needed).

        Parameters
        ----------
        model, name, serial : str, list
            Insertions whose field contains any of the values (regular expressions when
            `wildcards` is True; plain substrings otherwise).
        details : bool
            Also return the insertion records.
        **kwargs
            Session criteria, as for `search` (e.g. `subject`, `laboratory`, `date_range`).

        Returns
        -------
        list of uuid.UUID
            The insertion UUIDs, by session date, subject, number and insertion name, most
            recent first; empty (with a warning) when the cache holds no insertions table.
        list of Bunch
            (with `details`) The insertion records with the session's date, subject and
            number; None when nothing was found.

        Raises
        ------
        ValueError
            A search term is unknown or ambiguous.
        NotImplementedError
            The term `json` or `chronic_insertion`, which cannot be searched locally.
        """
        from one._tables.insertions import INSERTION_TERMS, filter_insertions
        table = self._tables.get('insertions')
        if table is None:
            warnings.warn('No insertions data loaded.')
            return ([], None) if details else []
        session_terms = One.search_terms(self, query_type='local')
        queries = {util.autocomplete(k, (*INSERTION_TERMS, *session_terms)): v
                   for k, v in kwargs.items()}
        session_queries = {k: v for k, v in queries.items() if k in session_terms}
        eids = One.search(self, query_type='local', **session_queries) \
            if session_queries else None
        found = filter_insertions(
            table, self._tables['sessions'], eids=eids, regex=self.wildcards,
            queries={k: v for k, v in queries.items() if k not in session_queries})
        if found.empty:
            return ([], None) if details else []
        pids = [UUID(str(x)) for x in found.index.get_level_values('id')]
        if details:
            return pids, found.reset_index(drop=True).to_dict('records', into=Bunch)
        return pids

    def _sessions_with_datasets(self, queries: dict, codes: DatasetCodes,
                                views: SessionCodes) -> np.ndarray:
        """Per sessions-table row: does the session hold the queried datasets?"""
        qc = qc_code(queries.get('dataset_qc_lte', QC.FAIL))
        usable = codes.exists & (codes.qc <= qc)
        session_hit = np.ones(len(codes.eids), dtype=bool)
        checks = [(q, False) for q in ensure_list(queries.get('dataset') or [])]
        checks += [(q, True) for q in ensure_list(queries.get('datasets') or [])]
        if not checks:  # dataset_qc_lte alone: any usable dataset
            session_hit = codes.sessions_with(usable)
        for query, file_name in checks:
            if file_name:
                pattern = re.compile(str(query))
            else:
                pattern = re.compile(str(query) if self.wildcards else re.escape(str(query)))
            rows = codes.match_paths(pattern, file_name_only=file_name, full=file_name)
            session_hit &= codes.sessions_with(rows & usable)
        mask = np.zeros(views.n_rows, dtype=bool)
        positions = views.positions_of(codes)[session_hit]
        mask[positions[positions >= 0]] = True
        return mask

    # ---- details and listing --------------------------------------------------------------

    @util.refresh
    @util.parse_id
    def get_details(self, eid, full: bool = False):
        """Return a session's record, or with `full` its datasets joined with it.

        Returns
        -------
        pandas.Series or pandas.DataFrame
            The session record (named by its UUID), or a datasets table with the session's
            columns added.

        Raises
        ------
        one.alf.exceptions.ALFObjectNotFound
            The session is not in the cache tables.
        """
        sessions = self._session_codes().table
        try:
            position = sessions.index.get_loc(key_for(sessions.index, eid))
        except (KeyError, TypeError):
            raise alferr.ALFObjectNotFound(
                f'Session {eid} not found in the cache tables of {self._tables_dir}') from None
        if not isinstance(position, (int, np.integer)):
            raise alferr.ALFMultipleObjectsFound(f'Multiple sessions in cache for eid {eid}')
        record = sessions.iloc[position].copy()
        record.name = to_uuid(eid)
        if not full:
            return record
        datasets = self._session_datasets(eid)
        frame = datasets.join(sessions.iloc[[position]], on='eid', how='right')
        return user_frame(frame)

    @util.refresh
    def list_subjects(self) -> list:
        """Return the sorted list of subject names."""
        return sorted(self._tables['sessions']['subject'].dropna().unique().tolist())

    def _session_datasets(self, eid) -> pd.DataFrame:
        """The current rows of one session (a UUID or its string) in the datasets table."""
        codes = self._dataset_codes()
        return codes.table.iloc[codes.rows_of(eid)]

    def _filtered_datasets(self, eid, filename=None, collection=None, revision=None, qc=QC.FAIL,
                           ignore_qc_not_set=False, default_revisions_only=False):
        """Datasets of a session (or of all sessions) matching list filters; str ids."""
        if eid is None:
            datasets = self._tables['datasets']
        else:
            datasets = self._session_datasets(eid)
        if default_revisions_only:
            datasets = datasets[_default_revisions(datasets)]
        return util.filter_datasets(
            datasets, filename=filename, collection=collection, revision=revision,
            revision_last_before=False, assert_unique=False, qc=qc,
            ignore_qc_not_set=ignore_qc_not_set, wildcards=self.wildcards)

    @util.refresh
    def list_datasets(self, eid=None, filename=None, collection=None, revision=None, qc=QC.FAIL,
                      ignore_qc_not_set=False, details=False, query_type=None,
                      default_revisions_only=False, keep_eid_index=False):
        """List the datasets of a session, or of all sessions.

        Parameters
        ----------
        eid : str, UUID, pathlib.Path, dict, list, optional
            The session; all sessions when None; a list of sessions gives a list of listings
            (one per session, in order).
        filename : str, list, dict
            File name pattern(s), or a dict of ALF parts.
        collection : str, list
            Collection pattern(s); '' for datasets at the session root.
        revision : str, list
            Revision pattern(s); '' for datasets without a revision.
        qc : str, int, one.alf.spec.QC
            Keep datasets with this QC or better (default FAIL).
        ignore_qc_not_set : bool
            Also drop datasets whose QC is NOT_SET.
        details : bool
            Return a table instead of relative paths.
        query_type : str
            Ignored by a plain One.
        default_revisions_only : bool
            Keep only default revisions (the table must have a ``default_revision`` column).
        keep_eid_index : bool
            With `details` and an eid, keep the (eid, id) index instead of id only.

        Returns
        -------
        list of str or pandas.DataFrame
            Relative paths (sorted for a session; unique, in table order, for all sessions), or
            the datasets table with UUID index levels.

        Raises
        ------
        one.alf.exceptions.ALFError
            `default_revisions_only` and the table has no ``default_revision`` column.
        """
        self._check_query_type(query_type)
        filters = dict(filename=filename, collection=collection, revision=revision, qc=qc,
                       ignore_qc_not_set=ignore_qc_not_set,
                       default_revisions_only=default_revisions_only)
        from one.converters import _is_listlike
        if _is_listlike(eid):  # one listing per session
            return [self.list_datasets(e, details=details, query_type='local',
                                       keep_eid_index=keep_eid_index, **filters)
                    if e else self._empty_listing(details, keep_eid_index)
                    for e in self.to_eid(list(eid))]
        if not eid:
            codes = self._dataset_codes()
            if not details and not default_revisions_only:
                distinct = self._distinct_paths(codes, filename, collection, revision, qc,
                                                ignore_qc_not_set)
                return codes.rel_paths[distinct].tolist()
            mask = self._all_rows_mask(codes, **filters)
            if details:
                return user_frame(codes.table.iloc[np.flatnonzero(mask)].copy())
            return codes.rel_paths[pd.unique(codes.rel_codes[mask])].tolist()
        eid = self.to_eid(eid)
        if eid and not details:
            # the session's rows from the index; their current paths and QC from the table
            codes = self._dataset_codes()
            table = codes.table
            rows = codes.rows_of(eid)
            rel_codes, rel_paths = path_codes_of(table['rel_path'].iloc[rows])
            qc_codes = qc_codes_of(table['qc'].iloc[rows]) if 'qc' in table.columns else \
                np.zeros(len(rows), dtype=np.int8)
            mask = util._filter_mask(
                table.iloc[:0], filename, collection, revision, qc, ignore_qc_not_set,
                self.wildcards, rel_codes=(rel_codes, rel_paths), qc_codes=qc_codes)
            if default_revisions_only:
                mask &= _default_revisions(table)[rows]
            return sorted(rel_paths[rel_codes[mask]])
        datasets = self._filtered_datasets(eid, **filters) if eid else None
        if datasets is None or datasets.empty:
            return self._empty_listing(details, keep_eid_index)
        if not details:
            return sorted(datasets['rel_path'].astype(object))
        datasets = user_frame(datasets.copy())
        return datasets if keep_eid_index else datasets.droplevel('eid')

    def _empty_listing(self, details: bool, keep_eid_index: bool):
        """What `list_datasets` gives for a session without (matching) datasets."""
        if not details:
            return []
        empty = user_frame(self._tables['datasets'].iloc[0:0].copy())
        return empty if keep_eid_index else empty.droplevel('eid')

    @util.refresh
    def list_collections(self, eid=None, filename=None, collection=None, revision=None,
                         details=False, query_type=None):
        """List the collections of a session, or of all sessions.

        Returns
        -------
        list of str or dict
            Unique collections ('' for the session root) in order of appearance, or with
            `details` a dict of datasets tables keyed by collection.
        """
        return self._listing(eid, filename, collection, revision, 0, details)

    @util.refresh
    def list_revisions(self, eid=None, filename=None, collection=None, revision=None,
                       details=False, query_type=None):
        """List the revisions of a session, or of all sessions.

        Returns
        -------
        list of str or dict
            Unique revision labels ('' for none) in order of appearance, or with `details` a
            dict of datasets tables keyed by revision.
        """
        return self._listing(eid, filename, collection, revision, 1, details)

    def _all_rows_mask(self, codes: DatasetCodes, filename=None, collection=None,
                       revision=None, qc=QC.FAIL, ignore_qc_not_set=False,
                       default_revisions_only=False) -> np.ndarray:
        """Rows of the whole datasets table passing list filters (codes reused across calls)."""
        datasets = codes.table
        mask = util._filter_mask(datasets, filename, collection, revision, qc,
                                 ignore_qc_not_set, self.wildcards,
                                 rel_codes=(codes.rel_codes, codes.rel_paths[:-1]),
                                 qc_codes=codes.qc)
        if default_revisions_only:
            mask &= _default_revisions(datasets)
        return mask

    def _distinct_paths(self, codes: DatasetCodes, filename=None, collection=None,
                        revision=None, qc=QC.FAIL, ignore_qc_not_set=False) -> np.ndarray:
        """rel_path codes of the whole table passing path and QC filters, in order of
        appearance (from the distinct path and QC pairs, not from every row)."""
        rel, qc_codes, first = codes.first_rows()
        keep = util._filter_mask(codes.table.iloc[:0], filename, collection,
                                 revision, qc, ignore_qc_not_set, self.wildcards,
                                 rel_codes=(rel, codes.rel_paths[:-1]), qc_codes=qc_codes)
        order = np.argsort(first[keep], kind='stable')
        return pd.unique(rel[keep][order])

    def _listing(self, eid, filename, collection, revision, part: int, details: bool):
        """Unique collections (part 0) or revisions (part 1) of the matching datasets."""
        if not eid and not details:  # whole table: work on codes, never copy rows
            codes = self._dataset_codes()
            names = codes.part_names(part)
            return list(dict.fromkeys(names[self._distinct_paths(codes, filename, collection,
                                                                 revision)]))
        if eid:
            eid = self.to_eid(eid)
            if not eid:
                return {} if details else []
        datasets = self._filtered_datasets(eid, filename=filename, collection=collection,
                                           revision=revision)
        return self._group_by_part(datasets, part, details)

    @staticmethod
    def _group_by_part(datasets: pd.DataFrame, part: int, details: bool):
        """Unique collections (part 0) or revisions (part 1) of the datasets' relative paths."""
        rel_codes, rel_paths = pd.factorize(datasets['rel_path'].astype(object))
        names = np.array([(rel_path_parts(x, assert_valid=False)[part] or '')
                          for x in rel_paths] + [''], dtype=object)
        if not details:
            first = pd.unique(rel_codes)
            return list(dict.fromkeys(names[first]))
        values = names[rel_codes]
        frames = user_frame(datasets.copy())
        return {k: frames[values == k] for k in sorted(set(values))}

    # ---- files ----------------------------------------------------------------------------

    def _session_paths(self, eids) -> dict:
        """Relative session folder of each eid (string or UUID), from the sessions table."""
        views = self._session_codes()
        return {eid: views.session_path(eid, session_record2path) for eid in set(eids)}

    def _dataset_session_paths(self, datasets: pd.DataFrame, ids: list) -> list:
        """Session folder of each dataset record: its `session_path` column when there is
        one (e.g. '' for aggregates), else from the sessions table (None when unknown)."""
        if 'session_path' in datasets.columns:
            return datasets['session_path'].astype(object).tolist()
        if 'eid' in datasets.index.names:
            eids = [str(x) for x in datasets.index.get_level_values('eid')]
        else:
            eids = self._eids_of_datasets(ids)
        paths = self._session_paths([e for e in eids if e])
        return [paths.get(e) if e else None for e in eids]

    def _verified_files(self) -> VerifiedFiles:
        if self._verified is None or self._verified.root != Path(self.cache_dir):
            self._verified = VerifiedFiles(self.cache_dir, self._tables_dir)
        return self._verified

    def _check_filesystem(self, datasets, offline=None, update_exists=True, check_hash=True):
        """Return the local path of each dataset (None where missing), downloading if online.

        A present file whose size differs from the record, or (with `check_hash`) whose md5
        differs, is reported with a warning and, when online, downloaded again.  An unknown
        size or hash (NA, 0 or '') is not checked.  Files already verified and unchanged since
        (same size and modification time) are not hashed again.

        Parameters
        ----------
        datasets : pandas.Series, pandas.DataFrame, list of dict
            Dataset records.
        offline : bool
            Do not download.
        update_exists : bool
            Write the found/missing state into the cache table's ``exists`` column.
        check_hash : bool
            Compare the md5 of present files with the record.

        Returns
        -------
        list of one.alf.path.ALFPath or None
            One entry per dataset, in order.
        """
        datasets = self._as_records(datasets)
        if datasets.empty:
            return []
        ids = [str(x) for x in datasets.index.get_level_values('id')]
        session_paths = self._dataset_session_paths(datasets, ids)
        self._check_lock(datasets, ids, session_paths)
        files, to_download = [], []
        states = self._file_states(datasets, ids, session_paths, check_hash)
        for i, (file, problem) in enumerate(states):
            if problem in _MISMATCH_WARNINGS:
                where = PurePosixPath(session_paths[i], datasets['rel_path'].iat[i])
                _logger.warning(_MISMATCH_WARNINGS[problem], where)
            if problem is not None:
                to_download.append(i)
            files.append(None if problem == 'missing' else file)

        if to_download and not (offline or self.offline):
            new_files = self._download_datasets(datasets.iloc[to_download],
                                                update_cache=update_exists)
            for i, file in zip(to_download, new_files or []):
                files[i] = file

        exists = np.array([f is not None for f in files])
        if update_exists and 'exists' in datasets.columns:
            stale = exists != datasets['exists'].to_numpy(dtype=bool, na_value=False)
            if stale.any():
                self._set_exists([ids[i] for i in np.flatnonzero(stale)], exists[stale])
        self._after_load(datasets, ids, session_paths, files)  # may refuse (lock)
        if self.record_loaded:
            loaded = np.array([ids[i] for i in np.flatnonzero(exists)], dtype=object)
            previous = self._tables.get('_loaded_datasets', np.array([], dtype=object))
            self._tables['_loaded_datasets'] = np.unique(np.r_[previous.astype(object), loaded])
        return files

    def _file_states(self, datasets: pd.DataFrame, ids: list, session_paths: list,
                     check_hash: bool = True):
        """Per dataset record, in order: its file below the cache folder and what is wrong with
        it, downloading nothing (a generator: a record leading outside the cache folder raises
        `one._lib.confine.UnsafePath` when reached).

        The problem is None (present and good), 'missing', 'size' or 'md5' (with
        `check_hash`); unknown sizes and hashes are not checked, and files verified before and
        unchanged since are not hashed again.  The file is None when the session folder or
        ``rel_path`` is unknown.
        """
        guard = Confinement(self.cache_dir)  # refuses paths leading out of the cache
        eids = datasets.index.get_level_values('eid') if 'eid' in datasets.index.names \
            else None
        sizes, hashes = record_columns(datasets, 'file_size', 'hash')
        verified = self._verified_files() if check_hash else None
        for i, (session_path, rel_path) in enumerate(zip(session_paths, datasets['rel_path'])):
            if session_path is None or not isinstance(rel_path, str):
                yield None, 'missing'
                continue
            file = dataset_file(guard, session_path, rel_path, ids[i], self.uuid_filenames,
                                eids[i] if eids is not None else None)
            try:
                stat = os.stat(file)
            except OSError:
                yield file, 'missing'
                continue
            size, digest = _known(sizes[i]), _known(hashes[i])
            if size and stat.st_size != int(size):
                yield file, 'size'
            elif digest and verified is not None and \
                    verified.md5(file, stat) != str(digest).lower():
                yield file, 'md5'
            else:
                yield file, None

    def _as_records(self, datasets) -> pd.DataFrame:
        """Dataset records as a DataFrame with id strings in an (eid, id) or (id) index.

        `datasets` is a frame of records, one row of one (a Series named by its index label),
        a list of such rows, or a list of Alyx REST dataset records.
        """
        if isinstance(datasets, pd.Series):
            datasets = [datasets]
        if not isinstance(datasets, pd.DataFrame):
            rows = list(datasets)
            if rows and all(isinstance(x, pd.Series) for x in rows):
                names = [x.name for x in rows]
                datasets = pd.DataFrame(rows)
                datasets.index = (
                    pd.MultiIndex.from_tuples(names, names=['eid', 'id'])
                    if isinstance(names[0], tuple) and len(names[0]) == 2
                    else pd.Index(names, name='id'))
            else:
                from one.converters import datasets2records
                datasets = datasets2records(rows)
        if datasets.empty:
            return datasets
        index = datasets.index
        first = index[0] if isinstance(index, pd.MultiIndex) else (index[0],)
        if all(isinstance(x, str) for x in first) and index.names[-1] == 'id':
            return datasets  # as in the cache tables already (and not modified here)
        datasets = datasets.copy()
        if isinstance(index, pd.MultiIndex):
            names = list(index.names)
            if names[-1] != 'id':
                names = ['eid', 'id'][-index.nlevels:]
            arrays = [[None if pd.isna(x) else str(x) for x in index.get_level_values(i)]
                      for i in range(index.nlevels)]
            datasets.index = pd.MultiIndex.from_arrays(arrays, names=names)
        else:
            datasets.index = pd.Index([str(x) for x in index], name='id')
        return datasets

    def _eids_of_datasets(self, ids: list) -> list:
        """Session of each dataset id, looked up in the cache table (None when unknown)."""
        codes = self._dataset_codes()
        rows, which = codes.id_rows(ids)
        eids = [None] * len(ids)
        for eid, i in zip(codes.eid_strings(rows), which):
            eids[i] = eid
        return eids

    def _set_exists(self, ids: list, values: np.ndarray) -> None:
        """Write the `exists` state of some datasets into the cache table."""
        self._set_column('exists', ids, values)

    def _set_column(self, name: str, ids: list, values) -> None:
        """Write a boolean column of the datasets table for some dataset ids (one value for
        each id, or one value for all); nothing happens when the table has no such column."""
        if not len(ids):
            return
        with self._tables_lock:
            codes = self._dataset_codes()
            table = codes.table
            if name not in table.columns:
                return
            positions, which = codes.id_rows(ids)
            if positions.size == 0:
                return
            values = np.asarray(values, dtype=bool)
            new = values[which] if values.ndim else np.full(positions.size, bool(values))
            column = table.columns.get_loc(name)
            try:
                table.iloc[positions, column] = new
            except ValueError:  # read-only arrays backed by parquet buffers
                self._tables['datasets'] = table = table.copy()
                table.iloc[positions, column] = new
            self._tables['_meta']['modified_time'] = datetime.now()

    def _download_datasets(self, dsets, **kwargs) -> list:
        """Download datasets; a plain One has no remote, so nothing is downloaded."""
        return [None] * len(dsets)

    def _download_dataset(self, dset, cache_dir=None, **kwargs):
        """Download one dataset; a plain One has no remote."""
        return None

    def save_loaded_ids(self, sessions_only=False, clear_list=True):
        """Save the IDs of the datasets (or sessions) loaded since `record_loaded` was set.

        Parameters
        ----------
        sessions_only : bool
            Save the session IDs instead of the dataset IDs.
        clear_list : bool
            Forget the recorded IDs afterwards.

        Returns
        -------
        list of uuid.UUID
            The IDs saved.
        pathlib.Path
            The CSV file written (None when nothing was loaded).
        """
        loaded = self._tables.get('_loaded_datasets')
        if loaded is None or len(loaded) == 0:
            warnings.warn('No datasets loaded; check "record_loaded" attribute is True')
            return [], None
        if sessions_only:
            name = 'session_uuid'
            codes = self._dataset_codes()
            rows = np.sort(codes.id_rows([str(x) for x in loaded])[0])
            ids = codes.eids[pd.unique(codes.eid_codes[rows])].tolist()
        else:
            name = 'dataset_uuid'
            ids = list(loaded)
        timestamp = datetime.now().strftime('%Y-%m-%dT%H-%M-%S')
        filename = Path(self._tables_dir or self.cache_dir) / f'{timestamp}_loaded_{name}s.csv'
        pd.DataFrame({name: [str(x) for x in ids]}).to_csv(filename, index=False)
        if clear_list:
            self._tables['_loaded_datasets'] = np.array([], dtype=object)
        return [UUID(str(x)) for x in ids], filename

    # ---- loading --------------------------------------------------------------------------

    def _load_candidates(self, eid, query_type) -> pd.DataFrame:
        """The session's datasets with QC FAIL or better (list_datasets' default)."""
        self._check_query_type(query_type)
        codes = self._dataset_codes()
        table = codes.table
        rows = codes.rows_of(eid)
        if 'qc' in table.columns:  # the current QC of the session's rows
            rows = rows[qc_codes_of(table['qc'].iloc[rows]) <= qc_code(QC.FAIL)]
        return table.iloc[rows]

    def _offline_for(self, query_type) -> bool:
        return self.mode == 'local' or self.offline

    @util.refresh
    @util.parse_id
    def load_object(self, eid, obj: str, collection=None, revision=None, query_type=None,
                    download_only=False, check_hash=True, **kwargs):
        """Load all attributes of an ALF object of a session.

        Parameters
        ----------
        eid : str, UUID, pathlib.Path, dict
            The session.
        obj : str
            The object name, e.g. 'trials' (a pattern).
        collection : str
            The collection, e.g. 'alf/probe00' (a pattern).
        revision : str
            Load the latest revision up to this one; the default revision when None.
        query_type : str
            Ignored by a plain One.
        download_only : bool
            Return the file paths instead of loading them.
        check_hash : bool
            Check the md5 of the files against the tables.
        **kwargs
            Other ALF parts to filter by: attribute, namespace, timescale, extra, extension.

        Returns
        -------
        one.alf.io.AlfBunch or list of one.alf.path.ALFPath
            The object's attributes, or its files.

        Raises
        ------
        one.alf.exceptions.ALFObjectNotFound
            No such object in the session, or its files are missing.
        one.alf.exceptions.ALFMultipleObjectsFound
            The pattern matches several objects.
        one.alf.exceptions.ALFMultipleCollectionsFound
            The object exists in several collections; name one.

        Examples
        --------
        >>> trials = one.load_object(eid, 'trials',
        ...                          attribute=['intervals', 'goCue*'])  # doctest: +SKIP
        """
        revision = revision or REVISION_LAST_BEFORE
        datasets = self._load_candidates(eid, query_type)
        if len(datasets) == 0:
            raise alferr.ALFObjectNotFound(f'No datasets found for session {eid}')
        dataset = {'object': obj, **kwargs}
        matching = util.filter_datasets(datasets, dataset, collection, revision,
                                        assert_unique=False, wildcards=self.wildcards)
        if len(matching) == 0:
            raise alferr.ALFObjectNotFound(self._not_found_message(
                datasets, f'ALF object "{obj}"', eid, collection, revision, parts=dataset))
        parts = [rel_path_parts(x) for x in matching['rel_path']]
        objects = sorted({p[3] or '' for p in parts})
        collections = sorted({p[0] or '' for p in parts})
        if len(objects) > 1:
            raise alferr.ALFMultipleObjectsFound(*objects)
        if len(collections) > 1:
            raise several_collections_error(f'ALF object "{obj}"', eid, collections)
        files = self._check_filesystem(matching, offline=self._offline_for(query_type),
                                       check_hash=check_hash)
        missing = [r for r, f in zip(matching['rel_path'], files) if not f]
        files = [f for f in files if f]
        if files and missing:
            _logger.warning('ALF object "%s" of session %s loaded without %s: %s', obj, eid,
                            ', '.join(missing), missing_files_hint(self))
        if not files:
            raise alferr.ALFObjectNotFound(
                f'ALF object "{obj}" of session {eid} not found on disk: '
                f'{missing_files_hint(self)}')
        if download_only:
            return files
        return alfio.load_object(files, wildcards=self.wildcards, **kwargs)

    def _not_found_message(self, datasets, what, eid, collection, revision, parts=None) -> str:
        """Say what was asked for and what the session holds where it was looked for."""
        return not_found_message(datasets, what, eid, collection, revision, self.wildcards,
                                 parts)

    @util.refresh
    @util.parse_id
    def load_dataset(self, eid, dataset, collection=None, revision=None, query_type=None,
                     download_only=False, check_hash=True):
        """Load one dataset of a session.

        Parameters
        ----------
        eid : str, UUID, pathlib.Path, dict
            The session.
        dataset : str, dict
            The file name (a pattern; 'obj.attr' gets '.*' appended with wildcards), a dict of
            ALF parts, or a path relative to the session ('alf/#2020-01-01#/obj.attr.npy').
        collection, revision : str
            As in `load_object`; must be None when `dataset` is a relative path.
        query_type : str
            Ignored by a plain One.
        download_only : bool
            Return the file path instead of loading it.
        check_hash : bool
            Check the md5 of the file against the tables.

        Returns
        -------
        object or one.alf.path.ALFPath
            The loaded data (numpy array, DataFrame, dict...) or the path.

        Raises
        ------
        ValueError
            `collection` or `revision` given with a relative path.
        one.alf.exceptions.ALFObjectNotFound
            No such dataset, or its file is missing.
        one.alf.exceptions.ALFMultipleCollectionsFound
            The dataset exists in several collections; name one.
        one.alf.exceptions.ALFMultipleObjectsFound
            The pattern matches several datasets.
        """
        revision = revision or REVISION_LAST_BEFORE
        datasets = self._load_candidates(eid, query_type)
        if self.wildcards and isinstance(dataset, str) and len(dataset.split('.')) == 2:
            dataset += '.*'
        assert_unique = ('/' if isinstance(dataset, str) else 'collection') not in dataset
        if not assert_unique and isinstance(dataset, str) and '*' in dataset:
            warnings.warn('Wildcards should not be used with relative path as input.')
        if not assert_unique and (collection is not None or revision is not None):
            raise ValueError('collection and revision kwargs must be None when dataset is a '
                             'relative path')
        try:
            matching = util.filter_datasets(datasets, dataset, collection, revision,
                                            wildcards=self.wildcards,
                                            assert_unique=assert_unique)
        except alferr.ALFMultipleCollectionsFound:
            raise several_collections_error(f'Dataset "{dataset}"', eid, matching_collections(
                datasets, dataset, collection, revision, self.wildcards)) from None
        if len(matching) == 0:
            raise alferr.ALFObjectNotFound(self._not_found_message(
                datasets, f'Dataset "{dataset}"', eid, collection, revision))
        file, = self._check_filesystem(matching.iloc[:1], offline=self._offline_for(query_type),
                                       check_hash=check_hash)
        if not file:
            raise alferr.ALFObjectNotFound(
                f'Dataset "{matching["rel_path"].iloc[0]}" of session {eid} not found on disk: '
                f'{missing_files_hint(self)}')
        return file if download_only else alfio.load_file_content(file)

    @util.refresh
    @util.parse_id
    def load_datasets(self, eid, datasets, collections=None, revisions=None, query_type=None,
                      assert_present=True, download_only=False, check_hash=True):
        """Load several datasets of a session.

        Parameters
        ----------
        eid : str, UUID, pathlib.Path, dict
            The session.
        datasets : list of str or dict, or pandas.DataFrame
            File names or ALF-part dicts, or relative paths (or a datasets table), which are
            then loaded exactly (no last-before revision).
        collections, revisions : str or list
            One for all datasets or one per dataset; None with relative paths.
        query_type : str
            Ignored by a plain One.
        assert_present : bool
            Raise if a dataset is missing; otherwise return None in its place.
        download_only : bool
            Return file paths instead of loading.
        check_hash : bool
            Check the md5 of the files against the tables.

        Returns
        -------
        list
            The data (or paths), one per requested dataset, None where missing.
        list of Bunch
            The dataset records, None where missing.

        Raises
        ------
        TypeError
            `datasets` is a string.
        ValueError
            Mixed str and dict items, specifiers of the wrong length, or specifiers with
            relative paths.
        one.alf.exceptions.ALFObjectNotFound
            A dataset is missing and `assert_present` is True.
        """
        if isinstance(datasets, str):
            raise TypeError('`datasets` must be a non-string iterable')
        revisions = revisions or REVISION_LAST_BEFORE
        is_frame = isinstance(datasets, pd.DataFrame)
        is_rel_paths = is_frame or any('/' in x for x in datasets if isinstance(x, str))
        if is_rel_paths:
            if REVISION_LAST_BEFORE and revisions == REVISION_LAST_BEFORE and \
                    collections is None:
                raise ValueError('ONE_REVISION_LAST_BEFORE is set: relative paths cannot be '
                                 'loaded; pass dataset names and revisions instead')
            if (collections, revisions) != (None, None):
                raise ValueError('collection and revision kwargs must be None when dataset '
                                 'is a relative path')
            if is_frame:
                if 'eid' in datasets.index.names:
                    frame_eids = {str(x) for x in datasets.index.get_level_values('eid')}
                    assert frame_eids == {str(eid)}, 'datasets table is for another session'
                datasets = datasets['rel_path'].tolist()
            datasets = [rel_path_parts(x, as_dict=True) for x in datasets]
            if datasets:
                collections, revisions = zip(*((d.pop('collection') or '',
                                                d.pop('revision') or '') for d in datasets))
        all_datasets = self._load_candidates(eid, query_type)
        if len(all_datasets) == 0:
            if assert_present:
                raise alferr.ALFObjectNotFound(f'No datasets found for session {eid}')
            _logger.warning('No datasets found for session %s', eid)
            return None, user_frame(all_datasets.copy())
        if len(datasets) == 0:
            return None, user_frame(all_datasets.iloc[0:0].copy())
        kinds = {(isinstance(x, str), isinstance(x, dict)) for x in datasets}
        if kinds not in ({(True, False)}, {(False, True)}):
            raise ValueError('`datasets` must be iterable of only str or only dicts')
        if self.wildcards and isinstance(datasets[0], str):
            datasets = [x + '.*' if len(x.split('.')) == 2 else x for x in datasets]
        collections = self._per_dataset(collections, len(datasets))
        revisions = self._per_dataset(revisions, len(datasets))
        options = dict(wildcards=self.wildcards, assert_unique=True,
                       revision_last_before=not is_rel_paths)
        slices = [util.filter_datasets(all_datasets, d, c, r, **options)
                  for d, c, r in zip(datasets, collections, revisions)]
        present = [len(s) == 1 for s in slices]
        present_datasets = pd.concat([s for s in slices if len(s) == 1]) if any(present) \
            else all_datasets.iloc[0:0]
        if is_rel_paths and 'default_revision' in present_datasets.columns:
            not_default = ~present_datasets['default_revision'].to_numpy(dtype=bool,
                                                                          na_value=False)
            if not_default.any():
                old = present_datasets['rel_path'][not_default].tolist()
                warnings.warn('The following datasets may have been revised and are therefore '
                              'not recommended for analysis:\n\t' + '\n\t'.join(old) +
                              '\nTo avoid this warning, specify the revision as a kwarg or use '
                              'load_dataset.', alferr.ALFWarning)
        if not all(present):
            names = (x if isinstance(x, str) else to_alf(**_alf_parts_only(x)) for x in datasets)
            names = ('/'.join(filter(None, [c, f'#{r}#' if r else None, d]))
                     for c, r, d in zip(collections, revisions, names))
            missing = ', '.join(n for n, here in zip(names, present) if not here)
            message = f'The following datasets are not in the cache: {missing}'
            if assert_present:
                raise alferr.ALFObjectNotFound(message)
            _logger.warning(message)
        files = self._check_filesystem(present_datasets, offline=self._offline_for(query_type),
                                       check_hash=check_hash) if len(present_datasets) else []
        if any(f is None for f in files):
            missing = ', '.join(r for r, f in zip(present_datasets['rel_path'], files) if not f)
            message = (f'The following datasets were not downloaded: {missing} '
                       f'({missing_files_hint(self)})')
            if assert_present:
                raise alferr.ALFObjectNotFound(message)
            _logger.warning(message)
        records = present_datasets.reset_index().to_dict('records', into=Bunch)
        for record in records:
            record['eid'], record['id'] = to_uuid(record['eid']), to_uuid(record['id'])
        files_iter, records_iter = iter(files), iter(records)
        files = [next(files_iter) if here else None for here in present]
        records = [next(records_iter) if here else None for here in present]
        if download_only:
            return files, records
        return [alfio.load_file_content(f) if f else None for f in files], records

    @staticmethod
    def _per_dataset(specifier, n: int) -> list:
        if not specifier or isinstance(specifier, str):
            return [specifier] * n
        if len(specifier) != n:
            raise ValueError('Collection and revision specifiers must match number of datasets')
        return list(specifier)

    @util.refresh
    def load_dataset_from_id(self, dset_id, download_only=False, details=False,
                             check_hash=True):
        """Load a dataset from its UUID.

        Parameters
        ----------
        dset_id : uuid.UUID, str, numpy.ndarray
            The dataset ID (a UUID, a UUID string, or ONE's legacy pair of int64).
        download_only : bool
            Return the file path instead of loading it.
        details : bool
            Also return the dataset record.
        check_hash : bool
            Check the md5 of the file against the table.

        Returns
        -------
        object or one.alf.path.ALFPath
            The data or the path.
        pandas.Series
            (with `details`) The dataset record.

        Raises
        ------
        one.alf.exceptions.ALFObjectNotFound
            No dataset has this ID, or its file is missing.
        one.alf.exceptions.ALFMultipleObjectsFound
            Several datasets have this ID.
        """
        dset_id = _dataset_id_str(dset_id)
        codes = self._dataset_codes()
        table = codes.table
        rows, _ = codes.id_rows([dset_id])
        if rows.size == 0:
            raise alferr.ALFObjectNotFound(f'Dataset {dset_id} not found in the cache tables')
        if rows.size > 1:
            raise alferr.ALFMultipleObjectsFound('Duplicate dataset IDs')
        record = table.iloc[rows]
        file, = self._check_filesystem(record, check_hash=check_hash)
        if not file:
            raise alferr.ALFObjectNotFound(f'Dataset {dset_id} not found on disk: '
                                           f'{missing_files_hint(self)}')
        output = file if download_only else alfio.load_file_content(file)
        if details:
            series = record.iloc[0].copy()
            series.name = tuple(to_uuid(x) for x in record.index[0])
            return output, series
        return output

    @util.refresh
    @util.parse_id
    def load_collection(self, eid, collection, object=None, revision=None, query_type=None,
                        download_only=False, check_hash=True, **kwargs):
        """Load all objects of a collection of a session.

        Parameters
        ----------
        eid : str, UUID, pathlib.Path, dict
            The session.
        collection : str
            The collection, e.g. 'alf/probe00' (a pattern).
        object : str
            Only this object (a pattern).
        revision : str
            The latest revision up to this one; the default revision when None.
        query_type : str
            Ignored by a plain One.
        download_only : bool
            Return the file paths instead of loading them.
        check_hash : bool
            Check the md5 of the files against the tables.
        **kwargs
            Other ALF parts to filter by.

        Returns
        -------
        Bunch of one.alf.io.AlfBunch, or tuple of one.alf.path.ALFPath
            The objects keyed by name, or the files.

        Raises
        ------
        one.alf.exceptions.ALFError
            The session has no such collection.
        one.alf.exceptions.ALFObjectNotFound
            No dataset matches the filters, or the files are missing.
        """
        revision = revision or REVISION_LAST_BEFORE
        self._check_query_type(query_type)
        datasets = self._filtered_datasets(str(eid), collection=collection)
        if len(datasets) == 0:
            present = self.list_collections(eid)
            raise alferr.ALFError(f'{collection} not found for session {eid}; collections '
                                  f'present: {", ".join(map(repr, present)) or "none"}')
        dataset = {'object': object, **kwargs}
        matching = util.filter_datasets(datasets, dataset, revision=revision,
                                        assert_unique=False, wildcards=self.wildcards)
        if len(matching) == 0:
            raise alferr.ALFObjectNotFound(self._not_found_message(
                datasets, f'ALF object "{object or ""}"', eid, collection, revision))
        files = self._check_filesystem(matching, offline=self._offline_for(query_type),
                                       check_hash=check_hash)
        if not any(files):
            raise alferr.ALFObjectNotFound(
                f'ALF collection "{collection}" of session {eid} not found on disk: '
                f'{missing_files_hint(self)}')
        present = [(f, rel_path_parts(r)) for f, r in zip(files, matching['rel_path']) if f]
        files = tuple(f for f, _ in present)
        if download_only:
            return files
        kwargs.update(wildcards=self.wildcards)
        objects = sorted({p[3] or '' for _, p in present})
        return Bunch({obj: alfio.load_object([f for f, p in present if p[3] == obj], **kwargs)
                      for obj in objects})

    @util.refresh
    def prefetch(self, eids, datasets=None, collection=None, revision=None,
                 download_only=True):
        """Make sure the files of many sessions are here: find them all at once, fetch what is
        missing in one batch.

        The matching datasets of every session are resolved together (a `OneAlyx` in remote
        mode lists the datasets of the sessions in a few batched queries instead of one
        request per session), then the files that are missing, or differ from the tables in
        size or md5, are downloaded in one parallel batch with one progress bar (a plain `One`
        has nothing to download from: it reports them).  Afterwards `load_object`,
        `load_dataset`, `load_datasets` and `list_datasets` on these sessions make no request
        (within the REST cache expiry, 5 minutes by default).

        Parameters
        ----------
        eids : list
            The sessions (UUIDs, UUID strings, paths, experiment references, records, or the
            result of `search`); a single one is accepted too.
        datasets : str, dict, list, optional
            What to fetch: ALF object names ('trials': all its attributes, as `load_object`),
            file names as `load_dataset` takes them ('_ibl_trials.choice' or
            '_ibl_trials.choice.npy', wildcards allowed), dicts of ALF parts, or a list of
            these (any may match).  None: every dataset of the sessions.
        collection : str, list, optional
            Collection pattern(s), e.g. 'alf' or 'alf/probe*'.
        revision : str, optional
            Fetch the latest revision up to this one; the default revision when None (what
            the loads pick).
        download_only : bool
            True: return the file paths.  False: also load the files and return their
            contents (all of them in memory: mind the size).

        Returns
        -------
        dict
            One entry per session, keyed by `uuid.UUID` in the order given: the list of local
            files (`one.alf.path.ALFPath`, sorted by relative path) of its matching datasets
            (an empty list when none matches); with ``download_only=False`` a dict of relative
            path -> loaded content instead.  Datasets whose file could not be found or
            downloaded are left out (and logged).

        Raises
        ------
        ValueError
            A session identifier is malformed, or names no known session.

        Examples
        --------
        >>> eids = one.search(subject='KS023', dataset='trials')          # doctest: +SKIP
        >>> files = one.prefetch(eids, 'trials')                          # doctest: +SKIP
        >>> trials = [one.load_object(eid, 'trials') for eid in eids]     # doctest: +SKIP
        """
        from one._api.prefetch import resolve
        eids, chosen = resolve(self, eids, datasets, collection, revision)
        files = self._check_filesystem(chosen, offline=self._offline_for(None)) \
            if len(chosen) else []
        found: dict[str, list] = {e: [] for e in eids}
        rel_paths = chosen['rel_path'].astype(object).tolist()
        for (eid, _), rel_path, file in zip(chosen.index, rel_paths, files):
            if file is not None:
                found[str(eid)].append((rel_path, file))  # the table's ids: str or UUID
        missing = len(chosen) - sum(len(v) for v in found.values())
        if missing:
            _logger.warning('%d of %d datasets of %d sessions are not available',
                            missing, len(chosen), len(eids))
        out = {}
        for eid in eids:
            pairs = sorted(found[eid])
            if download_only:
                out[UUID(eid)] = [file for _, file in pairs]
            else:
                out[UUID(eid)] = {rel: alfio.load_file_content(file) for rel, file in pairs}
        return out

    def _prefetch_eids(self, eids) -> list[str]:
        """Session UUID strings of `prefetch`'s argument, unique, in order."""
        from one.converters import _is_listlike
        given = list(eids) if _is_listlike(eids) else [eids]
        out = []
        for eid in given:
            uuid_ = self.to_eid(eid)
            if uuid_ is None:
                raise ValueError(f'No session found for {eid!r}')
            out.append(str(uuid_))
        return list(dict.fromkeys(out))

    def _prefetch_remote(self, eids: list[str]) -> None:
        """Bring the sessions' dataset records into the tables (a plain One has none to get)."""

    @staticmethod
    def setup(cache_dir=None, silent=False, **kwargs):
        """Build the cache tables of a data folder and return a One for it.

        Parameters
        ----------
        cache_dir : str, pathlib.Path
            The data folder; asked for (default: the current folder) when None.
        silent : bool
            Never prompt: use the current folder and keep existing tables.
        **kwargs
            Passed to `one.alf.cache.make_parquet_db` (hash_ids, hash_files, lab, out_dir).

        Returns
        -------
        One
            An instance for the folder.
        """
        if not cache_dir:
            if not silent:
                cache_dir = input(f'Select a directory from which to build cache ({Path.cwd()})')
            cache_dir = cache_dir or Path.cwd()
        cache_dir = Path(cache_dir)
        assert cache_dir.exists(), f'{cache_dir} does not exist'
        if (cache_dir / 'sessions.pqt').exists():
            rebuild = False
            if not silent:
                answer = input(f'Cache tables exist for {cache_dir}, overwrite? [y/N]')
                rebuild = answer.strip().lower() == 'y'
            if not rebuild:
                return One(cache_dir, mode='local')
        make_parquet_db(cache_dir, **kwargs)
        return One(cache_dir, mode='local')


def _default_revisions(datasets: pd.DataFrame) -> np.ndarray:
    """Per row: is it the default revision?  Raises ALFError if the table does not say."""
    if 'default_revision' not in datasets.columns:
        raise alferr.ALFError('No default revisions specified')
    return datasets['default_revision'].to_numpy(dtype=bool, na_value=False)


def _alf_parts_only(parts: dict) -> dict:
    keys = ('object', 'attribute', 'extension', 'namespace', 'timescale', 'extra')
    out = {k: parts.get(k) for k in keys}
    out['extension'] = out['extension'] or '*'
    out['object'] = out['object'] or '*'
    out['attribute'] = out['attribute'] or '*'
    return out



def _dataset_id_str(dset_id) -> str:
    """A dataset ID as a canonical UUID string (also from ONE's legacy int64 pair)."""
    if isinstance(dset_id, UUID):
        return str(dset_id)
    if isinstance(dset_id, str):
        return str(UUID(dset_id))
    pair = np.asarray(dset_id, dtype=np.int64).reshape(-1)[:2]
    return str(UUID(bytes=pair.astype('<i8').tobytes()))
