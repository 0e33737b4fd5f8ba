"""Benchmark `one.alf.cache.save_tables` (the primitive of ``One.save_cache``) on a large cache.

Uses the generated cache of `bench_one.py` (``benchmarks/_data/cache-<sessions>-s0``, made by
`make_cache.py` when missing) and times, in one process:

* ``load``: ``_load_tables`` of the folder (One's loader: ids as strings, as `One` holds the
  tables until ``one._cache`` is first read; see `bench_one.py` for that read);
* ``save, disk == memory``: ``save_tables`` of the loaded tables into a copy of their folder
  (the merge finds nothing to add);
* ``save, disk +100``: the same, the folder holding the tables as another process saved them
  with 100 more datasets (80 in existing sessions, 20 in 2 new sessions) that must be kept;
* ``save, memory +100``: the in-memory tables hold those 100 records, the folder the original;
* ``save, clobber``: ``save_tables(clobber=True)`` (no reading, no merging: the write alone).

Before each run the folder's files are restored from a reference copy (not timed).  Medians
(and minima) of ``--repeat`` runs, with the process CPU time, and the load average before and
after.  The copies live in ``/dev/shm`` when it exists (``--dest`` to change), so the figures
measure CPU, not the disk.

Usage::

    python benchmarks/bench_save.py [--sessions 40000] [--repeat 3] [--dest DIR]
    python benchmarks/bench_save.py --profile "save, disk +100"    # cProfile one run
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from one.alf.cache import _load_tables as load_tables  # One's loader (string ids)
from one.alf.cache import merge_tables, save_tables

HERE = Path(__file__).resolve().parent
TABLES = ('sessions.pqt', 'datasets.pqt')


def cache_folder(n_sessions: int) -> Path:
    """The generated cache of `n_sessions` sessions (seed 0), made if missing."""
    folder = HERE / '_data' / f'cache-{n_sessions}-s0'
    if not (folder / 'datasets.pqt').exists():
        subprocess.run([sys.executable, str(HERE / 'make_cache.py'), str(folder),
                        '--sessions', str(n_sessions), '--seed', '0'], check=True)
    return folder


def new_records(cache: dict, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """100 dataset records not in the cache (80 in existing sessions, 20 in 2 new ones)."""
    rng = np.random.default_rng(seed)
    datasets, sessions = cache['datasets'], cache['sessions']

    def ids(n):
        return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]

    template = datasets.iloc[rng.choice(len(datasets), 100, replace=False)].reset_index()
    new_eids = ids(2)
    template['eid'] = list(template['eid'][:80]) + [new_eids[i // 10] for i in range(20)]
    template['id'] = ids(100)
    template['rel_path'] = [f'alf/bench_save/_ibl_new.attr{i:03d}.npy' for i in range(100)]
    new_sessions = sessions.iloc[:2].copy()
    new_sessions.index = pd.Index(new_eids, name=sessions.index.name)
    return template.set_index(['eid', 'id']), new_sessions


def restore(reference: Path, folder: Path) -> None:
    for name in TABLES:
        shutil.copyfile(reference / name, folder / name)


def timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sessions', type=int, default=40000)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--dest', type=Path,
                        default=Path('/dev/shm') if Path('/dev/shm').is_dir() else None)
    parser.add_argument('--profile', default=None, help='case name to run once under cProfile')
    args = parser.parse_args(argv)

    source = cache_folder(args.sessions)
    print(f'load average before: {os.getloadavg()}')
    with tempfile.TemporaryDirectory(dir=args.dest, prefix='bench_save_') as tmp:
        tmp = Path(tmp)
        original, other, work = tmp / 'original', tmp / 'other', tmp / 'work'
        for folder in (original, other, work):
            folder.mkdir()
        for name in TABLES:
            shutil.copyfile(source / name, original / name)
        cache = load_tables(original)
        records, sessions = new_records(cache)
        # another process's view: the original tables plus the 100 records, saved
        bigger = load_tables(original)
        merge_tables(bigger, datasets=records, sessions=sessions)
        save_tables(bigger, other, clobber=True)
        sizes = {name: (original / name).stat().st_size for name in TABLES}
        print(f"{args.sessions} sessions: {len(cache['sessions']):,} sessions rows, "
              f"{len(cache['datasets']):,} datasets rows; files "
              + ', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in sizes.items()))

        cases = {
            'load': (original, lambda: load_tables(original)),
            'save, disk == memory': (original, lambda: save_tables(cache, work)),
            'save, disk +100': (other, lambda: save_tables(cache, work)),
            'save, memory +100': (original, lambda: save_tables(bigger, work)),
            'save, clobber': (original, lambda: save_tables(cache, work, clobber=True)),
        }
        if args.profile:
            reference, fn = cases[args.profile]
            restore(reference, work)
            profiler = cProfile.Profile()
            profiler.runcall(fn)
            pstats.Stats(profiler).sort_stats('cumulative').print_stats(35)
            return 0
        print(f"{'case':24s} {'median':>8s} {'min':>8s} {'cpu':>8s}")
        for case, (reference, fn) in cases.items():
            walls, cpus = [], []
            for _ in range(args.repeat):
                restore(reference, work)
                wall, cpu = timed(fn)
                walls.append(wall)
                cpus.append(cpu)
            print(f'{case:24s} {statistics.median(walls):7.2f}s {min(walls):7.2f}s '
                  f'{statistics.median(cpus):7.2f}s')
        # the saved tables hold every record of both versions
        restore(other, work)
        save_tables(cache, work)
        check = load_tables(work)
        assert len(check['datasets']) == len(cache['datasets']) + 100
        assert check['datasets'].index.isin(records.index).sum() == 100
    print(f'load average after: {os.getloadavg()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
