"""What a `OneAlyx` instance has read of each session from Alyx, kept as long as the REST cache
keeps the answer it came from.

A session's record (``GET /sessions/<id>``: its details, datasets and probe insertions) is read
once and reused by `list_datasets`, the `load_*` methods, `eid2pid` and `get_details` until the
REST cache entry of that answer expires (``AlyxClient.default_expiry``, 5 minutes by default,
counted from when the answer was received from the server, also when this instance read it from
the REST cache written by another one).  Sessions whose datasets were listed in a batched query
(`one._api.batch`) are remembered in the same way (their datasets are in the cache tables, so
loading from them needs no request), with the S3 file record of each of their datasets.

Everything is forgotten when the cache tables are replaced (`OneAlyx.load_cache`, since the
merged datasets went with them), when the client's REST cache is cleared
(``AlyxClient.clear_rest_cache``, ``logout``) and while it is off (``cache_mode=None``, e.g.
inside `one.webclient.no_cache`).  Nothing is pickled: a copy of the instance in another process
reads the sessions again.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime

__all__ = ['SessionMemo']


class SessionMemo:
    """Session records, dataset listings and S3 file records read from Alyx, each with the time
    its REST answer expires.

    Parameters
    ----------
    clock : callable
        The current time (`datetime.datetime.now`, as the REST cache's expiry times).
    """

    def __init__(self, clock: Callable[[], datetime] = datetime.now):
        self._clock = clock
        self._records: dict[str, tuple[datetime, dict]] = {}
        self._summaries: dict[str, tuple[datetime, dict]] = {}
        self._datasets: dict[str, datetime] = {}
        self._s3_files: dict[str, tuple[datetime, dict | None]] = {}
        self._generation: int | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._datasets)

    def __getstate__(self) -> dict:
        return {'clock': self._clock}  # what another process reads, it reads again

    def __setstate__(self, state: dict) -> None:
        self.__init__(state.get('clock', datetime.now))

    def follow(self, alyx) -> SessionMemo:
        """Forget everything if the client's REST cache was cleared since, or is off.

        Returns
        -------
        SessionMemo
            This memo.
        """
        generation = getattr(alyx, '_rest_cache_generation', 0)
        if not getattr(alyx, 'cache_mode', None) or generation != self._generation:
            self.clear()
            self._generation = generation
        return self

    def _fresh(self, entry) -> bool:
        return entry is not None and self._clock() < entry[0]

    def record(self, eid: str) -> dict | None:
        """The session record still fresh in the REST cache, or None."""
        with self._lock:
            entry = self._records.get(eid)
        return entry[1] if self._fresh(entry) else None

    def summary(self, eid: str) -> dict | None:
        """The session's list record (search result) or read record still fresh, or None."""
        record = self.record(eid)
        if record is not None:
            return record
        with self._lock:
            entry = self._summaries.get(eid)
        return entry[1] if self._fresh(entry) else None

    def has_datasets(self, eid: str) -> bool:
        """Whether the session's datasets were merged into the tables from an answer still
        fresh in the REST cache."""
        with self._lock:
            until = self._datasets.get(eid)
        return until is not None and self._clock() < until

    def stale(self, eids: Iterable[str]) -> list[str]:
        """The sessions of `eids` (strings, order kept) whose datasets are not fresh."""
        now = self._clock()
        with self._lock:
            return [e for e in eids if (until := self._datasets.get(e)) is None or now >= until]

    def add_record(self, eid: str, record: dict, until: datetime | None) -> None:
        """Remember a session record (its datasets were merged into the tables) until `until`
        (None: not at all)."""
        if until is None:
            return
        with self._lock:
            self._records[eid] = (until, record)
            self._datasets[eid] = until

    def add_summaries(self, records: Iterable[dict], until: datetime | None) -> None:
        """Remember session list records (from a search) until `until`."""
        from one._rest.records import record_id
        if until is None:
            return
        with self._lock:
            for record in records:
                eid = record_id(record)
                if eid:
                    self._summaries[eid] = (until, record)

    def add_datasets(self, eids: Iterable[str], until: datetime | None) -> None:
        """Remember that the datasets of these sessions were merged into the tables."""
        if until is None:
            return
        with self._lock:
            for eid in eids:
                self._datasets[eid] = until

    def add_s3_files(self, file_records: dict, until: datetime | None) -> None:
        """Remember the S3 file record of datasets (dataset id -> file record, None for a
        dataset with no file on S3) listed in batches."""
        if until is None:
            return
        with self._lock:
            for dataset_id, file_record in file_records.items():
                self._s3_files[dataset_id] = (until, file_record)

    def s3_files(self, ids: Iterable[str]) -> dict:
        """The S3 file records still fresh of these datasets (dataset id -> record or None);
        datasets not known are absent."""
        now = self._clock()
        with self._lock:
            return {i: entry[1] for i in ids
                    if (entry := self._s3_files.get(i)) is not None and now < entry[0]}

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._records.clear()
            self._summaries.clear()
            self._datasets.clear()
            self._s3_files.clear()
