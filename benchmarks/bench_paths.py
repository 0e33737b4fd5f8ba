"""Time `One.eid2path` and `One.record2path` over a list: the paths of N sessions, confined.

A folder of N sessions (5 labs, 300 subjects, session folders created, one dataset each) is
written to a temporary folder; the best of `--repeat` runs is printed.  These methods return
paths and open nothing: they reuse one `Confinement` per cache folder (see
`one.converters.ConversionMixin._path_guard`).

Usage::

    python benchmarks/bench_paths.py [--sessions 3000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd


def make_folder(root: Path, n: int) -> None:
    from one._tables import parquet

    rng = np.random.default_rng(0)
    ids = sorted(str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n))
    dataset_ids = sorted(str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n))
    sessions = pd.DataFrame({
        'lab': [f'lab{i % 5}' for i in range(n)],
        'subject': [f'S{i % 300:03d}' for i in range(n)],
        'date': [datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 200) for i in range(n)],
        'number': np.array([1 + i % 3 for i in range(n)], dtype=np.uint16),
        'task_protocol': [''] * n, 'projects': [''] * n,
    }, index=pd.Index(ids, name='id'))
    datasets = pd.DataFrame({
        'rel_path': ['alf/_ibl_trials.table.pqt'] * n,
        'file_size': pd.array([1] * n, dtype='UInt64'), 'hash': ['0' * 32] * n,
        'exists': [True] * n, 'qc': 'NOT_SET', 'default_revision': True,
    }, index=pd.MultiIndex.from_arrays([ids, dataset_ids], names=['eid', 'id'])).sort_index()
    meta = {'date_created': '2024-01-01 00:00', 'origin': 'bench_paths'}
    parquet.save(root / 'sessions.pqt', sessions, meta)
    parquet.save(root / 'datasets.pqt', datasets, meta)
    for s in sessions.itertuples():
        (root / s.lab / 'Subjects' / s.subject / str(s.date) / f'{s.number:03d}').mkdir(
            parents=True, exist_ok=True)


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sessions', type=int, default=3000)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    from one.api import One

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_folder(root, args.sessions)
        one = One(cache_dir=root)
        eids = one.search()
        table = one._cache['datasets']
        rows = [table.iloc[i] for i in range(len(table))]
        eid2path = best_of(args.repeat, lambda: one.eid2path(eids))
        record2path = best_of(args.repeat, lambda: [one.record2path(r) for r in rows])
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else '?'
    print(f'eid2path x{len(eids)}: {eid2path:.3f} s; record2path x{len(rows)}: '
          f'{record2path:.3f} s (best of {args.repeat}; load average {load})')


if __name__ == '__main__':
    main()
