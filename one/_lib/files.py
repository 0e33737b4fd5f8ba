"""Atomic file writes and md5 hashing of files.

Atomic writes go to a temporary file in the destination folder (so the final rename never
crosses a file system), which is flushed to disk and then moved over the destination with
`os.replace`.  A reader therefore sees either the old file or the new one, never a partial
file, even if the writer is killed.  Temporary files are named ``.<name>.<random>.tmp`` and are
removed when the write fails with an exception; a writer killed by a signal leaves its temporary
file behind (`remove_temp_files` cleans up).

md5 hashes are computed with a reused 1 MiB buffer per thread.  `hash_files` hashes many files in
a thread pool: hashlib releases the GIL while hashing, so large files use all cores.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

__all__ = [
    'atomic_path', 'atomic_open', 'write_bytes_atomic', 'write_text_atomic', 'temp_name',
    'remove_temp_files', 'md5', 'hash_files', 'BUFFER_SIZE',
]

BUFFER_SIZE = 1 << 20
"""Size in bytes of the read buffer used for hashing (1 MiB)."""

_TEMP_SUFFIX = '.tmp'
_local = threading.local()


def temp_name(path: str | os.PathLike) -> Path:
    """Return a fresh temporary file path beside `path`: ``<folder>/.<name>.<random>.tmp``."""
    path = Path(path)
    return path.with_name(f'.{path.name}.{secrets.token_hex(6)}{_TEMP_SUFFIX}')


def _fsync_dir(folder: Path) -> None:
    """Flush a directory entry to disk (POSIX only; a no-op where directories can't be opened)."""
    if os.name != 'posix':
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk (opened for writing where possible: Windows needs it)."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, 'O_BINARY', 0))
    except PermissionError:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_BINARY', 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Give a temporary path to write to; move it over `path` when the block succeeds.

    Parameters
    ----------
    path : str, os.PathLike
        The destination file.  Its folder must exist.
    fsync : bool
        Flush the temporary file and the folder to disk, so the new content survives a power
        cut as well as a killed process.

    Yields
    ------
    pathlib.Path
        A path in the destination folder that does not exist yet.  Write the whole file there.

    Raises
    ------
    FileNotFoundError
        The block did not create the temporary file.

    Notes
    -----
    On an exception (including KeyboardInterrupt) the temporary file is removed and `path` is
    left untouched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / 'data.bin'
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_bytes(b'abc')
    >>> target.read_bytes()
    b'abc'
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = 'wb', fsync: bool = True, **kwargs):
    """Open a file for writing atomically; it replaces `path` when the block succeeds.

    Parameters
    ----------
    path : str, os.PathLike
        The destination file.  Its folder must exist.
    mode : {'wb', 'w'}
        Binary or text mode.
    fsync : bool
        Flush data and folder to disk before returning.
    **kwargs
        Passed to `open` (e.g. ``encoding``, ``newline``).

    Yields
    ------
    file object
        The open temporary file.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f'atomic_open supports modes "w" and "wb", not "{mode}"')
    if mode == 'w':
        kwargs.setdefault('encoding', 'utf-8')
    with atomic_path(path, fsync=False) as tmp:
        # O_EXCL: never write through a file or link that appeared at the temporary name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0),
                     0o666)
        with open(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    if fsync:
        _fsync_dir(Path(path).parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_open(path, 'wb', fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = 'utf-8',
                      fsync: bool = True) -> Path:
    """Write `text` to `path` atomically and return the path."""
    with atomic_open(path, 'w', fsync=fsync, encoding=encoding, newline='') as f:
        f.write(text)
    return Path(path)


def remove_temp_files(folder: str | os.PathLike, name: str) -> list[Path]:
    """Remove the temporary files left beside ``folder/name`` by killed atomic writers.

    Only call this while no live writer of that file can exist (e.g. while holding the lock
    all writers of the file take).

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    folder = Path(folder)
    pattern = re.compile(rf'\.{re.escape(name)}\.[0-9a-f]{{12}}{re.escape(_TEMP_SUFFIX)}')
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry.name):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _buffer() -> memoryview:
    """The calling thread's reusable read buffer."""
    buf = getattr(_local, 'buffer', None)
    if buf is None:
        buf = _local.buffer = memoryview(bytearray(BUFFER_SIZE))
    return buf


def md5(path: str | os.PathLike) -> str:
    """Return the md5 hex digest of a file's content.

    The file is read in 1 MiB blocks into a buffer reused by the calling thread.

    Parameters
    ----------
    path : str, os.PathLike
        The file to hash.

    Returns
    -------
    str
        32 lower-case hexadecimal characters.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / 'a.txt'
    >>> _ = f.write_bytes(b'abc')
    >>> md5(f)
    '900150983cd24fb0d6963f7d28e17f72'
    """
    buf = _buffer()
    h = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb', buffering=0) as f:
        readinto = f.readinto
        update = h.update
        while n := readinto(buf):
            update(buf[:n])
    return h.hexdigest()


def show_progress(progress: bool | None) -> bool:
    """Whether to show a progress bar: as asked, or by default when stderr is a terminal or
    the code runs in a Jupyter kernel (where `tqdm.auto` draws a widget)."""
    if progress is not None:
        return bool(progress)
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return in_notebook()


def in_notebook() -> bool:
    """True when running in a Jupyter (IPython) kernel."""
    ipython = sys.modules.get('IPython')  # never imported here: only if the kernel did
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a broken IPython: no notebook
        return False
    return shell is not None and getattr(shell, 'kernel', None) is not None


def _batches(order: Sequence[int], sizes: Sequence[int], max_bytes: int, max_files: int):
    """Group file indices into batches of about `max_bytes` or `max_files` each."""
    batch, nbytes = [], 0
    for i in order:
        batch.append(i)
        nbytes += sizes[i]
        if nbytes >= max_bytes or len(batch) >= max_files:
            yield batch, nbytes
            batch, nbytes = [], 0
    if batch:
        yield batch, nbytes


def hash_files(paths: Sequence[str | os.PathLike], sizes: Sequence[int] | None = None,
               workers: int | None = None, progress: bool | None = None,
               hasher: Callable[[str | os.PathLike], str] = md5) -> list[str]:
    """Hash many files in parallel threads.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The files to hash.
    sizes : sequence of int, optional
        The file sizes in bytes, if already known (used to balance the work and for the
        progress bar); files are stat'ed otherwise.
    workers : int, optional
        Number of threads; defaults to the number of CPUs (at least 2).
    progress : bool, optional
        Show a tqdm progress bar (in bytes).  By default it is shown only when stderr is a
        terminal.
    hasher : callable
        Function returning the digest of one file (default `md5`).

    Returns
    -------
    list of str
        The digests, in the order of `paths`.

    Raises
    ------
    OSError
        A file could not be read (the first error met is raised).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> files = [d / 'a', d / 'b']
    >>> for f in files: _ = f.write_bytes(b'abc')
    >>> hash_files(files)
    ['900150983cd24fb0d6963f7d28e17f72', '900150983cd24fb0d6963f7d28e17f72']
    """
    paths = list(paths)
    n = len(paths)
    if n == 0:
        return []
    if sizes is None:
        sizes = [os.stat(p).st_size for p in paths]
    elif len(sizes) != n:
        raise ValueError(f'{len(sizes)} sizes given for {n} files')
    workers = workers or max(2, os.cpu_count() or 1)
    out: list = [None] * n
    # Largest first so the big files start early and the small ones fill the gaps
    order = sorted(range(n), key=sizes.__getitem__, reverse=True)
    # Batches amortise the per-task overhead of the pool for small files
    batches = list(_batches(order, sizes, max_bytes=32 * BUFFER_SIZE, max_files=256))

    def work(batch: list[int]) -> None:
        for i in batch:
            out[i] = hasher(paths[i])

    show = show_progress(progress)
    bar = None
    if show:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(sizes), unit='B', unit_scale=True, unit_divisor=1024,
                   desc='Hashing files')
    try:
        if workers == 1 or len(batches) == 1:
            for batch, nbytes in batches:
                work(batch)
                if bar is not None:
                    bar.update(nbytes)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(work, batch): nbytes for batch, nbytes in batches}
                try:
                    for future in as_completed(futures):
                        future.result()
                        if bar is not None:
                            bar.update(futures[future])
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        if bar is not None:
            bar.close()
    return out
