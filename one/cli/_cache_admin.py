"""Housekeeping of a data folder: what it holds, checking files, and what may be removed.

The logic behind ``one cache ls|du|verify|prune|clear-rest``, free of printing:

* `Inventory`: the datasets the cache tables list (with their file paths) and the files on disk,
  sorted into dataset files, files the folder's load record knows but the tables do not list
  (loaded from a database whose records were not saved), partial downloads (``.<name>.part`` of
  the download engine), other files in session folders, the REST response cache and the
  folder's own files (tables, records, lock files);
* `verify` / `repair`: re-hash files against the tables (or a lock file) and report bad and
  missing ones; download them again;
* `dataset_files`: the files of some datasets (e.g. a lock file's), found without a walk;
* `prune_plan` / `remove`: choose and remove files, only inside the data folder.

What "missing" means depends on the folder.  A folder that is the data folder of a database
(a download cache) holds what was loaded: a dataset is missing when the folder's load record
(`one._lib.access_log`) or the lock file says it was there and its file is gone.  A folder indexed
from its own files (``one index``) should hold every dataset its tables list.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from one._download.part import is_idle, is_partial_name, remove_if_idle
from one._lib.access_log import RECORD_NAME as ACCESS_RECORD
from one._lib.access_log import AccessLog
from one._lib.values import known
from one.cli._common import human_size, plain

__all__ = ['Inventory', 'DiskFile', 'Problem', 'verify', 'repair', 'dataset_files',
           'lock_table', 'records_of', 'prune_plan', 'remove', 'database_of', 'parse_age',
           'parse_size', 'human_size', 'folder_tables', 'tables_of', 'UNLISTED_GRACE']

_REST_FOLDER = '.rest'
UNLISTED_GRACE = 3600.0
"""Seconds during which a new file no table lists is kept by ``prune --unlisted``: a download
running now records its files in the load record only when its batch ends."""


@dataclass
class DiskFile:
    """A file found in the data folder."""

    path: str
    """Relative to the data folder (POSIX)."""
    size: int
    atime: float
    mtime: float


@dataclass
class Problem:
    """A dataset whose file is missing or differs from its record."""

    path: str
    """The file, relative to the data folder."""
    kind: str
    """'missing', 'size' or 'md5'."""
    expected: object = None
    actual: object = None
    id: str | None = None
    eid: str | None = None

    def describe(self) -> str:
        if self.kind == 'missing':
            return f'missing  {self.path}'
        return f'bad {self.kind:<4} {self.path}: expected {self.expected}, found {self.actual}'

    def as_dict(self) -> dict:
        return {'path': self.path, 'problem': self.kind, 'expected': plain(self.expected),
                'found': plain(self.actual), 'id': self.id, 'eid': self.eid}


@dataclass
class Inventory:
    """The datasets listed by the cache tables of a data folder and the files in it.

    Parameters
    ----------
    root : pathlib.Path
        The data folder.
    """

    root: Path
    datasets: pd.DataFrame = field(default=None)
    """One row per listed dataset: eid, id, session_path, rel_path, path, file_size, hash,
    exists (as in the tables), on_disk (bool) and size_on_disk."""
    load_record: dict = field(default_factory=dict)
    """The folder's load record: path -> when it was last loaded (unix time)."""
    dataset_files: dict = field(default_factory=dict)
    """path on disk -> DiskFile of the files that are listed datasets."""
    by_dataset: dict = field(default_factory=dict)
    """listed path (session folder/rel_path) -> DiskFile of its file on disk."""
    loaded: list = field(default_factory=list)
    """Files in session folders the tables do not list but the load record knows: datasets
    loaded from a database whose records were not saved (DiskFile)."""
    partial: list = field(default_factory=list)
    """Partial downloads (DiskFile)."""
    unlisted: list = field(default_factory=list)
    """Other files in session folders: no table lists them, no load was recorded (DiskFile)."""
    rest: list = field(default_factory=list)
    """The REST response cache (DiskFile)."""
    own: list = field(default_factory=list)
    """The folder's own files: cache tables, records, lock files (DiskFile)."""
    other: list = field(default_factory=list)
    """Anything else (outside session folders, hidden files)."""

    @classmethod
    def of(cls, root: str | os.PathLike, tables: dict | None = None) -> Inventory:
        """Walk the files of `root` and sort them with its cache tables.

        Parameters
        ----------
        root : str, os.PathLike
            The data folder.
        tables : dict, optional
            Its 'sessions' and 'datasets' tables already loaded (e.g. `tables_of` a `One`);
            read from the folder (`folder_tables`) when None.

        Raises
        ------
        FileNotFoundError
            No tables were given and the folder has none (``datasets.pqt``).
        """
        inventory = cls(Path(root))
        inventory.datasets = _listed_datasets(inventory.root, tables)
        inventory.load_record = AccessLog(inventory.root).last_loaded()
        inventory._walk()
        return inventory

    def _walk(self) -> None:
        candidates = []  # files in session folders: datasets or unlisted
        root = str(self.root)
        for folder, dirs, files in os.walk(root):
            rel_folder = os.path.relpath(folder, root)
            rel_folder = '' if rel_folder == '.' else rel_folder.replace(os.sep, '/')
            in_session = _in_session(rel_folder)
            for name in files:
                item = _disk_file(os.path.join(folder, name),
                                  f'{rel_folder}/{name}' if rel_folder else name)
                if item is None:
                    continue
                if rel_folder.split('/', 1)[0] == _REST_FOLDER:
                    self.rest.append(item)
                elif is_partial_name(name):
                    self.partial.append(item)
                elif not rel_folder or name.endswith('.lock') or name == ACCESS_RECORD:
                    self.own.append(item)
                elif name.startswith('.') or not in_session:
                    self.other.append(item)
                else:
                    candidates.append(item)
            dirs.sort()
        rows = self._rows_of([f.path for f in candidates])
        on_disk = np.zeros(len(self.datasets), dtype=bool)
        size_on_disk = np.zeros(len(self.datasets), dtype='int64')
        paths = self.datasets['path'].to_numpy()
        for item, row in zip(candidates, rows):
            if row < 0 or on_disk[row]:
                (self.loaded if item.path in self.load_record else self.unlisted).append(item)
                continue
            on_disk[row], size_on_disk[row] = True, item.size
            self.by_dataset[paths[row]] = item
            self.dataset_files[item.path] = item
        self.datasets['on_disk'] = on_disk
        self.datasets['size_on_disk'] = size_on_disk

    def _rows_of(self, rel_paths: list[str]) -> np.ndarray:
        """The table row of each file path (-1: not listed); a file whose name holds the
        dataset UUID is the row of the path without it, if the ids agree."""
        from one.alf.path import remove_uuid_string

        table = self.datasets
        paths = pd.Index(table['path'])
        unique = ~paths.duplicated()
        lookup = pd.Index(paths[unique])
        positions = np.flatnonzero(unique)
        found = lookup.get_indexer(rel_paths)
        rows = np.where(found >= 0, positions[np.maximum(found, 0)], -1)
        ids = table['id'].to_numpy()
        unknown = np.flatnonzero(rows < 0)
        plain = [remove_uuid_string(PurePosixPath(rel_paths[i])).as_posix() for i in unknown]
        at = lookup.get_indexer(plain) if plain else np.empty(0, dtype=np.int64)
        for i, name, j in zip(unknown, plain, at):
            if j >= 0 and name != rel_paths[i] and \
                    PurePosixPath(rel_paths[i]).stem.endswith(ids[positions[j]]):
                rows[i] = positions[j]
        return rows

    def recorded(self) -> set[str]:
        """The listed paths of the datasets the folder's load record says were loaded."""
        rows = self._rows_of(list(self.load_record))
        return set(self.datasets['path'].to_numpy()[rows[rows >= 0]])

    def gone(self) -> list[str]:
        """Paths the load record knows whose file is no longer in the folder (deleted)."""
        present = {f.path for group in (self.dataset_files.values(), self.loaded,
                                        self.unlisted, self.other) for f in group}
        return sorted(p for p in self.load_record if p not in present and
                      not os.path.lexists(self.root / p))

    def last_used(self) -> dict[str, float]:
        """When each dataset file on disk (listed, or known to the load record) was last used:
        the latest of the folder's load record, the file's access time and its modification
        time (the download)."""
        recorded = self.load_record
        return {f.path: max(recorded.get(f.path, 0.0), f.atime, f.mtime)
                for f in [*self.dataset_files.values(), *self.loaded]}

    def sessions(self) -> pd.DataFrame:
        """One row per session with files on disk: eid, session_path, datasets on disk,
        datasets listed and bytes on disk."""
        table = self.datasets
        grouped = table.groupby(['eid', 'session_path'], sort=False, observed=True).agg(
            present=('on_disk', 'sum'), listed=('id', 'size'), bytes=('size_on_disk', 'sum'))
        grouped = grouped.reset_index()
        return grouped[grouped['present'] > 0].sort_values('session_path').reset_index(
            drop=True)


def _disk_file(full: str, rel: str) -> DiskFile | None:
    """The file at `full`; a link counts as the file it points to (a dangling link as itself)."""
    try:
        st = os.stat(full)
    except FileNotFoundError:
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return None
    return DiskFile(rel, st.st_size, st.st_atime, st.st_mtime)


def _in_session(rel_folder: str) -> bool:
    parts = rel_folder.split('/')
    return any(parts[i].isdigit() and _is_date(parts[i - 1]) for i in range(1, len(parts)))


def _is_date(text: str) -> bool:
    return len(text) == 10 and text[4] == '-' and text[7] == '-' and \
        text.replace('-', '').isdigit()


def folder_tables(root: str | os.PathLike) -> dict:
    """The cache tables of a data folder, as `One` runs on them.

    Ids are canonical strings and no UUID object is built (`one.alf.cache.read_tables`):
    cheaper than `one.alf.cache.load_tables` for reading a folder's tables.

    Raises
    ------
    FileNotFoundError
        The folder has no ``datasets.pqt``.
    one.alf.cache.TableFormatError
        A table cannot be read or understood (the message names the file).
    """
    from one.alf.cache import read_tables

    root = Path(root)
    if not (root / 'datasets.pqt').exists():
        raise FileNotFoundError(f'no cache tables in {root}')
    return read_tables(root)


def tables_of(one) -> dict:
    """The tables a `One` answers from, as they are, without handing them out.

    Reading ``one._cache`` would give them ONE-api's shape (a UUID object for every id); the
    command line and the demo only read them.
    """
    return one._tables


def _listed_datasets(root: Path, tables: dict | None = None) -> pd.DataFrame:
    """The datasets of the folder's cache tables, with the path of each file."""
    if tables is None:
        tables = folder_tables(root)
    from one.converters import session_record2path

    sessions, datasets = tables['sessions'], tables['datasets']
    session_paths = {str(eid): session_record2path(row).as_posix()
                     for eid, row in zip(sessions.index, sessions.to_dict('records'))}
    n = len(datasets)
    # Ids are canonical lower-case strings (or UUID objects, whose str is): no lower() needed
    ids = datasets.index.get_level_values('id').astype(str).to_numpy(dtype=object)
    if 'eid' in datasets.index.names:
        eids = datasets.index.get_level_values('eid').astype(str).to_numpy(dtype=object)
    else:
        eids = np.full(n, None, dtype=object)
    codes, uniques = pd.factorize(eids)
    per_session = np.array([session_paths.get(e) for e in uniques] + [None], dtype=object)

    def column(name):
        return datasets[name].to_numpy() if name in datasets else np.full(n, None, dtype=object)

    exists = datasets['exists'].to_numpy(dtype=bool, na_value=True) if 'exists' in datasets \
        else np.ones(n, dtype=bool)
    frame = pd.DataFrame({
        'eid': eids, 'id': ids,
        'rel_path': datasets['rel_path'].astype(object).to_numpy(),
        'file_size': column('file_size'), 'hash': column('hash'),
        'exists': exists, 'session_path': per_session[codes]})
    frame = frame[frame['session_path'].notna()].reset_index(drop=True)  # e.g. aggregates
    frame['path'] = frame['session_path'].to_numpy() + '/' + \
        frame['rel_path'].astype(str).to_numpy(dtype=object)
    return frame


# --------------------------------------------------------------------------------------------
# verify and repair
# --------------------------------------------------------------------------------------------
def _md5_keeping_atime(path) -> str:
    """The md5 of a file, leaving its access time as it was (checking is not using)."""
    from one._lib.files import md5

    st = os.stat(path)
    digest = md5(path)
    with contextlib.suppress(OSError):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return digest


def verify(root: Path, expected: pd.DataFrame, files: dict,
           progress: bool | None = None) -> tuple[list[Problem], int]:
    """Check the files of `expected` datasets: present, of the right size and md5.

    Parameters
    ----------
    root : pathlib.Path
        The data folder.
    expected : pandas.DataFrame
        Datasets with columns path, file_size, hash (and id, eid).  Unknown sizes or hashes
        are not checked.
    files : dict
        path -> DiskFile of the files on disk (a dataset whose file has the UUID in its name
        is found by the path without it).
    progress : bool, optional
        Show a progress bar while hashing (default: when stderr is a terminal).

    Returns
    -------
    list of Problem
        The missing and bad files, sorted by path.
    int
        How many files were hashed.
    """
    from one._lib.files import hash_files

    problems: dict[int, Problem] = {}
    to_hash, positions, sizes = [], [], []
    present = expected['path'].isin(files.keys()).to_numpy() if len(files) else \
        np.zeros(len(expected), dtype=bool)
    paths, ids, eids = (expected[c].to_numpy() for c in ('path', 'id', 'eid'))
    for i in np.flatnonzero(~present):
        problems[i] = Problem(paths[i], 'missing', id=ids[i], eid=eids[i])
    for i, row in zip(np.flatnonzero(present),
                      expected[present].itertuples(index=False)):
        found = files[row.path]
        size = known(row.file_size)
        if size is not None and found.size != int(size):
            problems[i] = Problem(found.path, 'size', int(size), found.size, row.id, row.eid)
            continue
        digest = known(row.hash)
        if digest:
            to_hash.append(root / found.path)
            positions.append((i, found.path, str(digest).lower(), row.id, row.eid))
            sizes.append(found.size)
    digests = hash_files(to_hash, sizes=sizes, progress=progress,
                         hasher=_md5_keeping_atime) if to_hash else []
    for (i, path, wanted, dataset_id, eid), got in zip(positions, digests):
        if got != wanted:
            problems[i] = Problem(path, 'md5', wanted, got, dataset_id, eid)
    return sorted(problems.values(), key=lambda p: p.path), len(to_hash)


def dataset_files(root: Path, rows: pd.DataFrame) -> dict[str, DiskFile]:
    """The files on disk of some datasets (path -> DiskFile), without walking the folder.

    Parameters
    ----------
    root : pathlib.Path
        The data folder.
    rows : pandas.DataFrame
        Datasets with columns path (relative to `root`) and id.

    Returns
    -------
    dict
        The listed path of each dataset found -> its file: ``<root>/<path>``, or the same name
        with the dataset UUID in it (data folders with UUID file names).
    """
    found = {}
    for listed, dataset_id in zip(rows['path'], rows['id']):
        path = PurePosixPath(listed)
        item = _disk_file(str(root / path), path.as_posix())
        if item is None:
            with_uuid = path.with_name(f'{path.stem}.{dataset_id}{path.suffix}')
            item = _disk_file(str(root / with_uuid), with_uuid.as_posix())
        if item is not None:
            found[path.as_posix()] = item
    return found


def lock_table(lock) -> pd.DataFrame:
    """The datasets of a lock file as the rows `verify` and `repair` take."""
    columns = ['eid', 'id', 'path', 'session_path', 'rel_path', 'file_size', 'hash']
    return pd.DataFrame([
        {'eid': d.eid, 'id': d.id, 'path': d.path.as_posix(), 'session_path': d.session_path,
         'rel_path': d.rel_path, 'file_size': d.file_size, 'hash': d.hash}
        for d in lock.datasets.values()], columns=columns, dtype=object)  # sizes: int or None


def records_of(rows: pd.DataFrame) -> pd.DataFrame:
    """Datasets (eid, id, rel_path, session_path, file_size, hash; e.g. `lock_table`) as the
    dataset records `One` checks and downloads: index (eid, id)."""
    return pd.DataFrame(
        {'rel_path': rows['rel_path'].astype(str).to_numpy(),
         'file_size': rows['file_size'].to_numpy(), 'hash': rows['hash'].to_numpy(),
         'session_path': rows['session_path'].to_numpy()},
        index=pd.MultiIndex.from_arrays([rows['eid'].to_numpy(), rows['id'].to_numpy()],
                                        names=['eid', 'id']))


def repair(one, rows: pd.DataFrame) -> list:
    """Download datasets again (missing or bad files) through a database's `OneAlyx`.

    The records go through the instance's file check, the path of every load: a present file
    of the right size and md5 is kept, anything else is downloaded in one batch, and the
    instance's lock (if any) is applied first.

    Parameters
    ----------
    one : one.api.OneAlyx
        An instance on the data folder.
    rows : pandas.DataFrame
        Datasets with eid, id, rel_path, session_path, file_size and hash.

    Returns
    -------
    list
        The file of each dataset (None where the download failed).
    """
    return one._check_filesystem(records_of(rows), update_exists=False, check_hash=True)


# --------------------------------------------------------------------------------------------
# prune
# --------------------------------------------------------------------------------------------
def prune_plan(inventory: Inventory, older_than: float | None = None,
               max_size: int | None = None, unlisted: bool = False,
               download_cache: bool = True, now: float | None = None) -> dict[str, list]:
    """Choose what ``one cache prune`` removes.

    Parameters
    ----------
    inventory : Inventory
        The folder's files.
    older_than : float, optional
        Remove dataset files not used for this many seconds.
    max_size : int, optional
        Remove the least recently used dataset files until the dataset files total at most
        this many bytes.
    unlisted : bool
        Also remove files in session folders that no table lists and the load record does not
        know, unless modified in the last `UNLISTED_GRACE` seconds.
    download_cache : bool
        The folder is a database's download cache.  Otherwise its files may be the only copy:
        `unlisted`, `older_than` and `max_size` are refused.
    now : float, optional
        The current time (unix).

    Returns
    -------
    dict
        ``{'partial': [...], 'unlisted': [...], 'datasets': [...]}`` of DiskFile (partial
        downloads no download holds; unlisted files; least recently used dataset files), and
        ``'forget'``: the paths the load record knows whose file is gone.

    Raises
    ------
    ValueError
        `unlisted`, `older_than` or `max_size` for a folder that is not a download cache.
    """
    if (unlisted or older_than is not None or max_size is not None) and not download_cache:
        raise ValueError(f'{inventory.root} is not the data folder of a database: its files '
                         'may be the only copy, so --unlisted, --older-than and --max-size are '
                         'refused')
    now = time.time() if now is None else now
    partial = [f for f in inventory.partial if is_idle(inventory.root / f.path)]
    extra = [f for f in inventory.unlisted if now - f.mtime > UNLISTED_GRACE] if unlisted \
        else []
    chosen: dict[str, DiskFile] = {}
    if older_than is not None or max_size is not None:
        used = inventory.last_used()
        candidates = [*inventory.dataset_files.values(), *inventory.loaded]
        order = sorted(candidates, key=lambda f: (used[f.path], f.path))
        if older_than is not None:
            for f in order:
                if now - used[f.path] > older_than:
                    chosen[f.path] = f
        if max_size is not None:
            total = sum(f.size for f in order if f.path not in chosen)
            for f in order:
                if total <= max_size:
                    break
                if f.path not in chosen:
                    chosen[f.path] = f
                    total -= f.size
    datasets = sorted(chosen.values(), key=lambda f: f.path)
    return {'partial': partial, 'unlisted': extra, 'datasets': datasets,
            'forget': inventory.gone()}


def remove(root: Path, files: list[DiskFile], empty_folders: bool = True) -> list[str]:
    """Remove files of the data folder (and the folders left empty); return what was removed.

    Each path must lie inside `root` (its folder is resolved, so a link to a folder elsewhere
    is refused; a link file itself is removed, never its target).  A partial download is
    removed under its lock (`one._download.part.remove_if_idle`), so never while a
    download writes or resumes it.

    Raises
    ------
    ValueError
        A path is outside the data folder.
    """
    root_real = Path(os.path.realpath(root))
    for f in files:
        parent = Path(os.path.realpath((root / f.path).parent))
        if parent != root_real and root_real not in parent.parents:
            raise ValueError(f'refusing to remove {root / f.path}: it is not inside {root}')
    removed, folders = [], set()
    for f in files:
        path = root / f.path
        if is_partial_name(path.name):
            if not remove_if_idle(path):
                continue
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
        removed.append(f.path)
        if empty_folders:
            folders.add(path.parent)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
            folder = folder.parent
    return removed


# --------------------------------------------------------------------------------------------
# helpers for the command line
# --------------------------------------------------------------------------------------------
def database_of(folder: Path) -> str | None:
    """The URL of the configured database whose data folder is `folder`, if any."""
    import one.params

    try:
        clients = one.params.client_map()
    except Exception:  # noqa: BLE001 - unreadable parameters: no database
        return None
    for key, client_folder in clients.items():
        if client_folder and _same(client_folder, folder):
            try:
                return one.params.get(key, silent=True).ALYX_URL
            except Exception:  # noqa: BLE001
                return None
    return None


def _same(a, b) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


_SIZES = {'': 1, 'b': 1, 'k': 1024, 'kb': 1024, 'm': 1024 ** 2, 'mb': 1024 ** 2,
          'g': 1024 ** 3, 'gb': 1024 ** 3, 't': 1024 ** 4, 'tb': 1024 ** 4}
_AGES = {'': 86400, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}


def _quantity(text: str, units: dict, what: str, examples: str) -> float:
    """A number with an optional unit, times the unit's factor."""
    match = re.fullmatch(r'\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*', str(text))
    unit = match.group(2).lower().replace('ib', 'b') if match else None
    if not match or unit not in units:
        raise ValueError(f'not {what}: {text!r} ({examples})')
    return float(match.group(1)) * units[unit]


def parse_size(text: str) -> int:
    """Bytes of a size such as '500M', '20G', '1.5T' or '1024' (powers of 1024).

    Raises
    ------
    ValueError
        Not a size.
    """
    return int(_quantity(text, _SIZES, 'a size', 'e.g. 500M, 20G, 1.5T'))


def parse_age(text: str) -> float:
    """Seconds of an age such as '30d', '12h', '2w' or '90' (days).

    Raises
    ------
    ValueError
        Not an age.
    """
    return _quantity(text, _AGES, 'an age', 'e.g. 30d, 12h, 2w; a plain number is days')
