"""One-time moves of parameter files and REST caches left by earlier software.

* Earlier one-next releases kept their parameters in the platform's configuration folder (see
  `old_one_next_dir`).  `move_old_settings` merges them into ONE's parameter folder and deletes
  them, so it happens once.  Where both folders hold a value for the same key, the value of the
  more recently modified file wins; the logins (``TOKEN``) and the client map (``CLIENT_MAP``)
  are merged entry by entry the same way.
* Old ONE-api versions kept REST responses in ``<params dir>/.rest/<client key>/<scheme>``;
  `move_rest_cache` moves that folder to ``<cache dir>/.rest`` (unless a REST cache is already
  there) and deletes the old folder of the client, as ONE-api does.

The callers (`one.params`) hold the lock of the parameter folder.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

from one._lib.files import temp_name
from one._lib.json_files import read_json_dict, write_json_dict

__all__ = ['old_one_next_dir', 'has_old_settings', 'move_old_settings', 'move_rest_cache']

_logger = logging.getLogger(__name__)
_MAP_NAME = '.caches'
_REMOTE_NAME = '.remote'
_LOCK_NAMES = ('.params.lock', '.remote.lock')


def old_one_next_dir() -> Path:
    """The folder where earlier one-next releases kept their parameters.

    The user configuration folder of the application 'one' as the ``platformdirs`` package
    names it: ``$XDG_CONFIG_HOME/one`` or ``~/.config/one`` on Linux,
    ``~/Library/Application Support/one`` on macOS, ``%LOCALAPPDATA%\\one`` on Windows.
    """
    if sys.platform == 'win32':
        root = os.environ.get('LOCALAPPDATA', '').strip() or Path.home() / 'AppData' / 'Local'
    elif sys.platform == 'darwin':
        root = Path.home() / 'Library' / 'Application Support'
    else:
        root = os.environ.get('XDG_CONFIG_HOME', '').strip() or Path.home() / '.config'
    return Path(root) / 'one'


def has_old_settings(old_dir: Path) -> bool:
    """True if `old_dir` holds parameter files to move."""
    return (old_dir / _MAP_NAME).is_file() or (old_dir / _REMOTE_NAME).is_file()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _merge(current: dict, incoming: dict, incoming_wins: bool) -> dict:
    """Union of two parameter dicts; on a conflict the winner's value is kept.

    Values that are dicts on both sides (logins, client map, remote clients) are merged key by
    key with the same rule.
    """
    merged = dict(current)
    for key, value in incoming.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = _merge(merged[key], value, incoming_wins)
        elif incoming_wins:
            merged[key] = value
    return merged


def _move_file(src: Path, dst: Path, private: bool) -> bool:
    """Merge the JSON dict of `src` into `dst`; True if `src` held one."""
    incoming = read_json_dict(src)
    if incoming is None:
        return False
    current = read_json_dict(dst)
    if current is None:
        merged = incoming
    else:
        merged = _merge(current, incoming, incoming_wins=_mtime(src) > _mtime(dst))
    if merged != current:
        write_json_dict(dst, merged, private=private)
    return True


def move_old_settings(old_dir: Path, new_dir: Path) -> list[str]:
    """Merge the parameter files of `old_dir` into `new_dir`, then delete them from `old_dir`.

    Parameters
    ----------
    old_dir : pathlib.Path
        one-next's former parameter folder (`old_one_next_dir`).
    new_dir : pathlib.Path
        ONE's parameter folder.

    Returns
    -------
    list of str
        The names of the files moved.
    """
    if not has_old_settings(old_dir) or old_dir.resolve() == new_dir.resolve():
        return []
    client_map = read_json_dict(old_dir / _MAP_NAME) or {}
    names = [f'.{key}' for key in client_map.get('CLIENT_MAP') or {}] + [_REMOTE_NAME]
    moved = [name for name in names
             if _move_file(old_dir / name, new_dir / name, private=True)]
    if _move_file(old_dir / _MAP_NAME, new_dir / _MAP_NAME, private=False):
        moved.append(_MAP_NAME)
    for name in [*names, _MAP_NAME, *_LOCK_NAMES]:
        with contextlib.suppress(OSError):
            (old_dir / name).unlink()
    with contextlib.suppress(OSError):
        old_dir.rmdir()  # only if nothing else is left in it
    if moved:
        _logger.info('Moved the parameters in %s to %s', old_dir, new_dir)
    return moved


def move_rest_cache(params_dir: Path, client_key: str, scheme: str, cache_dir: Path) -> bool:
    """Move an old REST cache ``<params_dir>/.rest/<client_key>/<scheme>`` to the cache folder.

    The folder becomes ``<cache_dir>/.rest`` unless that exists already; then the client's
    old folder (``<params_dir>/.rest/<client_key>``) is deleted either way (a REST cache only
    saves requests).  If the move fails, nothing is deleted.

    Returns
    -------
    bool
        True if an old REST cache was found.
    """
    client_root = params_dir / '.rest' / client_key
    legacy = client_root / scheme
    if not legacy.is_dir():
        return False
    target = Path(cache_dir) / '.rest'
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(legacy, target)  # same file system: a rename
            except OSError:
                if not target.exists():  # another file system: copy, then rename
                    staging = temp_name(target)
                    try:
                        shutil.copytree(legacy, staging)
                        os.replace(staging, target)
                    finally:
                        shutil.rmtree(staging, ignore_errors=True)
            _logger.info('Moved the REST cache %s to %s', legacy, target)
    except OSError as ex:  # kept where it is, to try again next time
        _logger.warning('Could not move the REST cache %s to %s: %s', legacy, target, ex)
        return True
    shutil.rmtree(client_root, ignore_errors=True)
    return True
