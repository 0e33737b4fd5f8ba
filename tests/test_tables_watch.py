"""Tests of one._tables.tables_watch: any edit of watched cache tables is noticed (in place, by
replacing a table, its index or a column, adding or removing a table, a new modified_time),
with both mechanisms of `ColumnWatch` (copy-on-write identities, copies of raw values)."""
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from one._tables import column_watch
from one._tables.tables_watch import TablesWatch


@pytest.fixture(params=['pandas default', 'snapshot'])
def mode(request, monkeypatch):
    if request.param == 'snapshot':  # as pandas 2 without copy-on-write
        monkeypatch.setattr(column_watch, 'copy_on_write', lambda: False)
    return request.param


def _tables():
    index = pd.MultiIndex.from_tuples([('e', str(i)) for i in range(4)], names=['eid', 'id'])
    datasets = pd.DataFrame({'rel_path': [f'alf/o{i}.x.npy' for i in range(4)],
                             'exists': np.ones(4, dtype=bool)}, index=index)
    sessions = pd.DataFrame({'subject': ['KS023']}, index=pd.Index(['e'], name='id'))
    return {'datasets': datasets, 'sessions': sessions, '_meta': {'modified_time': None}}


def _set_path(t):
    t['datasets'].loc[('e', '1'), 'rel_path'] = 'alf/new.x.npy'


def _replace(t):
    t['datasets'] = t['datasets'].copy()


def _new_index(t):
    t['sessions'].index = pd.Index(['f'], name='id')


def _new_column(t):
    t['sessions']['lab'] = 'cortexlab'


def _add_row(t):
    t['datasets'].loc[('e', '9'), :] = ['alf/o9.x.npy', True]


def _add_table(t):
    t['insertions'] = pd.DataFrame()


def _modified(t):
    t['_meta']['modified_time'] = datetime.now()


EDITS = [_set_path, _replace, _new_index, _new_column, _add_row, _add_table, _modified]


@pytest.mark.parametrize('edit', EDITS, ids=[e.__name__ for e in EDITS])
def test_edits_are_noticed(mode, edit):
    tables = _tables()
    watch = TablesWatch(tables)
    assert watch.unchanged(tables)
    tables['datasets']['rel_path'].tolist()  # reading changes nothing
    assert watch.unchanged(tables)
    edit(tables)
    assert not watch.unchanged(tables)


def test_duplicate_column_names_are_never_unchanged():
    tables = _tables()
    tables['sessions'] = pd.DataFrame([[1, 2]], columns=['a', 'a'])
    assert not TablesWatch(tables).unchanged(tables)
