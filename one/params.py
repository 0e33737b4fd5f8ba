"""ONE's parameters: which Alyx databases are set up, their credentials and data folders.

The files are ONE-api's, in its folder and format, so that both read and write the same set-up:
``~/.one`` (``%APPDATA%\\.one`` on Windows), or the folder named by the ``ONE_PARAMS_DIR``
environment variable:

* ``.caches`` - the client map ``{"CLIENT_MAP": {<client key>: "<data folder>"},
  "DEFAULT": <client key>}``;
* ``.<client key>`` - one file per database: ``ALYX_URL``, ``ALYX_LOGIN``,
  ``HTTP_DATA_SERVER``, ``HTTP_DATA_SERVER_LOGIN``, ``HTTP_DATA_SERVER_PWD`` and the login
  tokens ``TOKEN = {<user>: {"token": ...}}``.  These files are readable by their owner only
  (mode 0600; a file that others may read, e.g. written by ONE-api, is tightened when read);
* ``.remote`` - the parameters of the remote download clients (`one.remote.base`).

The client key of a database is derived from its URL (`client_key`), e.g.
``openalyx.internationalbrainlab.org`` or ``127.0.0.1_8000``.  Files are JSON indented by 4
spaces, written atomically under an inter-process lock (``.params.lock``).  Parameters are
returned as immutable named tuples (`IBLParams`) with ``set(key, value)`` (a modified copy) and
``as_dict()``.

Moved once, on first use (see `one._params_moves`): parameters that earlier one-next releases
kept in the platform's configuration folder (e.g. ``~/.config/one``), merged into ``~/.one``;
and the REST cache of old ONE-api versions (``~/.one/.rest/<host>/<scheme>``; the folder named by
the client key is looked for too), moved to ``<data folder>/.rest``.  Both are checked once per
process.

Environment variables read by a silent `setup` (arguments take precedence):
``ONE_ALYX_URL``, ``ONE_ALYX_LOGIN``, ``ONE_HTTP_DATA_SERVER``, ``ONE_HTTP_DATA_SERVER_LOGIN``,
``ONE_HTTP_DATA_SERVER_PWD`` and ``ONE_CACHE_DIR``.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import os
import re
import unicodedata
import warnings
from getpass import getpass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from one import _params_moves
from one._lib.json_files import read_json_dict, write_json_dict
from one._lib.locks import file_lock

__all__ = ['default', 'setup', 'get', 'get_default_client', 'save', 'get_cache_dir',
           'get_params_dir', 'check_cache_conflict', 'delete_params', 'client_map', 'client_key',
           'normalize_url', 'CACHE_DIR_DEFAULT', 'IBLParams']

_PAR_ID_STR = 'one'
_CLIENT_ID_STR = 'caches'
CACHE_DIR_DEFAULT = str(Path.home() / 'Downloads' / 'ONE')
"""The root of the default data folders: ``<CACHE_DIR_DEFAULT>/<client key>``."""

_DEFAULTS = {
    'ALYX_URL': 'https://openalyx.internationalbrainlab.org',
    'ALYX_LOGIN': 'intbrainlab',
    'HTTP_DATA_SERVER': 'https://ibl.flatironinstitute.org/public',
    'HTTP_DATA_SERVER_LOGIN': None,
    'HTTP_DATA_SERVER_PWD': None,
}
_URL_KEYS = ('ALYX_URL', 'HTTP_DATA_SERVER')
_SECRET_KEYS = ('HTTP_DATA_SERVER_PWD', 'ALYX_PWD')
_ENV_PREFIX = 'ONE_'
_LOCK_NAME = '.params.lock'


# --------------------------------------------------------------------------------------------
# Immutable parameter objects
# --------------------------------------------------------------------------------------------
class IBLParams:
    """Base of the parameter objects: immutable named tuples with `set` and `as_dict`.

    Each object is a named tuple whose fields are the parameter names (its class is made once
    per set of names); ``isinstance(par, IBLParams)`` recognises them all.
    """

    __slots__ = ()

    def set(self, field: str, value: Any) -> IBLParams:
        """Return a copy with `field` set to `value` (added if missing)."""
        return _to_params({**self.as_dict(), field: value})

    def as_dict(self) -> dict:
        """Return the parameters as a plain dict."""
        return dict(zip(self._keys, self))

    @staticmethod
    def from_dict(d: dict | None) -> IBLParams | None:
        """Make a parameter object from a dict (None for an empty or missing dict)."""
        return _to_params(d)

    def __repr__(self) -> str:
        shown = {k: ('*****' if k in _SECRET_KEYS and v else
                     {u: '<token>' for u in v} if k == 'TOKEN' and isinstance(v, dict) else v)
                 for k, v in self.as_dict().items()}
        return 'IBLParams(' + ', '.join(f'{k}={v!r}' for k, v in shown.items()) + ')'

    __str__ = __repr__

    def __reduce__(self):
        return _to_params, (self.as_dict(),)


@functools.lru_cache(maxsize=64)
def _params_class(fields: tuple[str, ...]) -> type:
    # keys that are not identifiers get positional field names (_0, ...); `_keys` keeps them
    base = collections.namedtuple('IBLParams', fields, rename=True)
    return type('IBLParams', (IBLParams, base), {'__slots__': (), '_keys': fields})


def _to_params(d: dict | None) -> IBLParams | None:
    """Make an immutable parameter object from a dict (None for an empty dict)."""
    if not d:
        return None
    return _params_class(tuple(d))(*d.values())


def _as_dict(par) -> dict:
    if par is None:
        return {}
    if isinstance(par, IBLParams):
        return par.as_dict()
    if hasattr(par, '_asdict'):
        return dict(par._asdict())
    return dict(par)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def get_params_dir() -> Path:
    """Return the folder holding ONE's parameter files.

    ``$ONE_PARAMS_DIR`` when set, else ONE-api's folder: ``~/.one`` (``%APPDATA%\\.one`` on
    Windows).
    """
    if os.environ.get('ONE_PARAMS_DIR'):
        return Path(os.environ['ONE_PARAMS_DIR'])
    return _one_api_params_dir()


def _one_api_params_dir() -> Path:
    """ONE-api's parameter folder (``~/.one``, ``%APPDATA%\\.one`` on Windows)."""
    root = Path(os.environ['APPDATA']) if os.name == 'nt' and os.environ.get('APPDATA') \
        else Path.home()
    return root / f'.{_PAR_ID_STR}'


def _params_file(name: str) -> Path:
    """The file of a parameter set: ``<params dir>/.<name>``."""
    return get_params_dir() / f'.{name}'


def _read_client(key: str) -> dict | None:
    """The stored parameters of a database client (None if it has none)."""
    return read_json_dict(_params_file(key), private=True)


@contextlib.contextmanager
def _locked():
    """Hold the lock of the parameter folder (serialises read-modify-write cycles)."""
    folder = get_params_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / _LOCK_NAME, timeout=30):
        yield


_CHECKED_MOVES: set = set()  # the one-time moves looked for in this process (see below)


def _move_old_settings() -> None:
    """Move the parameters an earlier one-next kept in the platform's configuration folder.

    Only without ``$ONE_PARAMS_DIR`` (earlier versions honoured it too, so its files are
    already there).  Once moved, the old files are deleted: this runs once, and each process
    looks for them once.
    """
    if os.environ.get('ONE_PARAMS_DIR'):
        return
    old_dir, new_dir = _params_moves.old_one_next_dir(), get_params_dir()
    checked = ('settings', str(old_dir), str(new_dir))
    if checked in _CHECKED_MOVES:
        return
    if _params_moves.has_old_settings(old_dir):
        try:
            with _locked():
                _params_moves.move_old_settings(old_dir, new_dir)
        except OSError as ex:  # e.g. a read-only home: use what is in the parameter folder
            warnings.warn(f'Could not move the parameters in {old_dir} to {new_dir}: {ex}')
            return  # tried again next time
    _CHECKED_MOVES.add(checked)


def _read_map() -> dict:
    """The client map ({} when no client has been set up)."""
    _move_old_settings()
    return read_json_dict(_params_file(_CLIENT_ID_STR)) or {}


def client_map() -> dict[str, str]:
    """The configured databases: client key -> data folder ({} when none is set up).

    Examples
    --------
    >>> client_map()  # doctest: +SKIP
    {'openalyx.internationalbrainlab.org': '/home/me/Downloads/ONE/openalyx...'}
    """
    return dict(_read_map().get('CLIENT_MAP') or {})


def client_key(url: str) -> str:
    """The client key of a database URL: the name of its parameter file (``.<key>``) and of
    its default data folder.

    Examples
    --------
    >>> client_key('https://openalyx.internationalbrainlab.org/')
    'openalyx.internationalbrainlab.org'
    >>> client_key('http://127.0.0.1:8000')
    '127.0.0.1_8000'
    """
    return _key_from_url(url)


def normalize_url(url: str, name: str = 'ALYX_URL') -> str:
    """A URL as it is stored: ``https://`` added when it has no scheme, no trailing ``/``.

    Parameters
    ----------
    url : str
        The URL (e.g. ``'alyx.example.org/'``).
    name : str
        The parameter it is for, named in the error.

    Returns
    -------
    str
        The URL.

    Raises
    ------
    ValueError
        Not an http(s) URL.

    Examples
    --------
    >>> normalize_url('alyx.example.org/')
    'https://alyx.example.org'
    """
    return _validate_url(name, url)


# --------------------------------------------------------------------------------------------
# Keys, defaults and validation
# --------------------------------------------------------------------------------------------
def _key_from_url(url: str) -> str:
    """Return the client key of a database URL (used as its parameter file name).

    Examples
    --------
    >>> _key_from_url('https://sub.domain.org/')
    'sub.domain.org'
    >>> _key_from_url('http://www.domain.org/db/?rest=True')
    'www.domain.org_db__rest_true'
    >>> _key_from_url('localhost:8000')
    'localhost_8000'
    """
    key = unicodedata.normalize('NFKC', str(url))
    key = re.sub(r'^https?://', '', key).strip('/').lower()
    key = re.sub(r'[^.\w\s-]', '_', key)
    return re.sub(r'[-\s]+', '-', key)


def default() -> IBLParams:
    """Return the default parameters of a database client (the public IBL database)."""
    return _to_params(dict(_DEFAULTS))


def _validate_url(key: str, value: str) -> str:
    """Normalise a URL answer: strip '/', add 'https://' when no scheme; check it."""
    value = str(value).strip().rstrip('/')
    if '://' not in value:
        value = 'https://' + value
    parts = urlsplit(value)
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise ValueError(f'{key} must be valid HTTP URL')
    return value


def _env(key: str) -> str | None:
    value = os.environ.get(_ENV_PREFIX + key)
    return value if value not in (None, '') else None


def _client_map_entry(cache_map: dict, key: str) -> str | None:
    return (cache_map.get('CLIENT_MAP') or {}).get(key)


def _conflicting_client(cache_map: dict, key: str, cache_dir) -> str | None:
    """The other client already using `cache_dir` as its data folder, if any."""
    for other, folder in (cache_map.get('CLIENT_MAP') or {}).items():
        if other != key and folder and _same_path(folder, cache_dir):
            return other
    return None


def _same_path(a, b) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return str(a) == str(b)


def _ask(prompt: str) -> str:
    """Prompt for an answer; quotation marks around it are stripped if the user agrees."""
    answer = input(prompt).strip()
    if len(answer) >= 2 and answer[0] == answer[-1] and answer[0] in '"\'`':
        warnings.warn('Do not use quotation marks with input answers', UserWarning)
        if input('Strip quotation marks from response? [Y/n]:').strip().lower() != 'n':
            answer = answer[1:-1]
    return answer


def _yes(prompt: str) -> bool:
    return input(prompt).strip().lower() not in ('n', 'no')


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------
def setup(client: str | None = None, silent: bool = False, make_default: bool | None = None,
          username: str | None = None, cache_dir: str | os.PathLike | None = None,
          keep: tuple[str, ...] = (), **kwargs) -> IBLParams:
    """Set up (or change) the parameters of a database client.

    Parameters
    ----------
    client : str, optional
        The Alyx database URL; the public IBL database when None (``$ONE_ALYX_URL`` in silent
        mode).
    silent : bool
        Never prompt: take every value from the arguments, then the ``ONE_*`` environment
        variables, then the stored parameters, then the defaults.
    make_default : bool, optional
        Make this the default database.  None: ask (interactive), or only when there is no
        default yet (silent).
    username : str, optional
        The Alyx login name (``ALYX_LOGIN``).
    cache_dir : str, os.PathLike, optional
        The data folder; by default the stored one or ``<CACHE_DIR_DEFAULT>/<client key>``.
    keep : tuple of str
        Stored values to carry over unless a new value is given (as an argument, an
        environment variable or an answer), e.g. ``('TOKEN', 'ALYX_PWD')``; they are read
        under the lock of the parameter folder, in the same update as the new values, so a
        login saved meanwhile by another process is not lost.
    **kwargs
        Other parameter values by name (case-insensitive), e.g.
        ``HTTP_DATA_SERVER='https://data.org'``, ``http_data_server_pwd='…'``.

    Returns
    -------
    IBLParams
        The client map (``CLIENT_MAP``, ``DEFAULT``); when an interactive set-up is abandoned,
        the unchanged parameters of the client.

    Raises
    ------
    ValueError
        A URL is not a valid http(s) URL.
    TypeError
        An unknown parameter name was given.
    """
    overrides = {}
    for name, value in kwargs.items():
        key = name.upper()
        if key not in _DEFAULTS and key != 'ALYX_PWD':
            raise TypeError(f'setup() got an unexpected parameter "{name}"; known: '
                            f'{", ".join([*_DEFAULTS, "ALYX_PWD"])}')
        overrides[key] = value
    client = client or overrides.get('ALYX_URL')
    if silent:
        client = client or _env('ALYX_URL')
    elif not client:  # ask for the database first: it decides which parameters are current
        answer = _ask(f'Param ALYX_URL, current value is ["{_DEFAULTS["ALYX_URL"]}"]:')
        client = answer or None
    url = _validate_url('ALYX_URL', client or _DEFAULTS['ALYX_URL'])
    key = _key_from_url(url)
    cache_map = _read_map()
    stored = _read_client(key) or {}
    if silent and key == _key_from_url(_DEFAULTS['ALYX_URL']):
        par = dict(_DEFAULTS)  # silent set-up of the public database resets it
    else:
        par = {**_DEFAULTS, **stored}
    par['ALYX_URL'] = url
    par.pop('CACHE_DIR', None)
    if silent:
        par = {k: par.get(k) for k in _DEFAULTS}  # only the standard keys are kept
        par.update({k: _env(k) for k in _DEFAULTS if k != 'ALYX_URL' and _env(k) is not None})
    par.update({k: v for k, v in overrides.items() if k != 'ALYX_URL'})
    if username:
        par['ALYX_LOGIN'] = username
    given = {*overrides, *(['ALYX_LOGIN'] if username else [])}
    if silent:
        given.update(k for k in _DEFAULTS if _env(k) is not None)

    if silent:
        folder = cache_dir or _env('CACHE_DIR') or _client_map_entry(cache_map, key) or \
            Path(CACHE_DIR_DEFAULT, key)
        other = _conflicting_client(cache_map, key, folder)
        if other:
            warnings.warn(f'The cache directory {folder} is already the data folder of '
                          f'another database ({other})', UserWarning)
    else:
        for k in _DEFAULTS:
            if k == 'ALYX_URL' or k.endswith('_PWD') or k in overrides:
                continue
            answer = _ask(f'Param {k}, current value is ["{par.get(k)}"]:')
            if answer:
                par[k] = _validate_url(k, answer) if k in _URL_KEYS else answer
                given.add(k)
        if 'HTTP_DATA_SERVER_PWD' not in overrides:
            pwd = getpass(f'Enter the FlatIron HTTP password for '
                          f'{par.get("HTTP_DATA_SERVER_LOGIN")} (leave empty to keep current): ')
            if pwd:
                par['HTTP_DATA_SERVER_PWD'] = pwd
                given.add('HTTP_DATA_SERVER_PWD')
        if 'ALYX_PWD' in stored and 'ALYX_PWD' not in overrides:
            pwd = getpass(f'Enter the Alyx password for {par.get("ALYX_LOGIN")} '
                          '(leave empty to keep current):')
            if pwd:
                par['ALYX_PWD'] = pwd
                given.add('ALYX_PWD')
        default_folder = cache_dir or _client_map_entry(cache_map, key) or \
            Path(CACHE_DIR_DEFAULT, key)
        while True:
            answer = _ask('Enter the location of the download cache, current value is '
                          f'["{default_folder}"]:')
            folder = answer or default_folder
            other = _conflicting_client(cache_map, key, folder)
            if not other or not _yes(
                    f'Warning: the directory provided is already a cache for another URL '
                    f'({other}). This may cause problems. Would you like to change the cache '
                    'location? [Y/n]'):
                break
        if make_default is None:
            make_default = _yes('Would you like to set this URL as the default one? [Y/n]')
        if not _yes('Are the above settings correct? [Y/n]'):
            print('SETUP ABANDONED.  Please re-run.')
            folder = _client_map_entry(cache_map, key)
            return _to_params({**stored, 'CACHE_DIR': folder}) if stored else None
    for k in _URL_KEYS:
        if par.get(k):
            par[k] = _validate_url(k, par[k])

    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    with _locked():
        on_disk = _read_client(key) or {}
        if not silent and on_disk.get('TOKEN'):
            par['TOKEN'] = on_disk['TOKEN']  # an interactive set-up keeps the logins
        for k in keep:
            if k not in given and on_disk.get(k) is not None:
                par[k] = on_disk[k]
        write_json_dict(_params_file(key), par, private=True)
        cache_map = read_json_dict(_params_file(_CLIENT_ID_STR)) or {}  # the lock is held
        cache_map.setdefault('CLIENT_MAP', {})[key] = str(folder)
        if make_default or not cache_map.get('DEFAULT'):
            cache_map['DEFAULT'] = key
        write_json_dict(_params_file(_CLIENT_ID_STR), cache_map, private=False)
    if not silent:
        print(f'ONE Parameter files location: {get_params_dir()}')
    return _to_params(cache_map)


def get(client: str | None = None, silent: bool = False, username: str | None = None, *,
        cache_dir: str | os.PathLike | None = None) -> IBLParams:
    """Return the parameters of a database client, setting it up first if it is unknown.

    Parameters
    ----------
    client : str, optional
        The database URL (or client key); the default database when None.
    silent : bool
        Set up an unknown client without prompting (see `setup`).
    username : str, optional
        Overrides ``ALYX_LOGIN`` in the returned parameters (and in a first set-up).
    cache_dir : str, os.PathLike, optional
        The data folder to use if the client has to be set up.

    Returns
    -------
    IBLParams
        The client's parameters, with ``CACHE_DIR`` (its data folder) added.
    """
    client = client or get_default_client()
    cache_map = _read_map()
    key = _key_from_url(client) if client else None
    if not key or key not in (cache_map.get('CLIENT_MAP') or {}) \
            or not _params_file(key).exists():
        setup(client, silent=silent, username=username, cache_dir=cache_dir)
        cache_map = _read_map()
        key = _key_from_url(client) if client else cache_map.get('DEFAULT')
        if key not in (cache_map.get('CLIENT_MAP') or {}):
            raise ValueError(f'The parameters of {client or "the default database"} are not '
                             'set up: run one.params.setup()')
    par = {**_DEFAULTS, **(_read_client(key) or {})}
    par['CACHE_DIR'] = cache_map['CLIENT_MAP'][key]
    if username:
        par['ALYX_LOGIN'] = username
    return _patch_params(_to_params(par))


def _patch_params(par: IBLParams) -> IBLParams:
    """Fix parameters and files written by older versions.

    The public database's data server must be the public one (``…/public``).  A REST cache
    that old ONE-api versions kept in ``<params dir>/.rest/<client key>/<scheme>`` is moved to
    ``<CACHE_DIR>/.rest``.
    """
    url = getattr(par, 'ALYX_URL', '') or ''
    server = getattr(par, 'HTTP_DATA_SERVER', '') or ''
    if 'openalyx' in url and 'public' not in server:
        par = par.set('HTTP_DATA_SERVER', _DEFAULTS['HTTP_DATA_SERVER'])
        save(par, url)
    cache_dir = getattr(par, 'CACHE_DIR', None)
    if url and cache_dir:
        _move_old_rest_cache(url, Path(cache_dir))
    return par


def _move_old_rest_cache(url: str, cache_dir: Path) -> None:
    """Move the REST cache old ONE-api versions kept in ``<params dir>/.rest/<host>/<scheme>``
    (or under the client key, which differs for URLs with a port or a path) to the data
    folder; looked for once per process."""
    params_dir = get_params_dir()
    checked = ('rest', str(params_dir), url, str(cache_dir))
    if checked in _CHECKED_MOVES:
        return
    parts = urlsplit(url)
    scheme = parts.scheme or 'https'
    names = dict.fromkeys(n for n in (parts.hostname, parts.netloc.lower(), _key_from_url(url))
                          if n)
    found = [n for n in names if (params_dir / '.rest' / n / scheme).is_dir()]
    try:
        for name in found:
            with _locked():
                _params_moves.move_rest_cache(params_dir, name, scheme, cache_dir)
    except OSError:  # a lock that cannot be taken: not moved now, tried again next time
        return
    _CHECKED_MOVES.add(checked)


def get_default_client(include_schema: bool = True) -> str | None:
    """Return the default database: its URL, or its client key without `include_schema`.

    None when no database has been set up.
    """
    key = _read_map().get('DEFAULT')
    if not key or not include_schema:
        return key or None
    par = _read_client(key) or {}
    return par.get('ALYX_URL') or key


def save(par, client: str) -> None:
    """Write the parameters of a database client (``CACHE_DIR`` is not stored there).

    Parameters
    ----------
    par : IBLParams or dict
        The parameters.
    client : str
        The database URL or client key.
    """
    data = _as_dict(par)
    data.pop('CACHE_DIR', None)
    with _locked():
        write_json_dict(_params_file(_key_from_url(client)), data, private=True)


def _store_token(client: str, username: str, token: str | None) -> None:
    """Save (or with None remove) a user's login token in a client's parameter file.

    The file is re-read under the lock so that tokens of other users, or changes made by
    another process, are kept.
    """
    path = _params_file(_key_from_url(client))
    with _locked():
        data = read_json_dict(path, private=True) or {**_DEFAULTS, 'ALYX_URL': client}
        tokens = dict(data.get('TOKEN') or {})
        if token is None:
            if username not in tokens:
                return
            tokens.pop(username)
        else:
            tokens[username] = {'token': token}
        if tokens:
            data['TOKEN'] = tokens
        else:
            data.pop('TOKEN', None)
        data.pop('CACHE_DIR', None)
        write_json_dict(path, data, private=True)


def get_cache_dir(client: str | None = None) -> Path:
    """Return (and create) the data folder of a database client, or the default folder.

    Parameters
    ----------
    client : str, optional
        The client URL or key; the default client when None.

    Returns
    -------
    pathlib.Path
        The client's folder; `CACHE_DIR_DEFAULT` when no client is set up.
    """
    cache_map = _read_map()
    clients = cache_map.get('CLIENT_MAP') or {}
    key = _key_from_url(client) if client else cache_map.get('DEFAULT')
    cache_dir = Path(clients.get(key) or CACHE_DIR_DEFAULT)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir


def check_cache_conflict(cache_dir) -> None:
    """Raise AssertionError if `cache_dir` is the data folder of a configured database client.

    Raises
    ------
    AssertionError
        The folder belongs to a database client.
    """
    if not cache_dir:
        return
    clients = _read_map().get('CLIENT_MAP') or {}
    for key, folder in clients.items():
        assert not (folder and _same_path(folder, cache_dir)), \
            f'{cache_dir} is the cache folder of the database client "{key}"'


def delete_params(base_url: str | None = None) -> None:
    """Delete the parameters of one database client, or all of ONE's parameters.

    Parameters
    ----------
    base_url : str, optional
        The database whose parameters (file and client-map entry) are deleted.  When None,
        every parameter file is deleted, then the folder if it is left empty.
    """
    folder = get_params_dir()
    if base_url:
        key = _key_from_url(base_url)
        with _locked():
            path = _params_file(key)
            if path.exists():
                path.unlink()
            else:
                warnings.warn(f'No parameters found for {base_url} ({path})')
            cache_map = read_json_dict(_params_file(_CLIENT_ID_STR)) or {}
            if key in (cache_map.get('CLIENT_MAP') or {}):
                del cache_map['CLIENT_MAP'][key]
                if cache_map.get('DEFAULT') == key:
                    cache_map['DEFAULT'] = next(iter(cache_map['CLIENT_MAP']), None)
                write_json_dict(_params_file(_CLIENT_ID_STR), cache_map, private=False)
        return
    if not folder.exists():
        return
    cache_map = read_json_dict(_params_file(_CLIENT_ID_STR)) or {}
    names = {f'.{_CLIENT_ID_STR}', '.remote', _LOCK_NAME,
             *(f'.{k}' for k in cache_map.get('CLIENT_MAP') or {})}
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()  # only if nothing else is left in it
