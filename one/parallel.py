"""Run an analysis over many sessions at once: on a Dask cluster, or in local processes.

`map_sessions(fn, eids, one)` calls ``fn(one, eid)`` for every session and returns the results
in the order of `eids`.  The `one` instance is sent once to each worker process (it pickles as a
small recipe, see `one._api.pickling`, and each process rebuilds it once, loading the cache tables
itself); a session whose `fn` raises is retried, then returned as a `SessionError` in its
place, and the others carry on.

Where the work runs:

* ``client=`` a `dask.distributed.Client`: on its workers (a `LocalCluster`, or a SLURM, PBS or
  SGE cluster through dask-jobqueue).  A session whose worker dies (killed, out of memory) is
  run again on another by Dask's scheduler.  Dask is imported only then
  (``pip install one-next[dask]``).
* otherwise: a local pool of worker processes (`one._lib.process_pool`), started with
  'forkserver' where available (else 'spawn'): never 'fork', which copies the threads and
  locks of a busy process.  Each worker runs one session at a time: a worker that dies costs
  only the session it was running (run again in a new worker, within its `retries`); the
  others carry on.

A worker that cannot rebuild `one` (or `fn`) gives each session that exception.  An interrupt
(KeyboardInterrupt) stops the workers at once: pool processes terminated, Dask tasks cancelled.

Workers sharing one cache folder download each file once (the others wait for it, see
`one._download.part`) and save the cache tables under a lock that keeps every process's
records.

Examples
--------
>>> from one.api import ONE                                  # doctest: +SKIP
>>> from one.parallel import map_sessions, SessionError      # doctest: +SKIP
>>> def n_trials(one, eid):
...     return len(one.load_object(eid, 'trials')['intervals'])
>>> one = ONE(mode='local', tables_dir='snapshot', cache_dir='data')  # doctest: +SKIP
>>> counts = map_sessions(n_trials, one.search(), one)      # doctest: +SKIP
>>> failed = [r for r in counts if isinstance(r, SessionError)]  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
import traceback as _traceback
import weakref
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ['map_sessions', 'SessionError']
_logger = logging.getLogger('one.parallel')


class SessionError(Exception):
    """What went wrong with one session in `map_sessions` (returned in its place, not raised).

    Attributes
    ----------
    eid : object
        The session, as given.
    type : str
        The name of the exception's class (e.g. ``'ALFObjectNotFound'``, ``'KilledWorker'``).
    message : str
        The exception's message.
    traceback : str
        Where it was raised (the worker's traceback; '' when unknown).
    attempts : int
        How many times the session was run.
    """

    def __init__(self, eid, type: str, message: str, traceback: str = '',  # noqa: A002
                 attempts: int = 1):
        super().__init__(eid, type, message)
        self.eid = eid
        self.type = type
        self.message = message
        self.traceback = traceback
        self.attempts = attempts

    @classmethod
    def from_exception(cls, eid, error: BaseException, attempts: int = 1,
                       traceback: str | None = None) -> SessionError:
        """The SessionError of an exception raised for session `eid`."""
        if traceback is None:
            traceback = ''.join(_traceback.format_exception(
                type(error), error, error.__traceback__))
        return cls(eid, type(error).__name__, str(error), traceback, attempts)

    def __reduce__(self):
        return SessionError, (self.eid, self.type, self.message, self.traceback, self.attempts)

    def __str__(self) -> str:
        tries = f' (after {self.attempts} attempts)' if self.attempts > 1 else ''
        return f'session {self.eid}: {self.type}: {self.message}{tries}'

    def __repr__(self) -> str:
        return f'SessionError({self.eid!r}, {self.type!r}, {self.message!r})'

    def __eq__(self, other) -> bool:
        if not isinstance(other, SessionError):
            return NotImplemented
        return (self.eid, self.type, self.message) == (other.eid, other.type, other.message)

    def __hash__(self) -> int:
        return hash((str(self.eid), self.type, self.message))


def run_session(fn: Callable, one, eid, retries: int = 1):
    """``fn(one, eid)``, tried up to ``1 + retries`` times; a `SessionError` if it always fails.

    This is what each task of `map_sessions` runs in a worker.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return fn(one, eid)
        except (Exception, SystemExit) as ex:  # noqa: BLE001 - any failure is the result
            if attempts > retries:
                return SessionError.from_exception(eid, ex, attempts)
            _logger.info('session %s failed (%s: %s); trying again', eid, type(ex).__name__, ex)


def map_sessions(fn: Callable[[Any, Any], Any], eids: Iterable, one, client=None,
                 retries: int = 1, *, progress: bool | None = None,
                 max_workers: int | None = None) -> list:
    """Run ``fn(one, eid)`` for each session, in parallel; the results in the order of `eids`.

    Parameters
    ----------
    fn : callable
        ``fn(one, eid) -> result``: the analysis of one session.  It is pickled to the
        workers: a function of an importable module (or, with cloudpickle installed, as it
        is with Dask, any function, a lambda or one defined in a notebook).  Its result must
        pickle too.
    eids : iterable
        The sessions, in any form `fn` accepts (e.g. the result of `one.search`).
    one : one.api.One
        The instance `fn` is given; sent once to each worker, where it is rebuilt from its
        folders and settings (its password and token never travel: a worker reads its own
        parameter files, as ``ONE()`` does).  Records its tables hold that the files of its
        tables folder do not travel too (``one.save_cache()`` first, when the tables folder
        is the cache folder, keeps it small).  In each worker process the instance serves
        all the sessions of the call, one after the other, as in a serial loop.
    client : dask.distributed.Client, optional
        Run on this Dask cluster.  By default, in a local pool of processes.
    retries : int
        Times a session whose `fn` raised is run again (in the same worker, at once).
    progress : bool, optional
        Show a progress bar (tqdm: a terminal bar, a widget in Jupyter); by default when
        stderr is a terminal or in a notebook.
    max_workers : int, optional
        Processes of the local pool (default: the CPUs available, at most one per session).
        Ignored with a `client`.

    Returns
    -------
    list
        One item per session, in order: the result of `fn`, or a `SessionError` (eid, type,
        message, traceback, attempts) when it failed every time or its worker died.

    Raises
    ------
    TypeError
        `fn` or `one` cannot be pickled (the message says what to do).
    ValueError
        `retries` is negative.
    """
    from one._lib.files import show_progress
    eids = list(eids)
    retries = int(retries)
    if retries < 0:
        raise ValueError(f'retries must be 0 or more, not {retries}')
    if not eids:
        return []
    from tqdm.auto import tqdm

    show = show_progress(progress)
    bar = tqdm(total=len(eids), unit='session', desc='sessions', dynamic_ncols=True,
               disable=not show)
    try:
        if client is not None:
            return _map_dask(client, fn, eids, one, retries, bar)
        return _map_pool(fn, eids, one, retries, bar, max_workers)
    finally:
        bar.close()


# ---- Dask ---------------------------------------------------------------------------------------

def _map_dask(client, fn, eids: list, one, retries: int, bar) -> list:
    from distributed import as_completed
    # `one` pickled here once, sent once to each worker, unpickled there by the first task
    # that needs it (an error doing so is then each session's, not the scatter's)
    shared = client.scatter(_Pickled(pickle.dumps(one, protocol=pickle.HIGHEST_PROTOCOL)),
                            broadcast=True, hash=False)
    futures = []
    try:
        futures = client.map(_dask_task, eids, fn=fn, one=shared, retries_=retries, pure=False)
        for _ in as_completed(futures):
            bar.update(1)
        results: list = [None] * len(eids)
        finished = [i for i, f in enumerate(futures) if f.status == 'finished']
        for i, value in zip(finished, client.gather([futures[i] for i in finished])):
            results[i] = value
        for i, future in enumerate(futures):
            if future.status == 'finished':
                continue
            try:
                error = future.exception()
                trace = ''.join(_traceback.format_tb(future.traceback())) if error else ''
            except Exception as ex:  # noqa: BLE001 - a cancelled future raises here
                error, trace = ex, ''
            results[i] = SessionError.from_exception(eids[i], error, traceback=trace,
                                                     attempts=_dask_attempts(error))
        return results
    finally:  # also on an interrupt: nothing left running on the cluster
        client.cancel([*futures, shared])


def _dask_attempts(error) -> int:
    """Times Dask ran a task that failed with `error`: a `KilledWorker` after the deaths the
    scheduler allows (``distributed.scheduler.allowed-failures``), else once."""
    if type(error).__name__ != 'KilledWorker':
        return 1
    allowed = getattr(error, 'allowed_failures', None)
    if not isinstance(allowed, int):
        import dask.config
        allowed = int(dask.config.get('distributed.scheduler.allowed-failures', 3))
    return allowed + 1


class _Pickled:
    """The bytes of a pickled `one`, unpickled once per worker process (on first use)."""

    __slots__ = ('data', '__weakref__')

    def __init__(self, data: bytes):
        self.data = data


_unpickled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_unpickled_lock = threading.Lock()


def _unpickle_once(pickled: _Pickled):
    """The object of a `_Pickled` in this process, or the exception unpickling it raised."""
    with _unpickled_lock:  # the threads of a worker share it
        try:
            return _unpickled[pickled]
        except KeyError:
            pass
        try:
            value = pickle.loads(pickled.data)
        except Exception as ex:  # noqa: BLE001 - each session is given the cause
            value = _Unpicklable(ex)
        _unpickled[pickled] = value
        return value


class _Unpicklable:
    __slots__ = ('error', 'trace')

    def __init__(self, error: BaseException):
        self.error = error
        self.trace = 'In the worker, while unpickling `one` (before running the session):\n' \
            + ''.join(_traceback.format_exception(type(error), error, error.__traceback__))


def _dask_task(eid, fn, one, retries_):
    # (``retries`` would be taken by `Client.map` as its own keyword)
    one = _unpickle_once(one)
    if isinstance(one, _Unpicklable):
        return SessionError.from_exception(eid, one.error, traceback=one.trace)
    return run_session(fn, one, eid, retries_)


# ---- local process pool -----------------------------------------------------------------------

def _dumps(fn, one) -> bytes:
    """(fn, one) pickled once for every worker process; by value where pickle cannot."""
    by_value = getattr(fn, '__module__', None) == '__main__'  # a script's or notebook's own
    if not by_value:
        try:
            return pickle.dumps((fn, one), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError):
            pass
    try:
        import cloudpickle
    except ImportError:
        if by_value:  # a script's function: the workers import its module as __mp_main__
            return pickle.dumps((fn, one), protocol=pickle.HIGHEST_PROTOCOL)
        raise TypeError(f'{fn!r} cannot be sent to the worker processes: define it at the '
                        'top level of a module, or install cloudpickle (it comes with '
                        'one-next[dask])') from None
    return cloudpickle.dumps((fn, one), protocol=pickle.HIGHEST_PROTOCOL)


def _pool_task(state: tuple, task: tuple):
    fn, one = state
    eid, retries = task
    return run_session(fn, one, eid, retries)


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _map_pool(fn, eids: list, one, retries: int, bar, max_workers: int | None) -> list:
    """Each worker process runs one session at a time: a worker that dies is charged to the
    session it was running (run again within its `retries`), the others carry on."""
    from one._lib.process_pool import run_in_processes
    payload = _dumps(fn, one)
    results: list = [None] * len(eids)
    runs = run_in_processes(_pool_task, payload, [(eid, retries) for eid in eids],
                            workers=max_workers or _default_workers(), deaths_allowed=retries)
    with contextlib.closing(runs):
        for i, outcome in runs:
            if outcome.kind == 'value':
                results[i] = outcome.value
            else:
                error = outcome.error
                results[i] = SessionError(eids[i], error.type, error.message, error.traceback,
                                          attempts=max(1, outcome.deaths))
            bar.update(1)
    return results
