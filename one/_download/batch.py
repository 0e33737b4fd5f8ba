"""`download_files`: a batch of downloads in worker threads, one progress bar, the outcomes.

The number of threads fits what is fetched (`one._download.streams`: up to 32 for many tiny
files, fewer for a few large ones) unless given, and no server gets more concurrent downloads
than its bound (``ONE_HTTP_DL_MAX_PER_HOST``).
"""
from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from one._download.connections import Worker
from one._download.defaults import BACKOFF, RETRIES
from one._download.engine import Engine
from one._download.errors import Cancelled
from one._download.progress import NoProgress, Progress
from one._download.streams import choose_streams, max_per_host
from one._download.task import DownloadTask
from one._lib.files import show_progress
from one._lib.http_timeouts import resolve_timeout

_logger = logging.getLogger(__name__)

POOL_SIZE = 64
"""Threads kept for downloads between batches (a batch wanting more starts its own)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The download threads, started when first needed and reused by every batch (starting a
    thread costs ~1 ms, more while others run)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix='one-download')
        return _pool


def _forget_executor() -> None:
    """In a forked child, the parent's threads do not exist: start new ones when needed."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_forget_executor)


def download_files(tasks: Iterable[DownloadTask], n_threads: int | None = None,
                   progress: bool | None = None, retries: int = RETRIES,
                   timeout: float | tuple[float, float] | None = None, *,
                   backoff: float = BACKOFF, return_md5: bool = False,
                   raise_on_error: bool = True, return_errors: bool = False,
                   stop_on: Callable[[Exception], bool] | None = None,
                   desc: str = 'Downloading') -> list:
    """Download files in parallel, verified and resumable (see `one._download`).

    Parameters
    ----------
    tasks : iterable of DownloadTask
        The files to download.
    n_threads : int, optional
        Number of parallel downloads.  By default ``ONE_HTTP_DL_THREADS`` when set, otherwise
        chosen from the files (`one._download.streams.choose_streams`: one per file, up to
        32 for tiny files, 16 for small ones, 4 for large ones).  Whatever the number, a
        server gets at most ``ONE_HTTP_DL_MAX_PER_HOST`` (32) concurrent downloads.
    progress : bool, optional
        Show one tqdm progress bar (bytes) for the whole batch.  By default shown only when
        stderr is a terminal.
    retries : int
        Retries after a failed attempt (connection error, HTTP 408, 429, 5xx, cut transfer).
        An attempt that moved the transfer on by at least 1 MiB resets the count.  A read
        timeout is retried once only.
    timeout : float or (float, float), optional
        HTTP read timeout, or (connect, read) timeouts, in seconds (see
        `one._lib.http_timeouts.resolve_timeout`); by default ``ONE_HTTP_TIMEOUT`` or
        (10, 60).  S3 tasks use their client's configuration (the default client's
        timeouts are these).
    backoff : float
        First retry delay in seconds, doubled at each retry (randomised by up to -50 %, at most
        `MAX_BACKOFF`).  A ``Retry-After`` header overrides it (at most `MAX_RETRY_AFTER`).
    return_md5 : bool
        Also return each file's md5 (hashing kept files when needed).
    raise_on_error : bool
        When a file fails, raise its error once all the other files are done (the first failed
        file in task order; the others are logged).  When False, failed files give None.
    return_errors : bool
        Give each failed file's exception in place of its path (also within the
        ``(path, md5)`` tuples), neither raised nor logged: the caller handles it.
        `raise_on_error` is then ignored.
    stop_on : callable, optional
        Called with the exception of each failed file, in the thread that downloaded it; when
        it returns True, no further file is started (those under way finish).  Files never
        started give None.
    desc : str
        Label of the progress bar.

    Returns
    -------
    list
        The destination paths (`pathlib.Path`), in task order; with `return_md5`, tuples
        ``(path, md5)``.  A failed file gives None, or its exception with `return_errors`.
        A kept or downloaded file's md5 is None when it was neither known nor asked for.

    Raises
    ------
    DownloadError
        A file could not be downloaded: `HTTPStatusError` (e.g. 404, or 5xx after the
        retries), `DownloadConnectionError`, `SizeMismatch`, `ChecksumMismatch` (after one
        re-download).  The destination of a failed file is never modified.
    ValueError
        A URL's scheme is neither http(s) nor s3, or `n_threads` is below 1.

    Examples
    --------
    >>> tasks = [DownloadTask(url, cache / rel, size=size, md5=md5)
    ...          for url, rel, size, md5 in records]                    # doctest: +SKIP
    >>> paths = download_files(tasks)                                   # doctest: +SKIP
    >>> for task, outcome in zip(tasks, download_files(tasks, return_errors=True)):
    ...     if isinstance(outcome, Exception):
    ...         print(f'{task.url}: {outcome}')                         # doctest: +SKIP
    """
    tasks = list(tasks)
    for task in tasks:
        if not isinstance(task, DownloadTask):
            raise TypeError(f'Expected DownloadTask objects, got {type(task).__name__}')
        if task.scheme not in ('http', 'https', 's3'):
            raise ValueError(f'Cannot download "{task.url}": only http(s):// and s3:// URLs '
                             'are supported')
    if not tasks:
        return []
    if n_threads is None:
        n_threads = choose_streams([t.size for t in tasks])
    n_threads = int(n_threads)
    if n_threads < 1:
        raise ValueError(f'n_threads must be at least 1, not {n_threads}')
    hosts = [_origin(t) for t in tasks]
    per_host = max_per_host()
    n_hosts = len(set(hosts))
    bar: NoProgress = NoProgress()
    if show_progress(progress):
        bar = Progress(sum(t.size for t in tasks if t.size is not None), desc)
    cancel = threading.Event()  # the caller was interrupted: stop mid-transfer
    stop = threading.Event()  # `stop_on` said so: start no further file
    engine = Engine(retries, resolve_timeout(timeout), backoff, return_md5, bar, cancel)
    results: list = [None] * len(tasks)
    errors: list = [None] * len(tasks)
    # Largest first, so that big files start early and small ones fill the gaps
    queue = _HostQueue(sorted(range(len(tasks)), key=lambda i: -(tasks[i].size or 0)), hosts,
                       per_host)

    def work() -> None:
        worker = Worker()
        try:
            while not (cancel.is_set() or stop.is_set()):
                i = queue.next()
                if i is None:
                    return
                try:
                    results[i] = engine.run(tasks[i], worker)
                except Exception as ex:  # noqa: BLE001 - reported below
                    errors[i] = ex
                    if stop_on is not None and stop_on(ex):
                        stop.set()
                finally:
                    queue.done(i)
        except Cancelled:
            return
        finally:
            worker.close()

    try:
        n_workers = min(n_threads, len(tasks), per_host * n_hosts)
        if n_workers == 1:
            work()
        elif n_workers <= POOL_SIZE:
            for future in [_executor().submit(work) for _ in range(n_workers)]:
                future.result()
        else:
            threads = [threading.Thread(target=work, daemon=True, name=f'one-download-{i}')
                       for i in range(n_workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    except BaseException:
        cancel.set()  # workers stop after their current chunk; partial files are kept
        raise
    finally:
        bar.close()

    if not return_errors:
        failed = [ex for ex in errors if ex is not None]
        for ex in failed[1 if raise_on_error else 0:]:
            _logger.error('%s', ex)
        if failed and raise_on_error:
            raise failed[0]
        errors = [None] * len(tasks)
    if return_md5:
        return [(error, None) if r is None else r for r, error in zip(results, errors)]
    return [error if r is None else r[0] for r, error in zip(results, errors)]


def _origin(task: DownloadTask) -> str:
    """The server of a task: ``scheme://host:port`` (S3: the bucket)."""
    parts = urlsplit(task.url)
    return f'{parts.scheme.lower()}://{(parts.netloc or "").lower()}'


class _HostQueue:
    """The tasks still to start, handed out in order to the threads, with at most `per_host`
    under way per server at any time (a thread waits for a slot when only busy servers are
    left)."""

    def __init__(self, order: list[int], hosts: list[str], per_host: int):
        # per server, its tasks in hand-out order as (rank in `order`, task index)
        self._queues: dict[str, deque[tuple[int, int]]] = {}
        for rank, i in enumerate(order):
            self._queues.setdefault(hosts[i], deque()).append((rank, i))
        self._hosts = hosts
        self._per_host = per_host
        self._busy: dict[str, int] = {}
        self._changed = threading.Condition()

    def next(self) -> int | None:
        """The next task a thread may start, or None when there is none left.

        This is the first task in order whose server has a free slot: the smallest-ranked
        head among the queues of the servers that have one.
        """
        with self._changed:
            while self._queues:
                free = [h for h in self._queues if self._busy.get(h, 0) < self._per_host]
                if free:
                    host = min(free, key=lambda h: self._queues[h][0][0])
                    queue = self._queues[host]
                    _, i = queue.popleft()
                    if not queue:
                        del self._queues[host]
                    self._busy[host] = self._busy.get(host, 0) + 1
                    return i
                self._changed.wait()  # every task ends with `done`, which notifies
            return None

    def done(self, i: int) -> None:
        with self._changed:
            self._busy[self._hosts[i]] -= 1
            self._changed.notify_all()
