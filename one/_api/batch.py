"""The dataset records of many sessions in few requests (`OneAlyx.prefetch`, `list_datasets` and
remote `search` over many sessions).

Instead of one ``GET /sessions/<id>`` per session, the datasets of up to `MAX_SESSIONS_PER_QUERY`
sessions are asked for in one ``GET /datasets?django=session__in,[...]`` query (sessions the
cache tables do not know are asked for in the same way at ``/sessions``, for their folders), up
to `MAX_CONCURRENT_QUERIES` queries at once.  Each query asks for one page of the server's
largest size (``AlyxClient.max_page_size``) and a batch is sized so that its records should fit
in it (the number of datasets per session estimated from the tables).  When the count the server
announces shows that they do not, the batch is split by that count and its parts asked for
instead: pages are never followed, since the pages of an unordered query may repeat some
records and miss others.  Only a single session with more datasets than a page is read page by
page (the REST client's pagination checks the records received against the count).  A record
received twice is kept once.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

__all__ = ['MAX_SESSIONS_PER_QUERY', 'plan_batches', 'fetch_records', 'fetch_session_records',
           'fetch_insertion_records', 'holding_all']

MAX_SESSIONS_PER_QUERY = 100
"""Session ids per query: they travel in the URL (~48 bytes each once encoded), which servers
limit to ~8 KB."""

DEFAULT_DATASETS_PER_SESSION = 50
"""Datasets per session assumed when the tables know none of the sessions."""

MAX_CONCURRENT_QUERIES = 4
"""Batched queries in flight at once."""


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
    return _split(eids, math.ceil(len(eids) / size))


def _split(items: list, n_parts: int) -> list[list]:
    """`items` in `n_parts` consecutive parts of about equal size (at most one per item)."""
    n_parts = max(1, min(n_parts, len(items)))
    base, extra = divmod(len(items), n_parts)
    parts, start = [], 0
    for i in range(n_parts):
        stop = start + base + (1 if i < extra else 0)
        parts.append(items[start:stop])
        start = stop
    return parts


def _in_one_page(alyx, endpoint: str, lookup: str, batch: list[str], limit: int) -> list[dict]:
    """The records of ``<endpoint>?django=<lookup>,[batch]``, each batch answered by one page:
    a batch whose count exceeds the page is split by that count and its parts asked for."""
    from one._rest.pagination import PaginatedResponse
    answer = alyx.rest(endpoint, 'list', django=f'{lookup},{batch}', limit=limit)
    if not isinstance(answer, PaginatedResponse):
        return list(answer)
    if len(batch) == 1:  # one session's records exceed a page: its pages, checked
        return list(answer)
    parts = _split(batch, math.ceil(answer.count / answer.limit))
    return [r for part in parts for r in _in_one_page(alyx, endpoint, lookup, part, limit)]


def fetch_records(alyx, eids: Sequence[str], unknown: Sequence[str] = (),
                  per_session: float | None = None) -> tuple[list[dict], list[dict]]:
    """The dataset records of sessions, and the session records of some, in batched queries.

    Parameters
    ----------
    alyx : one.webclient.AlyxClient
        The REST client.
    eids : sequence of str
        Session UUID strings whose datasets are wanted.
    unknown : sequence of str
        Session UUID strings whose list records (subject, lab, date, number...) are wanted.
    per_session : float, optional
        The expected number of datasets per session (sizes the batches).

    Returns
    -------
    list of dict
        The session records (``sessions`` list records, each once, any order).
    list of dict
        The records of the ``datasets`` endpoint (each once, any order).
    """
    limit = int(alyx.max_page_size)
    session_batches = plan_batches(list(unknown), 1, limit)
    queries = [('sessions', 'pk__in', b) for b in session_batches]
    queries += [('datasets', 'session__in', b) for b in plan_batches(eids, per_session, limit)]
    answers = _in_parallel(lambda query: _in_one_page(alyx, *query, limit), queries)
    n = len(session_batches)
    sessions = [r for answer in answers[:n] for r in answer]
    datasets = [r for answer in answers[n:] for r in answer]
    return _each_once(sessions), _each_once(datasets)


def fetch_session_records(alyx, eids: Sequence[str]) -> list[dict]:
    """The Alyx session list records (subject, lab, date, number...) of these sessions."""
    return fetch_records(alyx, [], eids)[0]


def fetch_insertion_records(alyx, eids: Sequence[str]) -> list[dict]:
    """The Alyx probe insertion records of these sessions (a few per session; each once)."""
    limit = int(alyx.max_page_size)
    batches = plan_batches(list(eids), 4, limit)
    answers = _in_parallel(
        lambda batch: _in_one_page(alyx, 'insertions', 'session__in', batch, limit), batches)
    return _each_once([r for answer in answers for r in answer])


def _each_once(records: list[dict]) -> list[dict]:
    """The records without those whose id came before (order kept)."""
    from one._rest.records import record_id
    seen, out = set(), []
    for record in records:
        key = record_id(record)
        if key is None or key not in seen:
            seen.add(key)
            out.append(record)
    return out


def _in_parallel(func, items: list) -> list:
    """`func(item)` for each item, up to `MAX_CONCURRENT_QUERIES` at once; results in order.
    The first error is raised once the queries under way are done."""
    if len(items) <= 1:
        return [func(b) for b in items]
    with ThreadPoolExecutor(max_workers=min(MAX_CONCURRENT_QUERIES, len(items)),
                            thread_name_prefix='one-rest') as pool:
        return list(pool.map(func, items))


def holding_all(codes, eids: Sequence[str], names: Sequence[str], max_qc: int) -> list[bool]:
    """For each session, whether it holds, for every name, an existing dataset whose file name
    contains it (case-insensitive, as Alyx's ``icontains``) with a QC code up to `max_qc`.

    Parameters
    ----------
    codes : one._tables.views.DatasetCodes
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
