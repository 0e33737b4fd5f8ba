"""Worker processes that rebuild a state once, then run one item at a time; a death costs one item.

`concurrent.futures.ProcessPoolExecutor` breaks as a whole when one of its workers dies: every
item in flight fails with it, and which one killed the worker is unknown.  Here each worker runs
one item at a time, so when a worker dies (killed, out of memory, a crash in native code) the
item it was running is known: that item alone is charged, the other workers carry on, and a new
worker takes the dead one's place.

A worker starts by unpickling the payload (its state, e.g. an analysis function and a `One`)
and says whether that worked.  When it raises, the worker stays and answers every item it is
given with that exception: each item carries the real cause.  Workers that die before they
are ready, several in a row, end the run (their items are reported as never started).

Workers ignore SIGINT (Ctrl-C reaches the whole process group): the parent raises
`KeyboardInterrupt`, and closing the run (leaving ``with``, or an exception) terminates them at
once, whatever they were doing.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait

__all__ = ['ErrorInfo', 'Outcome', 'run_in_processes']

STARTUP_DEATHS = 3
"""Workers dying in a row before they are ready (no ready worker meanwhile): the run gives up."""


@dataclass(frozen=True)
class ErrorInfo:
    """An exception raised in a worker: its class name, message and formatted traceback."""

    type: str
    message: str
    traceback: str = ''

    @classmethod
    def of(cls, error: BaseException, context: str = '') -> ErrorInfo:
        trace = ''.join(traceback.format_exception(type(error), error, error.__traceback__))
        return cls(type(error).__name__, str(error), context + trace)


@dataclass(frozen=True)
class Outcome:
    """What became of an item.

    Attributes
    ----------
    kind : {'value', 'error', 'died', 'not started'}
        'value': the task returned `value`; 'error': the task (or the rebuilding of the
        worker's state, or the pickling of the value) raised `error`; 'died': its worker died
        under it more than the deaths allowed; 'not started': the workers kept dying before
        they were ready.
    value : object
    error : ErrorInfo or None
    deaths : int
        Times a worker died while running the item.
    """

    kind: str
    value: object = None
    error: ErrorInfo | None = None
    deaths: int = 0


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return 'it stopped answering'
    if exitcode < 0:
        try:
            return f'killed by {signal.Signals(-exitcode).name}'
        except ValueError:
            return f'killed by signal {-exitcode}'
    return f'exit code {exitcode}'


def _worker_main(conn, task: Callable, payload: bytes, environ: dict) -> None:
    """A worker: rebuild the state, say so, then answer ``(index, item)`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the caller's environment now: a forkserver's children inherit the environment of the
    # moment the server started (before the state reads its variables)
    os.environ.clear()
    os.environ.update(environ)
    failure = None
    try:
        state = pickle.loads(payload)
    except BaseException as ex:  # noqa: BLE001 - every item is told the cause
        state = None
        failure = ErrorInfo.of(ex, 'In the worker process, while unpickling its state (before '
                                   'running any item):\n')
    conn.send(('ready', failure is None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        index, item = message
        if failure is not None:
            answer = ('error', failure)
        else:
            try:
                answer = ('value', pickle.dumps(task(state, item),
                                                protocol=pickle.HIGHEST_PROTOCOL))
            except Exception as ex:  # noqa: BLE001 - the task's error, or a value that won't
                answer = ('error', ErrorInfo.of(ex))  # pickle, is the item's outcome
        conn.send((index, answer))


class _Worker:
    __slots__ = ('process', 'conn', 'ready', 'running')

    def __init__(self, context, task: Callable, payload: bytes, environ: dict):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, name='one-worker',
                                       args=(child, task, payload, environ))
        self.process.start()
        child.close()
        self.ready = False
        self.running: int | None = None

    def stop(self, wait_for: float) -> None:
        """Ask the worker to finish (``wait_for`` > 0) or terminate it, and reap it."""
        process = self.process
        if wait_for > 0 and process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            process.join(wait_for)
        if process.is_alive():
            process.terminate()
            process.join(2)
        if process.is_alive():
            process.kill()
            process.join(2)
        self.conn.close()


def run_in_processes(task: Callable, payload: bytes, items: list, workers: int,
                     deaths_allowed: int = 0, context=None) -> Iterator[tuple[int, Outcome]]:
    """Run ``task(state, item)`` for each item in worker processes, as they finish.

    Parameters
    ----------
    task : callable
        A module-level function (pickled by reference) of the state and an item.
    payload : bytes
        The pickled state, unpickled once by each worker.
    items : list
        The items (each must pickle).
    workers : int
        Worker processes (at most one per item).
    deaths_allowed : int
        Times an item is run again after its worker died under it.
    context : multiprocessing context, optional
        How workers start (default: 'forkserver' where available, else 'spawn').

    Yields
    ------
    (int, Outcome)
        The position of an item in `items` and what became of it, each item once.
        Closing the generator (or an exception, such as KeyboardInterrupt, in it) terminates
        the workers.
    """
    if context is None:
        import multiprocessing
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context('forkserver' if 'forkserver' in methods
                                              else 'spawn')
    environ = dict(os.environ)
    todo = deque(range(len(items)))
    deaths = [0] * len(items)
    n_workers = max(1, min(workers, len(items)))
    pool: list[_Worker] = []
    left = len(items)
    startup_deaths, last_exit = 0, None
    finished = False
    try:
        pool = [_Worker(context, task, payload, environ) for _ in range(n_workers)]
        while left:
            for worker in pool:
                if worker.ready and worker.running is None and todo:
                    index = todo.popleft()
                    try:
                        worker.conn.send((index, items[index]))
                        worker.running = index
                    except OSError:  # it died: seen below
                        todo.appendleft(index)
            wait([w.conn for w in pool] + [w.process.sentinel for w in pool])
            for worker in list(pool):
                dead = False
                while not dead and worker.conn.poll():
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        dead = True
                        break
                    if message[0] == 'ready':
                        worker.ready = True
                        startup_deaths = 0
                        continue
                    index, (kind, data) = message
                    worker.running = None
                    left -= 1
                    if kind == 'value':
                        try:
                            yield index, Outcome('value', value=pickle.loads(data),
                                                 deaths=deaths[index])
                        except Exception as ex:  # noqa: BLE001 - a value this process can't read
                            yield index, Outcome('error', error=ErrorInfo.of(ex),
                                                 deaths=deaths[index])
                    else:
                        yield index, Outcome('error', error=data, deaths=deaths[index])
                if not dead and worker.process.is_alive():
                    continue
                pool.remove(worker)
                worker.stop(0)
                last_exit = _exit_reason(worker.process.exitcode)
                index = worker.running
                if index is not None:
                    deaths[index] += 1
                    if deaths[index] > deaths_allowed:
                        left -= 1
                        yield index, Outcome('died', error=ErrorInfo(
                            'WorkerDied', f'the worker process running it died ({last_exit})'),
                            deaths=deaths[index])
                    else:
                        todo.appendleft(index)
                elif not worker.ready:
                    startup_deaths += 1
                if todo and startup_deaths < STARTUP_DEATHS:
                    pool.append(_Worker(context, task, payload, environ))
            if todo and not pool:  # every worker died before it was ready
                error = ErrorInfo('WorkerDied', f'the worker processes died while starting '
                                                f'({last_exit}), {startup_deaths} in a row: '
                                                'their error output says why')
                while todo:
                    left -= 1
                    yield todo.popleft(), Outcome('not started', error=error)
        finished = True
    finally:
        for worker in pool:
            worker.stop(5 if finished else 0)
