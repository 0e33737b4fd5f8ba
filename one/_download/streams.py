"""How many files to download at once: enough streams to hide the latency, not more.

Over a long-distance link a small file costs a round trip however fast the link is, so many
small files need many concurrent streams; a large file is limited by the bandwidth, which a few
streams already fill.  `choose_streams` picks, for a batch, one stream per file up to:

* `TINY_STREAMS` (32) for tiny files (below `TINY_FILE`, 1 MiB: a round trip each);
* `SMALL_STREAMS` (16) more for small files (below `LARGE_FILE`, 8 MiB);
* `LARGE_STREAMS` (4) more for large files;

and never more than `MAX_STREAMS` (32) in all, nor than `max_per_host()` per server (files of
unknown size count as tiny: Alyx records give sizes).

``ONE_HTTP_DL_THREADS`` (ONE's variable) and the `n_threads` argument of the download functions
set the number instead of this choice; ``ONE_HTTP_DL_MAX_PER_HOST`` sets the bound per server
(default 32), which applies to every batch.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ['choose_streams', 'max_per_host', 'MAX_STREAMS', 'TINY_FILE', 'LARGE_FILE',
           'TINY_STREAMS', 'SMALL_STREAMS', 'LARGE_STREAMS']

MAX_STREAMS = 32
"""The most concurrent downloads chosen automatically (many tiny files)."""

TINY_FILE = 1 << 20
"""Files below this many bytes (1 MiB) are tiny: their transfer is a round trip."""

LARGE_FILE = 8 << 20
"""Files of at least this many bytes (8 MiB) count as large: bandwidth-bound."""

TINY_STREAMS = 32
"""The most concurrent downloads of tiny files chosen automatically."""

SMALL_STREAMS = 16
"""The most concurrent downloads of small files (1 to 8 MiB) chosen automatically."""

LARGE_STREAMS = 4
"""The most concurrent downloads of large files chosen automatically."""

DEFAULT_MAX_PER_HOST = 32
"""Default bound of concurrent downloads from one server (``ONE_HTTP_DL_MAX_PER_HOST``)."""

_THREADS_VARIABLE = 'ONE_HTTP_DL_THREADS'
_PER_HOST_VARIABLE = 'ONE_HTTP_DL_MAX_PER_HOST'


def _positive_int(name: str) -> int | None:
    value = os.environ.get(name, '').strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f'{name} must be a whole number, not "{value}"') from None
    if number < 1:
        raise ValueError(f'{name} must be at least 1, not {number}')
    return number


def max_per_host() -> int:
    """The most concurrent downloads from one server (``ONE_HTTP_DL_MAX_PER_HOST``, 32)."""
    return _positive_int(_PER_HOST_VARIABLE) or DEFAULT_MAX_PER_HOST


def configured_streams() -> int | None:
    """The number of parallel downloads set by ``ONE_HTTP_DL_THREADS``, or None."""
    return _positive_int(_THREADS_VARIABLE)


def choose_streams(sizes: Sequence[int | None]) -> int:
    """The number of concurrent downloads for files of these sizes (see the module docstring).

    Parameters
    ----------
    sizes : sequence of int or None
        The expected size of each file in bytes (None: unknown).

    Returns
    -------
    int
        At least 1 (for a non-empty batch); ``ONE_HTTP_DL_THREADS`` when it is set.

    Examples
    --------
    >>> choose_streams([4096] * 2400)
    32
    >>> choose_streams([4096] * 12)
    12
    >>> choose_streams([4 << 20] * 100)
    16
    >>> choose_streams([2 << 30] * 10)
    4
    >>> choose_streams([2 << 30] * 2 + [1024] * 5)
    7
    """
    configured = configured_streams()
    if configured is not None:
        return configured
    n_large = sum(1 for s in sizes if s is not None and s >= LARGE_FILE)
    n_small = sum(1 for s in sizes if s is not None and TINY_FILE <= s < LARGE_FILE)
    n_tiny = len(sizes) - n_large - n_small
    wanted = (min(n_tiny, TINY_STREAMS) + min(n_small, SMALL_STREAMS)
              + min(n_large, LARGE_STREAMS))
    return max(1, min(MAX_STREAMS, wanted))
