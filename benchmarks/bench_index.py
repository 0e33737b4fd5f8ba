"""Benchmark `one.alf.cache.make_parquet_db` (indexing a folder) and md5 hashing.

Builds, under ``benchmarks/_data/index`` (or ``--data DIR``), a synthetic tree of 1,000
sessions holding 100,000 small ALF files (100 per session, ~1 KB each) and, separately, a few
large files, then times:

* ``make_parquet_db(hash_files=False)`` on the small-file tree (files/s);
* ``make_parquet_db(hash_files=True)`` on the small-file tree (files/s);
* ``make_parquet_db(hash_files=True)`` on a session holding the large files (GB/s);
* ``read_tables`` (One's loader, ids as strings) of the resulting tables;
* ``read_tables``, ``merge_tables`` (1,000 new rows) and ``save_tables`` on a synthetic
  1,000,000-row datasets table (10,000 sessions), against pyarrow's plain ``to_pandas``.

Each measurement is repeated and the median printed, with the data size.  Files are read from
the page cache after the first run (the machine's memory permitting), so the figures measure
the CPU cost of indexing and hashing, not the disk.

Usage::

    python benchmarks/bench_index.py [--sessions 1000] [--files 100] [--large 4]
                                     [--large-mb 512] [--repeat 3] [--data DIR] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

from one.alf.cache import make_parquet_db
from one.alf.cache import read_tables as load_tables  # One's loader (string ids)

OBJECTS = ['trials', 'wheel', 'wheelMoves', 'spikes', 'clusters', 'channels', 'licks',
           'camera', 'passive', 'probes']
ATTRIBUTES = ['times', 'intervals', 'amps', 'depths', 'position', 'values', 'choice',
              'feedbackType', 'contrastLeft', 'contrastRight']


def make_small_tree(root: Path, n_sessions: int, n_files: int) -> int:
    """Write `n_sessions` sessions of `n_files` ~1 KB files; return the number of files."""
    payload = os.urandom(1024)
    n = 0
    for s in range(n_sessions):
        lab = f'lab{s % 5}'
        subject = f'SUB{s // 10:04d}'
        session = root / lab / 'Subjects' / subject / f'2024-01-{s % 10 + 1:02d}' / '001'
        collections = ['alf', 'alf/probe00', 'alf/probe01', 'raw_behavior_data']
        for c in collections:
            (session / c).mkdir(parents=True, exist_ok=True)
        for f in range(n_files):
            obj = OBJECTS[f % len(OBJECTS)]
            attr = ATTRIBUTES[(f // len(OBJECTS)) % len(ATTRIBUTES)]
            extra = f'.part{f // 100}' if f >= 100 else ''
            name = f'_ibl_{obj}.{attr}{extra}.npy'
            with open(session / collections[f % len(collections)] / name, 'wb') as fh:
                fh.write(payload[: 512 + (f * 7) % 512])
            n += 1
    return n


def make_large_session(root: Path, n_files: int, size_mb: int) -> int:
    """Write `n_files` files of `size_mb` MiB in one session; return the total bytes."""
    session = root / 'lab' / 'Subjects' / 'BIG' / '2024-01-01' / '001' / 'raw_ephys_data'
    session.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    for i in range(n_files):
        with open(session / f'_spikeglx_ephysData_g0_t0.imec{i}.ap.cbin', 'wb') as fh:
            for _ in range(size_mb):
                fh.write(block)
    return n_files * size_mb * (1 << 20)


def make_big_tables(folder: Path, n_sessions: int, per_session: int) -> int:
    """Write sessions/datasets tables of random UUIDs; return the number of dataset rows."""
    import numpy as np
    import pandas as pd

    from one._tables.uuids import uuid_strings
    from one.alf.cache import QC_TYPE, default_cache, save_tables
    rng = np.random.default_rng(0)
    n = n_sessions * per_session

    def uuids(k):
        raw = rng.integers(0, 256, (k, 16), dtype=np.uint8)
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
        return uuid_strings(raw)

    eids = uuids(n_sessions)
    sessions = pd.DataFrame({
        'lab': 'lab', 'subject': [f'S{i // 10:05d}' for i in range(n_sessions)],
        'date': pd.Timestamp('2024-01-01').date(), 'number': np.uint16(1),
        'task_protocol': '', 'projects': ''}, index=pd.Index(eids, name='id'))
    datasets = pd.DataFrame({
        'rel_path': [f'alf/probe0{j % 3}/_ibl_obj{j}.attr.npy' for j in range(per_session)]
        * n_sessions,
        'file_size': pd.array(rng.integers(0, 10 ** 6, n), dtype='UInt64'),
        'hash': 'd41d8cd98f00b204e9800998ecf8427e', 'exists': True,
        'qc': pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=QC_TYPE),
        'default_revision': True,
    }, index=pd.MultiIndex.from_arrays([np.repeat(eids, per_session), uuids(n)],
                                       names=['eid', 'id']))
    cache = default_cache('bench')
    cache['sessions'], cache['datasets'] = sessions, datasets.sort_index()
    save_tables(cache, folder, clobber=True)
    return n


def md5_ceiling(n_threads: int, megabytes: int = 256) -> float:
    """GB/s of hashlib md5 on in-memory data with `n_threads` threads (the hardware limit)."""
    import hashlib
    import threading
    data = memoryview(os.urandom(1 << 20) * megabytes)

    def work():
        h = hashlib.md5()
        for i in range(0, len(data), 1 << 20):
            h.update(data[i:i + (1 << 20)])

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n_threads * len(data) / (time.perf_counter() - t0) / 1e9


def timed(fn, repeat: int) -> tuple[float, float]:
    """Median wall-clock and median CPU time (all threads of this process) of `repeat` runs.

    The CPU time is a load-independent figure on a shared machine: when other processes
    compete for the cores, wall-clock throughput drops but work per CPU-second does not.
    """
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sessions', type=int, default=1000)
    parser.add_argument('--files', type=int, default=100, help='files per session')
    parser.add_argument('--large', type=int, default=4, help='number of large files')
    parser.add_argument('--large-mb', type=int, default=512, help='size of each large file')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--table-rows', type=int, default=1_000_000,
                        help='rows of the synthetic datasets table (0 to skip)')
    parser.add_argument('--data', type=Path,
                        default=Path(__file__).parent / '_data' / 'index')
    parser.add_argument('--keep', action='store_true', help='keep the generated data')
    args = parser.parse_args(argv)
    warnings.simplefilter('ignore', RuntimeWarning)

    small, large = args.data / 'small', args.data / 'large'
    shutil.rmtree(args.data, ignore_errors=True)
    small.mkdir(parents=True)
    large.mkdir(parents=True)
    print(f'python {sys.version.split()[0]}, {os.cpu_count()} CPUs')
    t0 = time.perf_counter()
    n_files = make_small_tree(small, args.sessions, args.files)
    small_bytes = sum(p.stat().st_size for p in small.rglob('*.npy'))
    print(f'made {args.sessions} sessions / {n_files} files ({small_bytes / 1e6:.1f} MB) '
          f'in {time.perf_counter() - t0:.1f} s')
    try:
        # warm-up (fills the page cache and imports)
        make_parquet_db(small, hash_files=False)
        t, c = timed(lambda: make_parquet_db(small, hash_files=False), args.repeat)
        print(f'make_parquet_db, no hashing : {t:6.2f} s  {n_files / t:10,.0f} files/s'
              f'  (CPU {c:.2f} s)')
        t, c = timed(lambda: make_parquet_db(small, hash_files=True), args.repeat)
        print(f'make_parquet_db, md5 small  : {t:6.2f} s  {n_files / t:10,.0f} files/s'
              f'  (CPU {c:.2f} s)')
        t, c = timed(lambda: load_tables(small), args.repeat)
        print(f'load_tables ({n_files} datasets): {t:6.3f} s')

        if args.large:
            cpus = os.cpu_count() or 1
            print(f'md5 ceiling, in memory: 1 thread {md5_ceiling(1):.2f} GB/s, {cpus} threads '
                  f'{md5_ceiling(cpus):.2f} GB/s')
            t0 = time.perf_counter()
            nbytes = make_large_session(large, args.large, args.large_mb)
            print(f'made {args.large} x {args.large_mb} MiB files '
                  f'({nbytes / 1e9:.2f} GB) in {time.perf_counter() - t0:.1f} s')
            if hasattr(os, 'sync'):
                os.sync()  # the kernel's write-back of the new files would compete with hashing
            make_parquet_db(large, hash_files=True)  # warm-up: page cache
            t, c = timed(lambda: make_parquet_db(large, hash_files=True), args.repeat)
            print(f'make_parquet_db, md5 large  : {t:6.2f} s  {nbytes / t / 1e9:10.2f} GB/s'
                  f'  (CPU {c:.2f} s: {nbytes / c / 1e9:.2f} GB per CPU-second)')

        if args.table_rows:
            import pyarrow.parquet as pq

            from one.alf.cache import merge_tables, save_tables
            tables = args.data / 'tables'
            tables.mkdir()
            n = make_big_tables(tables, max(1, args.table_rows // 100), 100)
            print(f'datasets table: {n:,} rows, '
                  f'{(tables / "datasets.pqt").stat().st_size / 1e6:.0f} MB on disk')
            t, c = timed(lambda: pq.read_table(tables / 'datasets.pqt').to_pandas(),
                         args.repeat)
            print(f'pyarrow read_table().to_pandas(): {t:6.2f} s  (CPU {c:.2f} s)')
            t, c = timed(lambda: load_tables(tables), args.repeat)
            print(f'load_tables                     : {t:6.2f} s  (CPU {c:.2f} s)')
            cache = load_tables(tables)
            new = cache['datasets'].iloc[::1000].rename(
                index=lambda x: x[:-4] + 'ffff', level=1)

            def merge():
                copy = dict(cache, _meta={'raw': {}})
                merge_tables(copy, datasets=new)
            t, c = timed(merge, args.repeat)
            print(f'merge_tables, {len(new):,} new rows    : {t:6.2f} s  (CPU {c:.2f} s)')
            t, c = timed(lambda: save_tables(cache, tables), args.repeat)
            print(f'save_tables (locked merge+write): {t:6.2f} s  (CPU {c:.2f} s)')
            t, c = timed(lambda: save_tables(cache, tables, clobber=True), args.repeat)
            print(f'save_tables clobber             : {t:6.2f} s  (CPU {c:.2f} s)')
    finally:
        if not args.keep:
            shutil.rmtree(args.data, ignore_errors=True)


if __name__ == '__main__':
    main()
