"""The ``one`` command line: check, index, search, list and load ALF data.

Exit codes: 0 success, 1 nothing found (or something invalid), 2 bad usage (an unknown option,
a bad option value, which names the option, or an ambiguous request).  Errors are printed as one
line on stderr; ``--debug`` (anywhere on the command line) shows the traceback.  When the reader
of the output goes away early (``one list ... | head -1``) the command stops quietly with 0.

Each group of subcommands lives in its own module (`one.cli.local`: the commands on a local data
folder; `one.cli.auth`: set-up and login; `one.cli.download`: fetching many sessions;
`one.cli.cache`: the data folder's housekeeping; `one.cli.release`: publishing a release) with
an ``add_commands(commands, parents)`` function; `one.cli._common` holds what they share
(exit-code exceptions, argument types, opening the data folder or release, printing).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback

from one import __distribution_version__, __version__
from one.cli import auth, cache, download, local, release, snapshot
from one.cli._common import NotFound, UsageError

__all__ = ['main']

_COMMAND_GROUPS = (local, auth, download, cache, release, snapshot)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, reporting bad usage on one line (the option and why), exit code 2."""

    def error(self, message: str):
        self.exit(2, f'{self.prog}: error: {message} (see "{self.prog} --help")\n')


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog='one', description='Search, list and load ALF neurophysiology data.')
    parser.add_argument('--version', action='version',
                        version=f'one-next {__distribution_version__} (ONE API {__version__})')
    parser.add_argument('--debug', action='store_true', help='show tracebacks on errors')
    common = argparse.ArgumentParser(add_help=False)
    # also after the subcommand; SUPPRESS: an absent --debug there keeps the one given before
    common.add_argument('--debug', action='store_true', default=argparse.SUPPRESS,
                        help='show tracebacks on errors')
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
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        _drop_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        code, message = _error(args.command, e)
        with contextlib.suppress(BrokenPipeError):
            if args.debug:  # the traceback, then the same message and exit code
                traceback.print_exc()
            print(message, file=sys.stderr)
        return code


def _error(command: str, error: Exception) -> tuple[int, str]:
    """The exit code and the one-line message for an error of a subcommand."""
    from one.alf.exceptions import (
        ALFError,
        ALFMultipleCollectionsFound,
        ALFMultipleObjectsFound,
        ALFMultipleRevisionsFound,
    )

    if isinstance(error, UsageError):
        return 2, f'one {command}: error: {error}'
    if isinstance(error, (ALFMultipleCollectionsFound, ALFMultipleObjectsFound,
                          ALFMultipleRevisionsFound)):
        return 2, f'one {command}: error: {error}'  # ambiguous: the request must say more
    if isinstance(error, (NotFound, ALFError)):
        return 1, f'one {command}: {error}'
    return 1, f'one {command}: {type(error).__name__}: {error}'


def _drop_stdout() -> None:
    """The reader of stdout went away: send what is left to devnull, so that flushing at exit
    raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured in tests)
        pass


if __name__ == '__main__':
    sys.exit(main())
