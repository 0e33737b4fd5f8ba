"""Lock files: exactly which datasets an analysis loaded, to load (or fetch) exactly those again.

With ``one.record_loaded = True``, the ids of the datasets a load method returns are recorded
(as ONE-api does, for ``save_loaded_ids``); `LockMixin.save_lock` writes them to a lock file
with their session, relative path, revision, size and md5 (from the cache tables, or from the
file when the tables do not know).  ``One(..., lock=FILE)`` then refuses to load any dataset
that is not in the file, or whose version differs (another revision, another id, another size
or md5 in the tables or on disk), with a `one.alf.exceptions.DatasetNotLocked` error naming it.
``one cache verify --lock FILE`` checks the files.

The file is JSON that reads and diffs well: one session and one dataset per line, sorted by
session folder and relative path::

    {
      "one_lock": 1,
      "created": "2025-01-31T10:12:03",
      "one_version": "3.6.1",
      "one_next_version": "0.2.0",
      "database": "https://openalyx.internationalbrainlab.org",
      "sessions": {
        "1fd389ac-...": "testlab/Subjects/ZFM-01935/2024-03-14/001"
      },
      "datasets": [
        {"eid": "1fd389ac-...", "id": "396b0556-...", "rel_path": "alf/_ibl_trials.choice.npy",
         ...}  (on one line)
      ]
    }

The checks happen in ``One._check_filesystem`` (every load method goes through it): the records
before anything is downloaded, the files (size, and md5 through the folder's verification
record, so an unchanged file is hashed once) once they are found.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from one._api.paths import Confinement, dataset_file, record_columns
from one._lib.values import known
from one.alf.exceptions import DatasetNotLocked
from one.alf.path import rel_path_parts

__all__ = ['LOCK_FORMAT', 'DatasetNotLocked', 'LockedDataset', 'LockFile', 'LockMixin',
           'read_lock', 'write_lock']

LOCK_FORMAT = 1
"""The version of the lock file format (the ``one_lock`` key)."""

_logger = logging.getLogger('one.api')


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
            Dataset records (``rel_path``, optionally ``hash`` and ``file_size``).
        ids : list of str
            The dataset id of each record.
        session_paths : list
            The session folder of each record (None when unknown).
        """
        hashes, sizes = record_columns(records, 'hash', 'file_size')
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
            table_hash = known(hashes[i])
            if locked.hash and table_hash and str(table_hash).lower() != locked.hash:
                raise DatasetNotLocked(
                    f'Dataset {where} ({dataset_id}) has md5 {table_hash} in the cache tables '
                    f'but {locked.hash} in {self._name}: the file has changed since the lock '
                    'was made')
            table_size = known(sizes[i])
            if locked.file_size and table_size and int(table_size) != locked.file_size:
                raise DatasetNotLocked(
                    f'Dataset {where} ({dataset_id}) has {int(table_size)} bytes in the cache '
                    f'tables but {locked.file_size} in {self._name}: the file has changed since '
                    'the lock was made')

    def check_files(self, ids: list, files: list, md5) -> None:
        """Raise `DatasetNotLocked` unless each file found is the locked one (size and md5).

        Parameters
        ----------
        ids : list of str
            The dataset id of each file.
        files : list of pathlib.Path or None
            The files (None: not found, not checked).
        md5 : callable
            Returns the md5 of a file given its path and stat result (e.g. the memoised
            `one._lib.verified.VerifiedFiles.md5`).
        """
        for dataset_id, file in zip(ids, files):
            locked = self.datasets.get(str(dataset_id))
            if file is None or locked is None:
                continue
            stat = os.stat(file)
            if locked.file_size is not None and stat.st_size != locked.file_size:
                raise DatasetNotLocked(
                    f'Dataset {locked.path.as_posix()} ({dataset_id}): the file {file} has '
                    f'{stat.st_size} bytes but {self._name} locks {locked.file_size}: it has '
                    'changed since the lock was made')
            if locked.hash and md5(file, stat) != locked.hash:
                raise DatasetNotLocked(
                    f'Dataset {locked.path.as_posix()} ({dataset_id}): the file {file} does not '
                    f'have the md5 {locked.hash} that {self._name} locks: it has changed since '
                    'the lock was made')

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


def _int_or_none(value) -> int | None:
    value = known(value)
    return None if value is None else int(value)


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
            file_size=_int_or_none(line.get('file_size')),
            hash=str(known(line.get('hash')) or '').lower() or None))
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
    from one import __distribution_version__, __version__
    from one._lib.files import write_bytes_atomic

    datasets = sorted(datasets, key=lambda d: (d.session_path, d.rel_path, d.id))
    sessions = dict(sorted({d.eid: d.session_path for d in datasets}.items(),
                           key=lambda kv: (kv[1], kv[0])))
    header = {'one_lock': LOCK_FORMAT, 'created': datetime.now().isoformat(timespec='seconds'),
              'one_version': __version__, 'one_next_version': __distribution_version__,
              'database': database}
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

    _records_loads_in_folder = False
    """Whether loads are recorded in the folder's load record (`one._lib.access_log`): True for
    classes that download (the folder is then a download cache); a folder of one's own files
    is left untouched."""

    def _init_lock(self, lock) -> None:
        if lock is None or isinstance(lock, LockFile):
            self.lock = lock
        else:
            self.lock = read_lock(lock)

    def _check_lock(self, records: pd.DataFrame, ids: list, session_paths: list) -> None:
        """Refuse datasets outside the lock (called before any file is looked for)."""
        if self.lock is not None:
            try:
                self.lock.check(records, ids, session_paths)
            except DatasetNotLocked as ex:
                _logger.warning('%s', ex.message)  # seen even where a script catches it
                raise

    def _after_load(self, records: pd.DataFrame, ids: list, session_paths: list,
                    files: list) -> None:
        """Check the files found against the lock, then record them in the load record of a
        download cache."""
        if self.lock is not None:
            try:
                self.lock.check_files(ids, files, self._verified_files().md5)
            except DatasetNotLocked as ex:
                _logger.warning('%s', ex.message)
                raise
        present = [f for f in files if f is not None]
        if present and self._records_loads_in_folder:
            from one._lib.access_log import AccessLog

            log = self.__dict__.get('_access_log')
            if log is None or log.root != Path(self.cache_dir):
                log = self._access_log = AccessLog(self.cache_dir)
            log.touch(present)

    def _locked_datasets(self, ids) -> tuple[list[LockedDataset], list[str]]:
        """The lock entries of dataset ids, from the cache tables (and the files, for a size or
        md5 the tables do not know); also the ids left out (not in the tables, or no file)."""
        codes = self._dataset_codes()
        ids = [str(x) for x in ids]
        rows, which = codes.id_rows(ids)
        records = codes.table.iloc[rows]
        eids = codes.eid_strings(rows)
        session_paths = self._session_paths([e for e in eids if e])
        guard = Confinement(self.cache_dir)
        sizes, hashes = record_columns(records, 'file_size', 'hash')
        locked = {}
        for i, (eid, rel_path) in enumerate(zip(eids, records['rel_path'])):
            dataset_id = ids[which[i]]
            session_path = session_paths.get(eid) if eid else None
            if session_path is None:
                continue
            session_path, rel_path = PurePosixPath(session_path).as_posix(), str(rel_path)
            size, digest = _int_or_none(sizes[i]), known(hashes[i])
            if size is None or digest is None:  # the tables don't know: lock what is on disk
                file = dataset_file(guard, session_path, rel_path, dataset_id,
                                    getattr(self, 'uuid_filenames', False), eid)
                try:
                    stat = os.stat(file)
                except OSError:
                    continue
                size = stat.st_size if size is None else size
                digest = digest or self._verified_files().md5(file, stat)
            locked[dataset_id] = LockedDataset(
                eid=eid.lower(), id=dataset_id, session_path=session_path, rel_path=rel_path,
                revision=rel_path_parts(rel_path, assert_valid=False)[1] or '',
                file_size=size, hash=str(digest).lower())
        return list(locked.values()), [x for x in dict.fromkeys(ids) if x not in locked]

    def save_lock(self, path: str | os.PathLike, clear: bool = False) -> Path | None:
        """Write a lock file of the datasets loaded since `record_loaded` was set.

        The file lists each dataset's session, id, relative path, revision, size and md5, one
        per line.  ``One(..., lock=path)`` (or ``ONE(..., lock=path)``) then loads exactly
        these versions and refuses anything else; ``one cache verify --lock path`` checks the
        files.  The datasets are those `save_loaded_ids` saves; their details come from the
        cache tables, and a size or md5 the tables do not know from the file on disk.

        Parameters
        ----------
        path : str, os.PathLike
            The lock file to write (e.g. ``'analysis.lock.json'``).
        clear : bool
            Forget the recorded datasets afterwards (as ``save_loaded_ids(clear_list=True)``).

        Returns
        -------
        pathlib.Path
            The file written (None, with a warning, when nothing was recorded).

        Warns
        -----
        UserWarning
            Nothing was recorded, or some recorded datasets are no longer in the cache tables
            (or their files are gone) and are left out of the lock.

        Examples
        --------
        >>> one.record_loaded = True  # doctest: +SKIP
        >>> trials = one.load_object(eid, 'trials')  # doctest: +SKIP
        >>> one.save_lock('analysis.lock.json')  # doctest: +SKIP
        """
        import warnings

        loaded = self._tables.get('_loaded_datasets')
        if loaded is None or len(loaded) == 0:
            warnings.warn('No datasets loaded; set "record_loaded" to True before loading')
            return None
        locked, left_out = self._locked_datasets(loaded)
        if left_out:
            warnings.warn(f'{len(left_out)} loaded datasets are no longer in the cache tables '
                          f'(or their files are gone) and are not in the lock: '
                          f'{", ".join(left_out[:5])}{" ..." if len(left_out) > 5 else ""}')
        if not locked:
            return None
        alyx = getattr(self, '_web_client', None)
        written = write_lock(path, locked, database=getattr(alyx, 'base_url', None))
        if clear:
            self._tables['_loaded_datasets'] = np.array([], dtype=object)
        return written
