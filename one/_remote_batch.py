"""The dataset records of many sessions in few requests (`OneAlyx.prefetch`, `list_datasets` and
remote `search` over many sessions).

Instead of one ``GET /sessions/<id>`` per session, the datasets of up to `MAX_SESSIONS_PER_QUERY`
sessions are asked for in one ``GET /datasets?django=session__in,[...]`` query (sessions the
cache tables do not know are asked for in the same way at ``/sessions``, for their folders).  A
batch is sized so that its records fit in one page (``limit`` = the server's page size, the
number of datasets per session estimated from the tables), and up to `MAX_CONCURRENT_QUERIES`
queries are in flight at once.  Pages beyond the first are read by the REST client's
pagination, which checks the records received against the count announced.
"""
from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote, urlsplit

import pandas as pd

__all__ = ['MAX_SESSIONS_PER_QUERY', 'page_limit', 'plan_batches', 'fetch_dataset_records',
           'fetch_session_records', 'fetch_insertion_records', 'dataset_ids', 'holding_all',
           'dataset_table']

MAX_SESSIONS_PER_QUERY = 100
"""Session ids per query: they travel in the URL (~48 bytes each once encoded), which servers
limit to ~8 KB."""

DEFAULT_PAGE_LIMIT = 1000
"""Records per page asked for when the client does not know the server's maximum."""

DEFAULT_DATASETS_PER_SESSION = 50
"""Datasets per session assumed when the tables know none of the sessions."""

MAX_CONCURRENT_QUERIES = 4
"""Batched queries in flight at once."""


def page_limit(alyx) -> int:
    """The page size to ask for: the server's maximum when the client knows it, else
    `DEFAULT_PAGE_LIMIT`."""
    for name in ('max_page_size', 'page_limit', 'max_limit'):
        value = getattr(alyx, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_PAGE_LIMIT


def plan_batches(eids: Sequence[str], per_session: float | None, limit: int,
                 max_sessions: int = MAX_SESSIONS_PER_QUERY) -> list[list[str]]:
    """Split sessions into batches whose datasets should fit in one page of `limit` records.

    Parameters
    ----------
    eids : sequence of str
        The session ids.
    per_session : float, optional
        The expected number of datasets per session (`DEFAULT_DATASETS_PER_SESSION` if None).
    limit : int
        Records per page.
    max_sessions : int
        The most sessions in one query.

    Returns
    -------
    list of list of str
        Batches of about equal size, in order.

    Examples
    --------
    >>> [len(b) for b in plan_batches([str(i) for i in range(200)], 36, 1000)]
    [25, 25, 25, 25, 25, 25, 25, 25]
    >>> [len(b) for b in plan_batches([str(i) for i in range(250)], 1, 1000)]
    [84, 83, 83]
    """
    eids = list(eids)
    if not eids:
        return []
    expected = per_session if per_session and per_session > 0 else DEFAULT_DATASETS_PER_SESSION
    size = max(1, min(max_sessions, int(limit // max(expected, 1))))
    n_batches = math.ceil(len(eids) / size)
    base, extra = divmod(len(eids), n_batches)
    batches, start = [], 0
    for i in range(n_batches):
        stop = start + base + (1 if i < extra else 0)
        batches.append(eids[start:stop])
        start = stop
    return batches


def _in_parallel(func, batches: list) -> list:
    """`func(batch)` for each batch, up to `MAX_CONCURRENT_QUERIES` at once; results in order.
    The first error is raised once the queries under way are done."""
    if len(batches) <= 1:
        return [func(b) for b in batches]
    with ThreadPoolExecutor(max_workers=min(MAX_CONCURRENT_QUERIES, len(batches)),
                            thread_name_prefix='one-rest') as pool:
        return list(pool.map(func, batches))


def fetch_dataset_records(alyx, eids: Sequence[str], per_session: float | None = None
                          ) -> list[dict]:
    """The Alyx dataset records of these sessions, in batched queries.

    Parameters
    ----------
    alyx : one.webclient.AlyxClient
        The REST client.
    eids : sequence of str
        Session UUID strings.
    per_session : float, optional
        The expected number of datasets per session (sizes the batches).

    Returns
    -------
    list of dict
        The records of the ``datasets`` endpoint (any order).
    """
    limit = page_limit(alyx)

    def query(batch: list[str]) -> list[dict]:
        return list(alyx.rest('datasets', 'list', django=f'session__in,{batch}', limit=limit))

    return [r for records in _in_parallel(query, plan_batches(eids, per_session, limit))
            for r in records]


def fetch_session_records(alyx, eids: Sequence[str]) -> list[dict]:
    """The Alyx session list records (subject, lab, date, number...) of these sessions."""
    limit = page_limit(alyx)

    def query(batch: list[str]) -> list[dict]:
        return list(alyx.rest('sessions', 'list', django=f'pk__in,{batch}', limit=limit))

    return [r for records in _in_parallel(query, plan_batches(eids, 1, limit)) for r in records]


def fetch_insertion_records(alyx, eids: Sequence[str]) -> list[dict]:
    """The Alyx probe insertion records of these sessions (a few per session)."""
    limit = page_limit(alyx)

    def query(batch: list[str]) -> list[dict]:
        return list(alyx.rest('insertions', 'list', django=f'session__in,{batch}', limit=limit))

    return [r for records in _in_parallel(query, plan_batches(eids, 4, limit)) for r in records]


def dataset_ids(record: dict) -> tuple[str | None, str | None]:
    """The (session id, dataset id) of a dataset record (None where absent)."""
    session = record.get('session')
    eid = str(session).rstrip('/')[-36:] if session else None
    dset = record.get('id') or (str(record.get('url') or '').rstrip('/')[-36:] or None)
    return eid, dset


_SESSION_FOLDERS = re.compile(r'/(\d{4}-\d{2}-\d{2})/(\d+)/(.+)$')
_UUID_BEFORE_EXTENSION = re.compile(
    r'\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}'
    r'(?=\.[^./]*$)')


def _rel_path_of_url(data_url: str) -> str:
    """The path of a data file URL below its session folder, without the dataset UUID: what
    `one.converters.datasets2records` gives, by string operations (its own way when the URL
    does not look like ``.../<date>/<number>/<rel_path>``)."""
    path = unquote(urlsplit(data_url, allow_fragments=False).path)
    match = _SESSION_FOLDERS.search(path)
    if match is not None:
        try:
            datetime.date.fromisoformat(match.group(1))
        except ValueError:
            match = None
    if match is None:
        from one.converters import _alf_path_from_url, _relative_to_session
        return _relative_to_session(_alf_path_from_url(data_url))
    folder, _, name = match.group(3).rpartition('/')
    name = _UUID_BEFORE_EXTENSION.sub('', name, count=1)
    return f'{folder}/{name}' if folder else name


def dataset_table(records: Sequence[dict]) -> pd.DataFrame:
    """The datasets table of dataset records: `one.converters.datasets2records`, faster.

    Records without an existing file record with a URL, or without a session, are left out;
    index ``(eid, id)``.
    """
    from one.alf.cache import EMPTY_DATASETS_FRAME
    from one.converters import _datasets_frame
    rows = []
    for d in records:
        data_url = next((f['data_url'] for f in d.get('file_records') or []
                         if f.get('data_url') and f.get('exists')), None)
        eid, dset_id = dataset_ids(d)
        if data_url is None or eid is None or dset_id is None:
            continue
        rows.append({
            'eid': eid.lower(), 'id': dset_id.lower(), 'rel_path': _rel_path_of_url(data_url),
            'file_size': d.get('file_size'), 'hash': d.get('hash'), 'exists': True,
            'qc': d.get('qc') or 'NOT_SET', 'default_revision': bool(d.get('default_dataset')),
        })
    return _datasets_frame(rows) if rows else EMPTY_DATASETS_FRAME.copy()


def holding_all(codes, eids: Sequence[str], names: Sequence[str], max_qc: int) -> list[bool]:
    """For each session, whether it holds, for every name, an existing dataset whose file name
    contains it (case-insensitive, as Alyx's ``icontains``) with a QC code up to `max_qc`.

    Parameters
    ----------
    codes : one._query.DatasetCodes
        The coded datasets table.
    eids : sequence of str
        Session UUID strings.
    names : sequence of str
        Partial dataset names.
    max_qc : int
        The worst QC code allowed.
    """
    wanted = [n.lower() for n in names]
    out = []
    for eid in eids:
        rows = codes.rows_of(eid)
        rows = rows[codes.exists[rows] & (codes.qc[rows] <= max_qc)]
        files = {str(p).rsplit('/', 1)[-1].lower() for p in codes.rel_paths[codes.rel_codes[rows]]}
        out.append(all(any(n in f for f in files) for n in wanted))
    return out
