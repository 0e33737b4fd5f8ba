"""Local paths from untrusted remote ones, and URL quoting.

`safe_join` and `url_to_local_path` turn paths received from a server into local paths that
cannot leave the cache folder.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePath
from urllib.parse import quote, unquote, urlsplit

from one._download.errors import UnsafePath
from one._lib.confine import UnsafePath as ConfineUnsafePath
from one._lib.confine import confine


def safe_join(root: str | os.PathLike, rel_path: str | os.PathLike,
              resolve: bool = True) -> Path:
    """Join a relative path received from elsewhere to `root`, refusing any escape.

    The path is normalised first: back-slashes count as separators, empty and ``.`` parts are
    dropped and ``a/..`` pairs cancel out.  Absolute paths, drive or UNC paths, NUL characters,
    paths that climb above `root` and empty paths are refused, and so (with `resolve`) is a
    path leaving `root` through a symbolic link.  The checks are those of
    `one._lib.confine.confine`.

    Parameters
    ----------
    root : str, os.PathLike
        The folder the result must stay in.
    rel_path : str, os.PathLike
        A relative path, e.g. a dataset's ``rel_path`` or an S3 key suffix.
    resolve : bool
        Also refuse a path that leads out of `root` through a symbolic link.

    Returns
    -------
    pathlib.Path
        ``root / <normalised rel_path>``.

    Raises
    ------
    UnsafePath
        The path is absolute, has a drive, climbs out of `root`, is empty, or leaves `root`
        through a link.

    Examples
    --------
    >>> safe_join('/data', 'lab/Subjects/./subj/x.npy').as_posix()
    '/data/lab/Subjects/subj/x.npy'
    >>> safe_join("/data", "../etc/passwd")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    one._download.UnsafePath: Refusing the path "../etc/passwd": it climbs out of "/data"
    """
    try:
        return confine(root, rel_path, resolve=resolve)
    except ConfineUnsafePath as ex:
        raise UnsafePath(str(ex), path=root, value=ex.value) from None


def url_to_local_path(url: str, cache_dir: str | os.PathLike, keep_uuid: bool = False) -> Path:
    """Return where a data file URL is stored in a ONE cache folder.

    The URL's (percent-decoded) path is reduced to its ALF part (from the lab folder on, see
    `one.alf.path.get_alf_path`), or, for aggregate datasets, to the part from ``aggregates/``
    on.  The dataset UUID that file servers put before the extension is removed unless
    `keep_uuid` is True.

    Parameters
    ----------
    url : str
        A data file URL, e.g.
        ``https://host/lab/Subjects/subj/2020-01-01/001/alf/obj.attr.<uuid>.npy``.
    cache_dir : str, os.PathLike
        The cache folder.
    keep_uuid : bool
        Keep the UUID in the file name.

    Returns
    -------
    pathlib.Path
        E.g. ``cache_dir/lab/Subjects/subj/2020-01-01/001/alf/obj.attr.npy``.

    Raises
    ------
    UnsafePath
        The URL path would land outside `cache_dir` (``..`` parts).

    Examples
    --------
    >>> url = ('http://h/lab/Subjects/s/2024-03-14/001/alf/_ibl_trials.choice.'
    ...        '901e18bb-99bf-48f4-a5a4-5d9f695a8581.npy')
    >>> url_to_local_path(url, '/cache').as_posix()
    '/cache/lab/Subjects/s/2024-03-14/001/alf/_ibl_trials.choice.npy'
    """
    from one.alf.path import get_alf_path, remove_uuid_string

    path = unquote(urlsplit(quote_url(url)).path)
    # Normalise first, so that '..' parts can't smuggle the path out via get_alf_path
    rel = safe_join('/', path.lstrip('/').replace('\\', '/'), resolve=False).as_posix()
    rel = rel.lstrip('/')
    if 'aggregates/' in rel:
        rel = rel[rel.index('aggregates/'):]
    else:
        rel = get_alf_path(rel) or rel.rsplit('/', 1)[-1]
    if not keep_uuid:
        rel = remove_uuid_string(PurePath(rel)).as_posix()
    return safe_join(cache_dir, rel)


def quote_url(url: str) -> str:
    """Percent-quote a URL's path (``#`` in revision folders becomes ``%23``), idempotently."""
    scheme, sep, rest = url.partition('://')
    if not sep:
        scheme, rest = '', url
    netloc, slash, path = rest.partition('/')
    path, qmark, query = path.partition('?')
    path = quote(unquote(path), safe="/~!$&'()*+,;=:@")
    return f'{scheme}{sep}{netloc}{slash}{path}{qmark}{query}'


def hidden(dest: Path, suffix: str) -> Path:
    """``.<name><suffix>`` beside `dest`: a name no ALF folder scan picks up."""
    return dest.with_name(f'.{dest.name}{suffix}')
