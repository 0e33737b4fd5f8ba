"""A re-entrant lock between threads that a rare, important holder can take ahead of the others.

`threading.RLock` is not fair: a thread that releases it and asks for it again at once (a
thread querying in a loop) usually gets it back before a waiting thread wakes up, and can keep
that thread waiting for minutes.  `PriorityRLock.ahead()` takes the lock before every thread that
does not hold it yet: while a holder is waiting there, other threads entering the lock first wait
for it to have been served.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ['PriorityRLock']


class PriorityRLock:
    """A re-entrant lock (``with lock: ...``) with a way in ahead of the queue (`ahead`).

    Pickled or copied as a new, free lock.
    """

    __slots__ = ('_lock', '_gate', '_waiting', '_owner', '_depth')

    def __init__(self):
        self._lock = threading.RLock()
        self._gate = threading.Condition(threading.Lock())
        self._waiting = 0  # threads in `ahead` not served yet
        self._owner = None
        self._depth = 0

    def _acquire(self) -> None:
        self._lock.acquire()
        self._owner = threading.get_ident()
        self._depth += 1

    def _release(self) -> None:
        self._depth -= 1
        if not self._depth:
            self._owner = None
        self._lock.release()

    def __enter__(self) -> PriorityRLock:
        if self._waiting and self._owner != threading.get_ident():
            with self._gate:  # a holder ahead is waiting: let it go first
                self._gate.wait_for(lambda: not self._waiting)
        self._acquire()
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    @contextlib.contextmanager
    def ahead(self) -> Iterator[PriorityRLock]:
        """Hold the lock, taking it before the threads that do not hold it yet."""
        with self._gate:
            self._waiting += 1
        try:
            self._acquire()
        finally:
            with self._gate:
                self._waiting -= 1
                self._gate.notify_all()
        try:
            yield self
        finally:
            self._release()

    def __reduce__(self):
        return type(self), ()
