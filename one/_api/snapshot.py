"""A snapshot of a query: the cache tables of some sessions of an Alyx database, in a folder.

`OneAlyx.snapshot` (and ``one snapshot``) asks the database for the sessions (found by a search,
or given by id), then for all their datasets and probe insertions in batched queries
(`one._api.batch`: ~100 sessions per query, every record exactly once), and writes them as
cache tables (``sessions.pqt``, ``datasets.pqt``, ``insertions.pqt``) with a
``cache_info.json`` saying where and when they come from.  A `One` on that folder then works
with no database (``ONE(mode='local', tables_dir=out_dir, cache_dir=...)``), and many workers
can start from it without querying the database.

Running it again into the same folder updates the snapshot: the sessions found are written again
with all their datasets and insertions (records changed on the database replaced, records gone
from it removed), the other sessions of the folder are kept.  A run holds the folder's lock
(`one.alf.cache.LOCK_NAME`, the lock of `save_tables`) from its first query to its last write,
so runs into one folder follow each other and the records written last were fetched last.  It
writes every file into a hidden folder inside the snapshot's first, then moves them into place
(sessions, datasets, insertions, then ``cache_info.json``): a run killed while writing leaves
the folder as it was (its hidden folder is removed by the next run); one killed during the
moves, a matter of milliseconds, may leave new sessions whose datasets are still the old ones,
never datasets of sessions the folder does not list (the order of `save_tables`, for readers,
which load ``datasets.pqt`` before ``sessions.pqt``).  Each file is replaced atomically, so a
reader sees the old or the new table, never a partial one.

``cache_info.json`` is a superset of the one Alyx puts in its ``cache.zip`` and of a release's
(`one._release.info`; it has no ``format``, so it reads as Alyx's)::

    {
     "origin": "https://alyx.example.org",
     "database": "https://alyx.example.org",
     "date_created": "2025-03-01T14:02:11",
     "query": {"search": {"subject": "KS023"}, "eids": null, "sessions": 24},
     "counts": {"sessions": 24, "datasets": 1210, "insertions": 30},
     "tables": {
      "sessions": {"file": "sessions.pqt", "md5": "...", "size": 7310, "nrecs": 24},
      ...
     },
     "history": [{"date": "...", "search": {...}, "eids": null, "sessions": 24}, ...]
    }

``query`` is the run that made the folder what it is now; ``history`` lists every run.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd

from one._release.info import INFO_NAME

__all__ = ['snapshot', 'snapshot_info', 'INFO_NAME']

_logger = logging.getLogger('one.api')
_SESSION_TABLES = ('datasets', 'insertions')  # tables indexed by (eid, id)
_STAGING = '.snapshot-'  # the folder (inside the snapshot's) where a run writes its files


def _eid_strings(eids) -> list[str]:
    """Canonical UUID strings of session ids, unique, in order; ValueError naming a bad one."""
    from one.converters import _is_listlike
    given = list(eids) if _is_listlike(eids) else [eids]
    out = []
    for eid in given:
        try:
            out.append(str(eid if isinstance(eid, UUID) else UUID(str(eid).strip())))
        except ValueError:
            raise ValueError(f'Not a session UUID: {eid!r}') from None
    return list(dict.fromkeys(out))


def _session_records(one, eids, search_terms: dict) -> list[dict]:
    """The Alyx list records of the sessions asked for (by id, or by a search)."""
    from one._api.batch import fetch_session_records
    from one._rest.records import record_id
    if eids is None:
        _, details = one.search(details=True, query_type='remote', **search_terms)
        return [dict(d) for d in details]
    wanted = _eid_strings(eids)
    records = fetch_session_records(one.alyx, wanted)
    found = {record_id(r) for r in records}
    unknown = [e for e in wanted if e not in found]
    if unknown:
        from one.alf.exceptions import ALFWarning
        shown = ', '.join(unknown[:5]) + (', ...' if len(unknown) > 5 else '')
        warnings.warn(f'{len(unknown)} session(s) not found on {one.alyx.base_url} (left out '
                      f'of the snapshot): {shown}', ALFWarning, stacklevel=6)
    order = {e: i for i, e in enumerate(wanted)}
    return sorted(records, key=lambda r: order.get(record_id(r), 0))


def _sessions_frame(records: list[dict]) -> pd.DataFrame:
    from one.alf.cache import EMPTY_SESSIONS_FRAME
    from one.converters import ses2records
    if not records:
        return EMPTY_SESSIONS_FRAME.copy()
    sessions = pd.DataFrame([ses2records(r)[0] for r in records])
    sessions.index = pd.Index([str(x) for x in sessions.index], name='id')
    return sessions


def insertions_frame(records: list[dict]) -> pd.DataFrame:
    """The insertions table of Alyx probe insertion records: index ``(eid, id)``, columns
    ``name``, ``model``, ``serial``, ``chronic_insertion`` and ``json`` (as JSON text)."""
    from one._rest.records import record_id, session_of
    rows = []
    for r in records:
        session = r.get('session')
        eid = record_id(session) if isinstance(session, dict) else session_of(r)
        if not eid or not r.get('id'):
            continue
        chronic = r.get('chronic_insertion')
        rows.append({
            'eid': eid, 'id': record_id(r),
            'name': r.get('name'), 'model': r.get('model'),
            'serial': None if r.get('serial') is None else str(r['serial']),
            'chronic_insertion': None if chronic is None else str(chronic),
            'json': None if r.get('json') is None else json.dumps(r['json'], sort_keys=True),
        })
    columns = ['name', 'model', 'serial', 'chronic_insertion', 'json']
    if not rows:
        index = pd.MultiIndex.from_arrays([[], []], names=['eid', 'id'])
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}, index=index)
    frame = pd.DataFrame(rows).set_index(['eid', 'id']).sort_index()
    return frame[columns].astype(object)


def _without_sessions(table: pd.DataFrame, eids: set[str]) -> pd.DataFrame:
    """The rows of an (eid, id) table whose session is not in `eids`."""
    if table.empty or 'eid' not in table.index.names:
        return table
    level = table.index.names.index('eid')
    values = table.index.levels[level] if isinstance(table.index, pd.MultiIndex) else None
    if values is None:
        return table
    hit = np.asarray(pd.Index(values.astype(str)).isin(list(eids)))
    rows = hit[np.asarray(table.index.codes[level])]
    return table.iloc[np.flatnonzero(~rows)] if rows.any() else table


def _read_info(folder: Path) -> dict:
    try:
        info = json.loads((folder / INFO_NAME).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def snapshot_info(folder) -> dict | None:
    """The ``cache_info.json`` of a snapshot folder, or None if `folder` holds no snapshot
    (no such file, or that of a database's cache or of a release)."""
    info = _read_info(Path(folder))
    return info if 'query' in info and isinstance(info.get('history'), list) else None


def snapshot(one, out_dir, eids=None, **search_terms) -> dict:
    """Write the cache tables of the sessions of a query into `out_dir` (see the module
    docstring and `OneAlyx.snapshot`).

    Returns
    -------
    dict
        The ``cache_info.json`` written; when no session was found, nothing is written and
        the counts are 0 (with a warning).
    """
    from one._lib.locks import file_lock
    from one.alf.cache import LOCK_NAME
    if eids is not None and search_terms:
        raise ValueError('Give either the sessions (eids) or search terms, not both')
    if one.offline:
        raise NotImplementedError('A snapshot is made from the Alyx database: this instance is '
                                  'in local mode (use mode="remote")')
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        # the whole run under the folder's lock: runs into one folder follow each other, and
        # the records written last were fetched last
        with file_lock(out_dir / LOCK_NAME, timeout=None):
            info = _snapshot_locked(one, out_dir, eids, search_terms)
    finally:
        if created and not any(p.name != LOCK_NAME for p in out_dir.iterdir()):
            shutil.rmtree(out_dir, ignore_errors=True)  # nothing found: leave nothing
    return info


def _snapshot_locked(one, out_dir: Path, eids, search_terms: dict) -> dict:
    from one.webclient import no_cache
    for stale in out_dir.glob(f'{_STAGING}*'):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    started = datetime.datetime.now()
    with no_cache(one.alyx):  # the records as the database holds them now
        return _fetch_and_write(one, out_dir, eids, search_terms, started)


def _fetch_and_write(one, out_dir: Path, eids, search_terms: dict, started) -> dict:
    from one._api.batch import fetch_insertion_records, fetch_records
    from one._lib.files import _fsync_dir
    from one._release.info import TableInfo, dump_info, table_entries
    from one.alf.cache import _load_tables, _merge_tables, _timestamp, _write_tables
    from one.converters import datasets2records
    records = _session_records(one, eids, search_terms)
    sessions = _sessions_frame(records)
    found = [str(x) for x in sessions.index]
    query = json.loads(json.dumps({  # as written (dates as text)
        'search': dict(search_terms) if eids is None else None,
        'eids': None if eids is None else len(_eid_strings(eids)),
        'sessions': len(found)}, default=str))
    if not found:
        from one.alf.exceptions import ALFWarning
        warnings.warn(f'No session found on {one.alyx.base_url}: nothing written to {out_dir}',
                      ALFWarning, stacklevel=5)
        return {'database': one.alyx.base_url, 'query': query,
                'counts': {'sessions': 0, 'datasets': 0, 'insertions': 0}}
    _logger.info('Snapshot of %d sessions: listing their datasets and insertions', len(found))
    datasets = datasets2records(fetch_records(one.alyx, found)[1])
    insertions = insertions_frame(fetch_insertion_records(one.alyx, found))
    origin = one.alyx.base_url
    cache = _load_tables(out_dir)
    replaced = set(found)
    for name in _SESSION_TABLES:
        if name in cache:
            cache[name] = _without_sessions(cache[name], replaced)
    if 'insertions' not in cache:
        cache['insertions'] = insertions.iloc[0:0]
    _merge_tables(cache, {'sessions': sessions, 'datasets': datasets,
                          'insertions': insertions}, as_uuid=False)
    stamp = _timestamp(started)
    names = [n for n in ('sessions', 'datasets', 'insertions') if n in cache]
    for name in names:
        cache['_meta']['raw'][name] = {**(cache['_meta']['raw'].get(name) or {}),
                                       'origin': {origin}, 'date_created': stamp}
    cache['_meta']['modified_time'] = started
    counts = {n: len(cache[n]) for n in names}
    previous = _read_info(out_dir)
    history = previous.get('history') if isinstance(previous.get('history'), list) else []
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=out_dir))
    try:
        # every file written aside first (the slow part), then moved into place together: a
        # run killed while writing leaves the folder as it was
        staged = _write_tables(cache, staging, names, clobber=True)
        info = {
            'origin': origin,
            'database': origin,
            'date_created': started.isoformat(timespec='seconds'),
            'query': query,
            'counts': counts,
            'tables': table_entries([TableInfo.of_file(p, counts[p.stem]) for p in staged]),
            'history': [*history, {'date': started.isoformat(timespec='seconds'), **query}],
        }
        (staging / INFO_NAME).write_bytes(dump_info(info))
        # sessions before datasets (the order of `save_tables`, and `names`): a reader, which
        # loads datasets.pqt before sessions.pqt, never sees datasets of sessions it doesn't
        # know; cache_info.json last, once it describes the tables in place
        for path in [*staged, staging / INFO_NAME]:
            os.replace(path, out_dir / path.name)
        _fsync_dir(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _logger.info('Snapshot written to %s: %s', out_dir,
                 ', '.join(f'{v} {k}' for k, v in counts.items()))
    return info
