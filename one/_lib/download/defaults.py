"""The download engine's tunable defaults."""
from __future__ import annotations

import os

from one._lib.http_timeouts import DEFAULT_TIMEOUT

N_THREADS = int(os.environ.get('ONE_HTTP_DL_THREADS', 4))
"""Default number of parallel downloads (environment variable ``ONE_HTTP_DL_THREADS``)."""

CHUNK_SIZE = 1 << 20
"""Bytes read, written and hashed at a time (1 MiB)."""

PIPE_THRESHOLD = 16 * CHUNK_SIZE
"""Transfers at least this long are hashed in a helper thread, overlapping the download."""

RETRIES = 4
"""Default number of retries after a failed attempt (connection error, 408, 429, 5xx)."""

TIMEOUT = DEFAULT_TIMEOUT
"""Default (connect, read) timeouts in seconds of HTTP requests, unless ``ONE_HTTP_TIMEOUT``
sets them (see `one._lib.http_timeouts`)."""

BACKOFF = 0.5
"""Default first retry delay in seconds; it doubles at each retry (with jitter)."""

MAX_BACKOFF = 30.0
"""Longest delay between two attempts, in seconds, unless the server asks for more."""

MAX_RETRY_AFTER = 300.0
"""Longest ``Retry-After`` delay honoured, in seconds."""
