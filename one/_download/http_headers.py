"""HTTP header values: ``Retry-After``, ``Content-Range``, basic auth, redirect rules."""
from __future__ import annotations

import base64
import email.utils
import re
from datetime import datetime, timezone
from urllib.parse import urlsplit


def http_date(value: str | None) -> datetime | None:
    """An HTTP date (``Date``, ``Last-Modified``...) as an aware datetime (UTC when it names no
    zone); None when missing or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay in seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = http_date(value)
    if when is None:
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


_CONTENT_RANGE = re.compile(r'\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*', re.I)


def content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """Parse ``bytes first-last/total`` (or ``bytes */total``) into integers (None for '*')."""
    match = _CONTENT_RANGE.fullmatch(value or '')
    if not match:
        return None
    first, last, total = match.groups()
    return (None if first is None else int(first), None if last is None else int(last),
            None if total == '*' else int(total))


def window_size(first: int, last: int | None, full: int | None) -> int | None:
    """Size of the requested window ``first..last`` (None: to the end) of a `full`-byte file."""
    if last is None:
        return None if full is None else full - first
    return last + 1 - first if full is None else min(full, last + 1) - first


def is_pair(auth) -> bool:
    """Whether `auth` is a ``(username, password)`` tuple (basic authentication)."""
    return isinstance(auth, tuple) and len(auth) == 2


def basic_auth(username, password) -> str:
    """The ``Authorization`` value of HTTP basic authentication (latin-1, as requests)."""
    def raw(x) -> bytes:
        return x if isinstance(x, bytes) else str(x).encode('latin1')

    return 'Basic ' + base64.b64encode(raw(username) + b':' + raw(password)).decode('ascii')


def without_auth(headers: dict) -> dict:
    """A copy of `headers` without ``Authorization`` (whatever its case)."""
    return {k: v for k, v in headers.items() if k.lower() != 'authorization'}


_DEFAULT_PORTS = {'http': 80, 'https': 443}


def strip_auth(old: str, new: str) -> bool:
    """Whether a redirect from `old` to `new` must drop the ``Authorization`` header: when it
    leads to another host, port or scheme, except from http to https (requests' rule)."""
    o, n = urlsplit(old), urlsplit(new)
    if o.hostname != n.hostname:
        return True
    if o.scheme == 'http' and o.port in (80, None) and n.scheme == 'https' \
            and n.port in (443, None):
        return False
    default = (_DEFAULT_PORTS.get(o.scheme), None)
    if o.scheme == n.scheme and o.port in default and n.port in default:
        return False
    return o.port != n.port or o.scheme != n.scheme
