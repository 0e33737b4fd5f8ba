"""The ``one release`` subcommand: make a data folder a release any static host can serve."""
from __future__ import annotations

import argparse
import sys
import warnings

from one.cli._common import UsageError


def cmd_release(args: argparse.Namespace) -> int:
    from one.alf.exceptions import ALFWarning
    from one.release import make_release

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', ALFWarning)
        try:
            info = make_release(args.folder, tag=args.tag, archive=args.zip,
                                skip_invalid=args.skip_invalid, origin=args.origin,
                                out_dir=args.out_dir, layout=args.layout,
                                files_url=args.files_url)
        except NotADirectoryError as e:
            raise UsageError(str(e)) from e
        except ValueError as e:  # a bad layout or files URL (ALFInvalid is an ALFError)
            from one.alf.exceptions import ALFError
            if isinstance(e, ALFError):
                raise
            raise UsageError(str(e)) from e
    for warning in caught:
        print(f'one release: warning: {warning.message}', file=sys.stderr)
    counts = info.counts
    written = ['cache_info.json', *(t.file for t in info.tables.values())]
    if 'archive' in info.raw:
        written.append(info.raw['archive']['file'])
    where = args.out_dir or args.folder
    print(f'release{f" {info.tag}" if info.tag else ""} of {counts.get("sessions", 0)} '
          f'sessions, {counts.get("datasets", 0)} datasets '
          f'({counts.get("bytes", 0) / 1e6:.1f} MB): {", ".join(written)} in {where}')
    print('copy the folder as it is to a web server or S3 bucket; users open it with '
          "ONE(base_url='<its URL>')", file=sys.stderr)
    return 0


def add_commands(commands, parents: dict) -> None:
    """Add the ``release`` subcommand to the ``one`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``one`` parser.
    parents : dict
        Shared option groups; 'common' (--debug) is used.
    """
    release = commands.add_parser(
        'release', parents=[parents['common']],
        help='make a data folder a release that a static web server or S3 bucket can serve',
        description='Check FOLDER against the ALF layout, index every file with its md5 and '
                    'size, and write sessions.pqt, datasets.pqt and cache_info.json (and with '
                    '--zip cache.zip). Files unchanged since the last run are not hashed '
                    'again. Then copy the folder as it is to the host; users open it with '
                    "ONE(base_url='<URL>') or the --url option of search, list, load and info.")
    release.add_argument('folder', help='the data folder')
    release.add_argument('--tag', help='a name for this release, e.g. 2025_Q1')
    release.add_argument('--zip', action='store_true',
                         help='also write cache.zip of the tables')
    release.add_argument('--skip-invalid', action='store_true',
                         help='leave out files and folders that break the ALF layout instead '
                              'of refusing to publish')
    release.add_argument('--origin', help='the name of the data origin (default: the '
                                          "folder's name)")
    release.add_argument('--out-dir', metavar='DIR',
                         help='write the tables and cache_info.json there instead of FOLDER')
    release.add_argument('--layout', choices=('path', 'uuid'), default='path',
                         help='how the host names the files: by relative path (default) or '
                              'with the dataset UUID in the name')
    release.add_argument('--files-url', metavar='URL',
                         help='where the session folders are on the host, relative to the '
                              'tables (e.g. ../../data) or absolute')
    release.set_defaults(run=cmd_release)
