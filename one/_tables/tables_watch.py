"""Telling cheaply whether cache tables still hold what they held when watched.

A `One` sent to another process carries its tables when they may differ from the files on
disk, and finding out means loading the files and comparing every row (a quarter of a second
for a million datasets).  Once a comparison found no difference, a `TablesWatch` remembers the
tables as they were then, so that later checks cost next to nothing while nobody touches them:
the same table objects, the same index objects and column names, and every column's values
unchanged (`one._tables.column_watch.ColumnWatch`: identities under copy-on-write, a copy of the
raw values otherwise).  Any edit, in place or by replacing a table, makes `unchanged` False.

Nothing here imports `one.alf.cache`.
"""
from __future__ import annotations

import weakref
from collections.abc import Mapping

import pandas as pd

from one._tables.column_watch import ColumnWatch

__all__ = ['TablesWatch']


def _frames(tables: Mapping) -> dict:
    return {name: table for name, table in tables.items()
            if not str(name).startswith('_') and isinstance(table, pd.DataFrame)}


class TablesWatch:
    """Whether the tables of a cache still hold what they held when the watch was made.

    Parameters
    ----------
    tables : Mapping
        A cache Bunch: tables by name (entries starting with '_' are not tables) and
        ``_meta``, whose ``modified_time`` must not change either.

    Examples
    --------
    >>> tables = {'sessions': pd.DataFrame({'subject': ['KS023']}), '_meta': {}}
    >>> watch = TablesWatch(tables)
    >>> watch.unchanged(tables)
    True
    >>> tables['sessions'].loc[0, 'subject'] = 'KS024'
    >>> watch.unchanged(tables)
    False
    """

    __slots__ = ('_tables', '_modified')

    def __init__(self, tables: Mapping):
        self._modified = (tables.get('_meta') or {}).get('modified_time')
        self._tables = {}
        for name, table in _frames(tables).items():
            columns = tuple(table.columns)
            watches = [ColumnWatch(table, c) for c in columns] \
                if table.columns.is_unique else None  # a column per name, or no watch
            self._tables[name] = (weakref.ref(table), table.index, columns, watches)

    def unchanged(self, tables: Mapping) -> bool:
        """True if `tables` are the tables watched, holding the same values (exact when True;
        False may be a false alarm, e.g. a column replaced by equal values)."""
        if (tables.get('_meta') or {}).get('modified_time') != self._modified:
            return False
        frames = _frames(tables)
        if frames.keys() != self._tables.keys():
            return False
        for name, (ref, index, columns, watches) in self._tables.items():
            table = frames[name]
            if ref() is not table or table.index is not index or watches is None or \
                    tuple(table.columns) != columns:
                return False
            if not all(watch.unchanged(table) for watch in watches):
                return False
        return True
