"""What a `OneAlyx` instance has read of each session from Alyx, and when.

A session's record (``GET /sessions/<id>``: its details, datasets and probe insertions) is read
once and reused by `list_datasets`, the `load_*` methods, `eid2pid` and `get_details` for as long
as the client's REST cache keeps answers fresh (``AlyxClient.default_expiry``, 5 minutes by
default); with the REST cache turned off (``cache_mode=None``, e.g. inside
`one.webclient.no_cache`) nothing is reused.  Sessions whose datasets were listed in a batched
query (`one._remote_batch`) are remembered too: their datasets are in the cache tables, so
loading from them needs no request.

The record is forgotten when the cache tables are replaced (`OneAlyx.load_cache`), since the
merged datasets went with them.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

__all__ = ['SessionMemo', 'reuse_lifetime']


def reuse_lifetime(alyx) -> float:
    """Seconds a session read through `alyx` may be reused: its REST cache expiry (0 when the
    client caches nothing)."""
    if not getattr(alyx, 'cache_mode', None):
        return 0.0
    expiry = getattr(alyx, 'default_expiry', None)
    if isinstance(expiry, timedelta):
        return max(expiry.total_seconds(), 0.0)
    return 0.0


class SessionMemo:
    """Session records and dataset listings read from Alyx, with the time they were read.

    Times are taken from `clock` (monotonic seconds by default).
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._records: dict[str, tuple[float, dict]] = {}
        self._summaries: dict[str, tuple[float, dict]] = {}
        self._datasets: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._datasets)

    def __getstate__(self) -> dict:
        return {'clock': self._clock}  # times of another process mean nothing here

    def __setstate__(self, state: dict) -> None:
        self.__init__(state.get('clock', time.monotonic))

    def record(self, eid: str, lifetime: float) -> dict | None:
        """The session record read less than `lifetime` seconds ago, or None."""
        with self._lock:
            entry = self._records.get(eid)
        if entry is None or self._clock() - entry[0] >= lifetime:
            return None
        return entry[1]

    def summary(self, eid: str, lifetime: float) -> dict | None:
        """The session's list record (search result) or read record, read less than
        `lifetime` seconds ago, or None."""
        record = self.record(eid, lifetime)
        if record is not None:
            return record
        with self._lock:
            entry = self._summaries.get(eid)
        if entry is None or self._clock() - entry[0] >= lifetime:
            return None
        return entry[1]

    def has_datasets(self, eid: str, lifetime: float) -> bool:
        """Whether the session's datasets were merged into the tables less than `lifetime`
        seconds ago."""
        with self._lock:
            when = self._datasets.get(eid)
        return when is not None and self._clock() - when < lifetime

    def stale(self, eids, lifetime: float) -> list[str]:
        """The sessions of `eids` (strings, order kept) whose datasets are not fresh."""
        now = self._clock()
        with self._lock:
            return [e for e in eids
                    if (when := self._datasets.get(e)) is None or now - when >= lifetime]

    def add_record(self, eid: str, record: dict, when: float | None = None) -> None:
        """Remember a session record (its datasets were merged into the tables)."""
        when = self._clock() if when is None else when
        with self._lock:
            self._records[eid] = (when, record)
            self._datasets[eid] = when

    def add_summaries(self, records, when: float | None = None) -> None:
        """Remember session list records (from a search)."""
        when = self._clock() if when is None else when
        with self._lock:
            for record in records:
                eid = record.get('id') or str(record.get('url', '')).rstrip('/')[-36:]
                if eid:
                    self._summaries[str(eid)] = (when, record)

    def add_datasets(self, eids, when: float | None = None) -> None:
        """Remember that the datasets of these sessions were merged into the tables."""
        when = self._clock() if when is None else when
        with self._lock:
            for eid in eids:
                self._datasets[eid] = when

    def now(self) -> float:
        return self._clock()

    def clear(self) -> None:
        """Forget everything (the cache tables were replaced)."""
        with self._lock:
            self._records.clear()
            self._summaries.clear()
            self._datasets.clear()
