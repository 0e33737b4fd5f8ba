"""The local paths of sessions and datasets, built from table or server records and confined to
the cache folder.

A session folder comes from a record's lab, subject, date and number; a dataset file from its
session folder and ``rel_path``.  Both are data: `one._lib.confine` refuses any that would lead
outside the cache folder (absolute values, ``..``, drives, NUL, links pointing out), with an
error naming the session or dataset and the offending value.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from one._lib.confine import Confinement, UnsafePath, relative_parts
from one.alf.path import ALFPath, PurePosixALFPath, add_uuid_string

__all__ = ['UnsafePath', 'Confinement', 'session_relative_path', 'session_folder',
           'dataset_file', 'record_columns']


def _date_str(value) -> str:
    """'YYYY-MM-DD' from a date, datetime, Timestamp, numpy datetime64 or ISO string."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if hasattr(value, 'strftime'):
        return value.strftime('%Y-%m-%d')
    return str(value)[:10]


def _number_str(value) -> str:
    """A session number zero-padded to 3 digits ('1', 1, 1.0 and '001' all give '001')."""
    if isinstance(value, str):
        return value.zfill(3)
    return str(int(value)).zfill(3)


def session_relative_path(record: Mapping) -> PurePosixALFPath:
    """The session folder of a record, ``lab/Subjects/subject/date/NNN`` (pure text, unchecked:
    see `session_folder`); ``lab/Subjects`` is left out when the lab is empty.

    Examples
    --------
    >>> session_relative_path({'subject': 'ALK01', 'date': '2020-01-01', 'number': 1}).as_posix()
    'ALK01/2020-01-01/001'
    """
    lab = record.get('lab')
    day = record.get('date')
    if day is None or (not isinstance(day, str) and pd.isna(day)):
        day = record['start_time']
    parts = ([lab, 'Subjects'] if isinstance(lab, str) and lab else [])
    parts += [record['subject'], _date_str(day), _number_str(record['number'])]
    return PurePosixALFPath(*parts)


def session_folder(root: str | os.PathLike | Confinement, record: Mapping,
                   eid=None) -> ALFPath:
    """The folder of a session record below `root`: ``root/lab/Subjects/subject/date/NNN``.

    Parameters
    ----------
    root : str, os.PathLike, Confinement
        The cache folder (or a `Confinement` of it, to reuse across calls).
    record : dict, pandas.Series
        The session's lab, subject, date (or start_time) and number.
    eid : str, uuid.UUID, optional
        The session, named in the error.

    Returns
    -------
    one.alf.path.ALFPath
        The session folder (which may not exist).

    Raises
    ------
    one._lib.confine.UnsafePath
        The record's fields make a folder outside `root`.
    """
    guard = root if isinstance(root, Confinement) else Confinement(root)
    relative = session_relative_path(record).as_posix()
    what = f'session {eid}' if eid is not None else 'session'
    return ALFPath(guard(relative, what=f'{what} (its folder from lab, subject, date, number)'))


def dataset_file(guard: Confinement, session_path: str, rel_path: str, dataset_id=None,
                 uuid_filenames: bool = False, eid=None) -> ALFPath:
    """The file of a dataset below the cache folder: ``root/session_path/rel_path``.

    Parameters
    ----------
    guard : Confinement
        The cache folder's confinement (one per batch of files).
    session_path : str
        The session folder relative to the cache ('' for aggregates).
    rel_path : str
        The dataset's path relative to its session folder.
    dataset_id : str, uuid.UUID, optional
        The dataset, named in the error; inserted in the file name with `uuid_filenames`.
    uuid_filenames : bool
        Put the dataset UUID before the file extension.
    eid : str, uuid.UUID, optional
        The session, named in the error.

    Returns
    -------
    one.alf.path.ALFPath
        The file path (not resolved).

    Raises
    ------
    one._lib.confine.UnsafePath
        The session folder or ``rel_path`` leads outside the cache folder.
    """
    what = f'dataset {dataset_id}' if dataset_id is not None else 'dataset'
    if eid is not None:
        what += f' of session {eid}'
    if uuid_filenames and dataset_id is not None:
        parts = relative_parts(rel_path, guard.root, f'{what} (rel_path)')
        rel_path = add_uuid_string(PurePosixPath(*parts), str(dataset_id)).as_posix()
    try:
        return ALFPath(guard.join(session_path, rel_path, what=what))
    except UnsafePath:  # say which of the two values is wrong, if only one is
        relative_parts(session_path, guard.root, f'{what} (session folder)', allow_empty=True)
        relative_parts(rel_path, guard.root, f'{what} (rel_path)')
        raise


def record_columns(records: pd.DataFrame, *names: str) -> list[list]:
    """Columns of a table of records as lists, for loops over the rows.

    Parameters
    ----------
    records : pandas.DataFrame
        The records, e.g. dataset rows of the cache tables.
    *names : str
        The columns, e.g. ``'rel_path', 'file_size', 'hash'``.

    Returns
    -------
    list of list
        One list per name, one value per row (all None for a column the table lacks).
    """
    return [records[n].tolist() if n in records.columns else [None] * len(records)
            for n in names]
