"""Fast read-only views of the cache tables used by the API's searches and listings.

The datasets table can hold millions of rows, but few distinct sessions and very few distinct
relative paths.  `DatasetCodes` turns the columns the API queries into integer codes once (the
session of each row, its relative path, its QC level) so that every later search is a handful of
numpy operations over integer arrays, and the regular expressions run on distinct values only.
`IdLookup` finds the rows of dataset ids by binary search (built once per table index, on the
first lookup by id).
"""
from __future__ import annotations

import re
from uuid import UUID

import numpy as np
import pandas as pd
import pyarrow as pa

from one._lib.parquet import (
    category_strings,
    fixed_width_keys,
    index_strings,
    tagged_sorted_keys,
)
from one.alf.spec import QC
from one.util import _factorize as _codes

__all__ = ['DatasetCodes', 'IdLookup', 'SessionCodes', 'to_uuid', 'with_uuid_index',
           'user_frame', 'qc_code']

_QC_ORDER = [q.name for q in sorted(QC)]  # NOT_SET, PASS, WARNING, FAIL, CRITICAL


def qc_code(qc) -> int:
    """Position of a QC level in the ordered categories NOT_SET < PASS < ... < CRITICAL."""
    return _QC_ORDER.index(QC.validate(qc).name)


def to_uuid(value) -> UUID | None:
    """Return `value` as a UUID (None and NA stay None)."""
    if value is None or (not isinstance(value, (str, UUID)) and pd.isna(value)):
        return None
    return value if isinstance(value, UUID) else UUID(str(value))


def with_uuid_index(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` (not copied) with every index level of id strings turned into UUIDs."""
    index = frame.index
    if isinstance(index, pd.MultiIndex):
        arrays = [[to_uuid(x) for x in index.get_level_values(i)] for i in range(index.nlevels)]
        frame.index = pd.MultiIndex.from_arrays(arrays, names=index.names)
    elif len(index) and not isinstance(index, pd.RangeIndex):
        frame.index = pd.Index([to_uuid(x) for x in index], name=index.name, dtype=object)
    return frame


def user_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` (not copied) as handed to users: UUID index levels (`with_uuid_index`)
    and plain string columns where the cache holds categoricals (``rel_path``), so that the
    rows can be edited and concatenated as ONE's tables."""
    for i, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, pd.CategoricalDtype) and not dtype.ordered and \
                (pd.api.types.is_object_dtype(dtype.categories.dtype)
                 or pd.api.types.is_string_dtype(dtype.categories.dtype)):
            frame.isetitem(i, category_strings(frame.iloc[:, i]).array)
    return with_uuid_index(frame)


class IdLookup:
    """Row positions of ids in a table indexed by ``id`` or ``(eid, id)``: a search index.

    Canonical UUID strings are found by binary search of their 64-bit keys
    (`one._lib.parquet.fixed_width_keys`), built in one sort of a million integers and confirmed
    on the strings; other ids use pandas' hash table of the id values.

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
        keys = None
        strings = index_strings(self.values) if len(self.values) else None
        if strings is not None:
            keys = fixed_width_keys(strings)
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
                found[:] = self.values.get_indexer(pd.Index(ids, dtype=object))
            return found
        ids = [x if isinstance(x, str) else '' for x in ids]
        width = [i for i, x in enumerate(ids) if len(x) == 36 and x.isascii()]
        if not width:
            return found
        query = fixed_width_keys(pa.array([ids[i] for i in width], type=pa.string()))
        mask = np.uint64((1 << self._bits) - 1)
        low = np.searchsorted(self._sorted, query & ~mask, side='left')
        high = np.searchsorted(self._sorted, query | mask, side='right')
        for i, lo, hi in zip(width, low, high):
            for candidate in (self._sorted[lo:hi] & mask).astype(np.int64):
                if self.values[candidate] == ids[i]:
                    found[i] = candidate
                    break
        return found

    def rows(self, ids: list) -> tuple[np.ndarray, np.ndarray]:
        """The table rows holding the ids.

        Parameters
        ----------
        ids : list of str
            Canonical id strings.

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


class DatasetCodes:
    """Integer-coded view of a datasets table indexed by (eid, id).

    Parameters
    ----------
    datasets : pandas.DataFrame
        The datasets cache table.
    """

    def __init__(self, datasets: pd.DataFrame, previous: DatasetCodes | None = None):
        self.n_rows = len(datasets)
        index = datasets.index
        self._index = index
        # the id search index depends on the index only: kept while the index is the same
        self._id_lookup = previous._id_lookup if previous is not None and \
            previous._index is index else None
        if isinstance(index, pd.MultiIndex) and 'eid' in index.names:
            level = index.names.index('eid')
            self.eid_codes = np.asarray(index.codes[level], dtype=np.int64)
            self.eids = np.asarray(index.levels[level], dtype=object)
        else:
            self.eid_codes = np.zeros(self.n_rows, dtype=np.int64)
            self.eids = np.array([''], dtype=object)
        self.rel_codes, self.rel_paths = _codes(datasets['rel_path'])
        self.rel_paths = np.append(self.rel_paths, '')  # code -1 (missing) maps to ''
        if 'exists' in datasets.columns:
            self.exists = datasets['exists'].to_numpy(dtype=bool, na_value=False)
        else:
            self.exists = np.ones(self.n_rows, dtype=bool)
        self.qc = self._qc_codes(datasets)
        self._pairs = None
        self._eid_position = None
        self._rows_by_eid = None
        self._part_names = {}

    @staticmethod
    def _qc_codes(datasets: pd.DataFrame) -> np.ndarray:
        if 'qc' not in datasets.columns:
            return np.zeros(len(datasets), dtype=np.int8)
        codes, names = _codes(datasets['qc'])
        lookup = np.array([qc_code(n) if isinstance(n, (str, int)) else 0 for n in names] + [0],
                          dtype=np.int8)
        return lookup[codes]

    def part_names(self, part: int) -> np.ndarray:
        """Per distinct rel_path: its collection (part 0) or revision (part 1), '' if none."""
        if part not in self._part_names:
            from one.alf.path import rel_path_parts

            self._part_names[part] = np.array(
                [(rel_path_parts(x, assert_valid=False)[part] or '') if isinstance(x, str)
                 else '' for x in self.rel_paths], dtype=object)
        return self._part_names[part]

    def eid_position(self, eid: str) -> int | None:
        """Code of a session in this table, or None."""
        if self._eid_position is None:
            self._eid_position = {e: i for i, e in enumerate(self.eids)}
        return self._eid_position.get(eid)

    def rows_of(self, eid: str) -> np.ndarray:
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

    def first_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct (relative path, QC) code pairs of the table and the first row of each.

        A filter on paths and QC keeps whole pairs, so the distinct paths it keeps, in order of
        first appearance, follow from these few thousand pairs instead of every row.

        Returns
        -------
        numpy.ndarray, numpy.ndarray, numpy.ndarray
            rel_path codes (-1: missing), QC codes and first row positions, one per pair.
        """
        if self._pairs is None:
            n_qc = len(_QC_ORDER)
            key = (self.rel_codes + 1) * n_qc + self.qc
            first = np.full(len(self.rel_paths) * n_qc, self.n_rows, dtype=np.int64)
            np.minimum.at(first, key, np.arange(self.n_rows))
            present = np.flatnonzero(first < self.n_rows)
            self._pairs = (present // n_qc - 1, (present % n_qc).astype(np.int8),
                           first[present])
        return self._pairs

    def id_rows(self, ids: list) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding dataset ids, and which id each holds (see `IdLookup.rows`)."""
        if self._id_lookup is None:
            self._id_lookup = IdLookup(self._index)
        return self._id_lookup.rows(ids)

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




class SessionCodes:
    """Views of the sessions table that make searches cheap: codes of the string columns,
    the UUID of every session, the result order, and where each session of the datasets
    table sits in the sessions table.
    """

    def __init__(self, sessions: pd.DataFrame, datasets: DatasetCodes | None = None):
        self.n_rows = len(sessions)
        self.dates = pd.to_datetime(pd.Series(sessions['date'].to_numpy(), dtype=object),
                                    errors='coerce').to_numpy()
        self.ids = np.asarray(sessions.index, dtype=object)
        self._uuids = None
        self._rank = None
        self._sessions = sessions
        self._columns = {}
        self.position_of_eid = None
        if datasets is not None:
            self.position_of_eid = np.asarray(
                pd.Index(self.ids).get_indexer(pd.Index(datasets.eids, dtype=object)))
        self._paths = {}

    def uuid(self, position: int) -> UUID:
        """The UUID of the session at a row position."""
        if self._uuids is None:
            self._uuids = [None] * self.n_rows
        value = self._uuids[position]
        if value is None:
            value = self._uuids[position] = UUID(str(self.ids[position]))
        return value

    def ordered(self, positions: np.ndarray) -> np.ndarray:
        """Row positions sorted by date, subject and number, most recent first."""
        if self._rank is None:
            frame = self._sessions[['date', 'subject', 'number']].reset_index(drop=True)
            order = frame.sort_values(['date', 'subject', 'number'], ascending=False,
                                      kind='stable').index.to_numpy()
            self._rank = np.empty(self.n_rows, dtype=np.int64)
            self._rank[order] = np.arange(self.n_rows)
        return positions[np.argsort(self._rank[positions], kind='stable')]

    def column_codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Codes and distinct values of a string column (missing values as '')."""
        if column not in self._columns:
            values = self._sessions[column].astype(object).where(
                self._sessions[column].notna(), '')
            codes, uniques = pd.factorize(values)
            self._columns[column] = (np.asarray(codes), np.asarray(uniques, dtype=object))
        return self._columns[column]

    def contains(self, column: str, values: list, regex: bool) -> np.ndarray:
        """Per row: does the column contain any of the values (regex or substring)?"""
        codes, uniques = self.column_codes(column)
        if regex:
            pattern = re.compile('|'.join(values))
            hit = np.array([pattern.search(str(u)) is not None for u in uniques], dtype=bool)
        else:
            hit = np.array([any(v in str(u) for v in values) for u in uniques], dtype=bool)
        return hit[codes] if len(codes) else np.zeros(0, dtype=bool)

    def session_path(self, eid: str, make) -> str | None:
        """The relative session folder of an eid, computed once with ``make(record)``."""
        if eid not in self._paths:
            try:
                position = self._sessions.index.get_loc(eid)
            except KeyError:
                self._paths[eid] = None
            else:
                record = self._sessions.iloc[position] if isinstance(
                    position, (int, np.integer)) else None
                self._paths[eid] = make(record).as_posix() if record is not None else None
        return self._paths[eid]
