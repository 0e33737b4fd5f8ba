"""Giving records the columns of a table before they are merged into it.

As ONE-api's ``merge_tables``: table columns the records lack are added to the records
(``exists_*`` filled with the records' ``exists``, ``default_revision`` with False, others with
NA; the table column becoming nullable, ``exists_*`` included); record columns the table lacks
are dropped, but for ``default_revision``, which is added to the table.  Dtypes are unified and
unordered categorical columns get the categories the records need.  Pure pandas; inputs are
never modified.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

__all__ = ['align', 'with_columns_of']


def _nullable(dtype):
    """The nullable counterpart of a numpy bool/int dtype (other dtypes are returned as is)."""
    if isinstance(dtype, np.dtype):
        if dtype.kind == 'b':
            return pd.BooleanDtype()
        if dtype.kind in 'iu':
            return pd.api.types.pandas_dtype(dtype.name.capitalize().replace('Uint', 'UInt'))
    return dtype


def _na_column(index: pd.Index, dtype) -> pd.Series:
    """An all-NA column of `dtype` (which must hold NA)."""
    return pd.Series(index=index, dtype=dtype)


def _fill_value_column(col: str, rows: pd.DataFrame, dtype) -> pd.Series:
    """The values of a column `rows` lack.

    ``exists_*`` copy the rows' ``exists`` (True without it); ``default_revision`` is False
    (not marked as the default: the revision logic then picks the only or latest revision, as
    for a table without the column) so that the column stays bool, as ONE-api expects;
    anything else is NA.
    """
    if col.startswith('exists_'):
        if 'exists' in rows.columns:
            return rows['exists'].astype(dtype)
        return pd.Series(True, index=rows.index).astype(dtype)
    if col == 'default_revision':
        return pd.Series(False, index=rows.index).astype(dtype)
    return _na_column(rows.index, dtype)


def _column_dtype(col: str, dtype):
    """The dtype of a column added to rows that lack it: nullable (``exists_*`` too, as in
    ONE-api), but for ``default_revision``, which stays bool."""
    return dtype if col == 'default_revision' else _nullable(dtype)


def _with_column(table: pd.DataFrame, col: str, values: pd.Series) -> pd.DataFrame:
    """A shallow copy of `table` with a column set or added (the input is not modified)."""
    table = table.copy(deep=False)
    if col in table.columns:
        table.isetitem(table.columns.get_loc(col), values)
    else:
        table[col] = values
    return table


def _code_dtype(n_categories: int):
    """The smallest integer type pandas uses for the codes of `n_categories` categories."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories < np.iinfo(dtype).max:
            return dtype
    return np.int64


def _recategorize(column: pd.Series, categories: pd.Index) -> pd.Series:
    """A categorical column re-expressed with more categories (the codes remapped)."""
    values = column.array
    mapping = np.append(categories.get_indexer(values.categories), -1)
    codes = mapping[values.codes].astype(_code_dtype(len(categories)))
    dtype = pd.CategoricalDtype(categories, ordered=values.ordered)
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), index=column.index,
                     name=column.name)


def _widen_categories(table: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """`table` with the values of `records` added to its unordered categorical columns.

    Categories stay sorted, so that the column keeps sorting as the strings it holds.
    Ordered categoricals (``qc``) have a fixed set of levels and are left alone.
    """
    for col in table.columns:
        dtype = table[col].dtype
        if not isinstance(dtype, pd.CategoricalDtype) or dtype.ordered or \
                col not in records.columns:
            continue
        values = records[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            used = np.unique(values.cat.codes[values.cat.codes >= 0])
            present = values.cat.categories.take(used)
        else:
            present = pd.Index(pd.unique(values.dropna()))
        new = present[dtype.categories.get_indexer(present) < 0]
        if not len(new):
            continue
        categories = dtype.categories.append(new.astype(dtype.categories.dtype))
        with contextlib.suppress(TypeError):  # values that do not compare stay unsorted
            categories = categories.sort_values()
        table = _with_column(table, col, _recategorize(table[col], categories))
    return table


def align(table: pd.DataFrame, records: pd.DataFrame, strict: bool = False
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give `records` the columns (order and dtypes) of `table`.

    Non-strict: table columns missing from the records are added to the records (and made
    nullable in the table, but for ``default_revision``); record columns missing from the
    table are dropped, but ``default_revision``, which is added to the table (False for its
    existing rows, see `_fill_value_column`).  Categorical columns of the table get the
    categories the records need.

    Returns
    -------
    (table, records)
        The (possibly converted; the input is never modified) table and the aligned records.
    """
    if strict:
        if set(records.columns) != set(table.columns):
            raise AssertionError(
                f'Columns of records {sorted(map(str, records.columns))} do not match those '
                f'of the table {sorted(map(str, table.columns))}')
    else:
        missing = [c for c in table.columns if c not in records.columns]
        if missing:
            # columns filled with NA must hold it (exists_* columns are filled with booleans)
            conversions = {c: _column_dtype(c, table[c].dtype) for c in missing}
            conversions = {c: d for c, d in conversions.items() if d != table[c].dtype}
            if conversions:
                table = table.astype(conversions)
            records = records.assign(**{
                c: _fill_value_column(c, records, table[c].dtype) for c in missing})
        if 'default_revision' in records.columns and 'default_revision' not in table.columns:
            table = _with_column(table, 'default_revision', _fill_value_column(
                'default_revision', table, records['default_revision'].dtype))
    table = _widen_categories(table, records)
    records = records[list(table.columns)]
    dtypes = table.dtypes.to_dict()
    if records.dtypes.to_dict() != dtypes:
        records = records.astype(dtypes)
    return table, records


def with_columns_of(frame: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the columns of `other` it lacks, filled as `merge_tables` fills them."""
    missing = [c for c in other.columns if c not in frame.columns]
    if not missing:
        return frame
    return frame.assign(**{c: _fill_value_column(c, frame, _column_dtype(c, other[c].dtype))
                           for c in missing})
