"""md5 of downloads: of a file already on disk, or overlapping the transfer in a thread."""
from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path

from one._download.defaults import CHUNK_SIZE


class NoHash:
    """Stands in for an md5 object when no md5 is wanted."""

    def update(self, data) -> None:
        pass

    def hexdigest(self) -> None:
        return None


class HashPipe:
    """Feeds an md5 object from a helper thread, so that hashing overlaps the transfer.

    The reader takes a free buffer (`take`), fills it, writes it to the file and hands it over
    (`submit`); the helper thread hashes it (hashlib releases the GIL) and frees it.  Data that
    arrive in other buffers go through `update`, which copies them.  Use as a context manager:
    leaving it stops the thread.
    """

    def __init__(self, hasher, n_buffers: int = 4):
        self._hasher = hasher
        self._buffers = [memoryview(bytearray(CHUNK_SIZE)) for _ in range(n_buffers)]
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(n_buffers):
            self._free.put(i)
        self._thread = threading.Thread(target=self._run, daemon=True, name='one-md5')
        self._thread.start()

    def _run(self) -> None:
        update, buffers = self._hasher.update, self._buffers
        while (item := self._todo.get()) is not None:
            i, n = item
            update(buffers[i][:n])
            self._free.put(i)

    def take(self) -> tuple[int, memoryview]:
        """A free buffer (waits while all are being hashed)."""
        i = self._free.get()
        return i, self._buffers[i]

    def submit(self, i: int, n: int) -> None:
        """Hash the first `n` bytes of buffer `i`, then free it."""
        self._todo.put((i, n))

    def release(self, i: int) -> None:
        """Give back an unused buffer."""
        self._free.put(i)

    def update(self, chunk) -> None:
        view = memoryview(chunk)
        for start in range(0, len(view), CHUNK_SIZE):
            piece = view[start:start + CHUNK_SIZE]
            i, buffer = self.take()
            buffer[:len(piece)] = piece
            self.submit(i, len(piece))

    def __enter__(self) -> HashPipe:
        return self

    def __exit__(self, *exc) -> None:
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.__exit__()
        return self._hasher.hexdigest()


def hash_file(path: Path, nbytes: int, buffer: memoryview, wanted: bool = True):
    """An md5 object fed with the first `nbytes` of a file (a `NoHash` if not `wanted`)."""
    if not wanted:
        return NoHash()
    h = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb', buffering=0) as f:
        left = nbytes
        while left > 0:
            n = f.readinto(buffer[:min(left, len(buffer))])
            if not n:
                break
            h.update(buffer[:n])
            left -= n
    return h
