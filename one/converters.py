"""Convert between the forms of experiment and dataset identifiers.

An experiment (session) can be named by its UUID, a UUID string, an Alyx URL, a session path
(``lab/Subjects/subject/YYYY-MM-DD/NNN``, with or without the lab, possibly continuing into a
file), an experiment reference string (``YYYY-MM-DD_N_subject``), a reference dict
(``{'subject', 'date', 'sequence'}``) or an Alyx session record.  `ConversionMixin`, mixed into
`one.api.One`, converts between them using the cache tables; the module functions build cache
table records and paths from Alyx REST records.

IDs handed back to users are `uuid.UUID` objects, also in the tables built here (`ses2records`,
`datasets2records`), as in ONE-api's; `one.alf.cache.merge_tables` accepts them whatever the
form of the table's ids.
"""
from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from os import PathLike as _OsPathLike
from pathlib import Path, PurePath
from uuid import UUID

import numpy as np
import pandas as pd

from one._api.paths import (
    Confinement,
    _date_str,
    _number_str,
    dataset_file,
    session_folder,
    session_relative_path,
)
from one._rest.records import data_url_of, record_id, session_of
from one._tables.uuid_index import key_for, with_uuid_levels
from one.alf.cache import DATASETS_COLUMNS, EMPTY_DATASETS_FRAME
from one.alf.path import (
    ALFPath,
    PureALFPath,
    PurePosixALFPath,
    add_uuid_string,
    ensure_alf_path,
    get_alf_path,
    get_session_path,
    remove_uuid_string,
    session_path_parts,
)
from one.alf.spec import QC, is_session_path, is_uuid, is_uuid_string
from one.util import Bunch, LazyId, ensure_list

__all__ = [
    'recurse', 'parse_values', 'ConversionMixin', 'one_path_from_dataset', 'path_from_dataset',
    'path_from_filerecord', 'session_record2path', 'ses2records', 'datasets2records',
]

_PathLike = str | _OsPathLike  # a path given as str or os.PathLike
_ROOT = PurePosixALFPath('/')  # default root of the path_from_* functions (immutable)
_EXP_REF = re.compile(r'\d{4}(-\d{2}){2}_(\d{1,3})_\w+')
# subject/date/number with the same separator on both sides; the number is not followed by a
# further digit (so '0001' is not read as '000')
_PATH_REF = re.compile(
    r'(?P<subject>[\w.-]+)([\\/])(?P<date>\d{4}-\d{2}-\d{2})(\2)(?P<sequence>\d{1,3})(?!\d)')


# ---------------------------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------------------------

def _is_listlike(value) -> bool:
    """True for a LazyId or an iterable other than str, bytes, Mapping, Series or DataFrame."""
    if isinstance(value, LazyId):
        return True
    return isinstance(value, Iterable) and not isinstance(
        value, (str, bytes, Mapping, pd.Series, pd.DataFrame))


def recurse(func: Callable) -> Callable:
    """Decorate a method ``f(self, first, ...)`` so that a list of `first` gives a list.

    When `first` (the first positional argument after ``self``) is a LazyId, or an iterable
    other than a str, Mapping, Series or DataFrame, the method is called for each of its items
    with the same other arguments, and the list of results returned.

    Parameters
    ----------
    func : callable
        The method to wrap.

    Returns
    -------
    callable
        The wrapped method.
    """
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if len(args) >= 2 and _is_listlike(args[1]):
            obj, first, rest = args[0], args[1], args[2:]
            return [wrapper(obj, item, *rest, **kwargs) for item in first]
        return func(*args, **kwargs)

    return wrapper


def _parse_ref(ref):
    """Convert a reference dict's date to `datetime.date` and its sequence to int."""
    if not isinstance(ref, dict):
        return ref
    value = ref.get('date')
    if isinstance(value, str):
        ref['date'] = (date.fromisoformat(value) if len(value) == 10
                       else datetime.fromisoformat(value).date())
    elif isinstance(value, datetime):
        ref['date'] = value.date()
    if ref.get('sequence') is not None:
        ref['sequence'] = int(ref['sequence'])
    return ref


def parse_values(func: Callable) -> Callable:
    """Decorate a function returning reference dicts so that their values are parsed.

    The wrapped function takes an extra keyword argument ``parse`` (default True).  When true,
    each dict returned (alone or in a list) gets its ``date`` as a `datetime.date` and its
    ``sequence`` as an int.  Strings and ``parse=False`` results are returned unchanged.

    Parameters
    ----------
    func : callable
        A function returning a dict, a str, None or a list of them.

    Returns
    -------
    callable
        The wrapped function.
    """
    @functools.wraps(func)
    def wrapper(*args, parse: bool = True, **kwargs):
        result = func(*args, **kwargs)
        if not parse or result is None or isinstance(result, str):
            return result
        if isinstance(result, (list, tuple, LazyId)):
            return [_parse_ref(x) for x in result]
        return _parse_ref(result)

    return wrapper


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _equals(column: pd.Series, value: str) -> np.ndarray:
    """Vectorised ``column == value`` as a boolean array (missing values are False)."""
    return column.eq(value).to_numpy(dtype=bool, na_value=False)


def _to_uuid(value) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _alf_path_from_url(url: str) -> PurePosixALFPath:
    """The ALF part of a file URL (everything from the lab or subject folder), UUID removed.

    A ``#revision#`` folder in the URL is part of the path, not a fragment.
    """
    path = urllib.parse.unquote(urllib.parse.urlsplit(url, allow_fragments=False).path)
    alf_path = get_alf_path(path.strip('/')) or path.strip('/')
    return remove_uuid_string(PurePosixALFPath(alf_path))


def _relative_to_session(alf_path: PurePosixALFPath) -> str:
    """The part of an ALF path after its session folder (the whole path if it has none)."""
    session_path = get_session_path(alf_path)
    if session_path is None:
        return alf_path.as_posix()
    return alf_path.relative_to(session_path).as_posix()


_SESSION_FOLDERS = re.compile(r'/(\d{4}-\d{2}-\d{2})/(\d+)/(.+)$')
_UUID_BEFORE_EXTENSION = re.compile(
    r'\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}'
    r'(?=\.[^./]*$)')


def _rel_path_of_url(data_url: str) -> str:
    """The path of a data file URL below its session folder, without the dataset UUID.

    ``_relative_to_session(_alf_path_from_url(data_url))`` by string operations when the URL
    looks like ``.../<date>/<number>/<rel_path>`` (the usual case, several times faster: tables
    of thousands of datasets are built from such URLs), by that way otherwise.
    """
    path = urllib.parse.unquote(urllib.parse.urlsplit(data_url, allow_fragments=False).path)
    match = _SESSION_FOLDERS.search(path)
    if match is not None:
        try:
            date.fromisoformat(match.group(1))
        except ValueError:
            match = None
    if match is None:
        return _relative_to_session(_alf_path_from_url(data_url))
    folder, _, name = match.group(3).rpartition('/')
    name = _UUID_BEFORE_EXTENSION.sub('', name, count=1)
    return f'{folder}/{name}' if folder else name


# ---------------------------------------------------------------------------------------------
# Module functions
# ---------------------------------------------------------------------------------------------

def session_record2path(session: Mapping | pd.Series,
                        root_dir: _PathLike | None = None) -> PureALFPath:
    """Return the session folder of a session record: ``lab/Subjects/subject/date/NNN``.

    Parameters
    ----------
    session : dict, pandas.Series
        A record with subject, date (or start_time) and number, and optionally lab (the
        ``lab/Subjects/`` folders are left out when it is empty).
    root_dir : str, pathlib.Path, optional
        A folder to prepend: a str or concrete path gives an `ALFPath`, a pure path the matching
        pure ALF path.

    Returns
    -------
    one.alf.path.PurePosixALFPath, one.alf.path.ALFPath
        The relative session path (without `root_dir`), or the session folder below it.  The
        number is always zero-padded to three digits.

    Examples
    --------
    >>> session_record2path({'subject': 'ALK01', 'date': '2020-01-01', 'number': 1}).as_posix()
    'ALK01/2020-01-01/001'
    """
    rel_path = session_relative_path(session)
    if not root_dir:
        return rel_path
    return ensure_alf_path(root_dir).joinpath(rel_path)


def ses2records(ses: dict) -> tuple[pd.Series, pd.DataFrame]:
    """Build a sessions-table record and a datasets table from an Alyx session record.

    Parameters
    ----------
    ses : dict
        A record from the Alyx ``sessions`` endpoint: a *read* record carries the session's
        datasets (``data_dataset_session_related``); a *list* record gives no datasets.

    Returns
    -------
    pandas.Series
        The session record, named by its `uuid.UUID`, with the sessions-table columns (lab,
        subject, date, number, task_protocol, projects).
    pandas.DataFrame
        The session's datasets, index ``(eid, id)`` of `uuid.UUID` objects, columns rel_path,
        file_size, hash, exists, qc and default_revision; sorted by index.  Datasets without a
        file URL are marked as not existing (and left out if they are in a revision, whose label
        is then unknown).
    """
    uid = _to_uuid(record_id(ses) or ses['url'])  # neither id nor url: KeyError
    eid = str(uid)
    start_time = ses.get('start_time') or ses.get('date')
    session = pd.Series({
        'lab': ses.get('lab') or '',
        'subject': ses['subject'],
        'date': date.fromisoformat(_date_str(start_time)) if start_time else None,
        'number': ses['number'],
        'task_protocol': ses.get('task_protocol') or '',
        'projects': ','.join(ensure_list(ses.get('projects') or [])),
    }, name=uid, dtype=object)

    records = []
    for d in ses.get('data_dataset_session_related') or []:
        if d.get('data_url'):
            rel_path = _rel_path_of_url(d['data_url'])
            exists = True
        elif not d.get('revision'):
            rel_path = '/'.join(filter(None, [d.get('collection'), d['name']]))
            exists = False
        else:
            continue
        records.append({
            'eid': eid, 'id': str(_to_uuid(d['id'])), 'rel_path': rel_path,
            'file_size': d.get('file_size'), 'hash': d.get('hash'), 'exists': exists,
            'qc': d.get('qc') or 'NOT_SET',
            'default_revision': str(d.get('default_revision')) == 'True',
        })
    if not records:
        return session, EMPTY_DATASETS_FRAME.copy()
    return session, _datasets_frame(records)


def _datasets_frame(records: list[dict]) -> pd.DataFrame:
    """A datasets table with the cache dtypes from a list of record dicts."""
    frame = pd.DataFrame(records)
    dtypes = {k: v for k, v in DATASETS_COLUMNS.items() if k not in ('eid', 'id')}
    dtypes['default_revision'] = bool
    # Strings keep the default string dtype of the installed pandas (object or str)
    cast = {k: v for k, v in dtypes.items() if k in frame.columns and v is not object}
    frame = frame.astype(cast)
    columns = [c for c in dtypes if c in frame.columns]
    columns += [c for c in frame.columns if c not in columns and c not in ('eid', 'id')]
    frame = frame.set_index(['eid', 'id'])[columns].sort_index()
    frame.index = with_uuid_levels(frame.index)  # sorted strings: sorted UUIDs, same codes
    return frame


def datasets2records(datasets: dict | Iterable[dict],
                     additional: Iterable[str] | None = None) -> pd.DataFrame:
    """Build a datasets table from Alyx ``datasets`` endpoint records.

    Parameters
    ----------
    datasets : dict, list of dict
        Records from the Alyx datasets endpoint (a paginated response works too).
    additional : list of str, optional
        Further record fields to copy as columns, e.g. ``['tags']``.

    Returns
    -------
    pandas.DataFrame
        Index ``(eid, id)`` of `uuid.UUID` objects (eid is NA for datasets not attached to a
        session), columns rel_path, file_size, hash, exists, qc, default_revision and
        `additional`; sorted by index.  Records without an existing file record with a URL are
        skipped; the result is an empty datasets table when none is usable.  The rel_path of a
        session-less (aggregate) dataset is its whole ALF path.
    """
    records = []
    for d in ensure_list(datasets):
        data_url, dataset_id = data_url_of(d), record_id(d)
        if data_url is None or dataset_id is None:
            continue
        eid = session_of(d)
        rel_path = _rel_path_of_url(data_url) if eid else \
            _alf_path_from_url(data_url).as_posix()
        rec = {
            'eid': eid or pd.NA, 'id': dataset_id, 'rel_path': rel_path,
            'file_size': d.get('file_size'), 'hash': d.get('hash'), 'exists': True,
            'qc': d.get('qc') or 'NOT_SET', 'default_revision': bool(d.get('default_dataset')),
        }
        for field in additional or []:
            rec[field] = d.get(field)
        records.append(rec)
    if not records:
        return EMPTY_DATASETS_FRAME.copy()
    return _datasets_frame(records)


def path_from_filerecord(fr: dict | list, root_path: _PathLike | None = _ROOT,
                         uuid: str | UUID | None = None) -> PureALFPath | list:
    """Return the local path of an Alyx file record.

    Parameters
    ----------
    fr : dict, list of dict
        File record(s) with ``data_repository_path`` and ``relative_path``.
    root_path : str, pathlib.Path, None
        The local root folder ('/' by default): a str or concrete path gives an `ALFPath`, a
        pure path (e.g. a `PureWindowsPath`) keeps its class; None gives a relative path.
    uuid : str, uuid.UUID, optional
        A dataset UUID to insert before the file extension.

    Returns
    -------
    one.alf.path.PureALFPath, one.alf.path.ALFPath, list
        The path(s): root / repository path / relative path.

    Examples
    --------
    >>> fr = {'data_repository_path': '/hoferlab/Subjects/',
    ...       'relative_path': 'SWC_014/2019-12-11/001/alf/probe00/channels.localCoordinates.npy'}
    >>> path_from_filerecord(fr, root_path=PurePosixALFPath('/one_root')).as_posix()
    '/one_root/hoferlab/Subjects/SWC_014/2019-12-11/001/alf/probe00/channels.localCoordinates.npy'
    """
    if isinstance(fr, (list, tuple)):
        return [path_from_filerecord(f, root_path, uuid) for f in fr]
    repo_path = (fr.get('data_repository_path') or '').lstrip('/')
    file_path = PurePosixALFPath(repo_path, fr['relative_path'])
    if root_path:
        file_path = ensure_alf_path(root_path) / file_path
    return add_uuid_string(file_path, _to_uuid(uuid)) if uuid else file_path


def path_from_dataset(dset: dict | list, root_path: _PathLike | None = _ROOT,
                      repository: str | None = None, uuid: bool = False) -> PureALFPath | list:
    """Return the local path of an Alyx dataset record.

    Parameters
    ----------
    dset : dict, list of dict
        Record(s) from the Alyx datasets endpoint.
    root_path : str, pathlib.Path, None
        The local root folder (see `path_from_filerecord`).
    repository : str, optional
        The data repository whose file record to use; by default the first with a URL.
    uuid : bool
        Insert the dataset UUID before the file extension.

    Returns
    -------
    one.alf.path.PureALFPath, one.alf.path.ALFPath, list
        The path(s).  For a list, every argument applies to each record.

    Raises
    ------
    ValueError
        The dataset has no file record in `repository` (or none with a URL).
    """
    if isinstance(dset, (list, tuple)):
        return [path_from_dataset(d, root_path, repository, uuid) for d in dset]
    records = dset.get('file_records') or []
    if repository:
        fr = next((x for x in records if x.get('data_repository') == repository), None)
    else:
        fr = next((x for x in records if x.get('data_url')), None)
    if fr is None:
        where = f'in repository "{repository}"' if repository else 'with a data URL'
        raise ValueError(f'Dataset {dset.get("url", dset.get("name"))} has no file record '
                         f'{where}')
    dataset_id = dset['url'].rstrip('/')[-36:] if uuid else None
    return path_from_filerecord(fr, root_path=root_path, uuid=dataset_id)


def one_path_from_dataset(dset: dict | list, one_cache: _PathLike) -> ALFPath | list:
    """Return the local path of an Alyx dataset record in the ONE cache folder `one_cache`.

    Parameters
    ----------
    dset : dict, list of dict
        Record(s) from the Alyx datasets endpoint.
    one_cache : str, pathlib.Path
        The ONE cache folder.

    Returns
    -------
    one.alf.path.ALFPath, list
        The path(s), without dataset UUID.
    """
    return path_from_dataset(dset, root_path=one_cache, uuid=False)


# ---------------------------------------------------------------------------------------------
# The mixin
# ---------------------------------------------------------------------------------------------

class ConversionMixin:
    """Methods converting between experiment and dataset identifiers, mixed into One.

    The instance must have ``_tables`` (a Bunch with the ``sessions`` and ``datasets`` tables,
    ids as UUID strings or `uuid.UUID` objects), ``cache_dir``, ``uuid_filenames``, optionally
    ``_web_client``, and the methods ``search``, ``get_details`` and ``list_datasets``.
    """

    # ---- experiment IDs -----------------------------------------------------------------

    @recurse
    def to_eid(self, id=None, cache_dir: _PathLike | None = None) -> UUID | list | None:
        """Return the experiment UUID of any experiment identifier.

        Parameters
        ----------
        id : uuid.UUID, str, pathlib.Path, dict, list, LazyId, None
            A UUID or UUID string; an Alyx URL ending with the UUID; a session path (absolute
            or relative, with or without the lab, possibly continuing into a file); an
            experiment reference string 'YYYY-MM-DD_N_subject' or dict {subject, date,
            sequence}; an Alyx session record (subject, lab, number and date or start_time);
            or a list of these.
        cache_dir : str, pathlib.Path, optional
            For a session record, the data folder (default `self.cache_dir`).

        Returns
        -------
        uuid.UUID, None, list
            The UUID (a list for a list), or None when a path or reference matches no session
            (or `id` is None).  A UUID or UUID string is returned without checking that the
            session exists.

        Raises
        ------
        ValueError
            A malformed string ('Invalid experiment ID') or an unsupported type
            ('Unrecognized experiment ID').
        AssertionError
            A session record lacks the subject, number or lab field.

        Examples
        --------
        >>> one.to_eid('2021-02-05_001_ZFM-01935')  # doctest: +SKIP
        UUID('d3372b15-f696-4279-9be5-98f15783b5bb')
        """
        if id is None:
            return None
        if isinstance(id, UUID):
            return id
        if self.is_exp_ref(id):
            return self._ref_to_eid(id, strict=False)
        if isinstance(id, Mapping):
            assert {'subject', 'number', 'lab'}.issubset(id), \
                'session record must have subject, number and lab fields'
            root = Path(cache_dir or self.cache_dir)
            id = session_record2path(id, root)
        if isinstance(id, PurePath):
            return self.path2eid(id)
        if isinstance(id, str):
            if len(id) == 36 and is_uuid_string(id):  # the common case, checked first
                return UUID(id)
            if is_session_path(id) or get_session_path(id):
                return self.path2eid(id)
            id = id.rstrip('/')
            if len(id) > 36:
                id = id[-36:]
            if not is_uuid_string(id):
                raise ValueError(f'Invalid experiment ID "{id}"')
            return UUID(id)
        raise ValueError(f'Unrecognized experiment ID of type {type(id).__name__}')

    @recurse
    def eid2path(self, eid: UUID | str) -> ALFPath | list | None:
        """Return the local session folder of an experiment UUID.

        Parameters
        ----------
        eid : uuid.UUID, str, list
            Experiment UUID(s).

        Returns
        -------
        one.alf.path.ALFPath, None, list
            ``cache_dir/lab/Subjects/subject/YYYY-MM-DD/NNN`` (without ``lab/Subjects`` when the
            lab is unknown; the number zero-padded to three digits), or None when the session is
            not in the cache.

        Raises
        ------
        ValueError
            `eid` is not a UUID.
        AssertionError
            The session appears more than once in the sessions table.
        """
        if not is_uuid(eid, versions=(3, 4, 5)):
            raise ValueError(f'{eid} is not a valid eID/UUID string')
        sessions = self._tables['sessions']
        if sessions.empty:
            return None
        try:
            position = sessions.index.get_loc(key_for(sessions.index, _to_uuid(eid)))
        except KeyError:
            return None
        assert isinstance(position, (int, np.integer)), \
            f'Duplicate eid {eid} in the sessions table'
        record = {k: sessions[k].iat[position]
                  for k in ('lab', 'subject', 'date', 'number', 'start_time') if k in sessions}
        return session_folder(self._path_guard(), record, eid)

    def _path_guard(self) -> Confinement:
        """The confinement of the paths `eid2path` and `record2path` return: one per cache
        folder, reused, so that the folders it resolved are not resolved again (these methods
        open nothing; the loads check the files they open with a confinement of their own)."""
        guard = self.__dict__.get('_paths_confinement')
        if guard is None or guard.root != Path(self.cache_dir):
            guard = self.__dict__['_paths_confinement'] = Confinement(self.cache_dir)
        return guard

    @recurse
    def path2eid(self, path_obj: _PathLike) -> UUID | list | None:
        """Return the experiment UUID of a session path (or of a path below it).

        The session is looked up in the cache by subject, date and number (and by lab when the
        path has one and several labs share the rest).

        Parameters
        ----------
        path_obj : str, pathlib.Path, list
            Path(s) containing ``subject/YYYY-MM-DD/NNN``.

        Returns
        -------
        uuid.UUID, None, list
            The UUID, or None when the path holds no session or the session is not in the cache.

        Raises
        ------
        AssertionError
            Several sessions match.
        """
        position = self._session_position(path_obj)
        if position is None:
            return None
        return UUID(str(self._tables['sessions'].index[position]))

    def _session_position(self, path_obj, lab_required: bool = False) -> int | None:
        """Row number in the sessions table of the session of a path, or None."""
        session_path = get_session_path(path_obj if isinstance(path_obj, PurePath)
                                        else str(path_obj))
        sessions = self._tables['sessions']
        if session_path is None or sessions.empty:
            return None
        parts = session_path.parts
        subject, day, number = parts[-3], parts[-2], int(parts[-1])
        lab = parts[-5] if len(parts) >= 5 and parts[-4] == 'Subjects' else None
        # Vectorised on subject (the most selective field), then checks on the few candidates
        rows = np.flatnonzero(_equals(sessions['subject'], subject))
        if rows.size:
            numbers = sessions['number'].iloc[rows]
            if not pd.api.types.is_numeric_dtype(numbers.dtype):
                numbers = pd.to_numeric(numbers, errors='coerce')
            rows = rows[numbers.to_numpy(dtype=float, na_value=np.nan) == number]
        if rows.size:
            dates = sessions['date'].to_numpy()[rows]
            rows = rows[np.array([_date_str(x) == day for x in dates], dtype=bool)]
        if (rows.size > 1 or lab_required) and lab is not None:
            rows = rows[_equals(sessions['lab'].iloc[rows], lab)]
        if rows.size == 0:
            return None
        assert rows.size == 1, f'Multiple sessions in cache for path {session_path}'
        return int(rows[0])

    # ---- records, paths and URLs -----------------------------------------------------------

    @recurse
    def path2record(self, path: _PathLike) -> pd.Series | list | None:
        """Return the cache record of a session folder or of a dataset file.

        Parameters
        ----------
        path : str, pathlib.Path, list
            A session folder, a dataset file (its name may contain the dataset UUID) or a URL.

        Returns
        -------
        pandas.Series, None, list
            A sessions-table record named by the session UUID, or a datasets record named
            ``(eid, id)`` (UUIDs); None when not found.

        Raises
        ------
        AssertionError
            Several records match.
        """
        path = ALFPath(path) if not isinstance(path, PurePath) else ensure_alf_path(path)
        is_session = is_session_path(path)
        table = self._tables['sessions' if is_session else 'datasets']
        if table.empty:
            return None
        if is_session:
            lab = session_path_parts(path, assert_valid=False)[0]
            position = self._session_position(path, lab_required=lab is not None)
            if position is None:
                return None
            record = table.iloc[position].copy()
            record.name = _to_uuid(table.index[position])
            return record

        last_part = path.stem.split('.')[-1]
        if is_uuid_string(last_part):
            return self._dataset_record_by_id(last_part)

        eid = self.path2eid(path)
        if eid is None:
            return None
        try:
            rel_path = path.relative_to_session().as_posix()
        except ValueError:
            return None
        datasets = self.list_datasets(eid, details=True, qc=QC.CRITICAL)
        if datasets is None or len(datasets) == 0:
            return None
        rows = np.flatnonzero(_equals(datasets['rel_path'], rel_path))
        if rows.size == 0:
            return None
        assert rows.size == 1, f'Multiple datasets in cache for {rel_path} of session {eid}'
        record = datasets.iloc[rows[0]].copy()
        name = record.name[-1] if isinstance(record.name, tuple) else record.name
        record.name = (eid, _to_uuid(name))
        return record

    def _dataset_record_by_id(self, dataset_id: str):
        """The datasets record with this id (named (eid, id) UUIDs), or None."""
        datasets = self._tables['datasets']
        index = datasets.index
        if isinstance(index, pd.MultiIndex):
            level = index.names.index('id') if 'id' in index.names else index.nlevels - 1
            try:
                code = index.levels[level].get_loc(key_for(index.levels[level], dataset_id))
            except KeyError:
                return None
            rows = np.flatnonzero(np.asarray(index.codes[level]) == code)
        else:
            rows = np.flatnonzero(index.to_numpy(dtype=object) == key_for(index, dataset_id))
        if rows.size == 0:
            return None
        record = datasets.iloc[rows[0]].copy()
        name = record.name if isinstance(record.name, tuple) else (record.name,)
        record.name = tuple(_to_uuid(x) if isinstance(x, str) else x for x in name)
        return record

    @recurse
    def path2url(self, filepath: _PathLike) -> str | list | None:
        """Return the remote URL of a local dataset file or session folder.

        Parameters
        ----------
        filepath : str, pathlib.Path, list
            A local path.

        Returns
        -------
        str, None, list
            The URL, or None if the path is not in the cache.
        """
        record = self.path2record(filepath)
        if record is None:
            return None
        return self.record2url(record)

    def record2url(self, record: pd.Series | pd.DataFrame) -> str | list:
        """Return the remote URL of a session or dataset record.

        Parameters
        ----------
        record : pandas.Series, pandas.DataFrame
            A sessions record, or a datasets record named ``(eid, id)`` (or having a
            ``session_path`` field), or a table of them.

        Returns
        -------
        str, list
            The URL on the data server, with the dataset UUID before the extension; a list for
            a DataFrame.

        Raises
        ------
        AssertionError
            The instance has no web client, or a dataset record is not named (eid, id).
        TypeError
            `record` is neither a Series nor a DataFrame.
        """
        webclient = getattr(self, '_web_client', None)
        assert webclient, 'No Web client found for instance'
        if isinstance(record, pd.DataFrame):
            return [self.record2url(row) for _, row in record.iterrows()]
        if not isinstance(record, pd.Series):
            raise TypeError(
                f'record must be pandas.DataFrame or pandas.Series, got {type(record)} instead')
        if 'rel_path' not in record:  # a session record
            session_path = record.get('session_path') or session_record2path(record).as_posix()
            return webclient.rel_path2url(str(session_path))
        if record.get('session_path'):
            session_path = str(record['session_path'])
            dataset_id = record.name[-1] if isinstance(record.name, tuple) else record.name
        else:
            assert isinstance(record.name, tuple) and len(record.name) == 2, \
                'dataset record must be named (eid, id)'
            eid, dataset_id = record.name
            # the tables first: a subclass's eid2path may ask a database for every record
            local_path = ConversionMixin.eid2path(self, eid) or self.eid2path(eid)
            if local_path is None:
                raise ValueError(f'Failed to determine session path for eid "{eid}"')
            session_path = get_alf_path(local_path)
        url = PurePosixALFPath(session_path, record['rel_path'])
        return webclient.rel_path2url(add_uuid_string(url, _to_uuid(dataset_id)).as_posix())

    def record2path(self, dataset: pd.Series | pd.DataFrame) -> ALFPath | list:
        """Return the local file path of a datasets record.

        Parameters
        ----------
        dataset : pandas.Series, pandas.DataFrame
            A datasets record named ``(eid, id)``, or a table of them indexed by (eid, id).

        Returns
        -------
        one.alf.path.ALFPath, list
            ``eid2path(eid) / rel_path`` (with the dataset UUID in the name when
            `uuid_filenames` is true); a list for a DataFrame.

        Raises
        ------
        TypeError
            `dataset` is neither a Series nor a DataFrame.
        AssertionError
            The record is not named (eid, id).
        ValueError
            The session is not in the cache.
        """
        if isinstance(dataset, pd.DataFrame):
            return [self.record2path(row) for _, row in dataset.iterrows()]
        if not isinstance(dataset, pd.Series):
            raise TypeError(
                f'dataset must be pandas.DataFrame or pandas.Series, got {type(dataset)} instead')
        assert isinstance(dataset.name, tuple) and len(dataset.name) == 2, \
            'dataset record must be named (eid, id)'
        eid, dataset_id = dataset.name
        session_path = self.eid2path(eid)
        if session_path is None:
            raise ValueError(f'Failed to determine session path for eid "{eid}"')
        return dataset_file(self._path_guard(),
                            session_path.relative_to(self.cache_dir).as_posix(),
                            dataset['rel_path'], _to_uuid(dataset_id),
                            getattr(self, 'uuid_filenames', False), eid)

    # ---- experiment references ---------------------------------------------------------------

    @recurse
    def eid2ref(self, eid, as_dict: bool = True, parse: bool = True) -> Bunch | str | list:
        """Return the experiment reference of a session: subject, date and sequence.

        Parameters
        ----------
        eid : uuid.UUID, str, pathlib.Path, list
            Any experiment identifier `get_details` accepts.
        as_dict : bool
            Return a Bunch (True) or a string 'YYYY-MM-DD_N_subject'.
        parse : bool
            Date as `datetime.date` and sequence as int (string: '2018-07-13_1_flowers');
            otherwise date as str and sequence zero-padded (string: '2018-07-13_001_flowers').

        Returns
        -------
        Bunch, str, list
            The reference.
        """
        details = self.get_details(eid)
        day = details['date']
        if parse:
            day = day if isinstance(day, date) and not isinstance(day, datetime) \
                else date.fromisoformat(_date_str(day))
            ref = {'subject': details['subject'], 'date': day,
                   'sequence': int(details['number'])}
            text = f'{day:%Y-%m-%d}_{ref["sequence"]:d}_{ref["subject"]}'
        else:
            ref = {'subject': details['subject'], 'date': _date_str(day),
                   'sequence': _number_str(details['number'])}
            text = f'{ref["date"]}_{ref["sequence"]}_{ref["subject"]}'
        return Bunch(ref) if as_dict else text

    def _ref_to_eid(self, ref, strict: bool = True):
        """The UUID of the session of an experiment reference (None if not found, unless
        `strict`)."""
        ref = self.ref2dict(ref, parse=False)
        subject = ref['subject']
        eids = self.search(subject=subject, date_range=_date_str(ref['date']),
                           number=int(ref['sequence']))
        eids = list(eids or [])
        if len(eids) > 1:  # the subject query may match other subjects (substring / regex)
            eids = [e for e in eids if self.get_details(e)['subject'] == subject]
        if not eids:
            if strict:
                raise AssertionError('session not found')
            return None
        assert len(eids) == 1, f'Multiple sessions found for {self.dict2ref(ref)}'
        return _to_uuid(eids[0])

    @recurse
    def ref2eid(self, ref: str | Mapping) -> UUID | list:
        """Return the experiment UUID of an experiment reference.

        Parameters
        ----------
        ref : str, dict, list
            'YYYY-MM-DD_N_subject' or {'subject', 'date', 'sequence'}.

        Returns
        -------
        uuid.UUID, list
            The session UUID.

        Raises
        ------
        AssertionError
            No session, or several, match ('session not found').
        """
        return self._ref_to_eid(ref, strict=True)

    @recurse
    def ref2path(self, ref: str | Mapping) -> ALFPath | list | None:
        """Return the local session folder of an experiment reference.

        Parameters
        ----------
        ref : str, dict, list
            'YYYY-MM-DD_N_subject' or {'subject', 'date', 'sequence'}.

        Returns
        -------
        one.alf.path.ALFPath, None, list
            The session folder.
        """
        return self.eid2path(self.ref2eid(ref))

    @staticmethod
    @parse_values
    def path2ref(path_str: _PathLike, as_dict: bool = True) -> Bunch | str | list | None:
        """Return the experiment reference of a path containing ``subject/date/number``.

        Parameters
        ----------
        path_str : str, pathlib.Path, list
            A path (or list of paths).
        as_dict : bool
            Return a Bunch (True) or a string 'YYYY-MM-DD_NNN_subject' made of the path's own
            strings.
        parse : bool
            (keyword) For dicts: date as `datetime.date` and sequence as int.

        Returns
        -------
        Bunch, str, None, list
            The reference, or None when the path holds no session (or a 2-digit zero-padded
            number such as '01').

        Examples
        --------
        >>> ConversionMixin.path2ref('E:/FlatIron/Subjects/zadorlab/flowers/2018-07-13/001',
        ...                          as_dict=False)
        '2018-07-13_001_flowers'
        """
        if isinstance(path_str, (list, tuple)):
            return [ConversionMixin.path2ref(x, as_dict, parse=False) for x in path_str]
        match = _PATH_REF.search(str(path_str))
        if match is None or re.fullmatch(r'0\d', match['sequence']):
            return None
        ref = Bunch(subject=match['subject'], date=match['date'], sequence=match['sequence'])
        return ref if as_dict else '{date}_{sequence}_{subject}'.format(**ref)

    @staticmethod
    def is_exp_ref(ref) -> bool | list:
        """Return True if `ref` is an experiment reference string or dict.

        Parameters
        ----------
        ref : str, dict, list
            'YYYY-MM-DD_N_subject', {'subject', 'date', 'sequence'}, or a list of these.

        Returns
        -------
        bool, list of bool
            Whether each is a reference.

        Examples
        --------
        >>> ConversionMixin.is_exp_ref('2018-07-13_001_flowers')
        True
        >>> ConversionMixin.is_exp_ref('flowers/2018-07-13/001')
        False
        """
        if isinstance(ref, (list, tuple)):
            return [ConversionMixin.is_exp_ref(x) for x in ref]
        if isinstance(ref, Mapping):
            if not {'subject', 'date', 'sequence'}.issubset(ref):
                return False
            ref = '{date}_{sequence}_{subject}'.format(**ref)
        elif not isinstance(ref, str):
            return False
        return _EXP_REF.match(ref) is not None

    @staticmethod
    @parse_values
    def ref2dict(ref: str | Mapping, parse: bool = True) -> Bunch | list:
        """Return an experiment reference as a dict {subject, date, sequence}.

        Parameters
        ----------
        ref : str, dict, list
            'YYYY-MM-DD_N_subject' (the subject may contain underscores) or a dict.
        parse : bool
            Date as `datetime.date` and sequence as int; otherwise the strings.

        Returns
        -------
        Bunch, list
            The reference.

        Examples
        --------
        >>> ConversionMixin.ref2dict('2020-01-23_002_ibl_witten_01', parse=False)
        {'subject': 'ibl_witten_01', 'date': '2020-01-23', 'sequence': '002'}
        """
        if isinstance(ref, (list, tuple)):
            return [ConversionMixin.ref2dict(x, parse=False) for x in ref]
        if isinstance(ref, Mapping):
            return Bunch(ref)
        day, sequence, subject = ref.split('_', 2)
        return Bunch(subject=subject, date=day, sequence=sequence)

    @staticmethod
    def dict2ref(ref_dict: Mapping | list | None) -> str | list | None:
        """Return an experiment reference string from a reference dict or session record.

        Parameters
        ----------
        ref_dict : dict, list
            {subject, date, sequence}; ``number`` may replace sequence and ``start_time``
            (str or datetime) may replace date.

        Returns
        -------
        str, None, list
            'YYYY-MM-DD_N_subject': a date object is formatted as YYYY-MM-DD and an integer
            sequence without padding, strings are used as they are.  None for an empty input.

        Examples
        --------
        >>> ConversionMixin.dict2ref({'subject': 'flowers', 'date': date(2018, 7, 13),
        ...                           'sequence': 1})
        '2018-07-13_1_flowers'
        >>> ConversionMixin.dict2ref({'subject': 'flowers', 'date': '2018-07-13',
        ...                           'sequence': '001'})
        '2018-07-13_001_flowers'
        """
        if isinstance(ref_dict, (list, tuple)):
            return [ConversionMixin.dict2ref(x) for x in ref_dict]
        if not ref_dict:
            return None
        sequence = ref_dict['sequence'] if 'sequence' in ref_dict else ref_dict['number']
        if 'date' in ref_dict:
            day = ref_dict['date']
        else:
            start = ref_dict['start_time']
            day = start[:10] if isinstance(start, str) else start.date()
        day = day if isinstance(day, str) else _date_str(day)
        sequence = sequence if isinstance(sequence, str) else f'{int(sequence):d}'
        return f'{day}_{sequence}_{ref_dict["subject"]}'

