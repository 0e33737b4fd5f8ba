"""Read and write ALF objects: the files of one object in a folder, loaded into a dict.

An ALF *object* is the set of files of a folder that share an object name, e.g.
``_ibl_trials.intervals.npy``, ``_ibl_trials.choice.npy``...  `load_object` loads them into an
`AlfBunch` whose keys are the attributes (``intervals``, ``choice``...); `save_object_npy`
writes one back.  `filter_by` lists the datasets of a folder by name parts, and
`load_file_content` reads one file according to its extension.

Only files whose names are valid ALF dataset names (`one.alf.spec.is_valid`) are datasets:
other files (``_ibl_experiment.description``, ``README.txt``...) are never listed or loaded as
part of an object.

Errors
------
A file that exists but cannot be parsed (truncated ``.npy``, corrupt parquet, malformed csv or
yaml...) raises `CorruptFileError`, a `ValueError` whose message names the file; the original
exception is chained as ``__cause__``.  Errors of the operating system (missing file, permission
denied) propagate unchanged: they name the file already.  The exception is ``.json`` files,
which are logged (with the file name) and loaded as None, as in ONE.

Writes are atomic: the content goes to a temporary file in the destination folder, which then
replaces the destination, so readers never see a partly written file.
"""
from __future__ import annotations

import contextlib
import copy
import fnmatch
import json
import logging
import os
import re
import secrets
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from one._lib.bunch import Bunch
from one.alf import spec
from one.alf.exceptions import ALFInvalid, ALFObjectNotFound
from one.alf.path import ALFPath

__all__ = [
    'AlfBunch', 'CorruptFileError', 'dataframe', 'read_ts', 'ts2vec', 'check_dimensions',
    'load_file_content', 'iter_sessions', 'iter_datasets', 'exists', 'load_object',
    'save_object_npy', 'save_metadata', 'next_num_folder', 'remove_empty_folders', 'filter_by',
    'find_variants',
]

_logger = logging.getLogger(__name__)

_FILE_RE = spec.regex(spec.FILE_SPEC)
_FILE_KEYS = ('namespace', 'object', 'attribute', 'timescale', 'extra', 'extension')
_TABLE_KEY = re.compile(r'^table([_.]|$)')
_SPLIT_COLUMN = re.compile(r'.+_[01]$')
_YAML_LOADER = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
_CASE_INSENSITIVE = os.path.normcase('A') == 'a'  # fnmatch ignores case on Windows


class CorruptFileError(ValueError):
    """A file exists but its content cannot be read; the message names the file.

    Attributes
    ----------
    path : str
        The file that could not be read.
    """

    def __init__(self, path, message: str):
        self.path = os.fspath(path)
        super().__init__(f'{self.path}: {message}')


# ---------------------------------------------------------------------------------------------
# AlfBunch, dimensions and dataframes
# ---------------------------------------------------------------------------------------------

class AlfBunch(Bunch):
    """A dict with attribute access holding the attributes of one ALF object.

    Examples
    --------
    >>> trials = AlfBunch(choice=np.array([1, -1]), intervals=np.array([[0, 1], [2, 3]]))
    >>> trials.check_dimensions
    0
    >>> trials.to_df().columns.tolist()
    ['choice', 'intervals_0', 'intervals_1']
    """

    @property
    def check_dimensions(self) -> int:
        """0 when the arrays have consistent first dimensions, 1 otherwise."""
        return check_dimensions(self)

    def append(self, b: dict, inplace: bool = False) -> AlfBunch:
        """Append the rows of another object with the same keys.

        Arrays are concatenated along the first axis and lists extended; values of other types
        are left unchanged (a warning is logged).

        Parameters
        ----------
        b : dict
            An object with exactly the same keys (or an empty dict).
        inplace : bool
            Modify this bunch rather than a deep copy of it.

        Returns
        -------
        AlfBunch
            The combined object (this bunch itself when `inplace`).

        Raises
        ------
        NotImplementedError
            The two objects do not have the same keys.
        """
        a = self if inplace else self.copy(deep=True)
        if not b:
            return a
        if not a:
            if inplace:
                a.update(copy.deepcopy(dict(b)))
                return a
            return AlfBunch(copy.deepcopy(dict(b)))
        if set(a) != set(b):
            raise NotImplementedError(
                f'Append bunches only works with identical keys; got {sorted(map(str, a))} '
                f'and {sorted(map(str, b))}')
        for k, v in a.items():
            if isinstance(v, np.ndarray):
                a[k] = np.concatenate((v, b[k]), axis=0)
            elif isinstance(v, list):
                v.extend(b[k])
            else:
                _logger.warning('bunch key "%s" is a %s: cannot append it, use numpy arrays or '
                                'lists', k, v.__class__)
        if a.check_dimensions != 0:
            _logger.warning('Appended object has inconsistent dimensions: %s', _shapes(a))
        return a

    def to_df(self) -> pd.DataFrame:
        """Return the object as a DataFrame (see `dataframe`)."""
        return dataframe(self)

    @staticmethod
    def from_df(df: pd.DataFrame) -> AlfBunch:
        """Make an object from the columns of a DataFrame.

        Each column becomes a key; a pair of columns ``<x>_0`` and ``<x>_1`` becomes a single
        (n, 2) array under ``<x>``.

        Notes
        -----
        Each column keeps its own dtype (ONE converts the whole frame to one common dtype, so
        that e.g. integer columns become float when the frame also has float columns).  Only
        complete ``_0``/``_1`` pairs are merged.
        """
        data = {str(c): df[c].to_numpy() for c in df.columns}
        for key in [k for k in data if k.endswith('_0') and _SPLIT_COLUMN.match(k)]:
            pair = key[:-2] + '_1'
            if pair in data:
                data[key[:-2]] = np.c_[data.pop(key), data.pop(pair)]
        return AlfBunch(data)


def _shapes(dico: dict) -> str:
    return '\n'.join(f'{v.shape},    {k}' for k, v in dico.items() if hasattr(v, 'shape'))


def check_dimensions(dico: dict) -> int:
    """Test whether the arrays of an object have consistent first dimensions.

    Only numpy arrays and DataFrames are considered.  Their first dimensions must all be equal,
    except that 1 is allowed (broadcasting).  Keys starting with ``timestamps`` may also be a
    (2, 2) array of ``[sample, time]`` sync points.

    Parameters
    ----------
    dico : dict
        The object.

    Returns
    -------
    int
        0 when consistent, 1 otherwise.

    Examples
    --------
    >>> check_dimensions({'a': np.zeros(3), 'b': np.zeros((3, 2)), 'c': np.zeros(1)})
    0
    >>> check_dimensions({'a': np.zeros(3), 'timestamps': np.zeros((3, 2))})
    1
    """
    first_dims = set()
    for key, value in dico.items():
        if not isinstance(value, (np.ndarray, pd.DataFrame)) or value.ndim == 0:
            continue
        if isinstance(key, str) and key.startswith('timestamps'):
            if value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1):
                first_dims.add(value.shape[0])
            elif value.shape != (2, 2):
                return 1
            continue
        first_dims.add(value.shape[0])
    if not first_dims or first_dims <= {max(first_dims), 1}:
        return 0
    return 1


def dataframe(adict: dict) -> pd.DataFrame:
    """Convert an object into a DataFrame.

    1-D arrays become columns; (n, 1) arrays are flattened; other 2-D arrays give the columns
    ``<key>_0`` ... ``<key>_9`` (at most ten; a warning is logged when columns are dropped);
    DataFrame values give the columns ``<key>_<column>``.  Arrays of 3 or more dimensions and
    values that are not arrays (e.g. metadata dicts) are skipped.

    Parameters
    ----------
    adict : dict
        The object.

    Returns
    -------
    pandas.DataFrame
        One column per attribute.

    Raises
    ------
    ValueError
        The dimensions are not consistent.
    """
    if check_dimensions(adict) != 0:
        raise ValueError('Can only convert to DataFrame objects with consistent size:\n' +
                         _shapes(adict))
    columns = {}
    for key, value in adict.items():
        if isinstance(value, pd.DataFrame):
            for c in value.columns:
                columns[f'{key}_{c}'] = value[c].to_numpy()
            continue
        if isinstance(value, pd.Series):
            columns[key] = value.to_numpy()
            continue
        if not isinstance(value, (np.ndarray, list, tuple)):
            _logger.debug('Skipping key "%s" of type %s', key, type(value))
            continue
        value = np.asarray(value)
        if value.ndim == 1:
            columns[key] = value
        elif value.ndim == 2:
            if value.shape[1] == 1:
                columns[key] = value.ravel()
                continue
            if value.shape[1] > 10:
                _logger.warning('Key "%s" has %i columns: only the first 10 are kept', key,
                                value.shape[1])
            for i in range(min(10, value.shape[1])):
                columns[f'{key}_{i}'] = value[:, i]
        else:
            _logger.warning('Key "%s" has %i dimensions: not converted to columns', key,
                            value.ndim)
    return pd.DataFrame(columns)


def ts2vec(ts: np.ndarray, n_samples: int) -> np.ndarray:
    """Return one timestamp per sample.

    Parameters
    ----------
    ts : numpy.ndarray
        Either one time per sample, shape (n,) or (n, 1), returned flattened; or (k, 2) sync
        points ``[sample_index, time]``, interpolated linearly.
    n_samples : int
        The number of samples.

    Returns
    -------
    numpy.ndarray
        The timestamps, shape (n_samples,) for sync points.

    Raises
    ------
    ValueError
        `ts` has more than 2 dimensions, or 2 dimensions with neither 1 nor 2 columns.

    Notes
    -----
    Samples outside the range of the sync points are extrapolated linearly from the first
    and last two points (``numpy.interp`` alone, as used by ONE, would repeat the end times).

    Examples
    --------
    >>> ts2vec(np.array([[0, 10.], [4, 14.]]), 5)
    array([10., 11., 12., 13., 14.])
    """
    ts = np.asarray(ts)
    if ts.ndim == 1:
        return ts
    if ts.ndim == 2 and ts.shape[1] == 1:
        return ts.ravel()
    if ts.ndim > 2 or ts.shape[1] != 2:
        raise ValueError(f'Timestamps must have shape (n,), (n, 1) or (n, 2); got {ts.shape}')
    samples = np.arange(n_samples)
    sync_samples, sync_times = ts[:, 0].astype(float), ts[:, 1].astype(float)
    out = np.interp(samples, sync_samples, sync_times)
    if ts.shape[0] >= 2:
        before = samples < sync_samples[0]
        if before.any():
            slope = (sync_times[1] - sync_times[0]) / (sync_samples[1] - sync_samples[0])
            out[before] = sync_times[0] + (samples[before] - sync_samples[0]) * slope
        after = samples > sync_samples[-1]
        if after.any():
            slope = (sync_times[-1] - sync_times[-2]) / (sync_samples[-1] - sync_samples[-2])
            out[after] = sync_times[-1] + (samples[after] - sync_samples[-1]) * slope
    return out


def _ensure_flat(arr):
    """Flatten an (n, 1) array to (n,); return anything else unchanged."""
    if isinstance(arr, np.ndarray) and arr.ndim == 2 and arr.shape[1] == 1:
        return arr.ravel()
    return arr


def read_ts(filename) -> tuple[np.ndarray, np.ndarray]:
    """Load an attribute with the times of its samples.

    The times are the file of the same object and extension, in the same folder, whose
    attribute matches ``times*`` (e.g. ``times`` or ``timestamps``).  When several match, the
    one with the same timescale (then the same namespace) as `filename` is used.

    Parameters
    ----------
    filename : str or os.PathLike
        An ALF file, e.g. ``alf/probe00/spikes.clusters.npy``.

    Returns
    -------
    times : numpy.ndarray
        One time per sample (sync points are interpolated, see `ts2vec`).
    values : numpy.ndarray
        The samples, flattened if (n, 1).

    Raises
    ------
    FileNotFoundError
        There is no (or no unambiguous) times file.

    Examples
    --------
    >>> times, clusters = read_ts('alf/probe00/spikes.clusters.npy')  # doctest: +SKIP
    """
    filename = ALFPath(filename)
    obj, ext = filename.object, filename.suffix.lstrip('.')
    files, parts = filter_by(filename.parent, object=obj, attribute='times*', extension=ext)
    # Several candidates: keep those of the same timescale, then of the same namespace
    for index, wanted in ((3, filename.timescale or None), (0, filename.namespace or None)):
        if len(files) > 1:
            same = [(f, p) for f, p in zip(files, parts) if p[index] == wanted]
            files, parts = [f for f, _ in same], [p for _, p in same]
    if len(files) != 1:
        raise FileNotFoundError(f'{obj}.times.{ext} not found! No time-scale for {filename}')
    times = load_file_content(filename.parent / files[0])
    values = load_file_content(filename)
    return ts2vec(times, len(values)), _ensure_flat(values)


# ---------------------------------------------------------------------------------------------
# Loading single files
# ---------------------------------------------------------------------------------------------

def _load_npy(path: str, mmap: bool):
    if mmap:
        try:
            return np.load(path, mmap_mode='c')
        except ValueError:
            pass  # object arrays cannot be mapped; a corrupt file fails again below
    return np.load(path, allow_pickle=True)


def _load_npz(path: str):
    npz = np.load(path)
    if npz.files == ['arr_0']:
        with npz:
            return npz['arr_0']
    return npz


def _load_pqt(path: str) -> pd.DataFrame:
    import pyarrow.parquet as pq  # imported on first use: not needed to import this module

    # ParquetFile reads a single file without the dataset layer of read_table (faster)
    file = pq.ParquetFile(path)
    try:
        return file.read(use_pandas_metadata=True).to_pandas()
    finally:
        file.close()


def _load_yaml(path: str):
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=_YAML_LOADER)


def _load_jsonable(path: str) -> list:
    out = []
    with open(path, encoding='utf-8') as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as ex:
                raise ValueError(f'line {i}: {ex}') from ex
    return out


def _csv_loader(delimiter: str) -> Callable:
    def load(path: str):
        return pd.read_csv(path, delimiter=delimiter).squeeze('columns')
    return load


def _load_sparse(path: str):
    try:
        import sparse
    except ImportError:
        warnings.warn(f'{path}: install the "sparse" package to load .sparse_npz files',
                      UserWarning, stacklevel=3)
        return ALFPath(path)
    return sparse.load_npz(path)


_LOADERS = {
    '.csv': _csv_loader(','),
    '.ssv': _csv_loader(' '),
    '.tsv': _csv_loader('\t'),
    '.htsv': _csv_loader('\t'),
    '.jsonable': _load_jsonable,
    '.npz': _load_npz,
    '.pqt': _load_pqt,
    '.yml': _load_yaml,
    '.yaml': _load_yaml,
    '.sparse_npz': _load_sparse,
}


def load_file_content(fil, mmap: bool = False):
    """Load a file according to its extension.

    ========================  ========================================================
    extension                 result
    ========================  ========================================================
    ``.npy``                  numpy array (pickled objects allowed), (n, 1) flattened
    ``.npz``                  the array if the only member is ``arr_0``, else the NpzFile
    ``.pqt``                  pandas DataFrame (parquet metadata discarded)
    ``.csv``                  DataFrame; a single column is squeezed into a Series
    ``.ssv``                  as csv, space-delimited
    ``.tsv``, ``.htsv``       as csv, tab-delimited
    ``.json``                 the decoded JSON; None (and an error logged) if unreadable
    ``.jsonable``             list of the JSON documents, one per line
    ``.yml``, ``.yaml``       the decoded YAML
    ``.sparse_npz``           ``sparse.load_npz`` (if the ``sparse`` package is installed,
                              else a UserWarning and the path)
    anything else             the path itself, as an `ALFPath` (``.bin``, ``.mp4``...)
    ========================  ========================================================

    Extensions are case-sensitive (``.NPY`` returns the path).

    Parameters
    ----------
    fil : str or os.PathLike
        The file.
    mmap : bool
        Memory-map ``.npy`` files instead of reading them (copy-on-write: the array can be
        modified in memory without changing the file).  Useful for large arrays of which only
        a part is needed; object arrays are always read.

    Returns
    -------
    object
        The content; None when `fil` is empty or the file has zero bytes.

    Raises
    ------
    CorruptFileError
        The file cannot be parsed (a `ValueError` naming the file).
    FileNotFoundError
        The file does not exist.
    """
    if not fil:
        return None
    path = os.fspath(fil)
    if os.stat(path).st_size == 0:
        return None
    ext = os.path.splitext(path)[1]
    if ext == '.npy':
        loader = _load_npy
    elif ext == '.json':
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f)
        except Exception as ex:
            _logger.error('Failed to read JSON file %s: %s', path, ex)
            return None
    else:
        loader = _LOADERS.get(ext)
        if loader is None:
            return ALFPath(fil)
    try:
        content = loader(path, mmap) if ext == '.npy' else loader(path)
    except MemoryError:
        raise
    except OSError as ex:
        if ex.filename is not None:
            raise  # missing file, permission denied...: the message names the file
        raise CorruptFileError(path, f'cannot read {ext} file ({type(ex).__name__}: {ex})') \
            from ex
    except Exception as ex:
        raise CorruptFileError(path, f'cannot read {ext} file ({type(ex).__name__}: {ex})') \
            from ex
    return _ensure_flat(content) if ext == '.npy' else content


# ---------------------------------------------------------------------------------------------
# Listing and filtering
# ---------------------------------------------------------------------------------------------

def _file_names(folder) -> list[str]:
    """Sorted names of the entries of `folder` that are not directories."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.is_dir())


def _datasets(names: Iterable[str]) -> list[tuple[str, tuple]]:
    """(name, parts) of the names that are valid ALF dataset names."""
    out = []
    for name in names:
        match = _FILE_RE.match(name)
        if match:
            out.append((name, match.groups()))
    return out


def _part_matcher(key: str, value, wildcards: bool) -> Callable[[str | None], bool]:
    """A predicate on one name part, for one filter of `filter_by`."""
    if value is None:
        return lambda part: part is None
    if key == 'extra':
        values = value.split('.') if isinstance(value, str) else \
            [x for v in value for x in str(v).split('.')]
        wanted = {v for v in values if v}
        return lambda part: part is not None and wanted.issubset(part.split('.'))
    if wildcards:
        patterns = [value] if isinstance(value, str) else list(value)
        regex = '|'.join(f'(?:{fnmatch.translate(str(p))})' for p in patterns)
        pattern = re.compile(regex, re.IGNORECASE if _CASE_INSENSITIVE else 0)
    else:
        regex = value if isinstance(value, str) else '|'.join(map(str, value))
        pattern = re.compile(regex)
    return lambda part: part is not None and pattern.match(part) is not None


def _filter(entries: list[tuple[str, tuple]], wildcards: bool = True, **kwargs) -> list:
    for key in kwargs:
        if key not in _FILE_KEYS:
            raise TypeError(f'filter_by() got an unexpected keyword argument "{key}"')
    tests = [(_FILE_KEYS.index(k), _part_matcher(k, v, wildcards)) for k, v in kwargs.items()]
    if not tests:
        return entries
    return [(n, p) for n, p in entries if all(test(p[i]) for i, test in tests)]


def filter_by(alf_path, wildcards: bool = True, **kwargs) -> tuple[list[ALFPath], list[tuple]]:
    """List the ALF datasets of a folder (not recursively) whose name parts match filters.

    Parameters
    ----------
    alf_path : str or os.PathLike
        The folder.
    wildcards : bool
        When True, string filters are shell patterns (``fnmatch``: ``*``, ``?``, ``[...]``)
        and a list matches any of its patterns; when False they are regular expressions
        matched at the start of the part (``re.match``), a list being joined with ``|``.
    **kwargs
        Filters on the parts namespace, object, attribute, timescale, extra, extension.  A
        None filter matches files without that part (and files without a part only match a
        None filter).  ``extra`` (a str split on ``.``, or a list) matches files having every
        requested element among their extra parts, in any order.

    Returns
    -------
    list of ALFPath
        The matching file names, relative to `alf_path`, sorted (empty if `alf_path` does
        not exist or is not a folder).
    list of tuple
        Their parts (namespace, object, attribute, timescale, extra, extension), None when
        absent.

    Raises
    ------
    TypeError
        A keyword is not a file name part.

    Examples
    --------
    >>> filter_by(alf_folder, object='trials', timescale=None)  # doctest: +SKIP
    >>> filter_by(alf_folder, extra=['raw', 'v12'])  # doctest: +SKIP
    """
    try:
        names = _file_names(alf_path)
    except (FileNotFoundError, NotADirectoryError):
        names = []  # as listing a missing folder: nothing found
    entries = _filter(_datasets(names), wildcards, **kwargs)
    return [ALFPath(n) for n, _ in entries], [p for _, p in entries]


def _ls_entries(alfpath, object=None, **kwargs) -> tuple[ALFPath, list[str], list]:
    """The folder, all its file names, and the (name, parts) of the matching datasets."""
    alfpath = ALFPath(alfpath)
    folder = alfpath
    names, entries = [], []
    if alfpath.is_dir():
        names = _file_names(alfpath)
        filters = kwargs if object is None else {'object': object, **kwargs}
        entries = _filter(_datasets(names), **filters)
    elif alfpath.exists():
        object = alfpath.object
        folder = alfpath.parent
        names = _file_names(folder)
        entries = _filter(_datasets(names), object=object, **kwargs)
    if not entries:
        filters = {k: v for k, v in kwargs.items() if k != 'wildcards'}
        where = f'{folder}' + (f' matching {filters}' if filters else '')
        if object:
            raise ALFObjectNotFound(f'No object "{object}" found in {where}')
        raise ALFObjectNotFound(f'No ALF files found in {where}')
    return folder, names, entries


def _ls(alfpath, object=None, **kwargs) -> tuple[list[ALFPath], list[tuple]]:
    """List the files of an object, given its folder or one of its files.

    Returns
    -------
    list of ALFPath
        The files (folder joined with the name).
    list of tuple
        Their name parts.

    Raises
    ------
    ALFObjectNotFound
        The path does not exist or no file matches.
    """
    folder, _, entries = _ls_entries(alfpath, object, **kwargs)
    return [folder / n for n, _ in entries], [p for _, p in entries]


def exists(alfpath, object: str, attributes: str | Iterable[str] | None = None,
           **kwargs) -> bool:
    """Test whether an object (and optionally some of its attributes) exists in a folder.

    Parameters
    ----------
    alfpath : str or os.PathLike
        The folder.
    object : str
        The object name (a pattern, see `filter_by`).
    attributes : str or list of str, optional
        Attributes that must all be present (compared exactly).
    **kwargs
        Further filters, see `filter_by`.

    Returns
    -------
    bool
        True if files of the object (with all the attributes) exist.
    """
    try:
        _, parts = _ls(alfpath, object, **kwargs)
    except (ALFObjectNotFound, FileNotFoundError, NotADirectoryError):
        return False
    if not attributes:
        return True
    attributes = [attributes] if isinstance(attributes, str) else list(attributes)
    found = {p[2] for p in parts}
    return set(attributes).issubset(found)


def iter_sessions(root_dir, pattern: str = '*') -> Iterator[ALFPath]:
    """Yield the session folders found in a folder tree, sorted.

    The root itself comes first if it is a session.  Session folders are recognised by their
    path alone (``(lab/Subjects/)subject/yyyy-mm-dd/number``).

    Parameters
    ----------
    root_dir : str or os.PathLike
        The folder to search.
    pattern : str
        A ``Path.rglob`` pattern selecting candidate folders; the default looks everywhere.
        ``'*/Subjects/*/????-??-??/*'`` or ``'*/????-??-??/*'`` are faster on large trees.

    Yields
    ------
    ALFPath
        Session folders.
    """
    root = ALFPath(root_dir)
    if spec.is_session_path(root):
        yield root
    if pattern == '*':
        found = []
        _walk_dirs(os.fspath(root), found)
        candidates = (ALFPath(p) for p in found)
    else:
        candidates = (p for p in root.rglob(pattern) if p.is_dir())
    yield from sorted(p for p in candidates if spec.is_session_path(p))


def _walk_dirs(folder: str, out: list) -> None:
    """Collect every folder below `folder` (folders linked to are listed, not descended)."""
    try:
        with os.scandir(folder) as entries:
            dirs = [(e.path, e.is_symlink()) for e in entries if e.is_dir()]
    except OSError:
        return
    for path, is_link in dirs:
        out.append(path)
        if not is_link:
            _walk_dirs(path, out)


def iter_datasets(session_path) -> Iterator[ALFPath]:
    """Yield the ALF datasets of a session (recursively), relative to the session folder.

    Parameters
    ----------
    session_path : str or os.PathLike
        The session folder.

    Yields
    ------
    ALFPath
        Relative paths such as ``alf/probe00/spikes.times.npy``, sorted.
    """
    session_path = ALFPath(session_path)
    for path in session_path.iter_datasets(recursive=True):
        yield path.relative_to(session_path)


def find_variants(file_list: Iterable, namespace: bool = True, timescale: bool = True,
                  extra: bool = True, extension: bool = True) -> dict[ALFPath, list[ALFPath]]:
    """Find the other versions of datasets: other revisions, namespaces, extensions...

    Candidates are the files ``*<object>.<attribute>*`` in the dataset's collection folder and
    its revision folders.  A candidate matches if its session, collection, object and
    attribute equal the dataset's, and so do its namespace, timescale, extra parts and
    extension for each of those flags that is True.  With all flags True, variants differ only
    by revision.

    Parameters
    ----------
    file_list : iterable of str or os.PathLike
        ALF dataset paths.
    namespace, timescale, extra, extension : bool
        Whether that part must be equal.

    Returns
    -------
    dict
        Each input, as an `ALFPath`, mapped to the sorted list of its variants (itself
        excluded).

    Examples
    --------
    >>> find_variants(['subj/2020-01-01/001/alf/#2020-06-01#/obj.attr.npy'])  # doctest: +SKIP
    {ALFPath('subj/2020-01-01/001/alf/#2020-06-01#/obj.attr.npy'):
     [ALFPath('subj/2020-01-01/001/alf/obj.attr.npy')]}
    """
    flags = (namespace, True, True, timescale, extra, extension)

    def key(path: ALFPath) -> tuple:
        name_parts = [p for p, flag in zip(path.dataset_name_parts, flags) if flag]
        return (*path.session_parts, path.collection, *name_parts)

    out = {}
    for file in file_list:
        file = ALFPath(file)
        folder = file.parent.parent if file.revision else file.parent
        pattern = f'*{file.object}.{file.attribute}*'
        candidates = [*folder.glob(pattern), *folder.glob(f'#*#/{pattern}')]
        wanted = key(file)
        out[file] = sorted(
            p for p in candidates
            if p != file and spec.is_valid(p.name) and key(p) == wanted and p.is_file())
    return out


# ---------------------------------------------------------------------------------------------
# Loading objects
# ---------------------------------------------------------------------------------------------

def _metadata_candidates(names: Iterable[str]) -> list[str]:
    """The names that may be metadata files (``*.metadata*.json``), sorted."""
    return sorted(n for n in names if n.endswith('.json') and '.metadata' in n)


def _metadata_name(name: str, candidates: Iterable[str]) -> str | None:
    """The first candidate matching the glob ``<first>.<second>*.metadata*.json`` of `name`.

    ``<first>.<second>`` are the first two dot-separated parts of `name`, e.g.
    ``_ibl_wheel.position``.  A metadata file matches its own pattern.
    """
    prefix = '.'.join(name.split('.')[:2])
    for candidate in candidates:
        if candidate.startswith(prefix) and candidate.endswith('.json') \
                and '.metadata' in candidate[len(prefix):-5]:
            return candidate
    return None


def _find_metadata(file_alf) -> ALFPath | None:
    """Return the metadata file of a dataset (``<ns_obj>.<attr>*.metadata*.json``) or None."""
    file_alf = ALFPath(file_alf)
    try:
        names = _file_names(file_alf.parent)
    except OSError:
        return None
    name = _metadata_name(file_alf.name, _metadata_candidates(names))
    return file_alf.parent / name if name else None


def _split_columns(content, columns: list, key: str, path) -> dict | None:
    """Split an array along its last axis into named columns; None if the shapes disagree."""
    if isinstance(content, pd.DataFrame) and content.shape[1] == len(columns):
        return {c: content.iloc[:, i].to_numpy() for i, c in enumerate(columns)}
    if isinstance(content, np.ndarray) and content.ndim >= 2 \
            and content.shape[-1] == len(columns):
        return {c: content[..., i] for i, c in enumerate(columns)}
    shape = getattr(content, 'shape', None)
    _logger.warning('%s: metadata names %i columns but the data has shape %s; key "%s" not '
                    'split', path, len(columns), shape, key)
    return None


def _merge_table(out: AlfBunch) -> None:
    """Replace the first ``table*`` attribute holding a DataFrame by its columns."""
    key = next((k for k in out if _TABLE_KEY.match(k)), None)
    if key is None or not isinstance(out[key], (pd.DataFrame, pd.Series)):
        return
    table = out.pop(key)
    if isinstance(table, pd.Series):
        table = table.to_frame()
    suffix = key[5:]
    if suffix:
        def rename(column) -> str:
            column = str(column)
            if _SPLIT_COLUMN.match(column):
                return column[:-2] + suffix + column[-2:]
            return column + suffix
        table = table.rename(columns=rename)
    out.update(AlfBunch.from_df(table))


def load_object(alfpath, object: str | None = None, short_keys: bool = False, *,
                mmap: bool = False, **kwargs) -> AlfBunch:
    """Load the files of an ALF object into an `AlfBunch`.

    Parameters
    ----------
    alfpath : str, os.PathLike or list of them
        One of: a folder (then `object` is required); one file of the object (all the files
        of that object in its folder are loaded); or a list of files of one object, loaded as
        given (filters are not applied).
    object : str, optional
        The object name, e.g. 'trials' (a pattern, see `filter_by`).
    short_keys : bool
        Leave the extra parts out of the keys (``times`` rather than ``times.raw``).
    mmap : bool
        Memory-map ``.npy`` files (see `load_file_content`).
    **kwargs
        Filters on the name parts (namespace, attribute, timescale, extra, extension) and
        ``wildcards``, see `filter_by`.

    Returns
    -------
    AlfBunch
        The attributes.  The key is the attribute, followed by ``_<timescale>`` and (unless
        `short_keys`) ``.<extra>`` when present.  A metadata file
        ``<ns_obj>.<attr>*.metadata*.json`` with ``columns`` splits its array into one key per
        column; other metadata are stored under ``<key>metadata``.  A ``table`` attribute (a
        DataFrame) is replaced by its columns, named after the table's timescale and extra
        (``table_bpod`` column ``x`` gives ``x_bpod``), columns ``x_0``/``x_1`` giving an
        (n, 2) array; table columns replace attributes of the same name.  ``timestamps``
        given as (2, 2) sync points are interpolated to one time per sample.

    Raises
    ------
    ValueError
        A folder is given without an object.
    ALFObjectNotFound
        No file matches.
    ALFInvalid
        A file of a list is not an ALF dataset name.
    AssertionError
        The files of a list belong to several objects, or two files give the same key.
    CorruptFileError
        A file cannot be read.

    Notes
    -----
    A warning (not an error) is logged when the arrays have inconsistent first dimensions.

    Examples
    --------
    >>> trials = load_object('subject/2024-01-15/001/alf', 'trials')  # doctest: +SKIP
    >>> spikes = load_object(session / 'alf/probe00', 'spikes', attribute=['times', 'clusters'])
    ...  # doctest: +SKIP
    """
    if isinstance(alfpath, (str, os.PathLike)):
        alfpath = ALFPath(alfpath)
        if object is None and alfpath.is_dir():
            raise ValueError('If a directory is provided, the object name should be provided too')
        folder, names, entries = _ls_entries(alfpath, object, **kwargs)
        object = entries[0][1][1] if object is None else object
        folder = os.fspath(folder)
        files = [(folder, n, p) for n, p in entries]
        listings = {folder: _metadata_candidates(names)}
    else:
        files = []
        for file in alfpath:
            folder, name = os.path.split(os.fspath(file))
            match = _FILE_RE.match(name)
            if match is None:
                raise ALFInvalid(os.fspath(file))
            files.append((folder, name, match.groups()))
        objects = {p[1] for *_, p in files}
        if len(objects) != 1:
            raise AssertionError(
                f'All files must be part of the same object; found objects {sorted(objects)}')
        object = objects.pop()
        listings = {}

    # Keep the data files and find their metadata (one folder listing per folder).  Paths are
    # handled as strings here: this loop runs for every file loaded.
    data = []
    for folder, name, parts in files:
        if folder not in listings:
            try:
                listings[folder] = _metadata_candidates(_file_names(folder or '.'))
            except OSError:
                listings[folder] = []
        meta = _metadata_name(name, listings[folder])
        if meta == name:
            continue  # a metadata file: read with its data file
        _, _, attribute, timescale, extra, _ = parts
        key = attribute + (f'_{timescale}' if timescale else '')
        if extra and not short_keys:
            key += '.' + extra
        data.append((key, os.path.join(folder, name),
                     os.path.join(folder, meta) if meta else None))
    keys = [k for k, _, _ in data]
    if len(set(keys)) != len(keys):
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        raise AssertionError(
            f'Several files give the keys {duplicates} of object "{object}": restrict the query '
            'by namespace, timescale, extra or extension' +
            (', or set short_keys=False' if short_keys else ''))

    out = AlfBunch()
    for key, file, meta_file in data:
        content = load_file_content(file, mmap=mmap)
        meta = load_file_content(meta_file) if meta_file else None
        if isinstance(meta, dict) and 'columns' in meta:
            meta = dict(meta)
            split = _split_columns(content, list(meta.pop('columns')), key, file)
            if split is None:
                out[key] = content
            else:
                out.update(split)
        else:
            out[key] = content
        if meta:
            out[key + 'metadata'] = meta

    _merge_table(out)

    ts_keys = [k for k in out if k.startswith('timestamps')]
    if ts_keys and len(out) > len(ts_keys) and check_dimensions(out) == 0:
        reference = next((v for k, v in out.items()
                          if 'timestamps' not in k and 'meta' not in k
                          and getattr(v, 'ndim', 0) >= 1), None)
        if reference is not None:
            for k in ts_keys:
                out[k] = ts2vec(out[k], reference.shape[0])

    if check_dimensions(out) != 0:
        _logger.warning('Inconsistent dimensions for object: %s\n%s', object, _shapes(out))
    return out


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def _atomic_write(path: Path, write: Callable) -> None:
    """Write a file through a temporary file in its folder, then move it into place."""
    tmp = os.path.join(os.fspath(path.parent),
                       f'.{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_object_npy(alfpath, dico: dict, object: str, parts=None, namespace: str | None = None,
                    timescale: str | None = None) -> list[ALFPath]:
    """Save an object as one ``.npy`` file per key.

    File names are built with `one.alf.spec.to_alf`, so keys are converted to dromedary case
    (``peak_to_trough`` is saved as ``<object>.peakToTrough.npy``).  The folder is created if
    needed; each file is written atomically.

    Parameters
    ----------
    alfpath : str or os.PathLike
        The folder.
    dico : dict
        The attributes, arrays with consistent first dimensions.
    object : str
        The object name.
    parts : str or list of str, optional
        Extra name parts, e.g. a UUID.
    namespace : str, optional
        The namespace, without underscores.
    timescale : str, optional
        The timescale.

    Returns
    -------
    list of ALFPath
        The files written.

    Raises
    ------
    ValueError
        The dimensions are not consistent.
    """
    alfpath = ALFPath(alfpath)
    if check_dimensions(dico) != 0:
        raise ValueError('Dimensions are not consistent to save all arrays in ALF format:\n' +
                         _shapes(dico))
    alfpath.mkdir(parents=True, exist_ok=True)
    out = []
    for key, value in dico.items():
        name = spec.to_alf(object, key, 'npy', extra=parts, namespace=namespace,
                           timescale=timescale)
        path = alfpath / name
        _atomic_write(path, lambda f, v=value: np.save(f, v, allow_pickle=True))
        out.append(path)
    return out


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f'Object of type {type(obj).__name__} is not JSON serializable')


def save_metadata(file_alf, dico: dict) -> ALFPath:
    """Write the metadata of a dataset to ``<name without extension>.metadata.json``.

    E.g. ``_ns_obj.attr.npy`` gets ``_ns_obj.attr.metadata.json``.  The keys ``columns``
    (names of the columns of a 2-D array, used by `load_object`), ``row`` and ``unit`` are
    reserved.  The file is written atomically.

    Parameters
    ----------
    file_alf : str or os.PathLike
        The dataset file.
    dico : dict
        The metadata (numpy values are converted).

    Returns
    -------
    ALFPath
        The metadata file.
    """
    file_alf = ALFPath(file_alf)
    file_meta = file_alf.parent / f'{file_alf.stem}.metadata.json'
    text = json.dumps(dico, indent=1, default=_json_default)
    _atomic_write(file_meta, lambda f: f.write(text.encode('utf-8')))
    return file_meta


def next_num_folder(session_date_folder) -> str:
    """Return the next session number for a date folder, e.g. ``'003'`` after ``001, 002``.

    Parameters
    ----------
    session_date_folder : str or os.PathLike
        The ``subject/yyyy-mm-dd`` folder; ``'001'`` if it does not exist.

    Returns
    -------
    str
        One more than the largest numeric, non-hidden sub-folder, zero-padded to 3 digits.

    Raises
    ------
    AssertionError
        The next number would exceed 999.
    """
    folder = os.fspath(session_date_folder)
    if not os.path.isdir(folder):
        return '001'
    with os.scandir(folder) as entries:
        numbers = [int(e.name) for e in entries
                   if e.name.isascii() and e.name.isdigit() and e.is_dir()]
    out = f'{max(numbers, default=0) + 1:03d}'
    if len(out) > 3:
        raise AssertionError(f'ALF spec does not support session numbers > 999 ({folder})')
    return out


def remove_empty_folders(folder) -> None:
    """Remove the empty folders below `folder`, deepest first (`folder` itself is kept).

    A folder containing only empty folders is removed too.  Errors are ignored.

    Parameters
    ----------
    folder : str or os.PathLike
        The root of the tree to clean.
    """
    root = os.fspath(folder)
    for dirpath, _, _ in os.walk(root, topdown=False):
        if dirpath == root:  # os.walk yields the root exactly as given
            continue
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
