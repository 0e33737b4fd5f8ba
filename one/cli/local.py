"""The subcommands on a local data folder: validate, index, search, list, load and info."""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from one.cli._common import (
    NotFound,
    UsageError,
    iso_date,
    open_one,
    optional_iso_date,
    plain,
    print_json,
    print_table,
    qc_level,
    regex,
    session_eid,
    session_number,
    session_query,
)

_LAYOUT = ('one index expects a data root holding session folders, '
           '<lab>/Subjects/<subject>/<yyyy-mm-dd>/<nnn> or <subject>/<yyyy-mm-dd>/<nnn>, e.g. '
           'ROOT/mylab/Subjects/KS001/2024-01-15/001/alf/_ibl_trials.intervals.npy '
           '(or a single session folder)')


def cmd_validate(args: argparse.Namespace) -> int:
    from one.alf._validate import validate_tree

    try:
        report = validate_tree(args.folder)
    except NotADirectoryError as e:
        raise UsageError(str(e)) from e
    for problem in report.problems:
        print(f'invalid {problem.kind:<6} {problem.path}: {problem.reason}')
    summary = (f'{report.root}: {report.sessions} sessions, {report.datasets} datasets, '
               f'{len(report.problems)} invalid')
    print(summary, file=sys.stderr if report.problems else sys.stdout)
    return 0 if report.ok else 1


def cmd_index(args: argparse.Namespace) -> int:
    from one._tables.folder_index import Tree
    from one.alf.cache import make_parquet_db

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f'not a folder: {folder}')
    found = Tree(folder.resolve())  # walked once: refuse a wrong folder before writing
    if not found.sessions:
        raise NotFound(_no_session_message(folder))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # empty folders are reported below
        sessions_file, datasets_file = make_parquet_db(
            folder, hash_files=args.hash, lab=args.lab, hash_ids=True, _tree=found)
    import pyarrow.parquet as pq  # the row counts are in the files' footers

    n_sessions, n_datasets = (pq.ParquetFile(f).metadata.num_rows
                              for f in (sessions_file, datasets_file))
    print(f'indexed {n_sessions} sessions, {n_datasets} datasets'
          f'{" (md5 hashed)" if args.hash else ""} into {sessions_file.parent}')
    if found.skipped:
        print(f'skipped {len(found.skipped)} files of the sessions that are not named as ALF '
              f'datasets, e.g. {found.skipped[0]} (to list them all: one validate {folder})',
              file=sys.stderr)
    if found.links_out:
        print(f'skipped {len(found.links_out)} symbolic links leading outside {folder}, e.g. '
              f'{found.links_out[0]}: ONE reads no data outside its folder (move the data in, '
              'or index the folder they lead to)', file=sys.stderr)
    return 0 if n_sessions else 1


def _subfolders(folder: Path) -> list:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return []


def _no_session_message(folder: Path) -> str:
    from one.alf.path import ALFPath

    message = f'no session folder found in {folder}. {_LAYOUT}'
    session = ALFPath(folder.absolute()).session_path()
    days = [d for d in _subfolders(folder) if re.fullmatch(r'\d{4}-\d{2}-\d{2}', d.name)
            and any(re.fullmatch(r'\d{1,3}', n.name) for n in _subfolders(d))]
    if days:
        parent = folder.absolute().parent
        root = parent.parent.parent if parent.name == 'Subjects' else parent
        message += (f'. {folder} looks like a subject folder (it holds {days[0].name}/...): '
                    f'index the data root above it, e.g. {root}')
    elif session is not None:
        levels = 5 if session.lab else 3
        root = session.parents[levels - 1]
        message += (f'. {folder} is inside the session {session}: index that session, or the '
                    f'data root {root}')
    return message


_SEARCH_OPTIONS = (
    # (option, search term, help, repeatable, type)
    ('--subject', 'subject', 'subject name (a regular expression; repeat for OR)', True, regex),
    ('--lab', 'laboratory', 'lab name (a regular expression; repeat for OR)', True, regex),
    ('--task-protocol', 'task_protocol', 'task protocol (a regular expression)', True, regex),
    ('--projects', 'projects', 'project name (a regular expression)', True, regex),
    ('--number', 'number', 'session number (repeat for OR)', True, session_number),
    ('--dataset', 'dataset', 'a dataset relative path contains this (a regular expression; '
     'repeat: all needed)', True, regex),
    ('--datasets', 'datasets', 'a dataset file name matches this exactly (a regular '
     'expression; repeat: all needed)', True, regex),
    ('--dataset-qc-lte', 'dataset_qc_lte', 'datasets with this QC or better (e.g. WARNING)',
     False, qc_level),
)


def cmd_search(args: argparse.Namespace) -> int:
    one = open_one(args)
    query = session_query(args, _SEARCH_OPTIONS)
    try:
        eids, details = one.search(details=True, **query)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if not eids:
        raise NotFound('no session matches')
    rows = [{'eid': str(e), **d} for e, d in zip(eids, details)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ['eid', 'subject', 'date', 'number', 'lab', 'task_protocol'])
        print(f'{len(rows)} sessions', file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    one = open_one(args)
    eid = session_eid(one, args.eid)
    listing = one.list_datasets(eid, filename=args.filename, collection=args.collection,
                                revision=args.revision, details=args.details or args.json)
    if len(listing) == 0:
        raise NotFound(f'no dataset matches in session {eid}')
    if not (args.details or args.json):
        print('\n'.join(listing))
        return 0
    rows = [{'id': str(i), **{k: plain(v) for k, v in row.items()}}
            for i, row in zip(listing.index, listing.to_dict('records'))]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ['rel_path', 'file_size', 'qc', 'exists', 'id'])
    return 0


def _describe(value) -> tuple[str, str]:
    shape = getattr(value, 'shape', None)
    dtype = getattr(value, 'dtype', None)
    if dtype is None and hasattr(value, 'dtypes'):
        dtype = 'DataFrame'
    return (str(tuple(shape)) if shape is not None else '-',
            str(dtype) if dtype is not None else type(value).__name__)


def cmd_load(args: argparse.Namespace) -> int:
    from one._api.messages import several_collections_message
    from one.alf.exceptions import ALFMultipleCollectionsFound, ALFWarning

    one = open_one(args)
    eid = session_eid(one, args.eid)
    kwargs = {'attribute': args.attribute} if args.attribute else {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ALFWarning)
        try:
            obj = one.load_object(eid, args.object, collection=args.collection,
                                  revision=args.revision, **kwargs)
        except ALFMultipleCollectionsFound as e:
            collections = getattr(e, 'collections', None)
            if not collections:
                raise
            raise UsageError(several_collections_message(
                f'"{args.object}"', args.eid, collections, cli=True)) from e
    rows = [{'attribute': k, 'shape': _describe(v)[0], 'dtype': _describe(v)[1]}
            for k, v in obj.items()]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ['attribute', 'shape', 'dtype'])
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    one = open_one(args)
    eid = session_eid(one, args.eid)
    record = one.get_details(eid)
    collections = one.list_collections(eid, details=True)
    info = {'eid': str(eid), 'path': str(one.eid2path(eid)),
            **{k: plain(v) for k, v in record.items()},
            'datasets': sum(len(v) for v in collections.values()),
            'collections': {k or '(session root)': len(v) for k, v in collections.items()},
            'revisions': [r for r in one.list_revisions(eid) if r]}
    if args.json:
        print_json(info)
        return 0
    for key, value in info.items():
        if key == 'collections':
            print('collections:')
            for name, count in value.items():
                print(f'  {name:<30} {count} datasets')
        else:
            print(f'{key + ":":<15}{value}')
    return 0


def add_commands(commands, parents: dict) -> None:
    """Add the local-folder subcommands to the ``one`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``one`` parser.
    parents : dict
        Shared option groups: 'common' (--debug), 'folder' (-C/--cache-dir), 'output' (--json).
    """
    common, folder, output = parents['common'], parents['folder'], parents['output']
    validate = commands.add_parser(
        'validate', parents=[common],
        help='report files and folders that break the ALF layout',
        description='Walk FOLDER and report every file that is not a valid ALF dataset and '
                    'every folder that is not part of a valid session path, with the reason. '
                    'Exits with 1 if anything is invalid.')
    validate.add_argument('folder', help='the data folder to check')
    validate.set_defaults(run=cmd_validate)

    index = commands.add_parser(
        'index', parents=[common],
        help='build the cache tables of a data folder',
        description='Index the ALF sessions below FOLDER into sessions.pqt and datasets.pqt. '
                    + _LAYOUT + '.  Files that are not ALF datasets, and symbolic links leading '
                    'outside FOLDER, are skipped (and counted).')
    index.add_argument('folder', help='the data folder')
    index.add_argument('--hash', action='store_true', help='record the md5 of every file')
    index.add_argument('--lab', help='lab name for sessions without a lab folder')
    index.set_defaults(run=cmd_index)

    search = commands.add_parser(
        'search', parents=[common, folder, output],
        help='find sessions',
        description='Find the sessions matching all the given criteria.')
    for option, term, text, many, kind in _SEARCH_OPTIONS:
        search.add_argument(option, dest=term, action='append' if many else 'store', help=text,
                            type=kind)
    dates = search.add_mutually_exclusive_group()
    dates.add_argument('--date', type=iso_date, help='sessions of this day (YYYY-MM-DD)')
    dates.add_argument('--date-range', nargs=2, metavar=('FROM', 'TO'), type=optional_iso_date,
                       help="sessions between two days, inclusive ('' leaves an end open)")
    search.set_defaults(run=cmd_search)

    listing = commands.add_parser(
        'list', parents=[common, folder, output],
        help="list a session's datasets",
        description='List the datasets of session EID (a UUID, subject/date/number, a path '
                    'or an experiment reference such as 2024-01-15_1_KS001).')
    listing.add_argument('eid')
    listing.add_argument('--collection', help='collection pattern, e.g. "alf/probe*"')
    listing.add_argument('--revision', help='revision pattern')
    listing.add_argument('--filename', help='file name pattern, e.g. "*trials*"')
    listing.add_argument('--details', action='store_true', help='show sizes, QC and ids')
    listing.set_defaults(run=cmd_list)

    load = commands.add_parser(
        'load', parents=[common, folder, output],
        help='load an ALF object and describe it',
        description='Load OBJECT of session EID and print the shape and dtype of each '
                    'attribute.')
    load.add_argument('eid')
    load.add_argument('object', help='object name, e.g. trials')
    load.add_argument('--collection', help='collection, e.g. alf/probe00')
    load.add_argument('--revision', help='latest revision up to this label')
    load.add_argument('--attribute', action='append', help='only these attributes')
    load.set_defaults(run=cmd_load)

    info = commands.add_parser(
        'info', parents=[common, folder, output],
        help='describe a session',
        description='Show the record of session EID and count its datasets per collection.')
    info.add_argument('eid')
    info.set_defaults(run=cmd_info)
