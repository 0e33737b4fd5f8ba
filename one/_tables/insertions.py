"""Search the probe insertions table of the cache (``insertions``), as `OneAlyx` does offline.

The insertions table is indexed by ``(eid, id)`` (session and insertion UUIDs) and holds the
fields of Alyx's insertion records (``name``, ``model``, ``serial``, ``json``, ...).  Session
criteria are answered by `One.search`; this module filters the insertions themselves and orders
them as ONE-api does: by session date, subject, session number and insertion name, most recent
first.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

from one._tables import uuid_index

__all__ = ['INSERTION_TERMS', 'filter_insertions']

INSERTION_TERMS = ('model', 'name', 'json', 'serial', 'chronic_insertion')
"""The search terms of the insertions themselves (the others are session search terms)."""

_TEXT_TERMS = ('model', 'name', 'serial')
_SESSION_COLUMNS = ('date', 'subject', 'number')


def _as_text(column: pd.Series) -> pd.Series:
    return column.astype('string')


def _session_ids(index: pd.MultiIndex) -> pd.Index:
    """The session id of each row of an insertions index, as strings (converted in bulk)."""
    return uuid_index.in_form(index, as_uuid=False).get_level_values('eid')


def _contains_any(column: pd.Series, values: Iterable, regex: bool) -> pd.Series:
    """Rows whose value contains one of `values` (regular expressions if `regex`)."""
    values = [str(v) for v in values]
    if not regex:
        values = [re.escape(v) for v in values]
    pattern = '|'.join(values)
    return _as_text(column).str.contains(pattern, regex=True, na=False)


def filter_insertions(insertions: pd.DataFrame, sessions: pd.DataFrame, queries: dict,
                      eids: Iterable | None = None, regex: bool = True) -> pd.DataFrame:
    """Return the insertions matching the criteria, with their session's date, subject, number.

    Parameters
    ----------
    insertions : pandas.DataFrame
        The insertions table, indexed by ``(eid, id)``.
    sessions : pandas.DataFrame
        The sessions table, indexed by ``id``; insertions of sessions not in it are left out.
    queries : dict
        Insertion criteria by full term name: `model`, `name` and `serial` keep insertions whose
        value contains any of the given values.
    eids : iterable, optional
        Keep only the insertions of these sessions (UUIDs or strings).
    regex : bool
        The values of `queries` are regular expressions (else plain substrings).

    Returns
    -------
    pandas.DataFrame
        The matching rows (index ``(eid, id)``) with the columns ``date``, ``subject`` and
        ``number`` of their session added, sorted by them and ``name``, in descending order.

    Raises
    ------
    NotImplementedError
        A criterion other than `model`, `name` or `serial` (e.g. `json`).
    """
    for key in queries:
        if key not in _TEXT_TERMS:
            raise NotImplementedError(key)
    found = insertions
    if eids is not None:
        session_of_row = _session_ids(found.index)
        found = found[session_of_row.isin([str(e) for e in eids])]
    for key, values in queries.items():
        if found.empty:
            break
        if key not in found.columns:
            found = found.iloc[0:0]
            break
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            values = [values]
        found = found[_contains_any(found[key], values, regex).to_numpy()]

    session_ids = uuid_index.in_form(sessions.index, as_uuid=False)
    if not session_ids.is_unique:
        first = ~session_ids.duplicated()
        sessions, session_ids = sessions[first], session_ids[first]
    columns = [c for c in _SESSION_COLUMNS if c in sessions.columns]
    positions = session_ids.get_indexer(_session_ids(found.index))
    found = found[positions >= 0]
    session_info = sessions.iloc[positions[positions >= 0]][columns].set_axis(found.index)
    found = pd.concat([found.drop(columns=columns, errors='ignore'), session_info], axis=1)
    order = [c for c in (*columns, 'name') if c in found.columns]
    if order and len(found) > 1:
        found = found.sort_values(order, ascending=False, kind='stable')
    return found
