"""Private helpers of `one.api.OneAlyx` for downloads from an S3 bucket (AWS).

Which datasets may come from S3, which Alyx file record gives a dataset's object key, how the
key is checked, and how the outcome of each download is sorted: a problem of that dataset on S3
(the object is missing or differs from the cache table) or a problem of S3 itself (no
credentials, unreachable, access refused), after which S3 is not tried for the other datasets.
Nothing here imports boto3.
"""
from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from one._download import (
    ChecksumMismatch,
    DownloadTask,
    HTTPStatusError,
    SizeMismatch,
    UnsafePath,
    download_files,
)
from one.alf.path import add_uuid_string

#: Dataset ids per ``datasets`` list query (a longer query string risks an HTTP 414).
BATCH_SIZE = 100

#: Retries of an S3 download after a failed attempt; HTTP is the fallback, so few are needed.
S3_RETRIES = 1


class BadS3Record(ValueError):
    """An Alyx S3 file record that cannot be used for a dataset of the cache table."""


def not_on_aws_reason(datasets: pd.DataFrame) -> str | None:
    """Why these datasets are not all downloaded from S3, or None when they may be.

    Parameters
    ----------
    datasets : pandas.DataFrame
        Dataset records; S3 is used only if every ``exists_aws`` value, when that column is
        present, is True.

    Returns
    -------
    str or None
        The reason, for the log.
    """
    if 'exists_aws' not in datasets.columns:
        return None
    on_aws = datasets['exists_aws'].eq(True).fillna(False).to_numpy(dtype=bool)
    if on_aws.all():
        return None
    return f'{np.count_nonzero(~on_aws)} of {on_aws.size} datasets are not on AWS (exists_aws)'


def dataset_records(alyx, ids: list) -> dict:
    """Fetch the Alyx records of existing datasets, `BATCH_SIZE` ids per query.

    Parameters
    ----------
    alyx : one.webclient.AlyxClient
        The REST client.
    ids : list of str
        Dataset UUID strings.

    Returns
    -------
    dict
        The records by dataset id (ids missing from the answers are absent).
    """
    from one._rest.records import record_id
    records = {}
    for i in range(0, len(ids), BATCH_SIZE):
        batch = list(ids[i:i + BATCH_SIZE])
        for record in alyx.rest('datasets', 'list', exists=True, django=f'id__in,{batch}',
                                limit=BATCH_SIZE):
            records[record_id(record)] = record
    return records


def aws_file_record(record: dict | None) -> dict | None:
    """The first existing file record of a dataset in a data repository named 'aws...'."""
    for file_record in (record or {}).get('file_records') or []:
        if str(file_record.get('data_repository') or '').startswith('aws') \
                and file_record.get('exists'):
            return file_record
    return None


def s3_key(file_record: dict, rel_path: str, dataset_id: str) -> str:
    """The S3 object key of a dataset: repository path / relative path, UUID in the name.

    The record must name the same file as the cache table (its relative path ends with
    `rel_path`), and the key must be a plain path: no ``..`` parts, no NUL or back-slash.  A
    leading '/' of the repository path is dropped (object keys do not start with one).

    Parameters
    ----------
    file_record : dict
        An Alyx file record (``data_repository_path``, ``relative_path``).
    rel_path : str
        The dataset's relative path in the cache table (``collection/#rev#/name``).
    dataset_id : str
        The dataset UUID, inserted before the extension of the object name.

    Returns
    -------
    str
        E.g. ``data/lab/Subjects/subj/2020-01-01/001/alf/obj.attr.<uuid>.npy``.

    Raises
    ------
    BadS3Record
        The record's path differs from `rel_path` or is not a plain relative path.
    """
    repo_path = str(file_record.get('data_repository_path') or '')
    relative = str(file_record.get('relative_path') or '')
    for text in (repo_path, relative):
        if '\x00' in text or '\\' in text or '..' in text.split('/'):
            raise BadS3Record(f'Refusing the S3 path "{repo_path}" + "{relative}" of dataset '
                              f'{dataset_id}: it is not a plain relative path')
    wanted = PurePosixPath(rel_path).parts
    parts = PurePosixPath(relative).parts
    if not wanted or parts[-len(wanted):] != wanted or (parts and parts[0] == '/'):
        raise BadS3Record(f'The S3 file record "{relative}" of dataset {dataset_id} does not '
                          f'match its relative path "{rel_path}"')
    key = PurePosixPath(repo_path.lstrip('/'), relative)
    return add_uuid_string(key, dataset_id).as_posix()


def is_dataset_failure(error: BaseException) -> bool:
    """Whether a failed S3 download says the dataset itself is not (correctly) on S3.

    A missing object, or one whose size or md5 differs from the cache table, is; anything
    else (no credentials, connection failure, access refused, server errors) is a problem of
    S3 rather than of the dataset.
    """
    if isinstance(error, (ChecksumMismatch, SizeMismatch, BadS3Record, UnsafePath)):
        return True
    return isinstance(error, HTTPStatusError) and error.status_code == 404


def download_s3(tasks: list, n_threads: int | None = None) -> list:
    """Download S3 tasks in parallel; start no new one after a failure of S3 itself.

    Parameters
    ----------
    tasks : list of one._download.DownloadTask
        ``s3://`` tasks.
    n_threads : int, optional
        Parallel downloads (default: ``ONE_HTTP_DL_THREADS`` when set, else chosen from the
        files' sizes, `one._download.streams.choose_streams`; a bucket gets at most
        ``ONE_HTTP_DL_MAX_PER_HOST``, as many as its client keeps connections).

    Returns
    -------
    list of pathlib.Path, Exception or None
        Per task: the file, the error (sort it with `is_dataset_failure`), or None when the
        task was not started.
    """
    return download_files(tasks, n_threads=n_threads, retries=S3_RETRIES, return_errors=True,
                          stop_on=lambda error: not is_dataset_failure(error),
                          desc='Downloading from S3')


def s3_task(bucket: str, key: str, destination, size, md5, s3) -> DownloadTask:
    """A download task for an S3 object (a verified, atomic download by the engine)."""
    return DownloadTask(f's3://{bucket}/{key}', destination, size=size, md5=md5, s3=s3)
