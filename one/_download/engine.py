"""The download of one file: keep a good existing file, or stream, resume, retry, verify, rename.

Connection errors, timeouts and HTTP 408, 429 and 5xx answers are retried with exponential
backoff (honouring ``Retry-After``); a large transfer cut in the middle resumes where it
stopped (a small one starts again).  A read timeout is retried once: a second one in a row
(without 1 MiB of progress between them) ends the download with `DownloadTimeout`.  Errors
that retrying cannot fix (404, 403, a file that stays bad...) raise at once.  A bad file is
thrown away and downloaded once more from scratch.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from one._download.connections import Worker
from one._download.defaults import (
    CHUNK_SIZE,
    MAX_RETRY_AFTER,
    PIPE_THRESHOLD,
)
from one._download.errors import (
    Cancelled,
    ChecksumMismatch,
    DownloadConnectionError,
    DownloadError,
    DownloadTimeout,
    HTTPStatusError,
    RangeUnsatisfiable,
    SizeMismatch,
    Transient,
    is_retryable,
)
from one._download.hashing import HashPipe, NoHash, hash_file
from one._download.http_transport import HTTPTransport
from one._download.part import Part
from one._download.progress import NoProgress
from one._download.s3_transport import S3Transport
from one._download.task import Body, DownloadTask
from one._lib.backoff import retry_wait
from one._lib.http_timeouts import ENV_TIMEOUT, connect_limit, read_limit

_logger = logging.getLogger(__name__)

_CPUS = os.cpu_count() or 1


def _incomplete(size: int, total: int) -> Transient:
    """The error of an answer of `size` bytes where `total` were announced."""
    if size > total:  # the partial file is unusable
        return Transient(f'the answer is longer than the announced {total} bytes', restart=True)
    return Transient(f'the transfer stopped after {size} of {total} bytes')


class Engine:
    """Downloads tasks one at a time (called from several worker threads)."""

    def __init__(self, retries: int, timeout, backoff: float, need_md5: bool,
                 progress: NoProgress, cancel: threading.Event):
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.need_md5 = need_md5
        self.progress = progress
        self.cancel = cancel
        self._dirs: set[Path] = set()
        self._http = HTTPTransport(timeout)
        self._s3 = S3Transport(timeout)

    # ---- one task ---------------------------------------------------------------------------
    def run(self, task: DownloadTask, worker: Worker) -> tuple[Path, str | None]:
        """Download one task (or keep its verified file); return the path and the md5."""
        dest = task.destination
        want_md5 = self.need_md5 or task.md5 is not None
        kept, bad = self._existing(task, want_md5, worker)
        if kept is not None:
            return dest, kept or None
        parent = dest.parent
        if parent not in self._dirs:
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as ex:
                raise DownloadError(f'Could not create the folder of {dest} to download '
                                    f'{task.url}: {ex}', task.url, dest) from ex
            self._dirs.add(parent)
        try:
            part = Part(dest)
        except OSError as ex:
            raise DownloadError(f'Could not create the partial file of {dest} (downloading '
                                f'{task.url}): {ex}', task.url, dest) from ex
        keep = False  # keep the partial file, to resume it later?
        try:
            if part.exclusive:  # another process may have downloaded it meanwhile
                kept, _ = self._existing(task, want_md5, worker, known_bad=bad)
                if kept is not None:
                    return dest, kept or None
            digest = self._fetch(task, worker, part)
            part.commit(dest)
        except (DownloadConnectionError, Cancelled):
            keep = True
            raise
        except HTTPStatusError as ex:
            keep = is_retryable(ex.status_code)
            raise
        except DownloadError:
            raise
        except OSError as ex:
            raise DownloadError(f'Could not write {dest} (downloading {task.url}): {ex}',
                                task.url, dest) from ex
        except BaseException:  # KeyboardInterrupt...
            keep = True
            raise
        finally:
            part.close(keep)
        return dest, digest

    def _existing(self, task: DownloadTask, want_md5: bool, worker: Worker,
                  known_bad: tuple | None = None) -> tuple[str | None, tuple | None]:
        """Check the destination file.

        Returns ('' or its md5, None) when it exists and matches the task; otherwise (None,
        the file's identity when its md5 was found wrong, so that it is not hashed twice).
        """
        if task.clobber:
            return None, None
        try:
            st = os.stat(task.destination)
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        if not stat.S_ISREG(st.st_mode) or task.size is not None and st.st_size != task.size:
            return None, None
        identity = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        if identity == known_bad:
            return None, known_bad
        digest = ''
        if want_md5:
            digest = hash_file(task.destination, st.st_size, worker.buffer).hexdigest()
            if task.md5 is not None and digest != task.md5:
                _logger.debug('%s exists but its md5 differs: downloading it again',
                              task.destination)
                return None, identity
        if task.size is None:
            self.progress.grow(st.st_size)
        self.progress.add(st.st_size)
        return digest, None

    @staticmethod
    def _expected_window(task: DownloadTask) -> int | None:
        if task.byte_range is not None:
            return task.size if task.size is not None else task.byte_range[1]
        return task.size

    def _fetch(self, task: DownloadTask, worker: Worker, part: Part) -> str:
        """Stream the task into `part` (resuming it if possible), verify it, return the md5."""
        opener = self._s3.open if task.scheme == 's3' else self._http.open
        expected = self._expected_window(task)
        hashing = task.md5 is not None or self.need_md5
        failures = 0           # consecutive failed attempts
        timeouts = 0           # consecutive read timeouts
        restarted = False      # a bad file was already downloaded again from scratch
        validator = None       # ETag / Last-Modified of the answer being resumed
        counted = 0            # bytes of this task shown on the progress bar
        reached = 0            # the most bytes the partial file ever had
        grown = task.size is not None
        last_error: Transient | None = None
        while True:
            offset = self._part_offset(part, part.exclusive and (task.md5 is not None
                                                                 or validator is not None),
                                       expected)
            self.progress.add(offset - counted)
            counted = offset
            body = None
            pending = None  # a small file's verified data, still to be written
            try:
                if offset and expected is not None and offset == expected:
                    hasher = hash_file(part.path, offset, worker.buffer, hashing)  # done
                    size = offset
                else:
                    body = opener(task, worker, offset, validator if offset else None)
                    if body.start != offset:
                        if body.start:  # resumed elsewhere than asked: start afresh
                            raise Transient(f'the server resumed at byte {body.start} '
                                            f'instead of {offset}', restart=True)
                        self.progress.add(-counted)
                        offset = counted = 0
                    if expected is not None and body.total is not None \
                            and body.total != expected:
                        raise SizeMismatch(
                            f'{task.url} is {body.total} bytes on the server, not the expected '
                            f'{expected}: not downloaded to {task.destination}',
                            task.url, task.destination, expected, body.total)
                    if not grown and body.total is not None:
                        self.progress.grow(body.total)
                        grown = True
                    validator = body.validator
                    hasher = (hash_file(part.path, offset, worker.buffer, hashing) if offset
                              else hashlib.md5(usedforsecurity=False) if hashing else NoHash())
                    size = offset
                    if not offset and body.total is not None and body.readinto is not None \
                            and body.total < len(worker.buffer):
                        # A small answer: read whole into memory, written only once verified
                        data = self._read_whole(body, worker.buffer[:body.total + 1])
                        size = len(data)
                        if size != body.total:
                            raise _incomplete(size, body.total)
                        hasher.update(data)
                        self.progress.add(size)
                        counted, pending = size, data
                    else:
                        if hashing and body.total is not None and _CPUS > 1 \
                                and body.total - offset >= PIPE_THRESHOLD:
                            hasher = HashPipe(hasher)
                        with part.open(offset) as f, \
                                (hasher if isinstance(hasher, HashPipe)
                                 else contextlib.nullcontext()):
                            size += self._stream(body, f.write, hasher if hashing else None,
                                                 worker.buffer)
                        counted = size
                        if body.total is not None and size != body.total:
                            raise _incomplete(size, body.total)
            except Transient as ex:
                last_error = ex
                if body is not None:
                    counted = part.size()
                # An attempt that brought at least 1 MiB of new data resets the count
                if counted >= reached + CHUNK_SIZE:
                    failures, reached, timeouts = 0, counted, 0
                else:
                    failures += 1
                if ex.timeout == 'read':  # retried once (botocore may have done it already)
                    timeouts += 2 if ex.retried else 1
                if ex.restart:
                    part.reset()
                    validator = None
                if failures > self.retries or timeouts > 1:
                    raise self._final_error(task, last_error, failures) from \
                        (ex.error if isinstance(ex.error, BaseException) else None)
                delay = self._delay(failures, ex.retry_after)
                _logger.debug('Retrying %s in %.2f s (%s)', task.url, delay, ex)
                if self.cancel.wait(delay):
                    raise Cancelled from None
                continue
            except RangeUnsatisfiable as ex:
                # Asked for bytes past the end: the part is complete, or longer than the file
                if ex.total is not None and ex.total == offset:
                    hasher, size = hash_file(part.path, offset, worker.buffer, hashing), offset
                else:
                    part.reset()
                    validator = None
                    failures += 1
                    if failures > self.retries:
                        raise DownloadError(f'Could not resume {task.url} into {part.path}: the '
                                            'server refused the byte range', task.url,
                                            task.destination) from None
                    continue
            finally:
                if body is not None:
                    body.close()
            digest = hasher.hexdigest()
            problem = self._check(task, expected, size, digest, restarted)
            if problem is None:
                if pending is not None:
                    part.write(pending)
                return digest
            part.reset()
            self.progress.add(-counted)
            counted = 0
            validator = None
            if restarted:
                raise problem
            _logger.warning('%s: downloading it again', problem)
            restarted = True

    def _stream(self, body: Body, write: Callable, hasher, buffer: memoryview) -> int:
        """Write (and hash, when `hasher` is given) the data of an answer; return the size."""
        add, cancelled = self.progress.add, self.cancel.is_set
        pipe = hasher if isinstance(hasher, HashPipe) else None
        update = None if hasher is None else hasher.update
        size = 0
        if body.readinto is None:  # the transport gives its own chunks
            for chunk in body.chunks:
                write(chunk)
                if update is not None:
                    update(chunk)
                n = len(chunk)
                size += n
                add(n)
                if cancelled():
                    raise Cancelled
            return size
        readinto, i = body.readinto, None
        while True:  # read straight into our buffers: no copy, no allocation
            if pipe is not None:
                i, buffer = pipe.take()
            n = readinto(buffer)
            if not n:
                if pipe is not None:
                    pipe.release(i)
                break
            view = buffer if n == len(buffer) else buffer[:n]
            write(view)
            if pipe is not None:
                pipe.submit(i, n)
            elif update is not None:
                update(view)
            size += n
            add(n)
            if cancelled():
                raise Cancelled
        if body.finish is not None:
            body.finish()
        return size

    def _read_whole(self, body: Body, view: memoryview) -> memoryview:
        """Read an answer into `view` (one byte longer than the announced size, so that a longer
        answer is noticed); return the part of `view` filled."""
        readinto, got, end = body.readinto, 0, len(view)
        while got < end:
            n = readinto(view[got:])
            if not n:
                if body.finish is not None:
                    body.finish()
                break
            got += n
        if self.cancel.is_set():
            raise Cancelled
        return view[:got]

    @staticmethod
    def _check(task: DownloadTask, expected: int | None, size: int, digest: str,
               restarted: bool) -> DownloadError | None:
        again = ' (also after downloading it again)' if restarted else ''
        if expected is not None and size != expected:
            return SizeMismatch(f'The download of {task.url} to {task.destination} has {size} '
                                f'bytes, not the expected {expected}{again}', task.url,
                                task.destination, expected, size)
        if task.md5 is not None and digest != task.md5:
            return ChecksumMismatch(f'The download of {task.url} to {task.destination} has md5 '
                                    f'{digest}, not the expected {task.md5}{again}', task.url,
                                    task.destination, task.md5, digest)
        return None

    @staticmethod
    def _part_offset(part: Part, resumable: bool, expected: int | None) -> int:
        """Bytes of the partial file to resume from; an unusable one is emptied."""
        size = part.size()
        if size and resumable and (expected is None or size <= expected):
            return size
        if size:
            part.reset()
        return 0

    def _delay(self, failures: int, retry_after: float | None) -> float:
        return retry_wait(failures, retry_after, MAX_RETRY_AFTER, self.backoff)

    def _timeout_limit(self, task: DownloadTask, kind: str) -> float | None:
        """The timeout of `kind` ('read' or 'connect') in force for a task, in seconds."""
        if task.scheme == 's3':
            config = getattr(getattr(self._s3.client(task), 'meta', None), 'config', None)
            return getattr(config, f'{kind}_timeout', None)
        return (read_limit if kind == 'read' else connect_limit)(self._http.timeout)

    def _final_error(self, task: DownloadTask, error: Transient, attempts: int) -> DownloadError:
        what = f'Could not download {task.url} to {task.destination} ({attempts} attempts)'
        if error.timeout == 'read':
            limit = self._timeout_limit(task, 'read')
            within = '' if limit is None else f' within {limit:g} s'
            return DownloadTimeout(
                f'{what}: the server sent nothing{within} (read timeout), twice; set '
                f'{ENV_TIMEOUT} or timeout=… to wait longer ({error})', task.url,
                task.destination)
        if error.status is not None:
            return HTTPStatusError(f'{what}: {error}', task.url, task.destination,
                                   status_code=error.status)
        return DownloadConnectionError(f'{what}: {error}', task.url, task.destination)
