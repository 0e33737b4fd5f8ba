"""Private helpers of `one.api.OneAlyx`: REST query parameters, download tasks, and the tag of
a file record whose file on the server differs from the database."""
from __future__ import annotations

import logging
import warnings
from datetime import datetime

import requests

from one import util
from one._download import DownloadTask, UnsafePath
from one._rest.errors import AlyxError
from one.alf.path import uuid_in_name

_logger = logging.getLogger('one.api')

#: Search terms of OneAlyx.search that are not REST filter names of the sessions endpoint.
EXTRA_TERMS = ('dataset', 'laboratory', 'date_range', 'django')


def search_params(kwargs: dict, terms,
                  dataset_filter: str = 'data_dataset_session_related__name__icontains',
                  number_field: str = 'number') -> dict:
    """Translate `OneAlyx.search` keyword arguments into sessions list REST parameters.

    Parameters
    ----------
    kwargs : dict
        The search terms (abbreviations allowed, see `util.autocomplete`).
    terms : sequence of str
        The accepted search terms.
    dataset_filter : str
        The django lookup a `dataset` term becomes (a partial, case-insensitive name).
    number_field : str
        The REST filter a `number` term becomes.

    Returns
    -------
    dict
        The REST query parameters (lists are joined by the client).
    """
    kwargs = dict(kwargs)
    params = {'django': kwargs.pop('django', '') or ''}
    for key, value in sorted(kwargs.items()):
        field = util.autocomplete(key, terms)
        if field == 'date_range':
            start, end = util.validate_date_range(value)
            params['date_range'] = f'{start.date().isoformat()},{end.date().isoformat()}'
        elif field == 'dataset':
            if not isinstance(value, str):
                raise TypeError('"dataset" parameter must be a string. For lists use "datasets"')
            query = f'{dataset_filter},{value}'
            params['django'] += (',' if params['django'] else '') + query
        elif field in ('laboratory', 'lab'):
            params['lab'] = value
        elif field in ('projects', 'project') and 'projects' in terms:
            params['projects'] = value
        elif field == 'number':
            params[number_field] = value
        else:
            params[field] = value
    if not params['django']:
        params.pop('django')
    return params


def add_date(records):
    """Add a `date` field (from start_time) to session records, as in `One.search` details."""
    single = isinstance(records, dict)
    for s in [records] if single else records:
        if s.get('start_time') and 'date' not in s:
            s['date'] = datetime.fromisoformat(s['start_time']).date()
    return records


uuid_url_path = uuid_in_name  # a dataset UUID before the extension, as on the data server


def download_task(url: str, cache_dir, session_path, rel_path: str, size, md5, auth,
                  uuid_name: str | None = None) -> DownloadTask:
    """A download task for a dataset file, its destination confined to `cache_dir` (a folder,
    or a `one._lib.confine.Confinement` of it shared by a batch; see `local_destination`)."""
    destination = local_destination(cache_dir, session_path, rel_path, uuid_name)
    return DownloadTask(url=url, destination=destination, size=size, md5=md5, auth=auth)


def local_destination(cache_dir, session_path, rel_path: str, uuid_name: str | None = None,
                      dataset_id=None):
    """Where a dataset file goes: ``cache_dir/session_path/rel_path``, with the dataset UUID
    before the extension when `uuid_name` is given.

    Parameters
    ----------
    cache_dir : str, os.PathLike, one._lib.confine.Confinement
        The cache folder, or a confinement of it made once for a batch of files (it remembers
        the folders it resolved).
    session_path : str, os.PathLike
        The session folder relative to the cache.
    rel_path : str
        The dataset's path relative to the session folder.
    uuid_name : str, optional
        The UUID to put in the file name, as the data server names files.
    dataset_id : str, optional
        The dataset, named in the error (`uuid_name` when not given).

    Returns
    -------
    one.alf.path.ALFPath
        The destination (not resolved).

    Raises
    ------
    one._download.UnsafePath
        The destination is outside the cache folder (also through a symbolic link); the
        error names the dataset.
    """
    from one._api.paths import Confinement, dataset_file
    from one._lib.confine import UnsafePath as Refused
    from one._lib.confine import relative_parts

    guard = cache_dir if isinstance(cache_dir, Confinement) else Confinement(cache_dir)
    what = dataset_id or uuid_name
    try:
        if uuid_name:  # the value as given: the UUID must not make a bad rel_path pass
            relative_parts(rel_path, guard.root, f'dataset {what} (rel_path)')
            rel_path = uuid_url_path(rel_path, uuid_name)
        return dataset_file(guard, str(session_path), rel_path, what)
    except Refused as ex:  # the download engine's UnsafePath, also a DownloadError
        raise UnsafePath(str(ex), path=guard.root, value=ex.value) from None


def tag_mismatched_file_record(alyx, dataset_id: str) -> None:
    """Flag a dataset's file record on Alyx: its file differs from the database's size or md5.

    The first file record of the dataset outside personal Globus endpoints gets
    ``'mismatch_hash': True`` merged into its ``json`` field, for the database's maintainers.
    A failure (e.g. no permission to change the record) is only warned about.

    Parameters
    ----------
    alyx : one.webclient.AlyxClient
        The REST client.
    dataset_id : str
        The dataset UUID.
    """
    _logger.debug('Tagging the file record of dataset %s as mismatched', dataset_id)
    try:
        records = alyx.rest('files', 'list', no_cache=True, django=(
            f'dataset,{dataset_id},data_repository__globus_is_personal,False'))
        if not records:
            return
        record = records[0]
        json_field = record.get('json') or {}
        if not isinstance(json_field, dict):
            raise ValueError(f'its json field is not an object: {json_field!r}')
        alyx.rest('files', 'partial_update', id=record['url'],
                  data={'json': {**json_field, 'mismatch_hash': True}})
    except (AlyxError, requests.RequestException, ValueError) as ex:
        warnings.warn(f'Failed to tag the file record of dataset {dataset_id} as mismatched: '
                      f'{ex}\nPlease contact the database administrator.', stacklevel=2)
