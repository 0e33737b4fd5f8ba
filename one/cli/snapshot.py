"""``one snapshot``: the cache tables of the sessions of a query, to work from without the
database (see `one.api.OneAlyx.snapshot`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from one.cli._common import (
    REMOTE_SESSION_OPTIONS,
    NotFound,
    UsageError,
    add_search_options,
    database,
    print_json,
    qc_level,
    read_session_list,
    session_query,
)

_SEARCH_OPTIONS = REMOTE_SESSION_OPTIONS + (
    # the dataset terms of a remote search
    ('--dataset', 'dataset', 'a dataset name contains this (repeat: all needed)', str),
    ('--datasets', 'datasets', 'dataset names the session holds (exact; repeat: all needed)',
     str),
    ('--dataset-qc-lte', 'dataset_qc_lte', 'with --dataset: datasets with this QC or better '
                                           '(e.g. WARNING)', qc_level),
)


def _read_eids(source: str) -> list[str]:
    """The session UUIDs of a file ('-': standard input), as `read_session_list` reads it."""
    from uuid import UUID

    eids = []
    for name in read_session_list(source):
        try:
            eids.append(str(UUID(name)))
        except ValueError:
            raise UsageError(f'--eids: not a session UUID: {name!r} (in {source}; one snapshot '
                             'takes the UUIDs of the sessions)') from None
    return eids


def cmd_snapshot(args: argparse.Namespace) -> int:
    from one._rest.errors import AlyxAuthError
    from one.api import OneAlyx

    query = session_query(args, _SEARCH_OPTIONS)
    eids = _read_eids(args.eids) if args.eids else None
    if eids is not None and query:
        raise UsageError('--eids names the sessions: give no search option with it')
    url = database(args.base_url)
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
    add_search_options(snapshot, _SEARCH_OPTIONS)
    snapshot.set_defaults(run=cmd_snapshot)
