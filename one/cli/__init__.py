"""The ``one`` command line: check, index, search, list and load ALF data.

Exit codes: 0 success, 1 nothing found (or something invalid), 2 bad usage.  Errors are printed
as one line on stderr; ``--debug`` shows the traceback.

Each group of subcommands lives in its own module (`one.cli.local`: the commands on a local data
folder; `one.cli.release`: publishing a release) with an ``add_commands(commands, parents)``
function; `one.cli._common` holds what they share.
"""
from __future__ import annotations

import argparse
import sys

from one import __distribution_version__, __version__
from one.cli import auth, cache, local, release
from one.cli._common import NotFound, UsageError

__all__ = ['main']

_COMMAND_GROUPS = (local, auth, cache, release)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='one', description='Search, list and load ALF neurophysiology data.')
    parser.add_argument('--version', action='version',
                        version=f'one-next {__distribution_version__} (ONE API {__version__})')
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--debug', action='store_true', help='show tracebacks on errors')
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument('-C', '--cache-dir', metavar='DIR',
                        help='the indexed data folder (default: $ONE_CACHE_DIR or the current '
                             'folder); with --url, where the release is kept')
    folder.add_argument('--url', metavar='URL',
                        help='a data release (http(s)://... or s3://bucket/prefix) instead of '
                             'a local folder')
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument('--json', action='store_true', help='print JSON')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True
    parents = {'common': common, 'folder': folder, 'output': output}
    for group in _COMMAND_GROUPS:
        group.add_commands(commands, parents)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``one`` command; return its exit code (0 ok, 1 not found/invalid, 2 usage)."""
    from one.alf.exceptions import ALFError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f'one {args.command}: error: {e}', file=sys.stderr)
        return 2
    except (NotFound, ALFError) as e:
        if args.debug:
            raise
        message = e.message if isinstance(e, ALFError) else str(e)
        print(f'one {args.command}: {message}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(f'one {args.command}: {type(e).__name__}: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
