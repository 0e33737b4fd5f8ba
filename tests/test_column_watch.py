"""Tests of one._tables.column_watch: in-place edits of every kind of column are noticed.

The suite runs with pandas 3 (copy-on-write: the watch holds the column and compares
identities) and pandas 2.2 (in-place writes: the watch compares a copy of the raw values); both
mechanisms are also exercised in one run through `monkeypatch` of `copy_on_write`, and under
pandas 2 with its option ``mode.copy_on_write`` set.
"""
import gc

import numpy as np
import pandas as pd
import pytest

from one._tables import column_watch
from one._tables.column_watch import ColumnWatch

QC = pd.CategoricalDtype(['NOT_SET', 'PASS', 'FAIL'], ordered=True)


def _frame(n=6):
    return pd.DataFrame({
        'rel_path': pd.array([f'alf/obj{i}.x.npy' for i in range(n)], dtype=object),
        'name': [f'n{i}' for i in range(n)],  # the default str dtype of the pandas installed
        'exists': np.ones(n, dtype=bool),
        'flag': np.zeros(n, dtype=bool),
        'number': np.arange(n, dtype=np.int64),
        'value': np.r_[np.nan, np.arange(1, n, dtype=float)],
        'qc': pd.Categorical(['PASS'] * n, dtype=QC),
        'size': pd.array(range(n), dtype='UInt64'),
        'maybe': pd.array([True] * n, dtype='boolean'),
    }, index=pd.MultiIndex.from_tuples([('e', str(i)) for i in range(n)], names=['eid', 'id']))


EDITS = {
    'rel_path': lambda f: f.loc.__setitem__((('e', '2'), 'rel_path'), 'alf/new.x.npy'),
    'name': lambda f: f.loc.__setitem__((('e', '1'), 'name'), 'other'),
    'exists': lambda f: f.loc.__setitem__((('e', '3'), 'exists'), False),
    'flag': lambda f: f.iloc.__setitem__((0, f.columns.get_loc('flag')), True),
    'number': lambda f: f.loc.__setitem__((('e', '0'), 'number'), 99),
    'value': lambda f: f.loc.__setitem__((('e', '0'), 'value'), 1.5),
    'qc': lambda f: f.loc.__setitem__((('e', '4'), 'qc'), 'FAIL'),
    'size': lambda f: f.loc.__setitem__((('e', '4'), 'size'), pd.NA),
    'maybe': lambda f: f.loc.__setitem__((('e', '5'), 'maybe'), pd.NA),
}


_PANDAS_2 = int(pd.__version__.split('.')[0]) < 3


@pytest.fixture(params=['pandas default', 'snapshot'] +
                (['pandas 2 copy-on-write'] if _PANDAS_2 else []))
def mode(request, monkeypatch):
    if request.param == 'snapshot':  # as pandas 2 without copy-on-write, whatever the version
        monkeypatch.setattr(column_watch, 'copy_on_write', lambda: False)
    if request.param == 'pandas 2 copy-on-write':  # the option users may set in pandas 2
        with pd.option_context('mode.copy_on_write', True):
            assert column_watch.copy_on_write()
            yield request.param
        return
    yield request.param


@pytest.mark.parametrize('column', list(EDITS))
def test_a_cell_edit_is_noticed(column, mode):
    frame = _frame()
    watches = {c: ColumnWatch(frame, c) for c in frame.columns}
    assert all(w.unchanged(frame) for w in watches.values())
    EDITS[column](frame)
    assert not watches[column].unchanged(frame)
    # other columns: unchanged (or a false alarm, never a missed change)
    fresh = ColumnWatch(frame, column)
    assert fresh.unchanged(frame)


@pytest.mark.parametrize('column', ['rel_path', 'qc', 'exists', 'name', 'size'])
def test_replacing_a_column(column, mode):
    frame = _frame()
    frame.loc[('e', '0'), 'exists'] = False
    frame.loc[('e', '0'), 'qc'] = 'FAIL'
    watch = ColumnWatch(frame, column)
    frame[column] = frame[column].iloc[::-1].to_numpy()
    assert not watch.unchanged(frame)
    assert not ColumnWatch(frame, column).unchanged(frame.drop(columns=column))


@pytest.mark.parametrize('column', ['rel_path', 'qc', 'exists', 'name', 'size'])
def test_replacing_a_column_by_equal_values(column, mode):
    """Equal values: unchanged when the raw values are compared, a harmless false alarm when
    identities are."""
    frame = _frame()
    watch = ColumnWatch(frame, column)
    frame[column] = frame[column].copy()
    assert watch.unchanged(frame) == (mode == 'snapshot' or not column_watch.copy_on_write())


def test_unchanged_other_frame_with_same_values_is_exact(mode):
    frame = _frame()
    watch = ColumnWatch(frame, 'qc')
    copy = frame.copy(deep=True)
    copy.loc[('e', '1'), 'qc'] = 'FAIL'
    assert not watch.unchanged(copy)


def test_absent_column():
    frame = _frame()
    watch = ColumnWatch(frame, 'missing')
    assert watch.unchanged(frame)
    frame['missing'] = 1
    assert not watch.unchanged(frame)


def test_object_pointers_are_not_fooled_by_reused_addresses(monkeypatch):
    """A value replaced many times in place (pandas 2 without copy-on-write; pandas 3 writes
    in place too when nothing references the column): each new object could be allocated at
    the address of the one first watched, but the watch keeps that one alive."""
    monkeypatch.setattr(column_watch, 'copy_on_write', lambda: False)
    frame = pd.DataFrame({'x': pd.array([''.join(['a', str(i)]) for i in range(5)],
                                        dtype=object)})
    watch = ColumnWatch(frame, 'x')
    original = id(frame.iat[2, 0])
    for i in range(50):
        frame.iloc[2, 0] = ''.join(['b', str(i)])
        gc.collect()
        assert id(frame.iat[2, 0]) != original
        assert not watch.unchanged(frame)


def test_extension_arrays_backed_by_numpy(mode):
    frame = pd.DataFrame({'t': pd.array(pd.period_range('2020-01', periods=3, freq='M')),
                          'd': pd.date_range('2020-01-01', periods=3, tz='UTC')})
    watches = [ColumnWatch(frame, 't'), ColumnWatch(frame, 'd')]
    assert all(w.unchanged(frame) for w in watches)
    frame.iloc[1, 0] = pd.Period('2021-05', freq='M')
    frame.iloc[1, 1] = pd.Timestamp('2021-01-01', tz='UTC')
    assert not any(w.unchanged(frame) for w in watches)


def test_unknown_array_kinds_count_as_changed(monkeypatch):
    monkeypatch.setattr(column_watch, 'copy_on_write', lambda: False)
    frame = pd.DataFrame({'i': pd.arrays.IntervalArray.from_breaks([0, 1, 2])})
    assert not ColumnWatch(frame, 'i').unchanged(frame)
