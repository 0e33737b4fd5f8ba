"""A lazy list over a paginated REST answer (``{count, next, previous, results}``), whose records
are each delivered exactly once.

Alyx answers every list query one page at a time (Django REST framework's limit/offset
pagination).  `PaginatedResponse` holds the first page and fetches the others only when one of
their records is read.  It is a read-only `collections.abc.Sequence`: ``len``, indexing
(negative too), slices (any start, stop and step), iteration, ``in``, ``index``, ``count``,
``reversed`` and ``==`` against a list or tuple.

Alyx does not order most list queries, and PostgreSQL keeps no order between two page requests:
the pages of one answer may repeat some records and miss others.  So every record is identified
(by its ``id``, else ``url``, else ``name``) and kept only once; a position left empty by a
repeated record is filled with a record not seen yet, found by asking again: the whole answer in
one page when the server allows pages that long (`MAX_PAGE_LIMIT`), else every page again (up to
`REPAIR_PASSES` times, every other time with pages starting half a page later).  If the answer
still lacks records, `AlyxPaginationError` names the query.

A record may also be in an answer twice for real (a query whose joins repeat a row: the count
includes both).  One page answer is one consistent read: a record it holds twice is kept twice,
so the answer has as many records as announced; such a record split between two pages is found
when asking again (the whole answer in one page, or pages starting half a page later).

The REST client asks for pages of `LIST_PAGE_LIMIT` records for lists read lazily (searches), and
of `MAX_PAGE_LIMIT` for answers read whole (see `one.webclient.AlyxClient`).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from one._lib.urls import update_url_params
from one._rest.errors import AlyxPaginationError

__all__ = ['PaginatedResponse', 'LIST_PAGE_LIMIT', 'MAX_PAGE_LIMIT', 'REPAIR_PASSES',
           'record_identity']

_logger = logging.getLogger('one.webclient')

MAX_PAGE_LIMIT = 10_000
"""The largest page asked for (the ``limit`` parameter): by queries whose answer is read whole.

Alyx 3.6.1 pages with Django REST framework's limit/offset pagination (its ``/api/schema``
documents ``limit`` as "Number of results to return per page" and ``offset``; 250 records per
page by default) and announces no maximum (Django REST framework's ``max_limit`` is None unless
a server sets it; the recordings show small limits honoured, 10,000 was not tried on a real
server).  A server that caps the page size answers shorter pages, and the client then follows
with pages of that size.  10,000 records (about 10 MB of dataset records) bound the size of one
answer."""

LIST_PAGE_LIMIT = 1_000
"""Records asked for per page of a list read lazily (a search), unless the query sets ``limit``.

Large enough that a usual search comes in one page (one round trip), small enough that the
first page of a broad one (tens of thousands of sessions, ~1 KB each with Alyx's serialisation
time) comes back in about a second; the other pages are fetched as they are read."""

REPAIR_PASSES = 3
"""Times every page of an answer is fetched again to find the records its pages missed."""


def record_identity(record) -> tuple | None:
    """What identifies a REST record: its ``id``, else its ``url``, else its ``name``.

    Returns
    -------
    tuple or None
        ``(field, value)``, or None for a record with none of them (kept at its position).
    """
    if isinstance(record, dict):
        for field in ('id', 'url', 'name'):
            value = record.get(field)
            if value is not None and value != '':
                return field, str(value)
    return None


def _offset_of_first_page(rep: dict, limit: int) -> int:
    """Where the first page starts: the offset of the next page minus the page size."""
    nxt = rep.get('next')
    if not nxt:
        return 0
    try:
        offset = int(parse_qs(urlsplit(nxt).query).get('offset', [limit])[0])
    except (TypeError, ValueError):
        return 0
    return max(offset - limit, 0)


class PaginatedResponse(Sequence):
    """The records of a paginated REST answer, fetched page by page on demand, each once.

    Parameters
    ----------
    alyx : one.webclient.AlyxClient
        The client used to fetch the other pages (through ``alyx._generic_request``).
    rep : dict
        The first page: ``{'count': int, 'next': url, 'previous': url, 'results': list}``.
    cache_args : dict, optional
        REST cache arguments (``expires``, ``clobber``) used for the page requests.
    budget : one._rest.retry.CallDeadline, optional
        The deadline of the call that returned the first page: the page requests spend it.

    Attributes
    ----------
    count : int
        The total number of records.
    limit : int
        The page size (the length of the first page).
    query : str
        The URL of the next page, from which the other pages' URLs are made.
    repeated : int
        Records received more than once (each kept once, or as many times as one page held it).
    refetched : int
        Page requests made to find records that the pages missed.
    """

    def __init__(self, alyx, rep: dict, cache_args: dict | None = None, budget=None):
        self.alyx = alyx
        self._budget = budget
        self.count = int(rep['count'])
        results = list(rep['results'])
        self.limit = max(len(results), 1)
        self.query = rep['next'] or rep.get('previous') or ''
        self.repeated = 0
        self.refetched = 0
        self._cache_args = dict(cache_args or {})
        self._cache: list = [None] * self.count
        self._fetched = bytearray(self.count)  # 1 where a record is in place
        self._visited = bytearray(self.count)  # 1 where a page answer was received
        self._copies: dict = {}  # identity -> copies one page answer held (when more than 1)
        self._placed: Counter = Counter()  # identity of each record received -> copies kept
        self._spare: list = []  # records received whose position was taken
        self._holes: list[int] = []  # visited positions still empty (repeated records)
        self._count_changed = False
        self._callbacks: set = set()
        self._lock = threading.RLock()
        self._store(_offset_of_first_page(rep, len(results)), results, len(results))

    # --- Sequence -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count

    def _index(self, item) -> int:
        try:
            i = item.__index__()
        except AttributeError:
            raise TypeError(f'indices must be integers or slices, not {type(item).__name__}'
                            ) from None
        if i < 0:
            i += self.count
        if not 0 <= i < self.count:
            raise IndexError(f'index {item} out of range for {self.count} records')
        return i

    def __getitem__(self, item):
        if isinstance(item, slice):
            indices = range(*item.indices(self.count))
            for i in indices:
                if not self._fetched[i]:
                    self.populate(i)
            return [self._cache[i] for i in indices]
        i = self._index(item)
        if not self._fetched[i]:
            self.populate(i)
        return self._cache[i]

    def __iter__(self) -> Iterator:
        for i in range(self.count):
            yield self[i]

    def __eq__(self, other) -> bool:
        if isinstance(other, (PaginatedResponse, list, tuple)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n = sum(self._fetched)
        return f'<{type(self).__name__}: {self.count} records, {n} fetched>'

    # --- storing ----------------------------------------------------------------------------
    def _store(self, offset: int, results: list, asked: int) -> list:
        """Put a page's records in place, each once; return those not received before.

        A record already received is dropped (unless this page, or an earlier one, held it
        more often than it was kept); a new record whose position is taken is kept aside, to
        fill a position that a repeated record left empty.  `asked` is the number of records
        requested from `offset` on.  Returns the records received for the first time.
        """
        keys = [record_identity(record) for record in results]
        for key, n in Counter(k for k in keys if k is not None).items():
            if n > self._copies.get(key, 1):
                self._copies[key] = n  # in the answer that many times for real
        new = []
        for j, (record, key) in enumerate(zip(results, keys)):
            i = offset + j
            if key is not None:
                if self._placed[key] >= self._copies.get(key, 1):
                    self.repeated += 1
                    continue
                self._placed[key] += 1
                if self._placed[key] == 1:  # received for the first time
                    new.append(record)
            elif i >= self.count or self._fetched[i]:
                continue  # no identity: kept at its position only
            else:
                new.append(record)
            if i < self.count and not self._fetched[i]:
                self._cache[i] = record
                self._fetched[i] = 1
            else:
                self._spare.append(record)
        end = min(offset + max(asked, len(results)), self.count)
        for i in range(offset, end):
            if not self._visited[i]:
                self._visited[i] = 1
                if not self._fetched[i]:
                    self._holes.append(i)
        if self._holes and self._spare:
            self._holes = [i for i in sorted(set(self._holes)) if not self._fetched[i]]
            while self._holes and self._spare:
                i = self._holes.pop(0)
                self._cache[i] = self._spare.pop(0)
                self._fetched[i] = 1
        return new

    @property
    def is_complete(self) -> bool:
        """True once every record has been fetched."""
        return 0 not in self._fetched

    # --- fetching -------------------------------------------------------------------------
    def _fetch(self, offset: int, limit: int, fresh: bool = False) -> int:
        """Fetch `limit` records from `offset` on; return the number of records received."""
        query = update_url_params(self.query, {'limit': limit, 'offset': offset})
        cache_args = dict(self._cache_args, clobber=True) if fresh else self._cache_args
        res = self.alyx._generic_request(requests.get, query, **cache_args)
        if res['count'] != self.count:
            self._count_changed = True
            path = urlsplit(self.query).path
            warnings.warn(f'remote results for {path} endpoint changed; results may be '
                          'inconsistent', RuntimeWarning, stacklevel=4)
        results = list(res['results'])
        new = self._store(offset, results, limit)
        for cb in list(self._callbacks):
            func = cb() if isinstance(cb, weakref.ReferenceType) else cb
            if func is None:  # a dead weak reference
                self._callbacks.discard(cb)
                continue
            func(new)
        if self.is_complete:
            self._callbacks.clear()
        return len(results)

    def populate(self, idx: int) -> None:
        """Fetch the page holding record `idx` and store its records.

        When the pages disagree (records repeated, so others missing), ask again until the
        position is filled.

        Parameters
        ----------
        idx : int
            A record index (0 <= idx < count).

        Warns
        -----
        RuntimeWarning
            The server now reports a different number of records.

        Raises
        ------
        AlyxPaginationError
            The records missing from the pages could not be found by asking again.
        """
        with self._in_call(), self._lock:
            if self._fetched[idx]:
                return
            if not self._visited[idx]:
                self._fetch(self.limit * (idx // self.limit), self.limit)
            if not self._fetched[idx]:
                self._repair(idx)

    def _in_call(self):
        """The deadline of the call that returned this answer, for fetching its pages."""
        call = getattr(self.alyx, '_call', None)
        return call(self._budget) if call is not None else contextlib.nullcontext()

    def _repair(self, idx: int) -> None:
        """Find the records the pages missed, until position `idx` is filled."""
        where = urlsplit(self.query)
        query = where.path + (f'?{where.query}' if where.query else '')
        _logger.info('The pages of %s repeated %d records (the server keeps no order between '
                     'pages): asking again for the %d missing', query, self.repeated,
                     self.count - len(self._placed))
        largest = int(getattr(self.alyx, 'max_page_size', None) or MAX_PAGE_LIMIT)
        if self.limit < self.count <= largest:  # the whole answer in one page, if allowed
            self.refetched += 1
            received = self._fetch(0, self.count, fresh=True)
            if received > self.limit:
                self.limit = received
        for n in range(REPAIR_PASSES):
            if not self._missing(idx):
                return
            # every other pass, pages start half a page later: a record that is twice in the
            # answer, split between two pages, is then seen twice in one page
            shift = self.limit // 2 if n % 2 else 0
            starts = ([0] if shift else []) + list(range(shift, self.count, self.limit))
            for start, stop in zip(starts, [*starts[1:], self.count]):
                self.refetched += 1
                self._fetch(start, stop - start, fresh=True)
                if not self._missing(idx):
                    return
        if self._fetched[idx]:
            return
        changed = (' The server reported a different number of records meanwhile: records '
                   'were added or removed.' if self._count_changed else '')
        raise AlyxPaginationError(
            f'The paginated answer of {query} announced {self.count} records but its pages '
            f'gave only {len(self._placed)} distinct ones ({self.repeated} repeated), also after '
            f'asking again: the server keeps no order between pages.{changed} Narrow the query '
            f'so that its answer fits in one page of {self.limit} records.',
            query=query, count=self.count, received=len(self._placed))

    def _missing(self, idx: int) -> bool:
        """Whether position `idx`, or a position of a page already received, is empty."""
        self._holes = [i for i in self._holes if not self._fetched[i]]
        return bool(self._holes) or not self._fetched[idx]

    def add_callback(self, cb: Callable[[list], Any]) -> None:
        """Call `cb(records)` with the new records of every page fetched from now on.

        Records already delivered (repeated by a later page) are not passed again.

        Parameters
        ----------
        cb : callable or weakref.ref / weakref.WeakMethod
            The function; a weak reference is dropped once its target is gone.

        Raises
        ------
        TypeError
            `cb` is not callable.
        """
        if not callable(cb):
            raise TypeError(f'Expected type "callable", got "{type(cb).__name__}" instead')
        self._callbacks.add(cb)
