"""Lock files: exactly which datasets an analysis loaded, to load (or fetch) exactly those again.

With ``one.record_loaded = True``, every dataset a load method returns is recorded (its session,
id, relative path, revision, size and md5); `LockMixin.save_lock` writes them to a lock file.
``One(..., lock=FILE)`` then refuses to load any dataset that is not in the file, or whose
recorded version differs (another revision, another id, another md5), with a
`DatasetNotLocked` error naming it.  ``one cache verify --lock FILE`` checks the files.

The file is JSON that reads and diffs well: one session and one dataset per line, sorted by
session folder and relative path::

    {
      "one_lock": 1,
      "created": "2025-01-31T10:12:03",
      "one_version": "3.0.0",
      "database": "https://openalyx.internationalbrainlab.org",
      "sessions": {
        "1fd389ac-...": "testlab/Subjects/ZFM-01935/2024-03-14/001"
      },
      "datasets": [
        {"eid": "1fd389ac-...", "id": "396b0556-...", "rel_path": "alf/_ibl_trials.choice.npy",
         ...}  (on one line)
      ]
    }

The checks happen in ``One._check_filesystem`` (every load method goes through it) before
anything is downloaded; the recording happens there too, after the files are found.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import pandas as pd

from one.alf.exceptions import ALFError
from one.alf.path import rel_path_parts

__all__ = ['LOCK_FORMAT', 'DatasetNotLocked', 'LockedDataset', 'LockFile', 'LockMixin',
           'read_lock', 'write_lock']

LOCK_FORMAT = 1
"""The version of the lock file format (the ``one_lock`` key)."""

_FIELDS = ('eid', 'id', 'rel_path', 'revision', 'file_size', 'hash')


class DatasetNotLocked(ALFError):
    """A load asked for a dataset (or a version of it) that the lock file does not list."""

    explanation = ('The dataset is not in the lock file this ONE instance was created with, '
                   'or the lock lists another version of it.')


@dataclass(frozen=True)
class LockedDataset:
    """One dataset of a lock file."""

    eid: str
    """The session UUID (lower-case string)."""
    id: str
    """The dataset UUID (lower-case string)."""
    session_path: str
    """The session folder relative to the data folder, ``lab/Subjects/subject/date/NNN``."""
    rel_path: str
    """The path relative to the session folder, with the revision folder if any."""
    revision: str
    """The revision ('' for none)."""
    file_size: int | None
    """The size in bytes (None if unknown)."""
    hash: str | None
    """The md5 (lower-case hex; None if unknown)."""

    @property
    def path(self) -> PurePosixPath:
        """The file's path relative to the data folder."""
        return PurePosixPath(self.session_path, self.rel_path)

    def as_line(self) -> dict:
        return {'eid': self.eid, 'id': self.id, 'rel_path': self.rel_path,
                'revision': self.revision, 'file_size': self.file_size, 'hash': self.hash}


class LockFile:
    """The datasets of a lock file, by id.

    Parameters
    ----------
    datasets : iterable of LockedDataset
        The locked datasets.
    path : pathlib.Path, optional
        The file they were read from.
    database : str, optional
        The database URL the analysis loaded from (None for a local folder).
    """

    def __init__(self, datasets, path: Path | None = None, database: str | None = None):
        self.datasets: dict[str, LockedDataset] = {d.id: d for d in datasets}
        self.path = path
        self.database = database

    def __len__(self) -> int:
        return len(self.datasets)

    def __repr__(self) -> str:
        return f'<LockFile {self.path or ""} ({len(self)} datasets)>'

    @property
    def sessions(self) -> dict[str, str]:
        """The session folder of each locked session (eid -> relative path)."""
        return {d.eid: d.session_path for d in self.datasets.values()}

    def check(self, records: pd.DataFrame, ids: list, session_paths: list) -> None:
        """Raise `DatasetNotLocked` unless every dataset record is the locked version.

        Parameters
        ----------
        records : pandas.DataFrame
            Dataset records (``rel_path``, optionally ``hash``).
        ids : list of str
            The dataset id of each record.
        session_paths : list
            The session folder of each record (None when unknown).
        """
        hashes = records['hash'] if 'hash' in records.columns else None
        for i, (dataset_id, rel_path) in enumerate(zip(ids, records['rel_path'])):
            session = '' if session_paths[i] is None else PurePosixPath(session_paths[i])
            where = PurePosixPath(session, str(rel_path)).as_posix()
            locked = self.datasets.get(str(dataset_id))
            if locked is None:
                raise DatasetNotLocked(self._not_locked_message(where, str(dataset_id),
                                                                str(rel_path), session))
            if locked.rel_path != rel_path:
                raise DatasetNotLocked(
                    f'Dataset {where} ({dataset_id}) is locked as {locked.path.as_posix()} in '
                    f'{self._name}: its relative path has changed since the lock was made')
            table_hash = _known_str(hashes.iloc[i]) if hashes is not None else None
            if locked.hash and table_hash and table_hash.lower() != locked.hash:
                raise DatasetNotLocked(
                    f'Dataset {where} ({dataset_id}) has md5 {table_hash} in the cache tables '
                    f'but {locked.hash} in {self._name}: the file has changed since the lock '
                    'was made')

    @property
    def _name(self) -> str:
        return f'the lock file {self.path}' if self.path else 'the lock'

    def _not_locked_message(self, where: str, dataset_id: str, rel_path: str, session) -> str:
        message = f'Dataset {where} ({dataset_id}) is not in {self._name}'
        parts = rel_path_parts(rel_path, as_dict=True, assert_valid=False)
        unversioned = PurePosixPath(parts['collection'] or '', _name_of(rel_path)).as_posix()
        others = [d for d in self.datasets.values()
                  if PurePosixPath(d.session_path) == PurePosixPath(session or '')
                  and PurePosixPath(rel_path_parts(d.rel_path, as_dict=True, assert_valid=False)
                                    ['collection'] or '', _name_of(d.rel_path)).as_posix()
                  == unversioned]
        if others:
            versions = ', '.join(f'{d.rel_path} ({d.id})' for d in others)
            message += f'; it locks another version: {versions}'
        return message


def _name_of(rel_path: str) -> str:
    return PurePosixPath(rel_path).name


def _known_str(value) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)) or value == '':
        return None
    return str(value)


def _known_int(value) -> int | None:
    if value is None or (not isinstance(value, (int, str)) and pd.isna(value)):
        return None
    return int(value)


# --------------------------------------------------------------------------------------------
# Reading and writing
# --------------------------------------------------------------------------------------------
def read_lock(path: str | os.PathLike) -> LockFile:
    """Read a lock file.

    Parameters
    ----------
    path : str, os.PathLike
        The lock file.

    Returns
    -------
    LockFile
        Its datasets.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not a lock file (or a newer format), or a dataset line lacks a field.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except json.JSONDecodeError as ex:
        raise ValueError(f'{path} is not a lock file: invalid JSON ({ex})') from None
    if not isinstance(data, dict) or 'one_lock' not in data:
        raise ValueError(f'{path} is not a lock file (no "one_lock" key)')
    if data['one_lock'] != LOCK_FORMAT:
        raise ValueError(f'{path} has lock format {data["one_lock"]!r}; this version of ONE '
                         f'reads format {LOCK_FORMAT}')
    sessions = data.get('sessions') or {}
    datasets = []
    for n, line in enumerate(data.get('datasets') or [], 1):
        missing = [k for k in ('eid', 'id', 'rel_path') if not line.get(k)]
        if missing:
            raise ValueError(f'{path}: dataset {n} has no {", ".join(missing)}')
        eid = str(line['eid']).lower()
        if eid not in sessions:
            raise ValueError(f'{path}: dataset {n} ({line["rel_path"]}) is in session {eid}, '
                             'which the "sessions" map does not list')
        datasets.append(LockedDataset(
            eid=eid, id=str(line['id']).lower(), session_path=str(sessions[eid]),
            rel_path=str(line['rel_path']), revision=str(line.get('revision') or ''),
            file_size=_known_int(line.get('file_size')),
            hash=(_known_str(line.get('hash')) or '').lower() or None))
    return LockFile(datasets, path=path, database=data.get('database'))


def write_lock(path: str | os.PathLike, datasets, database: str | None = None) -> Path:
    """Write a lock file (atomically): one session and one dataset per line, sorted.

    Parameters
    ----------
    path : str, os.PathLike
        The file to write.
    datasets : iterable of LockedDataset
        The datasets.
    database : str, optional
        The database URL they come from.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from one import __version__
    from one._lib.files import write_bytes_atomic

    datasets = sorted(datasets, key=lambda d: (d.session_path, d.rel_path, d.id))
    sessions = dict(sorted({d.eid: d.session_path for d in datasets}.items(),
                           key=lambda kv: (kv[1], kv[0])))
    header = {'one_lock': LOCK_FORMAT, 'created': datetime.now().isoformat(timespec='seconds'),
              'one_version': __version__, 'database': database}
    lines = ['{']
    lines += [f'  {json.dumps(k)}: {json.dumps(v)},' for k, v in header.items()]
    lines.append('  "sessions": {')
    lines.append(',\n'.join(f'    {json.dumps(k)}: {json.dumps(v)}' for k, v in sessions.items()))
    lines.append('  },')
    lines.append('  "datasets": [')
    lines.append(',\n'.join('    ' + json.dumps(d.as_line()) for d in datasets))
    lines.append('  ]')
    lines.append('}')
    text = '\n'.join(line for line in lines if line) + '\n'
    return write_bytes_atomic(Path(path), text.encode('utf-8'))


# --------------------------------------------------------------------------------------------
# The One side
# --------------------------------------------------------------------------------------------
class LockMixin:
    """Lock-file support for `One`: ``save_lock``, ``lock=`` and the load hooks."""

    lock: LockFile | None = None
    """The lock loads must follow (``One(..., lock=FILE)``), or None."""

    def _init_lock(self, lock) -> None:
        self._locked_loaded: dict[str, LockedDataset] = {}
        if lock is None or isinstance(lock, LockFile):
            self.lock = lock
        else:
            self.lock = read_lock(lock)

    def _check_lock(self, records: pd.DataFrame, ids: list, session_paths: list) -> None:
        """Refuse datasets outside the lock (called before any file is looked for)."""
        if self.lock is not None:
            self.lock.check(records, ids, session_paths)

    def _after_load(self, records: pd.DataFrame, ids: list, session_paths: list,
                    files: list) -> None:
        """Record the files found: in the load record of a download cache (an instance that
        downloads; a folder of one's own files is left untouched), and for `save_lock`."""
        present = [f for f in files if f is not None]
        if present and self._downloads():
            from one._lib.access_log import AccessLog

            log = self.__dict__.get('_access_log')
            if log is None or log.root != Path(self.cache_dir):
                log = self._access_log = AccessLog(self.cache_dir)
            log.touch(present)
        self._record_loads(records, ids, session_paths, files)

    def _downloads(self) -> bool:
        """True for an instance that downloads files (its folder is a download cache)."""
        from one._api_local import One

        return type(self)._download_datasets is not One._download_datasets

    def _record_loads(self, records: pd.DataFrame, ids: list, session_paths: list,
                      files: list) -> None:
        """Remember the datasets found on disk (when `record_loaded`) for `save_lock`."""
        if not getattr(self, 'record_loaded', False):
            return
        recorded = self.__dict__.setdefault('_locked_loaded', {})
        sizes = records['file_size'] if 'file_size' in records.columns else None
        hashes = records['hash'] if 'hash' in records.columns else None
        eids = (records.index.get_level_values('eid') if 'eid' in records.index.names
                else self._eids_of_datasets(ids))
        for i, file in enumerate(files):
            if file is None or session_paths[i] is None:
                continue
            rel_path = str(records['rel_path'].iloc[i])
            size = _known_int(sizes.iloc[i]) if sizes is not None else None
            digest = _known_str(hashes.iloc[i]) if hashes is not None else None
            if size is None:
                size = os.stat(file).st_size
            if digest is None:  # the tables don't know: lock what was loaded
                digest = self._verified_files().md5(file)
            recorded[ids[i]] = LockedDataset(
                eid=str(eids[i]).lower(), id=ids[i],
                session_path=PurePosixPath(session_paths[i]).as_posix(), rel_path=rel_path,
                revision=rel_path_parts(rel_path, assert_valid=False)[1] or '',
                file_size=size, hash=digest.lower())

    def save_lock(self, path: str | os.PathLike, clear: bool = False) -> Path | None:
        """Write a lock file of the datasets loaded since `record_loaded` was set.

        The file lists each dataset's session, id, relative path, revision, size and md5, one
        per line.  ``One(..., lock=path)`` (or ``ONE(..., lock=path)``) then loads exactly
        these versions and refuses anything else; ``one cache verify --lock path`` checks the
        files.

        Parameters
        ----------
        path : str, os.PathLike
            The lock file to write (e.g. ``'analysis.lock.json'``).
        clear : bool
            Forget the recorded datasets afterwards.

        Returns
        -------
        pathlib.Path
            The file written (None, with a warning, when nothing was recorded).

        Examples
        --------
        >>> one.record_loaded = True  # doctest: +SKIP
        >>> trials = one.load_object(eid, 'trials')  # doctest: +SKIP
        >>> one.save_lock('analysis.lock.json')  # doctest: +SKIP
        """
        import warnings

        recorded = self.__dict__.get('_locked_loaded') or {}
        if not recorded:
            warnings.warn('No datasets loaded; set "record_loaded" to True before loading')
            return None
        alyx = getattr(self, '_web_client', None)
        written = write_lock(path, recorded.values(),
                             database=getattr(alyx, 'base_url', None))
        if clear:
            recorded.clear()
        return written
