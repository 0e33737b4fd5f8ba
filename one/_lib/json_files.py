"""Small JSON files holding a dict: read leniently, written atomically, optionally private.

Used for parameter files.  A private file is readable and writable by its owner only (mode
0600 on POSIX); reading a private file that others may read tightens its mode (files written
by other programs, e.g. ONE-api, are created 0644).
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import warnings
from pathlib import Path

from one._lib.files import atomic_path

__all__ = ['read_json_dict', 'write_json_dict', 'make_private']

_PRIVATE_MODE = 0o600


def make_private(path: Path) -> None:
    """Make `path` readable by its owner only, if others can read it (POSIX; errors ignored)."""
    if os.name != 'posix':
        return
    with contextlib.suppress(OSError):
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
            os.chmod(path, _PRIVATE_MODE)


def read_json_dict(path: Path, private: bool = False) -> dict | None:
    """Return the dict held in a JSON file.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    private : bool
        The file holds secrets: tighten its mode to 0600 if it is wider.

    Returns
    -------
    dict or None
        None when the file is missing, or unreadable or not a JSON object (with a warning
        naming the file).
    """
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        warnings.warn(f'Ignoring unreadable parameter file {path}')
        return None
    if not isinstance(data, dict):
        warnings.warn(f'Ignoring unreadable parameter file {path}: not a JSON object')
        return None
    if private:
        make_private(path)
    return data


def write_json_dict(path: Path, data: dict, private: bool = True) -> None:
    """Write `data` to `path` atomically as JSON indented by 4 spaces.

    The folder is created if needed (mode 0700).  A `private` file gets mode 0600, otherwise
    0644 (both reduced by the umask, never widened).
    """
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            folder.chmod(0o700)
    text = json.dumps(data, indent=4)
    with atomic_path(path, fsync=False) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0),
                     _PRIVATE_MODE if private else 0o644)
        with open(fd, 'w', encoding='utf-8') as f:
            f.write(text)
        if private:  # the mode given to os.open is reduced by the umask, never widened
            with contextlib.suppress(OSError):
                os.chmod(tmp, _PRIVATE_MODE)
