"""Search, list and load ALF data: `One` (a local folder), `OneAlyx` (an Alyx database),
`OneRelease` (a data release on a web server or S3 bucket), and `ONE`, which chooses.

This module is the public import path.  The classes live in `one._api.local`,
`one._api.alyx` and `one._api.release`.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import one.params
from one import __version__
from one._api.alyx import OneAlyx
from one._api.local import REVISION_LAST_BEFORE, SAVE_ON_DELETE, One, _check_mode
from one._api.release import OneRelease

__all__ = ['ONE', 'One', 'OneAlyx', 'OneRelease', 'REVISION_LAST_BEFORE', 'SAVE_ON_DELETE']


@lru_cache(maxsize=1)
def ONE(*, mode='remote', wildcards=True, **kwargs):
    """Return a `One` for a local data folder, a `OneAlyx` for a database, or a `OneRelease`
    for a data release.

    Calling again with the same arguments returns the same instance (``ONE.cache_clear()``
    forgets it).

    Parameters
    ----------
    mode : {'remote', 'local', 'auto', 'refresh'}
        Query mode (see `One`); a local folder is always opened in 'local' mode.
    wildcards : bool
        See `One`.
    **kwargs
        cache_dir, tables_dir, and for a database base_url, username, password, timeout
        (seconds of read timeout of every request), deadline (seconds of REST retries)...;
        for a release base_url, and optionally profile (S3), cache_expiry and timeout.

    Returns
    -------
    One, OneAlyx or OneRelease
        `OneRelease` when `base_url` serves a release (``s3://`` URLs always; an ``http(s)``
        URL when ``<base_url>/cache_info.json`` is a release description: one GET, made only
        when no login is given and the URL is not a configured database) or when
        `cache_dir` holds the copy of a release opened before; `One` when `cache_dir` is
        given, no database argument is, and the folder is not the cache folder of a configured
        database; `OneAlyx` otherwise.

    Raises
    ------
    ValueError
        `mode` is not one of the four modes.
    """
    _check_mode(mode)
    if kwargs.pop('offline', False):
        warnings.warn('"offline" param will be removed; use mode="local"', FutureWarning)
        mode = 'local'
    from one._api.release import find_release, open_release
    is_release, answer = find_release(mode=mode, **kwargs)
    if is_release:
        return open_release(mode=mode, wildcards=wildcards, answer=answer, **kwargs)
    if any(x in kwargs for x in ('base_url', 'username', 'password')) or \
            not kwargs.get('cache_dir'):
        return OneAlyx(mode=mode, wildcards=wildcards, **kwargs)
    try:
        one.params.check_cache_conflict(kwargs.get('cache_dir'))
    except AssertionError:
        return OneAlyx(mode=mode, wildcards=wildcards, **kwargs)
    for network_only in ('timeout', 'deadline'):  # a local folder makes no request
        kwargs.pop(network_only, None)
    return One(mode='local', wildcards=wildcards, **kwargs)


ONE.version = __version__


def _setup(**kwargs):
    """Forget the cached `ONE` instance, then set up a database (see `one.params.setup`)."""
    ONE.cache_clear()
    kwargs['client'] = kwargs.pop('base_url', None)
    return one.params.setup(**kwargs)


ONE.setup = _setup
ONE.setup.__doc__ = one.params.setup.__doc__
