"""Helpers used by the API: dataset filters, revision selection, argument checks, decorators.

The filters work on cache tables of any size without looping over rows in Python: relative paths
repeat a lot (a million datasets have at most a few thousand distinct ``rel_path`` values), so
every regular expression is matched once per distinct value and the result is mapped back to the
rows through integer codes.  Revision selection is done with a single sort.
"""
from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from uuid import UUID

import numpy as np
import pandas as pd

import one.alf.exceptions as alferr
from one._lib.bunch import Bunch, ensure_list, flatten
from one.alf.spec import FILE_SPEC, QC, regex

__all__ = [
    'parse_id', 'refresh', 'validate_date_range', 'filter_datasets', 'filter_revision_last_before',
    'index_last_before', 'autocomplete', 'LazyId', 'ensure_list', 'flatten', 'Bunch',
]

# Number of per-dataset "No default revision" warnings emitted by one call before the rest are
# summarised in a single warning (a table without a `default_revision` column would otherwise
# produce one warning per dataset).
_MAX_REVISION_WARNINGS = 10
_PACKAGE = os.path.normcase(os.path.dirname(os.path.abspath(__file__))) + os.sep
# pandas >= 3 always copies on write: a row selection is already independent of its source.
_COPY_ON_WRITE = int(pd.__version__.split('.')[0]) >= 3


def _warn(message: str, category=alferr.ALFWarning) -> None:
    """Issue a warning attributed to the first caller outside the `one` package."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.normcase(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


# ---------------------------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------------------------

def _first_param_name(method: Callable) -> str | None:
    """Return the name of the parameter following ``self`` in `method`'s signature."""
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    if len(params) >= 2 and params[1].kind in (params[1].POSITIONAL_ONLY,
                                               params[1].POSITIONAL_OR_KEYWORD):
        return params[1].name
    return None


def parse_id(method: Callable) -> Callable:
    """Decorate a method ``f(self, id, ...)`` so that `id` is first converted to an experiment ID.

    The identifier (any form accepted by ``self.to_eid``: UUID, UUID string, session path,
    experiment reference, URL, ...) is converted with ``self.to_eid``; the method receives the
    result.  The identifier may also be passed by the name of the method's parameter, e.g.
    ``one.load_object(eid=..., obj='trials')``.

    Parameters
    ----------
    method : callable
        A method whose first argument after ``self`` is an experiment identifier.

    Returns
    -------
    callable
        The wrapped method.

    Raises
    ------
    ValueError
        (from the wrapped method) The identifier could not be resolved to an experiment ID.
    """
    name = _first_param_name(method)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if args:
            id, args = args[0], args[1:]
        elif name is not None and name in kwargs:
            id = kwargs.pop(name)
        else:
            raise TypeError(f'{method.__name__}() missing 1 required positional argument: '
                            f'{name or "id"!r}')
        eid = self.to_eid(id)
        if eid is None:
            raise ValueError(f'Cannot parse session ID "{id}" (session may not exist)')
        return method(self, eid, *args, **kwargs)

    return wrapper


_refreshing = threading.local()


def refresh(method: Callable) -> Callable:
    """Decorate a method of One so that the cache tables are reloaded first when necessary.

    The query mode is the method's `query_type` argument when given (by keyword or position),
    otherwise (or when it is ``'auto'``) the instance's ``mode``.  ``self.refresh_cache(mode)``
    is then called, which reloads the tables in 'refresh' mode, and in 'auto' mode when they are
    older than ``self.cache_expiry``; 'local' and 'remote' leave them as they are.

    Only the outermost decorated call of a given instance (per thread) refreshes, so a method
    calling other decorated methods reloads the tables at most once.

    Parameters
    ----------
    method : callable
        A method of an object with a ``mode`` attribute and a ``refresh_cache(mode)`` method.

    Returns
    -------
    callable
        The wrapped method.
    """
    try:
        params = list(inspect.signature(method).parameters)
        position = params.index('query_type') - 1  # position among args after self
    except (TypeError, ValueError):
        position = -1

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        active = getattr(_refreshing, 'ids', None)
        if active is None:
            active = _refreshing.ids = set()
        key = id(self)
        if key in active or not hasattr(self, 'refresh_cache'):
            return method(self, *args, **kwargs)
        mode = kwargs.get('query_type')
        if mode is None and 0 <= position < len(args):
            mode = args[position]
        if not mode or mode == 'auto':
            mode = getattr(self, 'mode', 'auto')
        active.add(key)
        try:
            self.refresh_cache(mode=mode)
            return method(self, *args, **kwargs)
        finally:
            active.discard(key)

    return wrapper


# ---------------------------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------------------------

def _is_missing(value) -> bool:
    """True for None, '' and NaT/NaN-like values (used for open date-range ends)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value == ''
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def validate_date_range(date_range) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """Return a date range as a (start, end) pair of timestamps.

    Parameters
    ----------
    date_range : str, datetime.date, datetime.datetime, pd.Timestamp, np.datetime64, list, None
        A single date, meaning that whole day; a one-element sequence ``[start]``, meaning from
        `start` on; or a two-element sequence ``[start, end]``, both days included (`end` is
        returned at midnight of that day, so comparing it with dates includes it).  A None
        element leaves that end open.

    Returns
    -------
    (pd.Timestamp, pd.Timestamp) or None
        The start and end, or None when `date_range` is None.

    Raises
    ------
    ValueError
        A sequence of more than two values, or a value that is not a date.

    Examples
    --------
    >>> validate_date_range('2020-01-01')  # a single day
    (Timestamp('2020-01-01 00:00:00'), Timestamp('2020-01-01 23:59:59.999000'))
    >>> validate_date_range(['2020-01-01', None])[1] == pd.Timestamp.max
    True
    """
    if date_range is None:
        return None
    if isinstance(date_range, (str, bytes)) or not isinstance(date_range, Iterable):
        start = pd.Timestamp(date_range)
        end = start + pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1)
        return start, end
    values = list(date_range)
    if len(values) == 1:
        values = [values[0], None]
    elif len(values) != 2:
        raise ValueError(
            f'date_range must be a single date or a [start, end] pair; got {len(values)} values')
    start, end = values
    start = pd.Timestamp.min if _is_missing(start) else pd.Timestamp(start)
    end = pd.Timestamp.max if _is_missing(end) else pd.Timestamp(end)
    return start, end


def autocomplete(term: str, search_terms: Iterable[str]) -> str:
    """Return the search term that `term` names or abbreviates.

    The comparison ignores case.  A term equal to one of `search_terms` is returned as is,
    even when it is also the start of other terms; otherwise it must be the start of exactly
    one of them.

    Parameters
    ----------
    term : str
        The (possibly abbreviated) term, e.g. 'subj'.
    search_terms : iterable of str
        The full terms, e.g. ``('dataset', 'date_range', 'laboratory', ...)``.

    Returns
    -------
    str
        The full search term.

    Raises
    ------
    ValueError
        `term` starts no search term ("Invalid search term") or several ("Ambiguous search
        term").

    Examples
    --------
    >>> autocomplete('Subj', ('subject', 'date_range'))
    'subject'
    >>> autocomplete('dataset', ('dataset', 'datasets', 'dataset_qc_lte'))
    'dataset'
    """
    search_terms = tuple(search_terms)
    key = term.casefold()
    for full in search_terms:
        if full.casefold() == key:
            return full
    matches = [full for full in search_terms if full.casefold().startswith(key)]
    if not matches:
        raise ValueError(f'Invalid search term "{term}", see `one.search_terms()`')
    if len(matches) > 1:
        raise ValueError(f'Ambiguous search term "{term}" (could be {", ".join(matches)})')
    return matches[0]


# ---------------------------------------------------------------------------------------------
# Lazy list of IDs
# ---------------------------------------------------------------------------------------------

class LazyId(Sequence):
    """A read-only list of IDs computed on access from a list of REST records.

    Remote searches return their records page by page; wrapping them in a LazyId turns each
    record into an ID (or any other value, see `func`) only when it is read, so pages are fetched
    on demand.  It behaves as a sequence: ``len``, indexing (negative too), slicing, iteration,
    ``in``, ``index``, ``count``, ``reversed`` and ``==`` against any list or tuple.

    Parameters
    ----------
    pg : sequence of dict
        A list of records or a paginated REST response.
    func : callable, optional
        The function applied to each record (and to a list of records when slicing); by default
        `ses2eid`, which returns the record's UUID.

    Examples
    --------
    >>> ids = LazyId([{'id': 'd3372b15-f696-4279-9be5-98f15783b5bb'}])
    >>> ids[0]
    UUID('d3372b15-f696-4279-9be5-98f15783b5bb')
    >>> UUID('d3372b15-f696-4279-9be5-98f15783b5bb') in ids
    True
    """

    def __init__(self, pg, func: Callable | None = None):
        self._pg = pg
        self.func = func or self.ses2eid

    def __len__(self) -> int:
        return len(self._pg)

    def __getitem__(self, item):
        if isinstance(item, slice):
            if isinstance(self._pg, (list, tuple)):
                records = list(self._pg[item])
            else:  # fetch each page only when one of its records is needed
                records = [self._pg[i] for i in range(*item.indices(len(self._pg)))]
            return self.func(records)
        if not isinstance(item, (int, np.integer)):
            raise TypeError(
                f'LazyId indices must be integers or slices, not {type(item).__name__}')
        n = len(self._pg)
        i = int(item) + n if item < 0 else int(item)
        if not 0 <= i < n:
            raise IndexError('LazyId index out of range')
        return self.func(self._pg[i])

    def __iter__(self):
        for i in range(len(self._pg)):
            yield self.func(self._pg[i])

    def __eq__(self, other) -> bool:
        if isinstance(other, LazyId):
            return list(self) == list(other)
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f'<LazyId of {len(self)} item{"" if len(self) == 1 else "s"}>'

    @staticmethod
    def ses2eid(ses):
        """Return the UUID of a session record (or a list of UUIDs for a list of records).

        Parameters
        ----------
        ses : dict or list of dict
            REST session records with an 'id' or a 'url' ending with the UUID.

        Returns
        -------
        uuid.UUID or list of uuid.UUID
            The session UUID(s).
        """
        if isinstance(ses, (list, tuple)):
            return [LazyId.ses2eid(x) for x in ses]
        eid = ses.get('id') if hasattr(ses, 'get') else None
        if not eid:
            eid = ses['url'].rstrip('/').rsplit('/', 1)[-1]
        return eid if isinstance(eid, UUID) else UUID(str(eid))


# ---------------------------------------------------------------------------------------------
# Dataset filters
# ---------------------------------------------------------------------------------------------

def index_last_before(revisions: Sequence[str], revision: str | None) -> int | None:
    """Return the index of the latest revision that is not after `revision`.

    Revisions are compared as strings; ``''`` (no revision) comes before every label.

    Parameters
    ----------
    revisions : sequence of str
        Revision labels, e.g. ``['2021-01-01', '2020-08-01', '', '2020-09-30']``.
    revision : str, None
        The cut-off; None selects the latest revision.

    Returns
    -------
    int, None
        The index in `revisions` of the greatest label ``<= revision`` (the first one when it
        occurs more than once), or None when there is none (or `revisions` is empty).

    Examples
    --------
    >>> revs = ['2021-01-01', '2020-08-01', '', '2020-09-30']
    >>> [index_last_before(revs, r) for r in ('2021-01-01', '2020-09-15', '', None)]
    [0, 1, 2, 0]
    >>> index_last_before(revs, '2019-01-01')  # only '' is not after 2019-01-01
    2
    >>> index_last_before(['2021-01-01'], '2020-01-01') is None
    True
    """
    revisions = list(revisions)
    candidates = [i for i, r in enumerate(revisions) if revision is None or r <= revision]
    if not candidates:
        return None
    return max(candidates, key=revisions.__getitem__)


def _collection_spec(collection=None, revision=None) -> str:
    """Return the collection/revision part of a relative-path spec string.

    Each part is required when its value is truthy, optional when it is None and left out
    when it is ``''`` (i.e. must be absent).

    Examples
    --------
    >>> _collection_spec()
    '({collection}/)?(#{revision}#/)?'
    >>> _collection_spec('', '-')
    '#{revision}#/'
    """
    spec = ''
    for value, template in ((collection, '{collection}/'), (revision, '#{revision}#/')):
        if value is None:
            spec += f'({template})?'
        elif value:
            spec += template
    return spec


_OPTIONAL_MARK = {'namespace': '?', 'timescale': '?', 'extra': '*'}


def _file_spec(**kwargs) -> str:
    """Return the ALF file-name spec with the parts given a (non-None) value made required.

    Examples
    --------
    >>> _file_spec(namespace='ibl', timescale=None)
    '_?{namespace}_?{object}\\\\.{attribute}(?:_{timescale})?(?:\\\\.{extra})*\\\\.{extension}$'
    """
    spec = FILE_SPEC
    for key, value in kwargs.items():
        if key in _OPTIONAL_MARK and value is not None:
            start = spec.find('{' + key + '}') + len(key) + 2
            mark = spec.index(_OPTIONAL_MARK[key], start)
            spec = spec[:mark] + spec[mark + 1:]
    return spec


# What a wildcard may match, per kind of pattern: (any run for '*', a leading '*', '?').
# File names and their parts never span folders; a collection never includes the revision
# folder ('alf/*' must not match 'alf/#2024-06-01#'); a revision is a single folder name.
_WILDCARD_CLASSES = {
    'filename': ('.*', '[^/]*', '.'),
    'collection': ('[^#]*', '[^#]*', '[^#]'),
    'revision': ('[^/#]*', '[^/#]*', '[^/#]'),
    'part': ('[^/]*', '[^/]*', '[^/]'),
}


def _wildcard_to_regex(pattern: str, kind: str = 'filename') -> str:
    """Translate a shell wildcard pattern into an (unanchored) regular expression.

    ``*`` matches any run of characters, ``?`` any one character, ``[seq]`` / ``[!seq]`` a
    character in / not in seq; other characters are literal.  What ``*`` and ``?`` may match
    depends on `kind` (see `_WILDCARD_CLASSES`): for a file name (which may start with folders,
    e.g. 'alf/*.npy') a *leading* ``*`` stays within one folder level, so that ``'*.meta'``
    cannot swallow collection folders, while other ``*`` match anything.
    """
    star, leading_star, any_char = _WILDCARD_CLASSES[kind]
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == '*':
            while i < n and pattern[i] == '*':  # a run of stars is one star
                i += 1
            out.append(star if out else leading_star)
        elif c == '?':
            out.append(any_char)
        elif c == '[':
            j = i
            if j < n and pattern[j] == '!':
                j += 1
            if j < n and pattern[j] == ']':
                j += 1
            while j < n and pattern[j] != ']':
                j += 1
            if j >= n:
                out.append('\\[')
            else:
                stuff = pattern[i:j].replace('\\', '\\\\')
                i = j + 1
                if stuff.startswith('!'):
                    stuff = '^' + stuff[1:]
                elif stuff.startswith('^'):
                    stuff = '\\' + stuff
                out.append(f'[{stuff}]')
        else:
            out.append(re.escape(c))
    return ''.join(out)


def _as_pattern(value, wildcards: bool, kind: str) -> str:
    """Join one or several patterns into the body of a named group (translating wildcards)."""
    values = ensure_list(value)
    if wildcards:
        values = [_wildcard_to_regex(str(v), kind) for v in values]
    return '|'.join(map(str, values))


@functools.lru_cache(maxsize=256)
def _compile_filter(spec: str, regex_args: tuple, names: tuple | None) -> re.Pattern:
    """Compile the rel_path pattern: ``^`` + collection/revision spec + file-name part."""
    prefix = regex('^' + spec, **dict(regex_args)).pattern
    if names is None:  # the spec already ends with a file-name spec
        return re.compile(prefix)
    return re.compile(prefix + '(?:' + '|'.join(names) + ')$')


def _factorize(values: pd.Series | pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Return integer codes (-1 for missing) and the distinct values as an object array."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.cat if isinstance(values, pd.Series) else values
        return (np.asarray(cat.codes, dtype=np.intp),
                np.asarray(cat.categories, dtype=object))
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.intp), np.asarray(uniques, dtype=object)


def _split_rel_path(rel_path) -> tuple[str, str, str]:
    """Return (collection, revision, rel_path without the revision folder); '' when absent."""
    if not isinstance(rel_path, str):
        return '', '', ''
    parts = rel_path.split('/')
    revision = ''
    if len(parts) >= 2 and len(parts[-2]) >= 2 and parts[-2][0] == parts[-2][-1] == '#':
        revision = parts[-2][1:-1]
        del parts[-2]
    return '/'.join(parts[:-1]), revision, '/'.join(parts)


def _path_info(uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct rel_path: its collection, revision and revision-less path.

    Each array has one extra element at the end (for missing values), so that the code -1
    indexes it naturally.
    """
    parts = [_split_rel_path(x) for x in uniques] + [('', '', '')]
    collections = np.array([p[0] for p in parts], dtype=object)
    revisions = np.array([p[1] for p in parts], dtype=object)
    stems = np.array([p[2] for p in parts], dtype=object)
    return collections, revisions, stems


def _match_uniques(pattern: re.Pattern, uniques: np.ndarray) -> np.ndarray:
    """Boolean array: which distinct values `pattern` matches (non-strings never match)."""
    try:
        return np.array([m is not None for m in map(pattern.match, uniques)], dtype=bool)
    except TypeError:  # a non-string value
        return np.array([isinstance(x, str) and pattern.match(x) is not None for x in uniques],
                        dtype=bool)


def _expand(values: np.ndarray, codes: np.ndarray) -> pd.Index:
    """The column ``values[codes]``, in the default string dtype of the installed pandas."""
    return pd.Index(values, dtype=object if len(values) == 0 else None).take(codes)


def _take(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Rows of `frame` as an independent frame (safe to add columns to)."""
    out = frame.take(rows)
    return out if _COPY_ON_WRITE else out.copy()


def _qc_mask(qc_column: pd.Series, qc: QC, ignore_qc_not_set: bool) -> np.ndarray:
    """Rows whose QC is at or better than `qc` (missing QC counts as NOT_SET)."""
    codes, uniques = _factorize(qc_column)
    levels = [QC.validate(x) if isinstance(x, (str, int, np.integer)) else QC.NOT_SET
              for x in uniques]
    levels.append(QC.NOT_SET)  # missing values (code -1)
    keep = np.array([lv <= qc and not (ignore_qc_not_set and lv == QC.NOT_SET)
                     for lv in levels], dtype=bool)
    return keep[codes]


def _rel_path_pattern(filename, collection, revision, revision_last_before: bool,
                      wildcards: bool) -> re.Pattern:
    """The compiled ``rel_path`` pattern that `filter_datasets` matches (see there)."""
    filename = filename or {}
    regex_args = {'collection': collection}
    spec = _collection_spec(collection, None if revision_last_before else revision)
    if not revision_last_before:
        regex_args['revision'] = revision
    if isinstance(filename, dict):
        spec += _file_spec(**filename)
        regex_args.update(filename)
        names = None
    else:
        names = [_wildcard_to_regex(x) if wildcards else x
                 for x in map(str, ensure_list(filename))]
        names = tuple(names)
    args = tuple((k, _as_pattern(v, wildcards, k if k in ('collection', 'revision') else 'part'))
                 for k, v in regex_args.items() if v is not None)
    return _compile_filter(spec, args, names)


def _filter_mask(all_datasets: pd.DataFrame, filename=None, collection=None, revision=None,
                 qc=QC.FAIL, ignore_qc_not_set: bool = False, wildcards: bool = False,
                 rel_codes: tuple | None = None, qc_codes: np.ndarray | None = None
                 ) -> np.ndarray:
    """Rows passing the path and QC filters of `filter_datasets` (revision as a pattern).

    `rel_codes` may give precomputed ``(codes, distinct values)`` of the rel_path column, and
    `qc_codes` the position of each row's QC in NOT_SET < PASS < ... < CRITICAL, so that
    repeated queries over a large table skip the factorisation.
    """
    pattern = _rel_path_pattern(filename, collection, revision, False, wildcards)
    codes, uniques = rel_codes if rel_codes is not None else _factorize(all_datasets['rel_path'])
    mask = np.append(_match_uniques(pattern, uniques), False)[codes]
    if qc_codes is not None:
        levels = sorted(QC)
        limit = levels.index(QC.validate(qc))
        mask &= qc_codes <= limit
        if ignore_qc_not_set:
            mask &= qc_codes != levels.index(QC.NOT_SET)
    elif 'qc' in all_datasets.columns:
        mask &= _qc_mask(all_datasets['qc'], QC.validate(qc), ignore_qc_not_set)
    return mask


def filter_datasets(all_datasets: pd.DataFrame, filename=None, collection=None, revision=None,
                    revision_last_before: bool = True, qc: QC | str | int = QC.FAIL,
                    ignore_qc_not_set: bool = False, assert_unique: bool = True,
                    wildcards: bool = False) -> pd.DataFrame:
    """Filter a datasets table by file name, collection, revision and QC.

    The ``rel_path`` of each dataset (``collection/#revision#/filename``) is matched against a
    regular expression built from the ALF spec: ``^(collection/)?(#revision#/)?filename$``.

    Parameters
    ----------
    all_datasets : pandas.DataFrame
        A datasets table (any index) with a ``rel_path`` column, and optionally ``qc`` and
        ``default_revision`` columns.
    filename : str, list of str, dict, None
        The file name: a pattern, or a list of patterns of which any may match, or a dict of
        ALF parts (namespace, object, attribute, timescale, extra, extension), each a pattern
        or a list of patterns; parts given a value are then required.  None matches any valid
        ALF file name.
    collection : str, list of str, None
        The collection pattern(s), matched against the whole collection ('alf' matches
        'alf' but not 'alf/probe00'; 'alf*' matches both).  None matches any collection or
        none; '' matches datasets with no collection only.
    revision : str, list of str, None
        With `revision_last_before`, the revision label before which (inclusive) the latest
        revision of each dataset is selected (no pattern); otherwise revision pattern(s).
        None matches any revision; '' matches datasets without a revision only.
    revision_last_before : bool
        Select, for each dataset, the default revision (`revision` None) or the latest revision
        not after `revision`.
    qc : str, int, one.alf.spec.QC
        Keep datasets whose QC is at or better than this level (default FAIL, which hides
        CRITICAL datasets).  Datasets with a missing QC are treated as NOT_SET.
    ignore_qc_not_set : bool
        Also drop datasets whose QC is NOT_SET.
    assert_unique : bool
        Raise when the match is not exactly one dataset (or is spread over several collections
        or revisions).
    wildcards : bool
        Patterns are shell wildcards (``*``, ``?``, ``[seq]``) instead of regular expressions.
        A leading ``*`` in a file name, and any ``*`` in a file-name part or a revision, match
        within one folder name; a ``*`` in a collection may span sub-folders but not the
        revision folder.

    Returns
    -------
    pandas.DataFrame
        The matching rows (a copy).  A ``revision`` column is added when `assert_unique` or
        `revision_last_before` is true and something matched.

    Raises
    ------
    one.alf.exceptions.ALFMultipleCollectionsFound
        `assert_unique` is true and matching datasets lie in several collections.
    one.alf.exceptions.ALFMultipleRevisionsFound
        `assert_unique` is true and matching datasets have several revisions (without
        `revision_last_before`), or several default revisions of one dataset.
    one.alf.exceptions.ALFMultipleObjectsFound
        `assert_unique` is true and several datasets match.

    Warns
    -----
    one.alf.exceptions.ALFWarning
        With `revision_last_before` and no `revision`: a dataset has several revisions but none
        is marked default (or the table has no ``default_revision`` column); the latest is used.

    Examples
    --------
    The trials intervals in the 'alf' collection (regular expressions)

    >>> filter_datasets(datasets, 'trials.intervals.npy', 'alf')  # doctest: +SKIP

    All 'spikes' and 'clusters' datasets in any probe collection (wildcards)

    >>> filter_datasets(datasets, ['*spikes*', '*clusters*'], 'alf/probe*',
    ...                 wildcards=True, assert_unique=False)  # doctest: +SKIP

    Datasets of the 'wheel' or 'trials' object, from the latest revision before 2021

    >>> filter_datasets(datasets, {'object': ['wheel', 'trials']}, revision='2021-01-01',
    ...                 assert_unique=False)  # doctest: +SKIP
    """
    pattern = _rel_path_pattern(filename, collection, revision, revision_last_before,
                                wildcards)

    # Match the regular expression once per distinct relative path
    codes, uniques = _factorize(all_datasets['rel_path'])
    hit = _match_uniques(pattern, uniques)
    mask = np.append(hit, False)[codes]
    if 'qc' in all_datasets.columns:
        mask &= _qc_mask(all_datasets['qc'], QC.validate(qc), ignore_qc_not_set)
    rows = np.flatnonzero(mask)
    match = _take(all_datasets, rows)

    if match.empty or not (revision_last_before or assert_unique):
        return match

    # Parse only the distinct paths that matched; renumber the codes of the matched rows
    hit_idx = np.flatnonzero(hit)
    remap = np.full(len(uniques) + 1, -1, dtype=np.intp)
    remap[hit_idx] = np.arange(hit_idx.size)
    rel_codes = remap[codes[rows]]
    collections, revisions, stems = _path_info(uniques[hit_idx])
    if 'revision' not in match.columns:
        match['revision'] = _expand(revisions, rel_codes)
    if assert_unique:
        present = np.unique(rel_codes)
        found = sorted(set(collections[present]))
        if len(found) > 1:
            raise alferr.ALFMultipleCollectionsFound(*found)
        if not revision_last_before:
            found = sorted(set(revisions[present]))
            if len(found) > 1:
                raise alferr.ALFMultipleRevisionsFound(*found)
            if len(match) > 1:
                raise alferr.ALFMultipleObjectsFound(*match['rel_path'])
            return match

    match = _last_before(match, revision, assert_unique, False, rel_codes, revisions, stems)
    if assert_unique and len(match) > 1:
        raise alferr.ALFMultipleObjectsFound(*match['rel_path'])
    return match


def _group_codes(datasets: pd.DataFrame, stem_codes: np.ndarray) -> np.ndarray:
    """Combine the session (when the index has an 'eid' level) with the revision-less path."""
    index = datasets.index
    if 'eid' not in (index.names or []):
        return stem_codes.astype(np.int64)
    if isinstance(index, pd.MultiIndex):
        level = index.names.index('eid')
        eid_codes = np.asarray(index.codes[level], dtype=np.int64)
    else:
        eid_codes = pd.factorize(index, use_na_sentinel=True)[0].astype(np.int64)
    return (eid_codes + 1) * (int(stem_codes.max()) + 2) + stem_codes


def filter_revision_last_before(datasets: pd.DataFrame, revision: str | None = None,
                                assert_unique: bool = True,
                                assert_consistent: bool = False) -> pd.DataFrame:
    """Keep one revision of each dataset: the default one, or the latest before `revision`.

    Datasets are grouped by their relative path without the revision folder (and by session
    when the index has an 'eid' level).  A ``revision`` column (the revision label, '' for
    none) is added to `datasets` if missing.

    Parameters
    ----------
    datasets : pandas.DataFrame
        Datasets table with a ``rel_path`` column and optionally ``default_revision``.
    revision : str, None
        When None, the row marked ``default_revision`` is kept (a dataset with a single row is
        kept as is); failing that, the latest revision, with an ALFWarning.  Otherwise the
        latest revision label ``<= revision`` (compared as strings; '' comes first); datasets
        with no such revision are dropped.
    assert_unique : bool
        Raise when a dataset has several rows marked default.
    assert_consistent : bool
        Raise (instead of warning) when the kept rows have different revisions.

    Returns
    -------
    pandas.DataFrame
        One row per dataset, ordered by (session and) revision-less relative path.

    Raises
    ------
    one.alf.exceptions.ALFMultipleRevisionsFound
        Several default revisions of one dataset with `assert_unique`, or inconsistent
        revisions with `assert_consistent`.

    Warns
    -----
    one.alf.exceptions.ALFWarning
        No default revision for a dataset ("... using most recent"), or the kept rows have
        different revisions ("Multiple revisions: ...").
    """
    codes, uniques = _factorize(datasets['rel_path'])
    _, revisions, stems = _path_info(uniques)
    return _last_before(datasets, revision, assert_unique, assert_consistent,
                        codes, revisions, stems)


def _revision_order(selected: np.ndarray, rank: np.ndarray, n_rows: int) -> np.ndarray:
    """The revision ranks of the selected rows, in the order ONE-api names them.

    ONE-api lists the revisions in the order of its result rows: the input order when every
    dataset is a single row that is kept, otherwise the order of the datasets (`selected`, by
    revision-less path).
    """
    rows = np.sort(selected) if selected.size == n_rows else selected
    ranks = rank[rows]
    _, first = np.unique(ranks, return_index=True)
    return ranks[np.sort(first)]


def _last_before(datasets: pd.DataFrame, revision: str | None, assert_unique: bool,
                 assert_consistent: bool, rel_codes: np.ndarray, revisions_u: np.ndarray,
                 stems_u: np.ndarray) -> pd.DataFrame:
    """`filter_revision_last_before` given the rel_path codes and per-code revision/stem."""
    if 'revision' not in datasets.columns:
        datasets['revision'] = _expand(revisions_u, rel_codes)
    if datasets.empty:
        return datasets

    # Per distinct rel_path: rank of its revision label and code of its revision-less path
    labels = sorted(set(revisions_u))
    rank_u = np.searchsorted(np.array(labels, dtype=object), revisions_u).astype(np.int64)
    stem_codes_u = pd.factorize(stems_u, sort=True)[0]
    n_ranks = len(labels)
    rank = rank_u[rel_codes]
    group = _group_codes(datasets, stem_codes_u[rel_codes])

    n = len(datasets)
    rows = np.arange(n)
    if revision is not None:
        allowed = np.array([label <= revision for label in labels], dtype=bool)
        rows = rows[allowed[rank]]
        if rows.size == 0:
            return datasets.iloc[0:0]

    # Sort by group, then revision (latest first), then position: the first row of each group
    # is its latest revision (the first one listed when a label is repeated).
    key = group[rows] * n_ranks + (n_ranks - 1 - rank[rows])
    order = rows[np.argsort(key, kind='stable')]
    g_sorted = group[order]
    first = np.empty(order.size, dtype=bool)
    first[0] = True
    np.not_equal(g_sorted[1:], g_sorted[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    selected = order[starts]

    if revision is None:
        gid = np.cumsum(first) - 1  # compact group number of each sorted row
        n_groups = starts.size
        use_latest = np.ones(n_groups, dtype=bool)
        if 'default_revision' in datasets.columns:
            default = datasets['default_revision'].to_numpy(dtype=bool, na_value=False)[order]
            n_default = np.bincount(gid, weights=default, minlength=n_groups)
            size = np.diff(np.append(starts, order.size))
            if assert_unique and (n_default > 1).any():
                g = int(np.flatnonzero(n_default > 1)[0])
                in_group = order[starts[g]:starts[g] + size[g]]
                in_group = np.sort(in_group[default[starts[g]:starts[g] + size[g]]])
                raise alferr.ALFMultipleRevisionsFound(
                    *datasets['revision'].iloc[in_group].astype(str))
            true_pos = np.flatnonzero(default)
            true_pos = true_pos[n_default[gid[true_pos]] == 1]  # the only default of its group
            selected[gid[true_pos]] = order[true_pos]
            use_latest = ~((n_default == 1) | ((n_default == 0) & (size == 1)))
        if use_latest.any():
            first_rows = np.minimum.reduceat(order, starts)[use_latest]
            names = datasets['rel_path'].iloc[np.sort(first_rows)].astype(str).tolist()
            for name in names[:_MAX_REVISION_WARNINGS]:
                _warn(f'No default revision for dataset {name}; using most recent')
            if len(names) > _MAX_REVISION_WARNINGS:
                _warn(f'No default revision for {len(names) - _MAX_REVISION_WARNINGS} '
                      'more datasets; using most recent')

    result = datasets.iloc[selected]
    if np.count_nonzero(np.bincount(rank[selected], minlength=n_ranks)) > 1:
        quoted = '"' + '", "'.join(labels[i] for i in _revision_order(selected, rank, n)) + '"'
        if assert_consistent:
            raise alferr.ALFMultipleRevisionsFound(quoted)
        _warn(f'Multiple revisions: {quoted}')
    return result
