"""How long to wait before trying a request again: one rule for the REST client and downloads.

After a failure that says nothing about when to come back (a gateway error, a reset), the wait
starts at `BACKOFF` seconds and doubles at each new failure up to `MAX_BACKOFF`, then is drawn
between half of that and all of it, so that clients failing together do not all come back at
once.  When the server said when to come back (``Retry-After``), that wait is honoured up to a
cap, plus a random part of up to 0.1 s and 20 % for the same reason.
"""
from __future__ import annotations

import random

__all__ = ['BACKOFF', 'MAX_BACKOFF', 'retry_wait']

BACKOFF = 0.5
"""First wait after a failure, in seconds (doubled at each retry)."""

MAX_BACKOFF = 30.0
"""Longest wait after a failure when the server asked for none, in seconds."""


def retry_wait(failures: int, retry_after: float | None, max_retry_after: float,
               backoff: float = BACKOFF, max_backoff: float = MAX_BACKOFF) -> float:
    """Seconds to wait before the next attempt.

    Parameters
    ----------
    failures : int
        The failed attempts so far (at least 1).
    retry_after : float, optional
        The wait the server asked for (``Retry-After``), if any.
    max_retry_after : float
        Longest ``Retry-After`` honoured.
    backoff, max_backoff : float
        First and longest wait when the server asked for none.

    Examples
    --------
    >>> 0.25 <= retry_wait(1, None, 60) <= 0.5
    True
    >>> 60 <= retry_wait(1, 3600, 60) <= 72.1
    True
    """
    if retry_after is not None:
        wait = min(max(retry_after, 0.0), max_retry_after)
        return wait + random.uniform(0.0, 0.1 + 0.2 * wait)
    base = min(max_backoff, backoff * 2 ** max(failures - 1, 0))
    return base * random.uniform(0.5, 1.0)
