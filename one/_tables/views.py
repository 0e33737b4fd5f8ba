"""Fast read-only views of the cache tables used by the API's searches and listings.

The datasets table can hold millions of rows, but few distinct sessions and very few distinct
relative paths.  `DatasetCodes` turns the columns the API queries into integer codes (the
session of each row, its relative path, its QC level) so that every later search is a handful of
numpy operations over integer arrays, and the regular expressions run on distinct values only.
`IdLookup` finds the rows of dataset ids by binary search (built once per table index, on the
first lookup by id).  `SessionCodes` does the same for the sessions table.

The views follow the tables, which users may edit in place (``one._cache``):

* what derives from the index (the session of each row, where each id is) is kept while the
  table has the same index object: pandas indexes are immutable, and an edit that adds rows
  gives the table a new index;
* what derives from column values (paths, QC, ``exists``, session fields) is computed lazily,
  part by part, each with a `one._tables.column_watch.ColumnWatch` of the columns it reads, and
  dropped by `validate` when one of them changed.

Index values may be canonical UUID strings or `uuid.UUID` objects (the form handed to users):
lookups take ids in either form.
"""
from __future__ import annotations

import re
from uuid import UUID

import numpy as np
import pandas as pd
import pyarrow as pa

from one._tables.column_watch import ColumnWatch
from one._tables.string_arrays import (
    fixed_width_keys,
    index_strings,
    tagged_sorted_keys,
)
from one._tables.uuid_index import (
    is_uuid_level,
    key_for,
    keys_for,
    strings_of,
    uuid_low_bits,
    value_in_form,
)
from one.alf.cache import user_shaped
from one.alf.spec import QC
from one.util import _factorize as _codes

__all__ = ['DatasetCodes', 'IdLookup', 'SessionCodes', 'to_uuid', 'user_frame', 'qc_code',
           'qc_codes_of', 'path_codes_of']

_QC_ORDER = [q.name for q in sorted(QC)]  # NOT_SET, PASS, WARNING, FAIL, CRITICAL


def qc_code(qc) -> int:
    """Position of a QC level in the ordered categories NOT_SET < PASS < ... < CRITICAL."""
    return _QC_ORDER.index(QC.validate(qc).name)


def to_uuid(value) -> UUID | None:
    """Return `value` as a UUID (None and NA stay None)."""
    if value is None or (not isinstance(value, (str, UUID)) and pd.isna(value)):
        return None
    return value if isinstance(value, UUID) else UUID(str(value))


def user_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` (not copied) as handed to users: UUID index levels holding only the ids
    of its rows, and plain string columns where the cache holds categoricals (``rel_path``),
    so that the rows can be edited and concatenated as ONE's tables
    (`one.alf.cache.user_shaped`)."""
    if isinstance(frame.index, pd.MultiIndex):
        frame.index = frame.index.remove_unused_levels()
    return user_shaped(frame, copy=False)


def qc_codes_of(qc: pd.Series) -> np.ndarray:
    """Position of each QC value in NOT_SET < PASS < ... < CRITICAL (missing: NOT_SET)."""
    codes, names = _codes(qc)
    lookup = np.array([qc_code(n) if isinstance(n, (str, int, np.integer)) else 0
                       for n in names] + [0], dtype=np.int8)
    return lookup[codes]


def path_codes_of(rel_paths: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1: missing) and distinct values (object array) of the paths given, listing only
    the values present (a categorical's unused categories are left out)."""
    values = rel_paths.to_numpy(dtype=object) if isinstance(rel_paths.dtype,
                                                            pd.CategoricalDtype) else rel_paths
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.intp), np.asarray(uniques, dtype=object)


_LOW_BITS = (1 << 64) - 1


class IdLookup:
    """Row positions of ids in a table indexed by ``id`` or ``(eid, id)``: a search index.

    Ids are found by binary search of 64-bit keys, built in one sort and confirmed on the
    values: the keys of their canonical strings (`one._tables.string_arrays.fixed_width_keys`)
    for a level of strings, or of UUIDs whose strings are known (the level made by the first
    read of ``One._cache``, `one._tables.uuid_index.strings_of`); for other levels of UUIDs, their
    low 64 bits, taken in bulk.  Other ids use pandas' hash table of the id values.  Ids are
    looked up as strings (in any case) or UUIDs alike.

    Parameters
    ----------
    index : pandas.Index, pandas.MultiIndex
        The table's index; the level named ``id`` (or the last level) is searched.
    """

    def __init__(self, index: pd.Index):
        if isinstance(index, pd.MultiIndex):
            level = index.names.index('id') if 'id' in index.names else index.nlevels - 1
            self.values = index.levels[level]
            codes = np.asarray(index.codes[level], dtype=np.int64)
        else:
            codes, self.values = pd.factorize(index, use_na_sentinel=True)
            self.values = pd.Index(self.values)
        self._rows = self._rows_of_values(codes, len(self.values))
        self._bits = max(int(len(self.values)).bit_length(), 1)
        self._strings = None  # the canonical strings of the values, when keyed by them
        self._uuids = False  # keyed by the low bits of UUID objects
        keys = None
        if len(self.values):
            as_uuid = is_uuid_level(self.values)
            strings = strings_of(self.values) if as_uuid else self.values
            arrow = index_strings(strings) if strings is not None else None
            keys = fixed_width_keys(arrow) if arrow is not None else None
            if keys is not None:
                self._strings = strings
            elif as_uuid:
                keys = uuid_low_bits(self.values)
                self._uuids = keys is not None
        if keys is not None:
            keys = tagged_sorted_keys(keys, np.uint64((1 << self._bits) - 1))
        self._sorted = keys

    @staticmethod
    def _rows_of_values(codes: np.ndarray, n_values: int):
        """For each value, its rows: None when value i is row i, else (order, bounds)."""
        n = len(codes)
        if n == n_values and (n == 0 or (codes[0] == 0 and (np.diff(codes) == 1).all())):
            return None
        valid = np.flatnonzero(codes >= 0)
        counts = np.bincount(codes[valid], minlength=n_values)
        bounds = np.zeros(n_values + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        if len(counts) and counts.max() <= 1 and len(valid) == n_values:  # a permutation
            order = np.empty(n_values, dtype=np.int64)
            order[codes[valid]] = valid
        else:
            order = valid[np.argsort(codes[valid], kind='stable')]
        return order, bounds

    def _value_positions(self, ids: list) -> np.ndarray:
        """Position of each id among the distinct values (-1 when absent)."""
        found = np.full(len(ids), -1, dtype=np.int64)
        if self._sorted is None:
            if len(self.values):
                found[:] = self.values.get_indexer(pd.Index(keys_for(self.values, ids),
                                                             dtype=object))
            return found
        if self._uuids:
            values, ids = self.values, keys_for(self.values, ids)
            usable = [i for i, x in enumerate(ids) if isinstance(x, UUID)]
            query = np.array([ids[i].int & _LOW_BITS for i in usable], dtype=np.uint64)
        else:
            values, ids = self._strings, [value_in_form(x, False) for x in ids]
            usable = [i for i, x in enumerate(ids)
                      if isinstance(x, str) and len(x) == 36 and x.isascii()]
            query = fixed_width_keys(pa.array([ids[i] for i in usable], type=pa.string()))
        if not usable:
            return found
        mask = np.uint64((1 << self._bits) - 1)
        low = np.searchsorted(self._sorted, query & ~mask, side='left')
        high = np.searchsorted(self._sorted, query | mask, side='right')
        for i, lo, hi in zip(usable, low, high):
            for candidate in (self._sorted[lo:hi] & mask).astype(np.int64):
                if values[candidate] == ids[i]:
                    found[i] = candidate
                    break
        return found

    def rows(self, ids: list) -> tuple[np.ndarray, np.ndarray]:
        """The table rows holding the ids.

        Parameters
        ----------
        ids : list of str or uuid.UUID
            The ids (canonical strings or UUIDs, whatever the form of the index).

        Returns
        -------
        numpy.ndarray
            Row positions (an id held by several rows gives them all; unknown ids none).
        numpy.ndarray
            For each row position, the index in `ids` of the id it holds.
        """
        positions = self._value_positions(list(ids))
        which = np.flatnonzero(positions >= 0)
        if self._rows is None:
            return positions[which], which
        order, bounds = self._rows
        starts, stops = bounds[positions[which]], bounds[positions[which] + 1]
        counts = stops - starts
        which = np.repeat(which, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return order[np.repeat(starts, counts) + offsets], which


class _TableViews:
    """Views of a table: parts derived from its index (kept while the index object is the
    same) and lazily computed parts derived from columns.

    Each column a part reads has one `ColumnWatch`.  `validate` only marks the columns as
    unchecked; a part is checked when it is next used, each of its columns once per
    validation, so a call that uses no part (e.g. the rows of one session) checks nothing.
    """

    def __init__(self, table: pd.DataFrame, previous: _TableViews | None = None):
        self.table = table
        self.index = table.index
        self.n_rows = len(table)
        self._parts: dict[str, tuple] = {}  # name -> (value, columns read)
        self._watches: dict[str, ColumnWatch] = {}
        self._fresh: set[str] = set()  # columns checked since the last `validate`
        if previous is not None and previous.n_rows == self.n_rows:
            # parts depend on row positions only: kept, to be checked against this table
            self._parts = dict(previous._parts)
            self._watches = dict(previous._watches)

    def follows(self, table: pd.DataFrame) -> bool:
        """True if these views are of `table`, as far as the index and size tell."""
        return self.table is table and self.index is table.index and \
            self.n_rows == len(table)

    def validate(self) -> None:
        """Have the parts checked against their columns when next used."""
        self._fresh.clear()

    def _column_fresh(self, column: str) -> bool:
        """Whether a watched column still holds the values its parts were made from; when it
        does not, the parts made from it are dropped."""
        if column in self._fresh:
            return True
        watch = self._watches.get(column)
        if watch is not None and watch.unchanged(self.table):
            self._fresh.add(column)
            return True
        self._watches.pop(column, None)
        # other threads may add or drop parts meanwhile: a copy is iterated, parts popped
        for name, (_, columns) in list(self._parts.items()):
            if column in columns:
                self._parts.pop(name, None)
        return False

    def _part(self, name: str, columns: tuple, compute):
        part = self._parts.get(name)
        fresh = [self._column_fresh(c) for c in columns]  # checks every column (drops stale)
        if part is not None and all(fresh):
            return part[0]
        for column in columns:  # watched before reading: a change while computing is seen
            if column not in self._watches:
                self._watches[column] = ColumnWatch(self.table, column)
                self._fresh.add(column)
        value = compute()
        self._parts[name] = (value, columns)
        return value

    def keep_parts(self, other: _TableViews, names) -> None:
        """Take over parts of `other` known to hold for this table (views of equal values in
        new column objects), under new watches of those columns."""
        for name in names:
            part = other._parts.get(name)
            if part is None:
                continue
            self._parts[name] = part
            for column in part[1]:
                self._watches[column] = ColumnWatch(self.table, column)
                self._fresh.add(column)


class DatasetCodes(_TableViews):
    """Integer-coded views of a datasets table indexed by (eid, id).

    Parameters
    ----------
    datasets : pandas.DataFrame
        The datasets cache table.
    previous : DatasetCodes, optional
        Views of an earlier state of the table: the parts still valid are kept (those of the
        index when the index is the same object, those of columns that did not change).
    """

    def __init__(self, datasets: pd.DataFrame, previous: DatasetCodes | None = None):
        super().__init__(datasets, previous)
        index = self.index
        if previous is not None and previous.index is index:
            # the index is immutable: everything derived from it holds
            self.eid_codes, self.eids = previous.eid_codes, previous.eids
            self._id_lookup = previous._id_lookup
            self._eid_position = previous._eid_position
            self._rows_by_eid = previous._rows_by_eid
            return
        if isinstance(index, pd.MultiIndex) and 'eid' in index.names:
            level = index.names.index('eid')
            self.eid_codes = np.asarray(index.codes[level], dtype=np.int64)
            self.eids = np.asarray(index.levels[level], dtype=object)
        else:
            self.eid_codes = np.zeros(self.n_rows, dtype=np.int64)
            self.eids = np.array([''], dtype=object)
        self._id_lookup = None
        self._eid_position = None
        self._rows_by_eid = None

    def with_index(self, table: pd.DataFrame) -> DatasetCodes:
        """These views for `table`, the same table with a new index of the same codes (its
        levels turned into UUIDs, in the same order) and possibly other column objects.

        The index parts are carried over (the session codes; the id search index, which
        takes ids in either form), the column parts kept where their columns still hold.
        """
        new = DatasetCodes(table, previous=self)
        new.eid_codes, new._id_lookup, new._rows_by_eid = \
            self.eid_codes, self._id_lookup, self._rows_by_eid
        return new

    # ---- column parts ---------------------------------------------------------------------

    def _rel(self):
        def compute():
            if 'rel_path' not in self.table.columns:
                return np.full(self.n_rows, -1, dtype=np.intp), np.array([''], dtype=object)
            codes, paths = _codes(self.table['rel_path'])
            return codes, np.append(paths, '')  # code -1 (missing) maps to ''
        return self._part('rel', ('rel_path',), compute)

    @property
    def rel_codes(self) -> np.ndarray:
        """Per row: the code of its relative path (-1: missing)."""
        return self._rel()[0]

    @property
    def rel_paths(self) -> np.ndarray:
        """The distinct relative paths (an object array), then '' (the value of code -1)."""
        return self._rel()[1]

    @property
    def exists(self) -> np.ndarray:
        """Per row: the ``exists`` column (True without one)."""
        def compute():
            if 'exists' in self.table.columns:
                return self.table['exists'].to_numpy(dtype=bool, na_value=False)
            return np.ones(self.n_rows, dtype=bool)
        return self._part('exists', ('exists',), compute)

    @property
    def qc(self) -> np.ndarray:
        """Per row: the position of its QC in NOT_SET < PASS < ... < CRITICAL."""
        def compute():
            if 'qc' not in self.table.columns:
                return np.zeros(self.n_rows, dtype=np.int8)
            return qc_codes_of(self.table['qc'])
        return self._part('qc', ('qc',), compute)

    def part_names(self, part: int) -> np.ndarray:
        """Per distinct rel_path: its collection (part 0) or revision (part 1), '' if none."""
        def compute():
            from one.alf.path import rel_path_parts

            return np.array([(rel_path_parts(x, assert_valid=False)[part] or '')
                             if isinstance(x, str) else '' for x in self.rel_paths],
                            dtype=object)
        return self._part(f'names{part}', ('rel_path',), compute)

    def first_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct (relative path, QC) code pairs of the table and the first row of each.

        A filter on paths and QC keeps whole pairs, so the distinct paths it keeps, in order of
        first appearance, follow from these few thousand pairs instead of every row.

        Returns
        -------
        numpy.ndarray, numpy.ndarray, numpy.ndarray
            rel_path codes (-1: missing), QC codes and first row positions, one per pair.
        """
        def compute():
            n_qc = len(_QC_ORDER)
            key = (self.rel_codes + 1) * n_qc + self.qc
            first = np.full(len(self.rel_paths) * n_qc, self.n_rows, dtype=np.int64)
            np.minimum.at(first, key, np.arange(self.n_rows))
            present = np.flatnonzero(first < self.n_rows)
            return present // n_qc - 1, (present % n_qc).astype(np.int8), first[present]
        return self._part('pairs', ('rel_path', 'qc'), compute)

    # ---- index parts ----------------------------------------------------------------------

    def eid_position(self, eid) -> int | None:
        """Code of a session (a UUID or its string) in this table, or None."""
        if self._eid_position is None:
            self._eid_position = {e: i for i, e in enumerate(self.eids)}
        key = key_for(self.eids, eid) if len(self.eids) else eid
        try:
            return self._eid_position.get(key)
        except TypeError:  # unhashable
            return None

    def rows_of(self, eid) -> np.ndarray:
        """Row positions of a session's datasets (empty if it has none)."""
        code = self.eid_position(eid)
        if code is None:
            return np.empty(0, dtype=np.int64)
        if self._rows_by_eid is None:
            order = np.argsort(self.eid_codes, kind='stable')
            bounds = np.searchsorted(self.eid_codes[order], np.arange(len(self.eids) + 1))
            self._rows_by_eid = (order, bounds)
        order, bounds = self._rows_by_eid
        return order[bounds[code]:bounds[code + 1]]

    def id_rows(self, ids: list) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding dataset ids, and which id each holds (see `IdLookup.rows`)."""
        if self._id_lookup is None:
            self._id_lookup = IdLookup(self.index)
        return self._id_lookup.rows(ids)

    def eid_strings(self, rows: np.ndarray) -> list:
        """The session id of each row, as a string (None when missing)."""
        codes = self.eid_codes[rows]
        return [str(self.eids[c]) if c >= 0 else None for c in codes]

    def match_paths(self, pattern: re.Pattern, file_name_only: bool, full: bool) -> np.ndarray:
        """Per row: does the relative path (or its file name) match the pattern?"""
        values = self.rel_paths
        if file_name_only:
            values = [x.rsplit('/', 1)[-1] if isinstance(x, str) else '' for x in values]
        test = pattern.fullmatch if full else pattern.search
        hit = np.fromiter((isinstance(x, str) and test(x) is not None for x in values),
                          dtype=bool, count=len(values))
        hit[-1] = False
        return hit[self.rel_codes]

    def sessions_with(self, row_mask: np.ndarray) -> np.ndarray:
        """Per session code: does any row in the mask belong to it?"""
        return np.bincount(self.eid_codes[row_mask], minlength=len(self.eids)) > 0


_PATH_COLUMNS = ('lab', 'subject', 'date', 'number', 'start_time')


class SessionCodes(_TableViews):
    """Views of the sessions table that make searches cheap: codes of the string columns,
    the UUID of every session, the result order, and where each session of the datasets
    table sits in the sessions table.

    Parameters
    ----------
    sessions : pandas.DataFrame
        The sessions cache table.
    previous : SessionCodes, optional
        Views of an earlier state of the table (its still valid parts are kept).
    """

    def __init__(self, sessions: pd.DataFrame, previous: SessionCodes | None = None):
        super().__init__(sessions, previous)
        same = previous is not None and previous.index is self.index
        if not same:
            self._parts.pop('paths', None)  # keyed by id: depends on the index too
        self.ids = previous.ids if same else np.asarray(sessions.index, dtype=object)
        self._uuids = previous._uuids if same else None
        self._positions = previous._positions if same else None

    @property
    def dates(self) -> np.ndarray:
        """Per row: its date as datetime64 (NaT when missing or unreadable)."""
        def compute():
            return pd.to_datetime(pd.Series(self.table['date'].to_numpy(), dtype=object),
                                  errors='coerce').to_numpy()
        return self._part('dates', ('date',), compute)

    def uuid(self, position: int) -> UUID:
        """The UUID of the session at a row position."""
        value = self.ids[position]
        if isinstance(value, UUID):
            return value
        if self._uuids is None:
            self._uuids = [None] * self.n_rows
        uuid = self._uuids[position]
        if uuid is None:
            uuid = self._uuids[position] = UUID(str(value))
        return uuid

    def positions_of(self, datasets: DatasetCodes) -> np.ndarray:
        """For each session code of the datasets views: its row here (-1 if absent)."""
        if self._positions is None or self._positions[0] is not datasets.index:
            ids = pd.Index(self.ids, dtype=object)
            eids = pd.Index(keys_for(ids, datasets.eids) if len(ids) else datasets.eids,
                            dtype=object)
            self._positions = (datasets.index, np.asarray(ids.get_indexer(eids)))
        return self._positions[1]

    def ordered(self, positions: np.ndarray) -> np.ndarray:
        """Row positions sorted by date, subject and number, most recent first."""
        def compute():
            frame = self.table[['date', 'subject', 'number']].reset_index(drop=True)
            order = frame.sort_values(['date', 'subject', 'number'], ascending=False,
                                      kind='stable').index.to_numpy()
            rank = np.empty(self.n_rows, dtype=np.int64)
            rank[order] = np.arange(self.n_rows)
            return rank
        rank = self._part('rank', ('date', 'subject', 'number'), compute)
        return positions[np.argsort(rank[positions], kind='stable')]

    def column_codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Codes and distinct values of a string column (missing values as '')."""
        def compute():
            values = self.table[column].to_numpy(dtype=object)  # read once: nothing aligned
            codes, uniques = pd.factorize(np.where(pd.isna(values), '', values))
            return np.asarray(codes), np.asarray(uniques, dtype=object)
        return self._part(f'column:{column}', (column,), compute)

    def contains(self, column: str, values: list, regex: bool) -> np.ndarray:
        """Per row: does the column contain any of the values (regex or substring)?"""
        codes, uniques = self.column_codes(column)
        if regex:
            pattern = re.compile('|'.join(values))
            hit = np.array([pattern.search(str(u)) is not None for u in uniques], dtype=bool)
        else:
            hit = np.array([any(v in str(u) for v in values) for u in uniques], dtype=bool)
        return hit[codes] if len(codes) else np.zeros(0, dtype=bool)

    def session_path(self, eid, make) -> str | None:
        """The relative session folder of an eid (UUID or string), computed once with
        ``make(record)`` (None when the session is not in the table)."""
        paths = self._part('paths', tuple(c for c in _PATH_COLUMNS if c in self.table.columns),
                           dict)
        key = str(eid)
        if key not in paths:
            try:
                position = self.index.get_loc(key_for(self.index, eid))
            except (KeyError, TypeError):
                paths[key] = None
            else:
                record = self.table.iloc[position] if isinstance(
                    position, (int, np.integer)) else None
                paths[key] = make(record).as_posix() if record is not None else None
        return paths[key]
