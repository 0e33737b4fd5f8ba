"""``one download``: fetch the datasets of many sessions (or of a lock file) in one batch.

    one download [SEARCH OPTIONS | --eids FILE | SESSION...] [--dataset NAME...]
                 [--collection C...] [--revision R] [-C DIR] [--base-url URL | --url URL]
                 [--dry-run] [--json]
    one download --lock FILE [SESSION...] [-C DIR] [--base-url URL | --url URL] [--dry-run]

The sessions come from search options (as ``one search``: sent to Alyx), a file of session
names, or the command line.  Their datasets are resolved as `One.prefetch` does (listed from
Alyx in a few batched queries), and the files missing or differing from their records are
fetched in one parallel, resumable, verified batch (`One.prefetch`), with a progress bar on a
terminal.  ``--dry-run`` says what would be fetched (`one._api.prefetch.plan_fetch`) and fetches
nothing.  With ``--lock`` exactly the datasets the lock file names are fetched, in its versions.

The database is ``--base-url``, else ``$ONE_ALYX_URL``, else the default one (it must have been
set up with ``one setup``); ``--url`` names a release instead.  Nothing is ever asked: a
missing login is an error (exit 2) that says to run ``one login``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path

from one.cli._common import (
    REMOTE_SESSION_OPTIONS,
    NotFound,
    UsageError,
    add_search_options,
    count,
    database,
    human_size,
    print_json,
    read_session_list,
    session_eid,
    session_query,
)

_RELEASE_HINT = 'or name a release with --url'


def _check_usage(args: argparse.Namespace) -> None:
    """Refuse combinations that make no sense (exit 2), before anything is opened."""
    searching = bool(session_query(args, REMOTE_SESSION_OPTIONS))
    named = bool(args.eid or args.eids)
    if args.lock:
        given = [o for o, v in (('--dataset', args.dataset), ('--collection', args.collection),
                                ('--revision', args.revision), ('--eids', args.eids),
                                ('search options', searching)) if v]
        if given:
            raise UsageError(f'--lock fetches exactly the datasets the lock file names: '
                             f'{", ".join(given)} cannot be added (SESSION arguments choose '
                             'some of its sessions)')
        return
    if searching and named:
        raise UsageError('name the sessions either with search options or with SESSION '
                         'arguments / --eids, not both')
    if not (searching or named):
        raise UsageError('which sessions? Give SESSION arguments, --eids FILE, or search '
                         'options such as --subject or --date-range (see "one download '
                         '--help")')


def _open(args: argparse.Namespace, base_url: str | None = None, lock=None):
    """The instance to download through: a release (--url) or a database."""
    if args.url:
        from one.api import OneRelease

        try:
            return OneRelease(args.url, cache_dir=args.cache_dir, lock=lock)
        except ValueError as e:  # not a release URL
            raise UsageError(str(e)) from e
    from one._rest.errors import AlyxConnectionError
    from one.api import OneAlyx

    # cmd_download turns an AlyxAuthError into the message to log in to args.database
    url = args.database = database(base_url or args.base_url, _RELEASE_HINT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)  # the auth error says it all
            one = OneAlyx(base_url=url, cache_dir=args.cache_dir, mode='remote', silent=True,
                          lock=lock)
            _check_online(one)
            one.alyx.authenticate()  # the saved token (no request), else the saved password
    except AlyxConnectionError:
        raise NotFound(f'cannot reach {url}: nothing fetched') from None
    return one


def _login_needed(url: str, error: Exception) -> UsageError:
    reason = str(error).splitlines()[0].split('. ')[0].rstrip('.')
    return UsageError(f'not logged in to {url}: run "one login --base-url {url}" first '
                      f'({reason})')


def _check_online(one) -> None:
    """A database that cannot be reached: stop (the instance would carry on from its tables)."""
    web = getattr(one, '_web_client', None)
    if web is not None and one.offline:
        raise NotFound(f'cannot reach {web.base_url}: nothing fetched')


@contextlib.contextmanager
def _warnings_shown():
    """Print the warnings raised inside as one line each (one download: warning: ...)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=FutureWarning)
        try:
            yield
        finally:
            for warning in caught:
                print(f'one download: warning: {warning.message}', file=sys.stderr)


def _sessions(one, args: argparse.Namespace) -> list:
    """The session ids: searched for, or named on the command line and in --eids."""
    query = session_query(args, REMOTE_SESSION_OPTIONS)
    if query:
        try:
            eids = list(one.search(**query))
        except ValueError as e:
            raise UsageError(str(e)) from e
        _check_online(one)  # not the tables' answer when the database is out of reach
        if not eids:
            raise NotFound('no session matches')
        return eids
    names = list(args.eid) + (read_session_list(args.eids) if args.eids else [])
    return list(dict.fromkeys(str(session_eid(one, name)) for name in names))


# --------------------------------------------------------------------------------------------
def _rows(one, records, files, problems) -> list[dict]:
    """One row per dataset: its path in the folder, size, and why it is fetched (None: not)."""
    from one._lib.values import known

    root = Path(one.cache_dir)
    sizes = records['file_size'].tolist() if 'file_size' in records.columns \
        else [None] * len(records)
    rows = []
    for (eid, dataset_id), rel_path, size, file, problem in zip(
            records.index, records['rel_path'], sizes, files, problems):
        path = f'{eid}/{rel_path}' if file is None else _rel(root, file)
        size = known(size)
        rows.append({'path': path, 'size': int(size) if size is not None else None,
                     'reason': problem, 'id': str(dataset_id), 'eid': str(eid)})
    return sorted(rows, key=lambda r: r['path'])


def _bytes(rows: list[dict]) -> str:
    total = sum(r['size'] or 0 for r in rows)
    unknown = sum(r['size'] is None for r in rows)
    return human_size(total) + (f' (+{unknown} of unknown size)' if unknown else '')


def _report(args, one, rows: list[dict], n_sessions: int, fetch) -> int:
    """Print what would be or was fetched; fetch (unless --dry-run); the exit code.

    `fetch()` downloads the rows to fetch and returns the set of their paths now present.
    """
    todo = [r for r in rows if r['reason'] is not None]
    present = len(rows) - len(todo)
    report = {'folder': str(one.cache_dir), 'sessions': n_sessions, 'datasets': len(rows),
              'present': present, 'to_fetch': len(todo),
              'bytes': sum(r['size'] or 0 for r in todo), 'dry_run': bool(args.dry_run),
              'files': [{k: r[k] for k in ('path', 'size', 'reason')} for r in todo]}
    where = f'{count(len(rows), "dataset")} of {count(n_sessions, "session")}'
    if args.dry_run or not todo:
        if not args.json:
            for r in todo:
                size = human_size(r['size']) if r['size'] is not None else '?'
                print(f'{size:>10}  {r["reason"]:<7}  {r["path"]}')
        if not todo:
            print(f'nothing to fetch: {"the " if len(rows) > 1 else ""}{where} '
                  f'{"are" if len(rows) > 1 else "is"} present and verified in '
                  f'{one.cache_dir}', file=sys.stderr)
        else:
            print(f'would fetch {count(len(todo), "file")}, {_bytes(todo)}, into {one.cache_dir} '
                  f'({present} of the {where} present; dry run)', file=sys.stderr)
        if args.json:
            print_json(report)
        return 0
    print(f'fetching {count(len(todo), "file")}, {_bytes(todo)}, into {one.cache_dir} '
          f'({present} of the {where} present)', file=sys.stderr)
    got = fetch()
    failed = [r for r in todo if r['path'] not in got]
    report['fetched'] = len(todo) - len(failed)
    report['failed'] = [r['path'] for r in failed]
    if args.json:
        print_json(report)
    else:
        for r in failed:
            print(f'failed   {r["path"]}')
    done = [r for r in todo if r['path'] in got]
    print(f'fetched {count(len(done), "file")}, {_bytes(done)}'
          + (f'; {len(failed)} failed (listed above{"" if not args.json else " in failed"}; '
             'run the command again to retry)' if failed else ''), file=sys.stderr)
    return 1 if failed else 0


def _rel(root: Path, path) -> str:
    """A file's path relative to the data folder (POSIX), else as it is."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _relative(one, paths) -> set[str]:
    root = Path(one.cache_dir)
    return {_rel(root, path) for path in paths if path is not None}


def _one_or_many(values: list | None):
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def cmd_download(args: argparse.Namespace) -> int:
    from one._rest.errors import AlyxAuthError, AlyxConnectionError

    _check_usage(args)
    try:
        return _download_locked(args) if args.lock else _download(args)
    except AlyxAuthError as e:  # a token the database no longer takes, and no password
        raise _login_needed(getattr(args, 'database', None) or 'the database', e) from None
    except AlyxConnectionError as e:
        raise NotFound(f'cannot reach {getattr(args, "database", None) or "the database"}: '
                       f'nothing fetched ({str(e).splitlines()[0]})') from None


def _download(args: argparse.Namespace) -> int:
    from one._api.prefetch import plan_fetch
    from one.api import OneAlyx

    one = _open(args)
    datasets, collection = _one_or_many(args.dataset), _one_or_many(args.collection)
    with _warnings_shown():
        eids = _sessions(one, args)
        try:
            plan = plan_fetch(one, eids, datasets, collection, args.revision)
        except ValueError as e:  # a malformed session id
            raise NotFound(str(e)) from None
        _check_online(one)
    if plan.datasets.empty:
        n = len(plan.eids)
        raise NotFound('no dataset matches in ' + ('the session' if n == 1 else
                                                  f'the {n} sessions'))
    rows = _rows(one, plan.datasets, plan.files, plan.problems)
    n_sessions = len({r['eid'] for r in rows})
    if n_sessions < len(plan.eids):
        print(f'{count(len(plan.eids) - n_sessions, "session")} of {len(plan.eids)} '
              'without a matching dataset', file=sys.stderr)

    def fetch() -> set[str]:
        with _warnings_shown():
            files = one.prefetch(plan.eids, datasets, collection, args.revision)
        got = _relative(one, (f for paths in files.values() for f in paths))
        if isinstance(one, OneAlyx):  # the records of what is now here, for offline use
            one.save_cache()
        return got

    return _report(args, one, rows, n_sessions, fetch)


def _download_locked(args: argparse.Namespace) -> int:
    from one._api.lock import read_lock
    from one._api.prefetch import file_problems
    from one.cli._cache_admin import lock_table, records_of

    try:
        lock = read_lock(args.lock)
    except (OSError, ValueError) as e:
        raise UsageError(f'--lock: {e}') from None
    base_url = args.base_url
    if not args.url and not base_url and lock.database:
        base_url = lock.database  # the ids of a lock belong to the database that made it
        try:
            database(base_url, _RELEASE_HINT)
        except UsageError:
            raise UsageError(f"the lock file's database, {base_url}, is not set up here: run "
                             f'"one setup --base-url {base_url}" first (or name the database '
                             'with --base-url)') from None
    one = _open(args, base_url=base_url, lock=lock)
    locked = lock_table(lock)
    if args.eid:
        from one.cli.cache import _lock_eids

        locked = locked[locked['eid'].isin(_lock_eids(Path(one.cache_dir), lock, args.eid))]
    records = records_of(locked)
    if records.empty:
        raise NotFound(f'no dataset in the lock file {args.lock}')
    files, problems = file_problems(one, records)
    rows = _rows(one, records, files, problems)

    def fetch() -> set[str]:
        todo = [i for i, p in enumerate(problems) if p is not None]
        with _warnings_shown():
            fetched = one._check_filesystem(records.iloc[todo], update_exists=False)
        return _relative(one, fetched)

    return _report(args, one, rows, len(set(records.index.get_level_values('eid'))), fetch)


def add_commands(commands, parents: dict) -> None:
    """Add the ``download`` subcommand to the ``one`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``one`` parser.
    parents : dict
        Shared option groups: 'common' (--debug), 'output' (--json).
    """
    download = commands.add_parser(
        'download', parents=[parents['common'], parents['output']],
        help='fetch the datasets of many sessions in one batch',
        description='Fetch the datasets of many sessions into the data folder: the sessions '
                    'found by the search options (as "one search"; sent to the database), '
                    'those listed in --eids FILE, or those named (UUID, subject/date/number, '
                    'date_number_subject, path).  Their datasets are listed in a few batched '
                    'queries; the files missing, or differing from their records in size or '
                    'md5, are fetched in one parallel, resumable, verified batch, with a '
                    'progress bar on a terminal.  Running it again fetches nothing.  --dry-run '
                    'lists what would be fetched, with the number of files and bytes.  --lock '
                    'FILE fetches exactly the datasets a lock file names, in its versions.  '
                    'The database is --base-url, $ONE_ALYX_URL or the default one (set up with '
                    '"one setup", logged in with "one login"); --url names a release instead.  '
                    'Exit code 1 when nothing matches or a file failed (the failures are '
                    'listed), 2 for bad usage.')
    download.add_argument('eid', nargs='*', metavar='SESSION', help='sessions to fetch')
    download.add_argument('--eids', metavar='FILE',
                          help="a file of sessions, one per line ('-': standard input); the "
                               'first field of each line is used, so "one search" output works')
    add_search_options(download, REMOTE_SESSION_OPTIONS, prefix='search: ')
    download.add_argument('--dataset', action='append', metavar='NAME',
                          help='what to fetch: an ALF object (trials), a dataset name '
                               '(_ibl_trials.choice, wildcards allowed); repeat for several '
                               '(default: every dataset of the sessions)')
    download.add_argument('--collection', action='append', metavar='C',
                          help="only in this collection, e.g. alf or 'alf/probe*' (repeat "
                               'for several)')
    download.add_argument('--revision', metavar='R',
                          help='the latest revision up to this one (default: the default '
                               'revision, as loads)')
    download.add_argument('-C', '--cache-dir', metavar='DIR',
                          help="the data folder (default: the database's data folder)")
    where = download.add_mutually_exclusive_group()
    where.add_argument('--base-url', metavar='URL',
                       help='the database (default: $ONE_ALYX_URL, the default database; with '
                            "--lock the lock file's)")
    where.add_argument('--url', metavar='URL',
                       help='a data release (http(s)://... or s3://bucket/prefix) instead of a '
                            'database')
    download.add_argument('--lock', metavar='FILE',
                          help='fetch exactly the datasets this lock file names')
    download.add_argument('--dry-run', action='store_true',
                          help='list what would be fetched (files, bytes), fetch nothing')
    download.set_defaults(run=cmd_download)
