"""The ``one`` command line: check, index, search, list and load ALF data."""
from __future__ import annotations

import argparse
import sys

from one import __version__

__all__ = ['main']


class _UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


def _cmd_validate(args: argparse.Namespace) -> int:
    from one._lib.validate import validate_tree

    try:
        report = validate_tree(args.folder)
    except NotADirectoryError as e:
        raise _UsageError(str(e)) from e
    for problem in report.problems:
        print(f'invalid {problem.kind:<6} {problem.path}: {problem.reason}')
    summary = (f'{report.root}: {report.sessions} sessions, {report.datasets} datasets, '
               f'{len(report.problems)} invalid')
    print(summary, file=sys.stderr if report.problems else sys.stdout)
    return 0 if report.ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='one', description='Search, list and load ALF neurophysiology data.')
    parser.add_argument('--version', action='version', version=f'one-next {__version__}')
    parser.add_argument('--debug', action='store_true', help='show tracebacks on errors')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True

    validate = commands.add_parser(
        'validate', help='report files and folders that break the ALF layout',
        description='Walk FOLDER and report every file that is not a valid ALF dataset and '
                    'every folder that is not part of a valid session path, with the reason. '
                    'Exits with 1 if anything is invalid.')
    validate.add_argument('folder', help='the data folder to check')
    validate.set_defaults(run=_cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``one`` command; return its exit code (0 ok, 1 not found/invalid, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except _UsageError as e:
        print(f'one {args.command}: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(f'one {args.command}: {type(e).__name__}: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
