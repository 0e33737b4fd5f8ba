"""A lazy list over a paginated REST answer (``{count, next, previous, results}``).

Alyx answers every list query one page at a time.  `PaginatedResponse` holds the first page
and fetches the others only when one of their records is read.  It is a read-only
`collections.abc.Sequence`: ``len``, indexing (negative too), slices (any start, stop and step),
iteration, ``in``, ``index``, ``count``, ``reversed`` and ``==`` against a list or tuple.
"""
from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from one._lib.urls import update_url_params

__all__ = ['PaginatedResponse']


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
    """The records of a paginated REST answer, fetched page by page on demand.

    Parameters
    ----------
    alyx : one.webclient.AlyxClient
        The client used to fetch the other pages (through ``alyx._generic_request``).
    rep : dict
        The first page: ``{'count': int, 'next': url, 'previous': url, 'results': list}``.
    cache_args : dict, optional
        REST cache arguments (``expires``, ``clobber``) used for the page requests.

    Attributes
    ----------
    count : int
        The total number of records.
    limit : int
        The page size (the length of the first page).
    query : str
        The URL of the next page, from which the other pages' URLs are made.
    """

    def __init__(self, alyx, rep: dict, cache_args: dict | None = None):
        self.alyx = alyx
        self.count = int(rep['count'])
        results = list(rep['results'])
        self.limit = max(len(results), 1)
        self.query = rep['next'] or rep.get('previous') or ''
        self._cache_args = dict(cache_args or {})
        self._cache: list = [None] * self.count
        self._fetched = bytearray(self.count)  # 1 where the record has been fetched
        start = _offset_of_first_page(rep, len(results))
        self._store(start, results)
        self._callbacks: set = set()
        self._lock = threading.RLock()

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
            return [self._get(i) for i in indices]
        i = self._index(item)
        if not self._fetched[i]:
            self.populate(i)
        return self._get(i)

    def _get(self, i: int):
        if not self._fetched[i]:
            raise IndexError(
                f'record {i} is no longer available: the remote results changed '
                f'({self.query})')
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

    # --- fetching -------------------------------------------------------------------------
    def _store(self, offset: int, results: list) -> None:
        end = min(offset + len(results), self.count)
        if end > offset:
            self._cache[offset:end] = results[:end - offset]
            self._fetched[offset:end] = b'\x01' * (end - offset)

    @property
    def is_complete(self) -> bool:
        """True once every record has been fetched."""
        return all(self._fetched)

    def populate(self, idx: int) -> None:
        """Fetch the page holding record `idx` and store its records.

        Parameters
        ----------
        idx : int
            A record index (0 <= idx < count).

        Warns
        -----
        RuntimeWarning
            The server now reports a different number of records.
        """
        with self._lock:
            if self._fetched[idx]:
                return
            offset = self.limit * (idx // self.limit)
            query = update_url_params(self.query, {'limit': self.limit, 'offset': offset})
            res = self.alyx._generic_request(requests.get, query, **self._cache_args)
            if res['count'] != self.count:
                path = urlsplit(self.query).path
                warnings.warn(f'remote results for {path} endpoint changed; results may be '
                              'inconsistent', RuntimeWarning, stacklevel=3)
            results = list(res['results'])
            self._store(offset, results)
            for cb in list(self._callbacks):
                func = cb() if isinstance(cb, weakref.ReferenceType) else cb
                if func is None:  # a dead weak reference
                    self._callbacks.discard(cb)
                    continue
                func(results)
            if self.is_complete:
                self._callbacks.clear()

    def add_callback(self, cb: Callable[[list], Any]) -> None:
        """Call `cb(records)` with the records of every page fetched from now on.

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
