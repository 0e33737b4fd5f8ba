"""The README's demo: make a small ALF data folder, index it, then search, list and load.

Run with ``python -m one.demo [FOLDER]`` (default ``./sample_data``).  The folder is made
deterministically (same files every time) and reused if it already exists.
"""
from __future__ import annotations

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


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return 0 on success."""
    argv = sys.argv[1:] if argv is None else argv
    from one._lib.validate import validate_tree
    from one.alf.cache import make_parquet_db
    from one.api import One
    from one.synthetic import make_dataset_folder

    root = Path(argv[0] if argv else 'sample_data').resolve()
    _section(f'1. A sample ALF data folder: {root}')
    if not (root / 'datasets.pqt').exists():
        sessions = make_dataset_folder(root, n_subjects=3, n_sessions=4, seed=0)
        print(f'made {len(sessions)} sessions of 3 subjects')
    report = validate_tree(root)
    print(f'{report.sessions} sessions, {report.datasets} datasets; '
          f'{len(report.problems)} files or folders outside the ALF convention, e.g.')
    for problem in report.problems[:2]:
        print(f'  {problem.path}: {problem.reason}')

    _section('2. Index it (one index) - builds sessions.pqt and datasets.pqt')
    make_parquet_db(root, hash_files=True)
    one = One(cache_dir=root)
    print(one)
    print(f'{len(one._cache["sessions"])} sessions, {len(one._cache["datasets"])} datasets')

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


if __name__ == '__main__':
    sys.exit(main())
