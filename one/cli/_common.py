"""What every ``one`` subcommand shares: the exceptions that set the exit code, argument types
that name a bad value, opening the data folder or the database, the search options of the
database and the query they make, reading a list of sessions, and printing tables and JSON.

Argument types (for ``add_argument(type=...)``): a bad value makes argparse print
``one CMD: error: argument --option: <why>`` and exit with 2, so the option is always named.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from pathlib import Path

__all__ = ['UsageError', 'NotFound', 'open_one', 'session_eid', 'print_table', 'print_json',
           'plain', 'human_size', 'count', 'regex', 'qc_level', 'iso_date', 'optional_iso_date',
           'session_number',
           'REMOTE_SESSION_OPTIONS', 'add_search_options', 'session_query',
           'read_session_list', 'database']


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


def human_size(n: float) -> str:
    """A byte count for people: '1.5 GiB'."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(n) < 1024 or unit == 'TiB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n:.1f} TiB'


def count(n: int, what: str) -> str:
    """`n` things: '1 file', '3 files'."""
    return f'{n} {what}' if n == 1 else f'{n} {what}s'


# ---- searching the database, lists of sessions ----------------------------------------------

REMOTE_SESSION_OPTIONS = (
    # (option, search term, help, type): the session terms of a search sent to the database
    # (its matches: part of the value, case-insensitive); repeat an option for any of several
    ('--subject', 'subject', 'subject name (part of it)', str),
    ('--lab', 'laboratory', 'lab name (part of it)', str),
    ('--task-protocol', 'task_protocol', 'task protocol (part of it)', str),
    ('--projects', 'projects', 'project name (part of it)', str),
    ('--number', 'number', 'session number', session_number),
)


def add_search_options(parser: argparse.ArgumentParser, options, prefix: str = '') -> None:
    """Add search options (``(option, term, help, type)`` tuples, each repeatable) and
    ``--date`` / ``--date-range`` to a parser; `prefix` starts each help text."""
    for option, term, text, kind in options:
        parser.add_argument(option, dest=term, action='append', type=kind,
                            metavar=option[2:].upper().replace('-', '_'), help=prefix + text)
    dates = parser.add_mutually_exclusive_group()
    dates.add_argument('--date', type=iso_date, help=f'{prefix}sessions of this day '
                                                     '(YYYY-MM-DD)')
    dates.add_argument('--date-range', nargs=2, metavar=('FROM', 'TO'), type=optional_iso_date,
                       help=f"{prefix}sessions between two days, inclusive ('' leaves an end "
                            'open)')


def session_query(args: argparse.Namespace, options) -> dict:
    """The search terms given on the command line (empty when none): each option of
    `options` (tuples whose second item is the term) and the dates."""
    query = {}
    for option in options:
        term = option[1]
        value = getattr(args, term)
        if value:
            query[term] = value[0] if isinstance(value, list) and len(value) == 1 else value
    if args.date:
        query['date_range'] = args.date
    elif args.date_range:
        query['date_range'] = [x or None for x in args.date_range]
    return query


_HEADER_WORDS = {'eid', 'id', 'session', 'session_uuid'}  # first lines of saved session lists


def read_session_list(source: str, option: str = '--eids') -> list[str]:
    """Sessions from a file ('-': standard input), one per line: the first field of each line
    (so the output of ``one search`` works), '#' comments, blank lines and a header skipped.

    Raises
    ------
    UsageError
        The file cannot be read, or names no session.
    """
    if source == '-':
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding='utf-8')
        except OSError as e:
            raise UsageError(f'{option}: cannot read {source}: {e.strerror or e}') from None
    names = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        name = line.replace(',', ' ').split()[0]
        if not names and name.lower() in _HEADER_WORDS:
            continue
        names.append(name)
    if not names:
        raise UsageError(f'{option}: no session in '
                         f'{"standard input" if source == "-" else source}')
    return names


def database(url: str | None, hint: str = '') -> str:
    """The database to use: `url`, $ONE_ALYX_URL or the default one; it must be set up.

    Parameters
    ----------
    url : str, optional
        Given with --base-url.
    hint : str
        Added to the error when no database is set up (e.g. 'or name a release with --url').

    Raises
    ------
    UsageError
        No database, a URL that is not one, or one not set up (the message says what to run).
    """
    import one.params

    url = url or os.environ.get('ONE_ALYX_URL') or one.params.get_default_client()
    if not url:
        raise UsageError('no database is set up: run "one setup --base-url URL" first'
                         + (f', {hint}' if hint else ''))
    try:
        key = one.params.client_key(url)
    except ValueError as e:
        raise UsageError(f'--base-url: {e}: {url!r}') from None
    if key not in one.params.client_map():
        raise UsageError(f'{url} is not set up: run "one setup --base-url {url}" first')
    return one.params.get(url, silent=True).ALYX_URL
