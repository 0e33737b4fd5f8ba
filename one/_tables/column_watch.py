"""Telling cheaply whether a column of a DataFrame still holds the values it held.

Views derived from a column (integer codes of its strings, say) stay valid while the column is
unchanged.  Users edit the cache tables in place (``table.loc[key, 'qc'] = 'FAIL'``), so a view
must notice that without comparing every value each time:

* under copy-on-write (pandas >= 3, or the option set in pandas 2), a write into a frame
  copies a column that another object still references.  A `ColumnWatch` holds the column (a
  Series, which registers such a reference), so any later write, however made, gives the frame
  new values: comparing the identity of the values (the extension array, or the memory of a
  numpy column) says whether the column changed;
* without copy-on-write, pandas 2 writes in place.  The watch keeps a copy of the column's raw
  values (a numpy column's values, a categorical's codes, the masks of a nullable column, the
  object pointers of a string column) and compares them with the frame's: a vectorised
  comparison of a few megabytes for a million rows.  Pointers are compared while the copy
  holds every object it points to, so an address cannot be reused by another object (the
  cost: 8 bytes a row, and strings replaced by an edit stay alive until the view is rebuilt).

Columns of other kinds are reported as changed (the view is rebuilt: correct, only slower).
"""
from __future__ import annotations

import ctypes

import numpy as np
import pandas as pd

__all__ = ['ColumnWatch', 'copy_on_write']

_PANDAS_3 = int(pd.__version__.split('.')[0]) >= 3


def copy_on_write() -> bool:
    """True when pandas copies a referenced column on write (pandas >= 3, or the option set)."""
    if _PANDAS_3:
        return True
    try:
        return pd.get_option('mode.copy_on_write') is True
    except (KeyError, pd.errors.OptionError):
        return False


def _numpy_values(series: pd.Series) -> np.ndarray | None:
    """The numpy array behind a numpy-backed column (a view, not a copy), else None.

    Extension arrays backed by one numpy array (datetimes with a time zone, periods) count as
    numpy-backed; categoricals do not (their categories matter too).
    """
    if isinstance(series.dtype, np.dtype):
        return series.to_numpy(copy=False)
    array = series.array
    backing = getattr(array, '_ndarray', None)
    if isinstance(backing, np.ndarray) and not isinstance(array, pd.Categorical):
        return backing
    return None


def _pointers(values: np.ndarray) -> np.ndarray:
    """The object pointers of an object array, as an integer array (a view of its memory:
    valid while `values` lives)."""
    if not values.flags.c_contiguous:
        values = np.ascontiguousarray(values)
    if values.nbytes == 0:
        return np.empty(0, dtype=np.uintp)
    buffer = (ctypes.c_char * values.nbytes).from_address(values.ctypes.data)
    return np.frombuffer(buffer, dtype=np.uintp)


def _raw(values: np.ndarray) -> np.ndarray:
    """Values comparable bit for bit (floats by their bits, so NaN equals NaN)."""
    if values.dtype.kind in 'fcmM':
        return np.ascontiguousarray(values).view(f'u{values.dtype.itemsize}')
    return values


class _Snapshot:
    """A copy of a column's raw values, for pandas writing in place."""

    __slots__ = ('kind', 'parts', 'keep')

    def __init__(self, series: pd.Series):
        self.keep = None
        values = _numpy_values(series)
        array = series.array
        if values is not None and values.dtype == object:
            self.kind = 'object'
            self.keep = values.copy()  # holds every object: no address is reused meanwhile
            self.parts = (_pointers(self.keep),)
        elif values is not None:
            self.kind = 'numpy'
            self.parts = (_raw(values).copy(),)
        elif isinstance(array, pd.Categorical):
            self.kind = 'categorical'
            self.keep = array.categories
            self.parts = (np.asarray(array.codes).copy(),)
        elif hasattr(array, '_pa_array'):  # arrow-backed: immutable arrays, replaced on write
            self.kind = 'arrow'
            self.keep = array._pa_array
            self.parts = ()
        elif hasattr(array, '_data') and hasattr(array, '_mask'):  # nullable numbers, booleans
            self.kind = 'masked'
            self.parts = (_raw(array._data).copy(), array._mask.copy())
        else:
            self.kind = 'unknown'
            self.parts = ()

    def matches(self, series: pd.Series) -> bool:
        kind = self.kind
        if kind == 'unknown':
            return False
        values = _numpy_values(series)
        array = series.array
        if kind == 'object':
            return values is not None and values.dtype == object and \
                np.array_equal(_pointers(values), self.parts[0])
        if kind == 'numpy':
            return values is not None and values.dtype.kind != 'O' and \
                values.shape == self.parts[0].shape and \
                np.array_equal(_raw(values), self.parts[0])
        if kind == 'categorical':
            return isinstance(array, pd.Categorical) and array.categories is self.keep and \
                np.array_equal(array.codes, self.parts[0])
        if kind == 'arrow':
            return getattr(array, '_pa_array', None) is self.keep
        data, mask = getattr(array, '_data', None), getattr(array, '_mask', None)
        return isinstance(data, np.ndarray) and isinstance(mask, np.ndarray) and \
            data.shape == self.parts[0].shape and np.array_equal(_raw(data), self.parts[0]) \
            and np.array_equal(mask, self.parts[1])


class _Held:
    """A reference to a column, for pandas copying referenced columns on write."""

    __slots__ = ('series', 'token')

    def __init__(self, series: pd.Series):
        self.series = series  # a tracked reference: writes into the frame now copy the column
        self.token = self._token(series)

    @staticmethod
    def _token(series: pd.Series):
        values = _numpy_values(series)
        if values is not None:
            interface = values.__array_interface__
            return 'numpy', interface['data'][0], values.strides, values.shape, values.dtype
        array = series.array
        return 'array', id(array), id(getattr(array, '_pa_array', None))

    def matches(self, series: pd.Series) -> bool:
        token = self._token(series)
        if token[0] == 'array':  # the held array keeps its id from being reused
            return token[1] == self.token[1] and series.array is self.series.array and \
                getattr(series.array, '_pa_array', None) is \
                getattr(self.series.array, '_pa_array', None)
        return token == self.token


class ColumnWatch:
    """Whether a column of a frame still holds the values it held when the watch was made.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table.
    column : str
        The column watched (absent: the watch reports a change once it appears).

    Examples
    --------
    >>> frame = pd.DataFrame({'x': [1, 2]})
    >>> watch = ColumnWatch(frame, 'x')
    >>> watch.unchanged(frame)
    True
    >>> frame.loc[0, 'x'] = 5
    >>> watch.unchanged(frame)
    False
    """

    __slots__ = ('column', '_state')

    def __init__(self, frame: pd.DataFrame, column: str):
        self.column = column
        series = self._series(frame)
        if series is None:
            self._state = None
        elif copy_on_write():
            self._state = _Held(series)
        else:
            self._state = _Snapshot(series)

    def _series(self, frame: pd.DataFrame) -> pd.Series | None:
        if self.column not in frame.columns:
            return None
        series = frame[self.column]
        return series if isinstance(series, pd.Series) else None  # duplicate column names

    def unchanged(self, frame: pd.DataFrame) -> bool:
        """True if the column of `frame` holds the same values as when watched.

        `frame` may be another frame than the one watched: the answer is about the values of
        its column, row by row.  True is exact; False may be a false alarm (e.g. the column
        replaced by equal values), which only costs rebuilding a view.
        """
        series = self._series(frame)
        if series is None or self._state is None:
            return series is None and self._state is None
        return self._state.matches(series)
