"""The progress bar of a batch of downloads."""
from __future__ import annotations

import threading
import time


class NoProgress:
    """No bar: every update is ignored."""

    def add(self, n: int) -> None:
        pass

    def grow(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class Progress(NoProgress):
    """One tqdm bar (bytes) shared by all the files of a batch; updates throttled."""

    def __init__(self, total: int, desc: str):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total or None, unit='B', unit_scale=True, unit_divisor=1024,
                         desc=desc, miniters=1, mininterval=0.2)
        self._lock = threading.Lock()
        self._pending = 0
        self._last = 0.0

    def add(self, n: int) -> None:
        """Count `n` more bytes done (negative: bytes thrown away)."""
        with self._lock:
            self._pending += n
            now = time.monotonic()
            if now - self._last >= 0.2:
                self._bar.update(self._pending)
                self._pending, self._last = 0, now

    def grow(self, n: int) -> None:
        """Add `n` bytes to the total (a file whose size was unknown)."""
        with self._lock:
            self._bar.total = (self._bar.total or 0) + n
            self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._bar.update(self._pending)
                self._pending = 0
            self._bar.close()
