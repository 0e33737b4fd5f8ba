"""Table cells that may be missing: NA, NaN, None and empty values read as unknown."""
from __future__ import annotations

import pandas as pd

__all__ = ['known']


def known(value):
    """The value, or None when it is missing or empty (None, NA, NaN, '', 0).

    Cache tables mark an unknown size or md5 in several ways (NA, NaN, None, 0 or ''); callers
    compare only what is known.

    Examples
    --------
    >>> known(float('nan')) is None and known('') is None and known(0) is None
    True
    >>> known(12)
    12
    """
    if value is None or isinstance(value, str) and not value:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value or None
