"""The README's demo: make a small ALF data folder, index it, then search, list and load.

Run with ``python -m one.demo [FOLDER]`` (default ``./sample_data``; ``--help`` for help).  The
folder is made deterministically (same files every time) and marked as the demo's sample (a
hidden ``.one_demo`` file); a sample folder is reused.  The demo never writes into a folder
that is not its own sample: an existing non-empty folder without the marker is refused.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from one.alf.exceptions import ALFWarning


def _section(title: str) -> None:
    print(f'\n== {title} ' + '=' * max(0, 70 - len(title)))


def _shape(value) -> str:
    if isinstance(value, np.ndarray):
        return f'{str(value.shape):<14} {value.dtype}'
    if hasattr(value, 'shape'):
        return f'{str(value.shape):<14} {type(value).__name__}'
    return type(value).__name__


MARKER = '.one_demo'
"""The file marking a folder as the demo's sample (hidden: `one validate` ignores it)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m one.demo',
        description="one-next's demo: make a small sample ALF data folder (3 subjects, 12 "
                    'sessions of synthetic data), index it, then search, list and load from '
                    'it.  The folder is marked as the sample and reused on later runs; the '
                    'demo refuses to write into any other existing folder.')
    parser.add_argument('folder', nargs='?', default='sample_data',
                        help='where to make the sample (a new or empty folder, or a sample '
                             'made before; default: ./sample_data)')
    return parser


def sample_folder(folder: str | Path) -> tuple[Path, bool]:
    """Check that the demo may write into `folder`; return it (absolute) and whether the
    sample must be made.

    Raises
    ------
    ValueError
        `folder` is a file, or an existing non-empty folder that is not the demo's sample.
    """
    root = Path(folder).absolute()
    if root.exists() and not root.is_dir():
        raise ValueError(f'{root} is a file, not a folder')
    if (root / MARKER).is_file():
        return root, not (root / 'datasets.pqt').exists()
    if root.is_dir() and any(root.iterdir()):
        raise ValueError(
            f'{root} already exists and is not a sample folder made by the demo (it has no '
            f'{MARKER} marker); the demo writes only into a new or empty folder: give '
            'another one, e.g. python -m one.demo ./sample_data')
    return root, True


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return 0 on success (2 for a bad argument)."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from one import __version__
    from one.alf._validate import validate_tree
    from one.alf.cache import make_parquet_db
    from one.api import One
    from one.cli._cache_admin import tables_of
    from one.synthetic import make_dataset_folder

    try:
        root, make = sample_folder(args.folder)
    except ValueError as e:
        parser.error(str(e))
    _section(f'1. A sample ALF data folder: {root}')
    if make:
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text(json.dumps({'made_by': 'one.demo', 'version': __version__,
                                               'seed': 0}) + '\n')
        sessions = make_dataset_folder(root, n_subjects=3, n_sessions=4, seed=0)
        print(f'made {len(sessions)} sessions of 3 subjects')
    report = validate_tree(root)
    print(f'{report.sessions} sessions, {report.datasets} datasets (one validate: '
          f'{len(report.problems) or "no"} files or folders outside the ALF convention)')
    for problem in report.problems[:2]:
        print(f'  {problem.path}: {problem.reason}')

    _section('2. Index it (one index) - builds sessions.pqt and datasets.pqt')
    make_parquet_db(root, hash_files=True)
    one = One(cache_dir=root)
    print(one)
    tables = tables_of(one)  # (one._cache would build a UUID object for every id)
    print(f'{len(tables["sessions"])} sessions, {len(tables["datasets"])} datasets')

    _section('3. Search')
    print('subjects:', ', '.join(one.list_subjects()))
    eids, details = one.search(dataset='spikes.times', details=True)
    print(f'{len(eids)} sessions with spike times, most recent first:')
    for eid, record in zip(eids, details):
        print(f'  {eid}  {record["subject"]:<8} {record["date"]}  {record["number"]:03d}'
              f'  {record["lab"]}')

    _section('4. List the datasets of one session')
    eid = eids[0]
    print(f'session {one.eid2ref(eid, as_dict=False)} ({eid})')
    print('collections:', one.list_collections(eid))
    for rel_path in one.list_datasets(eid, collection='alf'):
        print(' ', rel_path)

    _section('5. Load the trials object')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ALFWarning)
        trials = one.load_object(eid, 'trials', collection='alf')
    for key, value in trials.items():
        print(f'  {key:<22} {_shape(value)}')
    choice = trials['choice']
    print(f'{len(choice)} trials; {np.mean(choice == 1):.0%} chose right')
    return 0


def _run() -> int:
    """`main`, stopping quietly when the reader of the output goes away (``| head``)."""
    from one.cli import _drop_stdout

    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _drop_stdout()
        return 0


if __name__ == '__main__':
    sys.exit(_run())
