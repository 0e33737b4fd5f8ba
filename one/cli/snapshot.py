"""``one snapshot``: the cache tables of the sessions of a query, to work from without the
database (see `one.api.OneAlyx.snapshot`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from one.cli._common import NotFound, UsageError, iso_date, optional_iso_date, print_json
from one.cli.local import _SEARCH_OPTIONS

_REPEATABLE = ('dataset',)  # remote search: a list of partial names, all needed
_HELP = {
    'subject': 'subject name (part of it)',
    'laboratory': 'lab name (part of it)',
    'task_protocol': 'task protocol (part of it)',
    'projects': 'project name (part of it)',
    'number': 'session number',
    'dataset': 'a dataset name contains this (repeat: all needed)',
    'datasets': 'dataset names the session holds (exact, comma-separated)',
    'dataset_qc_lte': 'with --dataset: datasets with this QC or better (e.g. WARNING)',
}


def _read_eids(source: str) -> list[str]:
    """Session UUIDs, one a line ('#' comments and blank lines skipped), from a file or '-'."""
    from uuid import UUID

    try:
        text = sys.stdin.read() if source == '-' else Path(source).read_text(encoding='utf-8')
    except OSError as e:
        raise UsageError(f'--eids: cannot read {source}: {e.strerror or e}') from e
    eids = []
    for number, line in enumerate(text.splitlines(), 1):
        value = line.split('#', 1)[0].strip()
        if not value:
            continue
        try:
            eids.append(str(UUID(value)))
        except ValueError:
            raise UsageError(f'--eids: line {number} of {source} is not a session UUID: '
                             f'{value!r}') from None
    if not eids:
        raise UsageError(f'--eids: no session UUID in {source}')
    return eids


def _query(args: argparse.Namespace) -> dict:
    query = {}
    for _option, term, _help, _many, _type in _SEARCH_OPTIONS:
        value = getattr(args, term)
        if value:
            query[term] = value
    if args.date:
        query['date_range'] = args.date
    elif args.date_range:
        query['date_range'] = [x or None for x in args.date_range]
    return query


def cmd_snapshot(args: argparse.Namespace) -> int:
    from one._lib.http_errors import AlyxAuthError
    from one.api import OneAlyx
    from one.cli.auth import _database

    query = _query(args)
    eids = _read_eids(args.eids) if args.eids else None
    if eids is not None and query:
        raise UsageError('--eids names the sessions: give no search option with it')
    url = _database(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f'not a folder: {out}')
    one = OneAlyx(base_url=url, mode='remote', silent=True, tables_dir=out)
    try:
        info = one.snapshot(out, eids=eids, **query)
    except AlyxAuthError as e:
        raise UsageError(f'not logged in to {url}: run "one login --base-url {url}" '
                         f'({str(e).splitlines()[0]})') from e
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from e
    counts = info['counts']
    if not counts.get('sessions'):
        raise NotFound(f'no session matches on {url}: nothing written')
    if args.json:
        print_json(info)
        return 0
    found = info['query']['sessions']
    print(f'snapshot of {found} sessions from {url} into {out}: the folder holds '
          + ', '.join(f'{v} {k}' for k, v in counts.items()))
    print(f'use it with: ONE(mode="local", tables_dir="{out}", cache_dir=...)',
          file=sys.stderr)
    return 0


def add_commands(commands, parents: dict) -> None:
    """Add the snapshot subcommand to the ``one`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``one`` parser.
    parents : dict
        Shared option groups: 'common' (--debug), 'output' (--json).
    """
    snapshot = commands.add_parser(
        'snapshot', parents=[parents['common'], parents['output']],
        help='save the cache tables of a query on a database, to work without it',
        description='Ask the database for the sessions of a search (or those listed with '
                    '--eids), all their datasets and probe insertions, in batched queries, '
                    'and write them as cache tables into OUT with a cache_info.json (the '
                    'database, the date, the query, the counts).  Run again to update: the '
                    'sessions found are replaced by their current records, the others kept.  '
                    'Search options are those of the database (partial, case-insensitive '
                    'matches).  Needs a login (one login).')
    snapshot.add_argument('out', metavar='OUT', help='the folder of the snapshot')
    snapshot.add_argument('--base-url', metavar='URL',
                          help='the database (default: ONE_ALYX_URL, then the default one)')
    snapshot.add_argument('--eids', metavar='FILE',
                          help="the sessions: a file of session UUIDs, one a line ('-': "
                               'standard input)')
    for option, term, _text, _many, kind in _SEARCH_OPTIONS:
        snapshot.add_argument(option, dest=term, type=kind, help=_HELP[term],
                              action='append' if term in _REPEATABLE else 'store')
    dates = snapshot.add_mutually_exclusive_group()
    dates.add_argument('--date', type=iso_date, help='sessions of this day (YYYY-MM-DD)')
    dates.add_argument('--date-range', nargs=2, metavar=('FROM', 'TO'),
                       type=optional_iso_date,
                       help="sessions between two days, inclusive ('' leaves an end open)")
    snapshot.set_defaults(run=cmd_snapshot)
