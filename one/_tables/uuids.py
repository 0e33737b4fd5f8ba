"""Canonical UUID strings built from bytes, many at a time (no `uuid.UUID` objects)."""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

import numpy as np

__all__ = ['DASH_POSITIONS', 'HEX_POSITIONS', 'uuid_chars', 'uuid_strings', 'uuid3_strings']


_HEX_DIGITS = np.frombuffer(b'0123456789abcdef', dtype=np.uint8)
DASH_POSITIONS = np.array([8, 13, 18, 23])
"""The positions of the dashes in a canonical UUID string."""
HEX_POSITIONS = np.setdiff1d(np.arange(36), DASH_POSITIONS)
"""The positions of the 32 hex digits in a canonical UUID string."""


def uuid_chars(raw: np.ndarray) -> np.ndarray:
    """The characters of the canonical UUID strings of rows of 16 bytes: (n, 36) uint8."""
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1, 16)
    n = len(raw)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    chars = np.full((n, 36), ord('-'), dtype=np.uint8)
    chars[:, HEX_POSITIONS] = _HEX_DIGITS[nibbles]
    return chars


def uuid_strings(raw: np.ndarray) -> list[str]:
    """Format rows of 16 bytes as canonical UUID strings (vectorised)."""
    chars = uuid_chars(raw)
    text = chars.tobytes().decode('ascii')
    return [text[i:i + 36] for i in range(0, 36 * len(chars), 36)]


def uuid3_strings(names: Iterable[str], namespace: uuid.UUID) -> list[str]:
    """``str(uuid.uuid3(namespace, name))`` for many names, without building UUID objects."""
    ns = namespace.bytes
    md5 = hashlib.md5
    digests = b''.join([md5(ns + name.encode()).digest() for name in names])
    raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x30  # version 3
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return uuid_strings(raw)
