"""What every ``one`` subcommand shares: the exceptions that set the exit code, argument types
that name a bad value, opening the data folder, and printing tables and JSON.

Argument types (for ``add_argument(type=...)``): a bad value makes argparse print
``one CMD: error: argument --option: <why>`` and exit with 2, so the option is always named.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
from pathlib import Path

__all__ = ['UsageError', 'NotFound', 'open_one', 'session_eid', 'print_table', 'print_json',
           'plain', 'regex', 'qc_level', 'iso_date', 'optional_iso_date', 'session_number']


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


class NotFound(Exception):
    """Nothing matched (exit code 1)."""


def regex(value: str) -> str:
    """An argument that must be a valid regular expression."""
    try:
        re.compile(value)
    except re.error as e:
        raise argparse.ArgumentTypeError(
            f'not a valid regular expression: {value!r} ({e})') from None
    return value


def qc_level(value: str) -> str:
    """A QC level name or number (e.g. WARNING or 30)."""
    from one.alf.spec import QC

    try:
        return QC.validate(value).name
    except (ValueError, KeyError):
        names = ', '.join(q.name for q in sorted(QC))
        raise argparse.ArgumentTypeError(
            f'not a QC level: {value!r} (one of {names}, or its number)') from None


def iso_date(value: str) -> str:
    """A day as YYYY-MM-DD."""
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'not a date: {value!r} (expected YYYY-MM-DD, e.g. 2024-01-15)') from None


def optional_iso_date(value: str) -> str:
    """A day as YYYY-MM-DD, or '' for an open end."""
    return value if value == '' else iso_date(value)


def session_number(value: str) -> int:
    """A session number: a whole number >= 0."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(
            f'not a session number: {value!r} (a whole number, e.g. 1)')
    return number


def open_one(args: argparse.Namespace):
    """A One for the data folder named by --cache-dir, ONE_CACHE_DIR or the current folder, or
    for the release named by --url (kept in --cache-dir, by default one folder per URL)."""
    from one.api import One

    if getattr(args, 'url', None):
        from one.api import OneRelease
        try:
            return OneRelease(args.url, cache_dir=args.cache_dir)
        except ValueError as e:  # not a release URL
            raise UsageError(str(e)) from e
    if args.cache_dir:
        folder, named = Path(args.cache_dir), '-C/--cache-dir'
    elif os.environ.get('ONE_CACHE_DIR'):
        folder, named = Path(os.environ['ONE_CACHE_DIR']), 'ONE_CACHE_DIR'
    else:
        folder, named = Path.cwd(), 'the current folder (no -C/--cache-dir given)'
    if not folder.is_dir():
        raise UsageError(f'not a folder: {folder} ({named})')
    if not (folder / 'datasets.pqt').exists():
        raise UsageError(f'no cache tables in {folder} ({named}); run "one index {folder}" '
                         'first, or name an indexed data folder with -C')
    return One(cache_dir=folder, mode='local')


def session_eid(one, text: str):
    eid = one.to_eid(text)
    if eid is None:
        raise NotFound(f'session not found: {text}')
    return eid


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print rows as aligned columns with a header."""
    cells = [[str(row.get(c, '')) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print('  '.join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print('  '.join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _json_default(value):
    if hasattr(value, 'isoformat'):
        return value.isoformat()
    if hasattr(value, 'item'):  # numpy scalars
        return value.item()
    return str(value)


def print_json(value) -> None:
    print(json.dumps(value, indent=1, default=_json_default))


def plain(value):
    """A table cell as a JSON-friendly value (NA -> None)."""
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, 'item') else value
