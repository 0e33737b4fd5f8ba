"""What every ``one`` subcommand shares: the exceptions that set the exit code, opening the data
folder, and printing tables and JSON."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

__all__ = ['UsageError', 'NotFound', 'open_one', 'session_eid', 'print_table', 'print_json',
           'plain']


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


class NotFound(Exception):
    """Nothing matched (exit code 1)."""


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
    folder = Path(args.cache_dir or os.environ.get('ONE_CACHE_DIR') or Path.cwd())
    if not folder.is_dir():
        raise UsageError(f'not a folder: {folder}')
    if not (folder / 'datasets.pqt').exists():
        raise UsageError(f'no cache tables in {folder}; run "one index {folder}" first')
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
