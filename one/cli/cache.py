"""``one cache ...``: what a data folder holds, checking its files, and cleaning it up.

    one cache ls [SESSION...] [--datasets]  sessions (or dataset files) present, with sizes
    one cache du                            bytes used: datasets, partial downloads, REST cache...
    one cache verify [SESSION...] [--lock FILE] [--repair] [--json]
    one cache prune [--unlisted] [--older-than AGE] [--max-size SIZE] [--dry-run] [--yes]
    one cache clear-rest [--dry-run] [--yes]

The folder is ``-C DIR``, else ``$ONE_CACHE_DIR``, else the default database's data folder,
else the current folder; it must hold cache tables (``verify --lock`` excepted).  Sessions are
named as for the other commands (UUID, ``subject/date/number``, ``date_number_subject``, a
path).  Destructive commands list what they remove, ask for confirmation on a terminal and
only remove files inside the folder; off a terminal they need ``--yes`` (or ``--dry-run``) and
otherwise stop with exit code 2, removing nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from one.cli._common import (
    NotFound,
    UsageError,
    count,
    human_size,
    print_json,
    print_table,
    session_eid,
)


def _folder(args: argparse.Namespace) -> Path:
    """The data folder: -C, $ONE_CACHE_DIR, the default database's folder, the current one."""
    folder = args.cache_dir or os.environ.get('ONE_CACHE_DIR')
    if not folder:
        import one.params

        if one.params.get_default_client():
            folder = one.params.get_cache_dir()
    folder = Path(folder or Path.cwd()).expanduser().absolute()
    if not folder.is_dir():
        raise UsageError(f'not a folder: {folder}')
    return folder


def _open(folder: Path):
    """A local One on the folder's tables (None when it has none)."""
    if not (folder / 'datasets.pqt').exists():
        return None
    from one.api import One

    return One(cache_dir=folder, mode='local')


def _inventory(args: argparse.Namespace):
    """The folder's inventory and a local One on its tables."""
    from one.cli._cache_admin import Inventory, tables_of

    folder = _folder(args)
    one = _open(folder)
    if one is None:
        raise UsageError(f'no cache tables in {folder} (datasets.pqt): not a ONE data folder; '
                         'name one with -C DIR')
    return Inventory.of(folder, tables=tables_of(one)), one


def _eids(one, names: list[str]) -> set[str]:
    """The session ids named (UUID, subject/date/number, reference or path)."""
    return {str(session_eid(one, name)) for name in names}


def _select_sessions(one, inventory, names: list[str]):
    """The dataset rows of the sessions named (all when none)."""
    table = inventory.datasets
    return table[table['eid'].isin(_eids(one, names))] if names else table


def _session_triple(text: str):
    """(subject, date, number) of a session named by a reference or a path (None if neither)."""
    from one.alf.path import session_path_parts
    from one.converters import ConversionMixin

    if ConversionMixin.is_exp_ref(text):
        ref = ConversionMixin.ref2dict(text)
        return ref['subject'], str(ref['date']), int(ref['sequence'])
    parts = session_path_parts(str(text), as_dict=True, assert_valid=False)
    if not parts['subject']:
        return None
    return parts['subject'], parts['date'], int(parts['number'])


def _lock_eids(folder: Path, lock, names: list[str]) -> set[str]:
    """The locked sessions named: through the folder's tables when it has them, else (or for a
    session the tables no longer list) by the lock's own session folders."""
    import functools
    import uuid

    @functools.cache
    def local():  # a UUID needs no tables: read them for the first other name
        return _open(folder), {eid: _session_triple(path) for eid, path in lock.sessions.items()}

    wanted = set()
    for name in names:
        eid = None
        try:
            eid = str(uuid.UUID(name.strip()))
        except ValueError:
            one, triples = local()
            if one is not None:
                found = one.to_eid(name)
                eid = str(found) if found else None
            if eid is None:
                triple = _session_triple(name)
                eid = next((e for e, t in triples.items() if triple and t == triple), None)
        if eid is None or eid not in lock.sessions:
            raise NotFound(f'session not in the lock file: {name}')
        wanted.add(eid)
    return wanted


def _confirm(args: argparse.Namespace, question: str, action: str) -> bool:
    """--yes: go ahead; on a terminal: ask; otherwise stop (exit 2), nothing removed."""
    if getattr(args, 'yes', False):
        return True
    if not sys.stdin.isatty():
        raise UsageError(f'not on a terminal: nothing removed; add --yes to {action} '
                         '(or --dry-run to list only)')
    return input(f'{question} [y/N] ').strip().lower() in ('y', 'yes')


# --------------------------------------------------------------------------------------------
def cmd_ls(args: argparse.Namespace) -> int:
    inventory, one = _inventory(args)
    selected = _select_sessions(one, inventory, args.eid)
    if args.datasets:
        used = inventory.last_used()
        present = selected[selected['on_disk']]
        rows = []
        for row in present.itertuples(index=False):
            disk = inventory.by_dataset[row.path]
            rows.append({'path': row.path, 'size': disk.size, 'id': row.id, 'eid': row.eid,
                         'last_used': datetime.fromtimestamp(used[disk.path]).isoformat(
                             timespec='seconds')})
        if not rows:
            raise NotFound('no dataset file present')
        if args.json:
            print_json(rows)
        else:
            print_table([{**r, 'size': human_size(r['size']), 'last_used': r['last_used'][:16]}
                         for r in rows], ['path', 'size', 'last_used'])
            print(f'{len(rows)} files, {human_size(sum(r["size"] for r in rows))}',
                  file=sys.stderr)
        return 0
    inventory.datasets = selected
    sessions = inventory.sessions()
    if sessions.empty:
        raise NotFound('no session has files in the folder')
    rows = [{'eid': r.eid, 'session': r.session_path, 'datasets': int(r.present),
             'listed': int(r.listed), 'bytes': int(r.bytes)}
            for r in sessions.itertuples(index=False)]
    if args.json:
        print_json(rows)
    else:
        print_table([{**r, 'datasets': f'{r["datasets"]}/{r["listed"]}',
                      'size': human_size(r['bytes'])} for r in rows],
                    ['session', 'datasets', 'size', 'eid'])
        print(f'{len(rows)} sessions, {sum(r["datasets"] for r in rows)} dataset files, '
              f'{human_size(sum(r["bytes"] for r in rows))}', file=sys.stderr)
    return 0


def cmd_du(args: argparse.Namespace) -> int:
    inventory, _ = _inventory(args)
    groups = [('datasets', list(inventory.dataset_files.values())),
              ('loaded, not in the tables', inventory.loaded),
              ('partial downloads', inventory.partial),
              ('unlisted files', inventory.unlisted),
              ('REST cache', inventory.rest),
              ('tables and records', inventory.own),
              ('other', inventory.other)]
    rows = [{'what': name, 'files': len(files), 'bytes': sum(f.size for f in files)}
            for name, files in groups]
    rows.append({'what': 'total', 'files': sum(r['files'] for r in rows),
                 'bytes': sum(r['bytes'] for r in rows)})
    if args.json:
        print_json({'folder': str(inventory.root), **{r['what']: {'files': r['files'],
                                                                   'bytes': r['bytes']}
                                                       for r in rows}})
        return 0
    print(f'{inventory.root}')
    print_table([{**r, 'size': human_size(r['bytes'])} for r in rows], ['what', 'files', 'size'])
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from one.cli._cache_admin import database_of, dataset_files, lock_table, verify

    lock = None
    if args.lock:  # the lock names every file: the tables are not needed
        from one._api.lock import read_lock

        try:
            lock = read_lock(args.lock)
        except (OSError, ValueError) as e:
            raise UsageError(str(e)) from e
        folder = _folder(args)
        expected = lock_table(lock)
        if args.eid:
            expected = expected[expected['eid'].isin(_lock_eids(folder, lock, args.eid))]
        files = dataset_files(folder, expected)
        database = args.base_url or lock.database or database_of(folder)
    else:
        inventory, one = _inventory(args)
        folder = inventory.root
        expected = _select_sessions(one, inventory, args.eid)
        database = args.base_url or database_of(folder)
        if database:  # a download cache: what it was seen holding
            held = inventory.recorded()
            expected = expected[expected['on_disk'] | expected['path'].isin(held)]
        else:  # a folder indexed from its files: all of them
            expected = expected[expected['on_disk'] | expected['exists']]
        files = inventory.by_dataset
    if args.repair and not database:
        raise UsageError(f'cannot repair: {folder} is not the data folder of a configured '
                         'database; name one with --base-url URL')
    problems, hashed = verify(folder, expected, files, progress=None)
    report = {'folder': str(folder), 'checked': len(expected), 'hashed': hashed,
              'problems': [p.as_dict() for p in problems]}
    if not args.json:
        for problem in problems:
            print(problem.describe())
    print(f'{len(expected)} datasets checked ({hashed} hashed): '
          f'{sum(p.kind == "missing" for p in problems)} missing, '
          f'{sum(p.kind != "missing" for p in problems)} bad', file=sys.stderr)
    if problems and args.repair:
        still = _repair(folder, database, expected, problems, lock, quiet=args.json)
        report['repaired'] = len(problems) - len(still)
        report['still'] = [p.as_dict() for p in still]
        problems = still
    if args.json:
        print_json(report)
    return 1 if problems else 0


def _repair(folder: Path, database: str, expected, problems, lock, quiet: bool) -> list:
    """Download the problem datasets again through OneAlyx, then check them again."""
    from one.api import OneAlyx
    from one.cli._cache_admin import dataset_files, repair, verify

    rows = expected[expected['id'].isin({p.id for p in problems})]
    print(f'downloading {len(rows)} datasets from {database} ...', file=sys.stderr)
    one = OneAlyx(base_url=database, cache_dir=folder, mode='remote', silent=True, lock=lock)
    files = repair(one, rows)
    after, _ = verify(folder, rows, dataset_files(folder, rows), progress=None)
    for problem in after if not quiet else ():
        print(f'still {problem.describe()}')
    failed = sum(f is None for f in files)
    print(f'repaired {len(rows) - len(after)} of {len(rows)} datasets'
          f'{f"; {failed} downloads failed" if failed else ""}', file=sys.stderr)
    return after


def _print_plan(plan: dict) -> tuple[list, int]:
    labels = {'partial': 'partial download', 'unlisted': 'not in the tables',
              'datasets': 'least recently used'}
    files = [f for kind in labels for f in plan[kind]]
    for kind, label in labels.items():
        for f in plan[kind]:
            print(f'{human_size(f.size):>10}  {f.path}  ({label})')
    if plan['forget']:
        print(f'the load record forgets {count(len(plan["forget"]), "file")} deleted since '
              'loaded:', file=sys.stderr)
        for path in plan['forget']:
            print(f'  {path}', file=sys.stderr)
    return files, sum(f.size for f in files)


def _explain_kept(inventory, plan: dict, args, download_cache: bool) -> None:
    """Say which files prune keeps that one might expect it to remove."""
    from one.cli._cache_admin import UNLISTED_GRACE

    folder = inventory.root
    if not download_cache:
        if inventory.unlisted or inventory.loaded:
            kept = len(inventory.unlisted) + len(inventory.loaded)
            print(f'keeping {count(kept, "file")} no table '
                  f'lists: {folder} is not the data folder of a database, they may be new '
                  'data (run "one index")', file=sys.stderr)
        return
    if not args.unlisted and inventory.unlisted:
        print(f'keeping {count(len(inventory.unlisted), "file")} that no table lists and ONE '
              'did not load (add --unlisted to remove them)', file=sys.stderr)
    if args.unlisted:
        recent = len(inventory.unlisted) - len(plan['unlisted'])
        if recent:
            print(f'keeping {count(recent, "file")} no table lists, changed in the last '
                  f'{UNLISTED_GRACE / 3600:g} h (a download may be writing them)',
                  file=sys.stderr)
        if inventory.loaded:
            print(f'keeping {count(len(inventory.loaded), "file")} loaded from the database but '
                  'not in the saved tables (the load record knows them)', file=sys.stderr)


def cmd_prune(args: argparse.Namespace) -> int:
    from one.cli._cache_admin import (
        AccessLog,
        database_of,
        parse_age,
        parse_size,
        prune_plan,
        remove,
    )

    try:
        older_than = parse_age(args.older_than) if args.older_than else None
        max_size = parse_size(args.max_size) if args.max_size is not None else None
    except ValueError as e:
        raise UsageError(str(e)) from e
    inventory, _ = _inventory(args)
    folder = inventory.root
    download_cache = bool(database_of(folder))
    try:
        plan = prune_plan(inventory, older_than=older_than, max_size=max_size,
                          unlisted=args.unlisted, download_cache=download_cache)
    except ValueError as e:
        raise UsageError(str(e)) from e
    _explain_kept(inventory, plan, args, download_cache)
    files, total = _print_plan(plan)
    if not files and not plan['forget']:
        print('nothing to remove', file=sys.stderr)
        return 0
    what = f'{count(len(files), "file")} ({human_size(total)})'
    if args.dry_run:
        print(f'would remove {what}' + (f' and forget {len(plan["forget"])}' if plan['forget']
                                        else '') + ' (dry run)', file=sys.stderr)
        return 0
    forget = f'forget the {count(len(plan["forget"]), "file")} deleted since loaded'
    question = f'Remove these {what}?' if files else f'{forget[0].upper()}{forget[1:]}?'
    if not _confirm(args, question, f'remove these {what}' if files else forget):
        print('nothing removed', file=sys.stderr)
        return 1
    removed = remove(folder, files)
    AccessLog(folder).forget([*removed, *plan['forget']])
    gone = set(removed)
    freed = sum(f.size for f in files if f.path in gone)
    print(f'removed {count(len(removed), "file")}, {human_size(freed)}'
          + (f'; forgot {count(len(plan["forget"]), "file")} deleted since loaded'
             if plan['forget'] else ''), file=sys.stderr)
    return 0


def cmd_clear_rest(args: argparse.Namespace) -> int:
    from one._rest.cache import RestCache

    root = _folder(args)
    rest = root / '.rest'
    files = []  # (name, size) of the responses: the files RestCache.clear removes
    if rest.is_dir():
        files = [(entry.name, entry.stat().st_size) for entry in os.scandir(rest)
                 if entry.is_file(follow_symlinks=False)]
    total = sum(size for _, size in files)
    print(f'{len(files)} cached REST responses, {human_size(total)} in {rest}', file=sys.stderr)
    if not files:
        return 0
    if args.dry_run:
        print('nothing removed (dry run)', file=sys.stderr)
        return 0
    if not _confirm(args, f'Remove the {len(files)} cached REST responses?',
                    f'remove the {len(files)} cached REST responses'):
        print('nothing removed', file=sys.stderr)
        return 1
    root_real, rest_real = Path(os.path.realpath(root)), Path(os.path.realpath(rest))
    if rest_real != root_real and root_real not in rest_real.parents:
        raise ValueError(f'refusing to remove {rest / files[0][0]}: it is not inside {root}')
    removed = RestCache(rest).clear()
    print(f'removed {count(removed, "file")}', file=sys.stderr)
    return 0


def add_commands(commands, parents: dict) -> None:
    """Add ``one cache`` and its subcommands to the ``one`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``one`` parser.
    parents : dict
        Shared option groups: 'common' (--debug), 'output' (--json).
    """
    common, output = parents['common'], parents['output']
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument('-C', '--cache-dir', metavar='DIR',
                        help='the data folder (default: $ONE_CACHE_DIR, the default '
                             "database's folder, the current folder)")
    destructive = argparse.ArgumentParser(add_help=False)
    destructive.add_argument('--dry-run', action='store_true', help='list, remove nothing')
    destructive.add_argument('-y', '--yes', action='store_true',
                             help='do not ask for confirmation (needed off a terminal)')
    sessions_help = 'only these sessions (UUID, subject/date/number, date_number_subject, path)'
    cache = commands.add_parser(
        'cache', help='inspect, check and clean up a data folder',
        description='Inspect, check and clean up a ONE data folder.')
    actions = cache.add_subparsers(dest='action', metavar='ACTION')
    actions.required = True

    ls = actions.add_parser(
        'ls', parents=[common, folder, output], help='sessions and datasets present',
        description='List the sessions with files in the folder (datasets present/listed, '
                    'bytes), or with --datasets each dataset file with its size and when it '
                    'was last used.')
    ls.add_argument('eid', nargs='*', metavar='SESSION', help=sessions_help)
    ls.add_argument('--datasets', action='store_true', help='list the dataset files')
    ls.set_defaults(run=cmd_ls)

    du = actions.add_parser(
        'du', parents=[common, folder, output], help='space used',
        description='Bytes used by dataset files, files loaded but not in the saved tables, '
                    'partial downloads, files no table lists, the REST cache and the tables.')
    du.set_defaults(run=cmd_du)

    verify = actions.add_parser(
        'verify', parents=[common, folder, output], help='re-hash files against the tables',
        description='Check the size and md5 of the dataset files against the cache tables (or '
                    'a lock file) and report bad and missing files; exit 1 if there are any. '
                    "In a database's data folder a file is missing when it was loaded before "
                    'and is gone (run "one cache prune" to forget files deleted on purpose); '
                    'in a folder indexed from its own files, when the tables list it.  With '
                    '--lock the files the lock names are checked against it, whether the '
                    'tables list them or not (no tables needed).  --repair downloads bad and '
                    'missing files again.  --json prints the problems as JSON.')
    verify.add_argument('eid', nargs='*', metavar='SESSION', help=sessions_help)
    verify.add_argument('--lock', metavar='FILE', help='check the datasets of this lock file')
    verify.add_argument('--repair', action='store_true',
                        help='download bad and missing files again')
    verify.add_argument('--base-url', metavar='URL',
                        help='the database to repair from (default: the one whose data folder '
                             'this is, or the lock file\'s)')
    verify.set_defaults(run=cmd_verify)

    prune = actions.add_parser(
        'prune', parents=[common, folder, destructive],
        help='remove partial downloads and unneeded files',
        description='Remove partial downloads that no download is writing, and forget files '
                    'deleted by hand from the load record.  In a database\'s data folder '
                    'also, on request: with --unlisted the files in session folders that no '
                    'table lists and ONE did not load (never those the load record knows, nor '
                    'files changed in the last hour); with --older-than / --max-size the least '
                    'recently used dataset files.  "Used" is the latest of: the last load '
                    'recorded by ONE, the file\'s access time and its download.  Lists what it '
                    'removes; asks on a terminal; off a terminal needs --yes.')
    prune.add_argument('--unlisted', action='store_true',
                       help='also remove files no table lists that ONE did not load')
    prune.add_argument('--older-than', metavar='AGE',
                       help='remove dataset files not used for AGE (e.g. 30d, 12h, 2w)')
    prune.add_argument('--max-size', metavar='SIZE',
                       help='remove the least recently used dataset files until they take at '
                            'most SIZE (e.g. 50G)')
    prune.set_defaults(run=cmd_prune)

    clear = actions.add_parser(
        'clear-rest', parents=[common, folder, destructive],
        help='empty the REST response cache',
        description='Remove the cached REST responses (<folder>/.rest).  Asks on a terminal; '
                    'off a terminal needs --yes.')
    clear.set_defaults(run=cmd_clear_rest)
