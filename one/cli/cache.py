"""``one cache ...``: what a data folder holds, checking its files, and cleaning it up.

    one cache ls [EID...] [--datasets]      sessions (or dataset files) present, with sizes
    one cache du                            bytes used: datasets, partial downloads, REST cache...
    one cache verify [EID...] [--lock FILE] [--repair]
    one cache prune [--dry-run] [--older-than AGE] [--max-size SIZE] [--yes]
    one cache clear-rest [--dry-run] [--yes]

The folder is ``-C DIR``, else ``$ONE_CACHE_DIR``, else the default database's data folder,
else the current folder; it must hold cache tables.  Destructive commands list what they
remove, ask for confirmation on a terminal (``--yes`` skips it) and only remove files inside
the folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from one.cli._common import NotFound, UsageError, print_json, print_table


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


def _inventory(args: argparse.Namespace):
    from one._cache_admin import Inventory

    folder = _folder(args)
    try:
        return Inventory.of(folder)
    except FileNotFoundError:
        raise UsageError(f'no cache tables in {folder} (datasets.pqt): not a ONE data folder; '
                         'name one with -C DIR') from None


def _select_sessions(inventory, names: list[str]):
    """The dataset rows of the sessions named (all when none)."""
    table = inventory.datasets
    if not names:
        return table
    wanted = set()
    paths = table['session_path'].drop_duplicates()
    eids = set(table['eid'])
    for name in names:
        key = name.strip().lower()
        if key in eids:
            wanted.add(key)
            continue
        parts = name.strip('/').split('/')
        if parts and parts[-1].isdigit():
            parts[-1] = parts[-1].zfill(3)
        suffix = '/'.join(parts)
        matches = [p for p in paths if p == suffix or p.endswith('/' + suffix)]
        if not matches:
            raise NotFound(f'session not found in the cache tables: {name}')
        wanted |= set(table.loc[table['session_path'].isin(matches), 'eid'])
    return table[table['eid'].isin(wanted)]


def _files(n: int) -> str:
    return f'{n} file' if n == 1 else f'{n} files'


def _size(n) -> str:
    from one._cache_admin import human_size

    return human_size(n)


def _confirm(args: argparse.Namespace, question: str) -> bool:
    """Ask on a terminal unless --yes; off a terminal, go ahead (the list was printed)."""
    if getattr(args, 'yes', False) or not sys.stdin.isatty():
        return True
    return input(f'{question} [y/N] ').strip().lower() in ('y', 'yes')


# --------------------------------------------------------------------------------------------
def cmd_ls(args: argparse.Namespace) -> int:
    inventory = _inventory(args)
    selected = _select_sessions(inventory, args.eid)
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
            print_table([{**r, 'size': _size(r['size']), 'last_used': r['last_used'][:16]}
                         for r in rows], ['path', 'size', 'last_used'])
            print(f'{len(rows)} files, {_size(sum(r["size"] for r in rows))}', file=sys.stderr)
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
                      'size': _size(r['bytes'])} for r in rows],
                    ['session', 'datasets', 'size', 'eid'])
        print(f'{len(rows)} sessions, {sum(r["datasets"] for r in rows)} dataset files, '
              f'{_size(sum(r["bytes"] for r in rows))}', file=sys.stderr)
    return 0


def cmd_du(args: argparse.Namespace) -> int:
    inventory = _inventory(args)
    groups = [('datasets', list(inventory.dataset_files.values())),
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
    print_table([{**r, 'size': _size(r['bytes'])} for r in rows], ['what', 'files', 'size'])
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    import pandas as pd

    from one._cache_admin import database_of, verify

    inventory = _inventory(args)
    folder = inventory.root
    lock = None
    if args.lock:
        from one._lock import read_lock

        try:
            lock = read_lock(args.lock)
        except (OSError, ValueError) as e:
            raise UsageError(str(e)) from e
        expected = pd.DataFrame([
            {'eid': d.eid, 'id': d.id, 'path': d.path.as_posix(), 'session_path':
             d.session_path, 'rel_path': d.rel_path, 'file_size': d.file_size, 'hash': d.hash}
            for d in lock.datasets.values()],
            columns=['eid', 'id', 'path', 'session_path', 'rel_path', 'file_size', 'hash'])
        if args.eid:
            eids = set(_select_sessions(inventory, args.eid)['eid'])
            expected = expected[expected['eid'].isin(eids)]
    else:
        expected = _select_sessions(inventory, args.eid)
    database = args.base_url or (lock.database if lock is not None else None) or \
        database_of(folder)
    if args.repair and not database:
        raise UsageError(f'cannot repair: {folder} is not the data folder of a configured '
                         'database; name one with --base-url URL')
    if lock is None:
        if database_of(folder) or args.base_url:  # a download cache: what it was seen holding
            held = inventory.recorded()
            expected = expected[expected['on_disk'] | expected['path'].isin(held)]
        else:  # a folder indexed from its files: all of them
            expected = expected[expected['on_disk'] | expected['exists']]
    problems, hashed = verify(folder, expected, inventory.by_dataset, progress=None)
    for problem in problems:
        print(problem.describe())
    summary = (f'{len(expected)} datasets checked ({hashed} hashed): '
               f'{sum(p.kind == "missing" for p in problems)} missing, '
               f'{sum(p.kind != "missing" for p in problems)} bad')
    print(summary, file=sys.stderr)
    if not problems or not args.repair:
        return 1 if problems else 0
    return _repair(folder, database, expected, problems)


def _repair(folder: Path, database: str, expected, problems) -> int:
    """Download the problem datasets again through OneAlyx, then check them."""
    import pandas as pd

    from one._cache_admin import Inventory, verify
    from one.api import OneAlyx

    ids = {p.id for p in problems}
    rows = expected[expected['id'].isin(ids)]
    records = pd.DataFrame(
        {'rel_path': rows['rel_path'].astype(str).to_numpy(),
         'file_size': rows['file_size'].to_numpy(), 'hash': rows['hash'].to_numpy(),
         'session_path': rows['session_path'].to_numpy()},
        index=pd.MultiIndex.from_arrays([rows['eid'].to_numpy(), rows['id'].to_numpy()],
                                        names=['eid', 'id']))
    print(f'downloading {len(records)} datasets from {database} ...', file=sys.stderr)
    one = OneAlyx(base_url=database, cache_dir=folder, mode='remote', silent=True)
    files = one._download_datasets(records, update_cache=False)
    after, _ = verify(folder, rows, Inventory.of(folder).by_dataset, progress=None)
    fixed = len(rows) - len(after)
    for problem in after:
        print(f'still {problem.describe()}')
    print(f'repaired {fixed} of {len(rows)} datasets'
          f'{"" if all(files) else f"; {sum(f is None for f in files)} downloads failed"}',
          file=sys.stderr)
    return 1 if after else 0


def _print_plan(plan: dict, root: Path) -> tuple[list, int]:
    files = [f for kind in ('partial', 'unlisted', 'datasets') for f in plan[kind]]
    labels = {'partial': 'partial download', 'unlisted': 'not in the tables',
              'datasets': 'least recently used'}
    for kind in ('partial', 'unlisted', 'datasets'):
        for f in plan[kind]:
            print(f'{_size(f.size):>10}  {f.path}  ({labels[kind]})')
    total = sum(f.size for f in files)
    return files, total


def cmd_prune(args: argparse.Namespace) -> int:
    from one._cache_admin import AccessLog, database_of, parse_age, parse_size, prune_plan, remove

    try:
        older_than = parse_age(args.older_than) if args.older_than else None
        max_size = parse_size(args.max_size) if args.max_size is not None else None
    except ValueError as e:
        raise UsageError(str(e)) from e
    inventory = _inventory(args)
    folder = inventory.root
    download_cache = bool(database_of(folder))
    try:
        plan = prune_plan(inventory, older_than=older_than, max_size=max_size,
                          download_cache=download_cache)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if not download_cache and inventory.unlisted:
        print(f'keeping {len(inventory.unlisted)} files no table lists: {folder} is not the '
              'data folder of a database, they may be new data (run "one index")',
              file=sys.stderr)
    files, total = _print_plan(plan, folder)
    if not files:
        print('nothing to remove', file=sys.stderr)
        return 0
    if args.dry_run:
        print(f'would remove {_files(len(files))}, {_size(total)} (dry run)', file=sys.stderr)
        return 0
    if not _confirm(args, f'Remove these {_files(len(files))} ({_size(total)})?'):
        print('nothing removed', file=sys.stderr)
        return 1
    removed = remove(folder, files)
    AccessLog(folder).forget(removed)
    gone = set(removed)
    print(f'removed {_files(len(removed))}, {_size(sum(f.size for f in files if f.path in gone))}',
          file=sys.stderr)
    return 0


def cmd_clear_rest(args: argparse.Namespace) -> int:
    from one._cache_admin import DiskFile, remove

    root = _folder(args)
    rest = root / '.rest'
    files = []
    if rest.is_dir():
        for entry in os.scandir(rest):
            if entry.is_file(follow_symlinks=False):
                files.append(DiskFile(f'.rest/{entry.name}', entry.stat().st_size, 0, 0))
    total = sum(f.size for f in files)
    print(f'{len(files)} cached REST responses, {_size(total)} in {rest}', file=sys.stderr)
    if not files:
        return 0
    if args.dry_run:
        print('nothing removed (dry run)', file=sys.stderr)
        return 0
    if not _confirm(args, f'Remove the {len(files)} cached REST responses?'):
        print('nothing removed', file=sys.stderr)
        return 1
    removed = remove(root, files, empty_folders=False)
    print(f'removed {_files(len(removed))}', file=sys.stderr)
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
    ls.add_argument('eid', nargs='*', help='only these sessions (UUID or subject/date/number)')
    ls.add_argument('--datasets', action='store_true', help='list the dataset files')
    ls.set_defaults(run=cmd_ls)

    du = actions.add_parser(
        'du', parents=[common, folder, output], help='space used',
        description='Bytes used by dataset files, partial downloads, files no table lists, '
                    'the REST cache and the tables.')
    du.set_defaults(run=cmd_du)

    verify = actions.add_parser(
        'verify', parents=[common, folder, output], help='re-hash files against the tables',
        description='Check the size and md5 of the dataset files against the cache tables (or '
                    'a lock file) and report bad and missing files; exit 1 if there are any. '
                    "In a database's data folder a file is missing when it was loaded before "
                    'and is gone; in a folder indexed from its own files, when the tables list '
                    'it.  --repair downloads bad and missing files again.')
    verify.add_argument('eid', nargs='*', help='only these sessions (UUID or '
                                               'subject/date/number)')
    verify.add_argument('--lock', metavar='FILE', help='check the datasets of this lock file')
    verify.add_argument('--repair', action='store_true',
                        help='download bad and missing files again')
    verify.add_argument('--base-url', metavar='URL',
                        help='the database to repair from (default: the one whose data folder '
                             'this is, or the lock file\'s)')
    verify.set_defaults(run=cmd_verify)

    prune = actions.add_parser(
        'prune', parents=[common, folder], help='remove partial downloads and unneeded files',
        description='Remove partial downloads that no download is writing, files in session '
                    'folders that no table lists (only in a database\'s data folder), and with '
                    '--older-than / --max-size the least recently used dataset files.  '
                    '"Used" is the latest of: the last load recorded by ONE, the file\'s access '
                    'time and its download.  Lists what it removes; asks on a terminal.')
    prune.add_argument('--dry-run', action='store_true', help='list, remove nothing')
    prune.add_argument('--older-than', metavar='AGE',
                       help='remove dataset files not used for AGE (e.g. 30d, 12h, 2w)')
    prune.add_argument('--max-size', metavar='SIZE',
                       help='remove the least recently used dataset files until they take at '
                            'most SIZE (e.g. 50G)')
    prune.add_argument('-y', '--yes', action='store_true', help='do not ask for confirmation')
    prune.set_defaults(run=cmd_prune)

    clear = actions.add_parser(
        'clear-rest', parents=[common, folder], help='empty the REST response cache',
        description='Remove the cached REST responses (<folder>/.rest).')
    clear.add_argument('--dry-run', action='store_true', help='count, remove nothing')
    clear.add_argument('-y', '--yes', action='store_true', help='do not ask for confirmation')
    clear.set_defaults(run=cmd_clear_rest)
