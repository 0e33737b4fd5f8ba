"""Private helpers of `one.api.OneRelease`: the local copy of a release's cache tables.

The tables folder of a release opened by URL holds the release's tables, its
``cache_info.json``, and ``.one_release.json``, the state of the copy: the release URL, the
validators (ETag, Last-Modified) of the ``cache_info.json`` last read, when it was last checked,
and the md5, size and modification time of each table as downloaded (so that an unchanged table
is recognised without hashing it).

`sync_tables` brings the copy up to date under an inter-process lock: a conditional GET of
``cache_info.json``; when it changed, each table whose md5 differs is downloaded by the engine
(verified against the md5 and size of ``cache_info.json``) into a hidden file, and the new
tables are renamed into place together once all are good, sessions first.  A table that stays
bad is an error naming it; nothing is replaced then.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import one.params
from one._lib.files import write_bytes_atomic
from one._lib.locks import file_lock
from one._release.info import (
    INFO_NAME,
    ReleaseError,
    ReleaseInfo,
    ReleaseUnreachable,
    parse_info,
)
from one._release.remote import Answer, ReleaseSource, normalise_url

_logger = logging.getLogger('one.api')

STATE_NAME = '.one_release.json'
LOCK_NAME = '.one_release.lock'
_TABLE_ORDER = {'sessions': 0, 'datasets': 1}


@dataclass
class ReleaseState:
    """What the local copy of a release is (see the module docstring)."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    checked: float = 0.0
    tables: dict = field(default_factory=dict)

    @classmethod
    def read(cls, folder) -> ReleaseState | None:
        """The state saved in `folder`, or None when it holds no release copy."""
        try:
            data = json.loads((Path(folder) / STATE_NAME).read_text(encoding='utf-8'))
            return cls(url=str(data['url']), etag=data.get('etag'),
                       last_modified=data.get('last_modified'),
                       checked=float(data.get('checked') or 0),
                       tables=dict(data.get('tables') or {}))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, folder) -> None:
        write_bytes_atomic(Path(folder) / STATE_NAME,
                           (json.dumps(asdict(self), indent=1) + '\n').encode(), fsync=False)

    def intact(self, folder, names) -> bool:
        """Whether the tables `names` are on disk as downloaded (same size and mtime)."""
        for name in names:
            known = self.tables.get(name) or {}
            try:
                st = os.stat(Path(folder) / f'{name}.pqt')
            except OSError:
                return False
            if (known.get('size'), known.get('mtime_ns')) != (st.st_size, st.st_mtime_ns):
                return False
        return True


def default_release_dir(url: str) -> Path:
    """The default cache folder of a release: ``<ONE downloads folder>/<key of the URL>``.

    The key is readable (host and path) and ends with a short hash of the whole URL, so that
    URLs the readable part cannot tell apart (``/a_b`` and ``/a/b``, http and https) get
    folders of their own.

    Examples
    --------
    >>> default_release_dir('https://data.example.org/rel/v1').name
    'data.example.org_rel_v1_440a7cd1'
    >>> default_release_dir('s3://bucket/caches/v1').name
    's3_bucket_caches_v1_72ee5b89'
    """
    import hashlib

    url = normalise_url(url)
    if url.startswith('s3://'):
        key = 's3_' + one.params.client_key(url[5:])
    else:
        key = one.params.client_key(url)
    key = re.sub(r'[^\w.-]', '_', key).strip('.') or 'release'
    digest = hashlib.sha1(url.encode()).hexdigest()[:8]
    return Path(one.params.CACHE_DIR_DEFAULT) / f'{key}_{digest}'


def check_folder(folder, state: ReleaseState | None, url: str) -> None:
    """Refuse a tables folder that holds anything but the copy of the release `url`.

    Raises
    ------
    ReleaseError
        `folder` holds the copy of another release, or cache tables that are not the copy of
        a release (e.g. a data folder indexed by ``one index``: they would be overwritten).
    """
    if state is not None:
        if state.url != url:
            raise ReleaseError(f'{folder} holds the copy of the release {state.url}, not '
                               f'of {url}: choose another cache_dir')
        return
    tables = sorted(p.name for p in Path(folder).glob('*.pqt')) if folder else []
    if tables:
        raise ReleaseError(f'{folder} holds cache tables ({", ".join(tables)}) that are not a '
                           f'copy of the release {url}; they would be replaced: choose another '
                           'cache_dir')


def local_info(folder) -> ReleaseInfo | None:
    """The ``cache_info.json`` of the local copy (None when missing or unreadable)."""
    try:
        return parse_info((Path(folder) / INFO_NAME).read_bytes(), str(Path(folder) / INFO_NAME))
    except (OSError, ReleaseError):
        return None


def sync_tables(source: ReleaseSource, tables_dir, force: bool = False,
                answer: Answer | None = None) -> tuple[bool, ReleaseInfo]:
    """Bring the local tables of a release up to date.

    Parameters
    ----------
    source : ReleaseSource
        The release.
    tables_dir : str, os.PathLike
        The local tables folder (created if missing).
    force : bool
        Read ``cache_info.json`` whole, not conditionally.
    answer : Answer, optional
        An unconditional answer for ``cache_info.json`` already fetched (e.g. by `ONE`
        finding out that the URL serves a release).

    Returns
    -------
    bool
        Whether any table file changed.
    ReleaseInfo
        The release description.

    Raises
    ------
    ReleaseUnreachable
        The host could not be reached.
    NotARelease
        The URL serves no valid release.
    ReleaseError
        A table could not be downloaded or stayed different from its md5 or size (nothing was
        replaced), or `tables_dir` holds anything but a copy of this release (`check_folder`).
    """
    tables_dir = Path(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(tables_dir / LOCK_NAME, timeout=600):
        state = ReleaseState.read(tables_dir)
        check_folder(tables_dir, state, source.url)
        state = state or ReleaseState(source.url)
        current = local_info(tables_dir)
        usable = current is not None and state.intact(tables_dir, current.tables)
        if answer is None or answer.status != 200:
            conditional = usable and not force
            answer = source.fetch(source.info_url, state.etag if conditional else None,
                                  state.last_modified if conditional else None)
        if answer.status == 304:
            state.checked = time.time()
            state.write(tables_dir)
            return False, current
        for attempt in (1, 2):
            info = parse_info(answer.body, answer.url)
            try:
                changed = _download_tables(source, tables_dir, info, state)
                break
            except ReleaseUnreachable:
                raise
            except ReleaseError:
                if attempt == 2:
                    raise
                # The tables may have been replaced on the host after its cache_info.json
                # was read (a release being published): read it again, once
                _logger.info('A table of %s differs from its cache_info.json: reading it again',
                             source.url)
                answer = source.fetch(source.info_url)
        write_bytes_atomic(tables_dir / INFO_NAME, answer.body, fsync=False)
        state.etag = answer.etag
        state.last_modified = answer.last_modified if answer.fresh_validators else None
        state.checked = time.time()
        state.write(tables_dir)
        return changed, info


def _staging(tables_dir: Path, name: str) -> Path:
    return tables_dir / f'.{name}.pqt.release'


def _download_tables(source: ReleaseSource, tables_dir: Path, info: ReleaseInfo,
                     state: ReleaseState) -> bool:
    """Download the tables that differ from the local ones, then rename them into place."""
    from one._download import DownloadConnectionError, DownloadError, download_files

    wanted = sorted(info.tables.values(), key=lambda t: _TABLE_ORDER.get(t.name, 2))
    todo = [t for t in wanted
            if t.md5 is None or (state.tables.get(t.name) or {}).get('md5') != t.md5
            or not state.intact(tables_dir, [t.name])]
    tasks = [source.task(source.resolve(t.file), _staging(tables_dir, t.name), t.size, t.md5)
             for t in todo]
    outcomes = download_files(tasks, return_errors=True, desc='Downloading tables') \
        if tasks else []
    if any(isinstance(x, Exception) for x in outcomes):
        for table in todo:  # the good ones too: the release is read again next time
            _staging(tables_dir, table.name).unlink(missing_ok=True)
    for table, outcome in zip(todo, outcomes):
        if isinstance(outcome, DownloadConnectionError):
            raise ReleaseUnreachable(f'Could not download the {table.name} table of the '
                                     f'release {source.url}: {outcome}') from outcome
        if isinstance(outcome, DownloadError):
            raise ReleaseError(f'Could not download the {table.name} table of the release '
                               f'{source.url}: {outcome}') from outcome
        if isinstance(outcome, Exception):
            raise outcome
    for table in todo:  # all good: move them into place, sessions first
        final = tables_dir / f'{table.name}.pqt'
        os.replace(_staging(tables_dir, table.name), final)
        st = os.stat(final)
        state.tables[table.name] = {'md5': table.md5, 'size': st.st_size,
                                    'mtime_ns': st.st_mtime_ns}
    removed = False
    for name in [n for n in state.tables if n not in info.tables]:  # dropped from the release
        with contextlib.suppress(FileNotFoundError):
            (tables_dir / f'{name}.pqt').unlink()
        del state.tables[name]
        removed = True
    return bool(todo) or removed
