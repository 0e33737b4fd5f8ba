"""Benchmark `one.api.One` on large generated cache tables (10k and 40k sessions).

For each size the cache is generated once by `make_cache.py` (seeded, so every run sees the
same tables) under ``benchmarks/_data/cache-<sessions>-s<seed>/`` (gitignored) and reused.
Then a *fresh* Python process (``bench_one.py --worker``) imports ``one.api``, opens
``One(cache_dir=..., mode='local')`` and times each operation in-process:

========================  =================================================================
start-up                  ``One(cache_dir)`` (first one of the process, then more runs)
search(dataset)           ``search(dataset=['_ibl_trials.goCue_times.npy', 'spikes.times.npy'])``
search(datasets)          ``search(datasets=[same two names])`` (ONE 3.x term)
search(subject)           ``search(subject=<a subject>)``
list_datasets(eid)        of the session with real files
list_collections()        of all sessions
list_revisions()          of all sessions
load_object(trials)       ``load_object(eid, 'trials', check_hash=True)``: 15 real npy files
load_dataset_from_id      ``load_dataset_from_id(<id of a real file>, download_only=True)``
first read of _cache      ``one._cache``: the tables handed out in ONE-api's shape (UUID ids,
                          plain string columns), converted in place on this first read
========================  =================================================================

The operations are timed twice: before ``one._cache`` is read (the tables as loaded, ids as
strings), then after its first read (ids as `uuid.UUID` objects; every query then checks that
the tables were not edited in place), marked ``[after _cache]``.

Each figure is the median of ``--repeat`` calls (default 7) after a first call, which is
reported separately ("first"): our `One` builds its integer-coded view of the datasets table
lazily on the first dataset query (and its dataset-id search index on the first lookup by id),
and `load_object` hashes the files on its first call (later calls find them in the
verified-files record).  Start-up is the median of ``--startup-runs``
constructions in the same process (the first one included).

Memory: ``peak MB`` is how far the process's resident set size rose above its level before the
first ``One(...)`` (taken after ``one.api`` and its dependencies were imported): on Linux the
kernel's peak mark is reset just before (``/proc/self/clear_refs`` = 5) and read after
(``VmHWM``); elsewhere it is the increase of ``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
which under-reads when the imports themselves peaked higher.  ``kept MB`` is the increase of
the current RSS (``/proc/self/statm``) once ``One(...)`` returned.  RSS is used rather than
`tracemalloc` because most of the memory is allocated by pyarrow's and numpy's C allocators
(parquet decoding buffers, arrow-backed str columns), which `tracemalloc` does not see or
attributes only partly.  Pages of the parquet files in the OS page cache are not counted.
``memory after _cache`` gives the same figures (still relative to the level before the first
``One(...)``) after the first read of ``one._cache``, the peak being that of the read itself,
and ``+`` what the read added (the UUID objects and the plain string paths).

Usage::

    python benchmarks/bench_one.py                     # 10k and 40k sessions
    python benchmarks/bench_one.py --sizes 10000 --quick
    python benchmarks/bench_one.py --profile list_datasets   # cProfile of one operation
    python benchmarks/one_api_peer.py                  # the same against ONE-api 3.6.1

The worker (``--worker CACHE_DIR``) needs only the standard library and ``one.api`` on the
path, so `one_api_peer.py` runs this very file with ONE-api's interpreter.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / '_data'
GENERATOR_VERSION = 1  # bump when make_cache.py changes what it writes
DATASET_NAMES = ['_ibl_trials.goCue_times.npy', 'spikes.times.npy']
RESULT_TAG = 'BENCH-RESULT '

# operation -> (label, {n_sessions: target seconds}); a target applies to every size if the
# key is 0; memory targets in MB under 'memory'
OPERATIONS = {
    'startup': ('One(cache_dir) start-up', {10_000: .6, 40_000: 1.5}),
    'search_dataset': ('search(dataset=[2 names])', {10_000: .020, 40_000: .040}),
    'search_datasets': ('search(datasets=[2 names])', {10_000: .020, 40_000: .040}),
    'search_subject': ('search(subject=...)', {0: .005}),
    'list_datasets': ('list_datasets(eid)', {0: .002}),
    'list_collections': ('list_collections()', {0: .030}),
    'list_revisions': ('list_revisions()', {0: .030}),
    'load_object': ("load_object(eid, 'trials')", {0: .030}),
    'load_dataset_from_id': ('load_dataset_from_id(id)', {}),
    'first_access': ('first read of one._cache', {0: 1.0}),
}
PHASES = {'ops': '', 'ops_after': ' [after _cache]'}
MEMORY_TARGETS_MB = {10_000: 500}


# --------------------------------------------------------------------------------------------
# The worker: runs in a fresh process, standard library + one.api only
# --------------------------------------------------------------------------------------------

def _rss_mb() -> float:
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
    except OSError:
        return float('nan')


def _maxrss_mb() -> float:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == 'darwin' else peak / 2**10


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _hwm_mb() is not None
    except OSError:
        return False


def _hwm_mb() -> float | None:
    """The peak RSS since the last `_reset_peak` (VmHWM), or None."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def _time(func, repeat: int) -> dict:
    """First call, then the median (and min) of `repeat` more; also the size of the answer.

    ``cpu`` is the median process CPU time of the same calls: on a busy machine it is a
    better estimate of the uncontended wall time than the wall time itself (it counts all
    threads, so it can exceed the wall time of a multi-threaded call).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    out = func()
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    times, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        func()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {'first': first, 'first_cpu': first_cpu,
            'median': statistics.median(times) if times else first,
            'min': min(times) if times else first,
            'cpu': statistics.median(cpus) if cpus else first_cpu,
            'n': len(out) if hasattr(out, '__len__') else None}


def worker(cache_dir: str, repeat: int = 7, startup_runs: int = 3,
           ops: list[str] | None = None) -> dict:
    """Time the operations on one cache folder in this process; return the results."""
    warnings.simplefilter('ignore')
    import one
    from one.api import One

    info = json.loads((Path(cache_dir) / 'bench_info.json').read_text())
    real = info['real_files']
    eid = real['eid']
    subject = real['session_path'].split('/')[2]
    ops = ops or list(OPERATIONS)
    results = {'one_version': getattr(one, '__version__', '?'), 'one_file': one.__file__,
               'python': sys.version.split()[0], 'ops': {}}
    try:
        import pandas
        results['pandas'] = pandas.__version__
    except ImportError:
        pass

    gc.collect()
    rss0, peak0, reset = _rss_mb(), _maxrss_mb(), _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    one_ = One(cache_dir=cache_dir, mode='local')
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _hwm_mb() - rss0 if reset else _maxrss_mb() - peak0
    results['memory'] = {'peak_mb': peak, 'kept_mb': _rss_mb() - rss0,
                         'method': 'VmHWM after clear_refs' if reset else 'ru_maxrss delta'}
    startups, cpus = [first], [first_cpu]
    for _ in range(max(startup_runs, 1) - 1):
        del one_
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        one_ = One(cache_dir=cache_dir, mode='local')
        startups.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    results['ops']['startup'] = {'first': first, 'first_cpu': first_cpu,
                                 'median': statistics.median(startups), 'min': min(startups),
                                 'cpu': statistics.median(cpus), 'n': len(startups)}
    with contextlib.suppress(OSError):
        results['load_average'] = os.getloadavg()[0]

    _time_calls(results['ops'], _calls(one_, eid, subject, real), ops, repeat)
    if 'first_access' in ops:
        # the first read of one._cache (ONE-api: a plain attribute), then the same queries
        gc.collect()
        rss1, reset = _rss_mb(), _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        tables = one_._cache
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        results['ops']['first_access'] = {'first': elapsed, 'first_cpu': cpu, 'median': elapsed,
                                          'min': elapsed, 'cpu': cpu, 'n': len(tables['datasets'])}
        results['memory_after'] = {
            'peak_mb': (_hwm_mb() - rss0) if reset else float('nan'),
            'kept_mb': _rss_mb() - rss0, 'added_mb': _rss_mb() - rss1}
        results['ops_after'] = {}
        _time_calls(results['ops_after'], _calls(one_, eid, subject, real), ops, repeat)
    with contextlib.suppress(OSError):
        results['load_average_end'] = os.getloadavg()[0]
    return results


def _time_calls(out: dict, calls: dict, ops: list, repeat: int) -> None:
    for name, call in calls.items():
        if name not in ops:
            continue
        try:
            out[name] = _time(call, repeat)
        except Exception as ex:  # e.g. a term the other implementation does not have
            out[name] = {'error': f'{type(ex).__name__}: {ex}'}


def _dataset_id(one_, real: dict):
    """The id of the first real file of the benchmark session (None if not found)."""
    details = one_.list_datasets(real['eid'], details=True)
    rows = details[details['rel_path'].astype(object) == real['files'][0]]
    return rows.index[0] if len(rows) else None


def _calls(one_, eid: str, subject: str, real: dict) -> dict:
    """The timed operations (but start-up) as callables."""
    dataset_id = _dataset_id(one_, real)
    return {
        'search_subject': lambda: one_.search(subject=subject),
        'search_dataset': lambda: one_.search(dataset=DATASET_NAMES),
        'search_datasets': lambda: one_.search(datasets=DATASET_NAMES),
        'list_datasets': lambda: one_.list_datasets(eid),
        'list_collections': lambda: one_.list_collections(),
        'list_revisions': lambda: one_.list_revisions(),
        'load_object': lambda: one_.load_object(eid, 'trials', check_hash=True),
        'load_dataset_from_id': lambda: one_.load_dataset_from_id(dataset_id,
                                                                  download_only=True),
    }


def profile(cache_dir: str, op: str, repeat: int = 7, top: int = 30) -> None:
    """Print a cProfile of `repeat` calls of one operation (after a first, unprofiled call)."""
    import cProfile
    import pstats
    warnings.simplefilter('ignore')
    from one.api import One

    real = json.loads((Path(cache_dir) / 'bench_info.json').read_text())['real_files']
    if op == 'startup':
        call = lambda: One(cache_dir=cache_dir, mode='local')  # noqa: E731
    elif op == 'first_access':
        call = lambda: One(cache_dir=cache_dir, mode='local')._cache  # noqa: E731
    else:
        one_ = One(cache_dir=cache_dir, mode='local')
        call = _calls(one_, real['eid'], real['session_path'].split('/')[2], real)[op]
    call()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeat):
        call()
    prof.disable()
    print(f'{op} x {repeat} on {cache_dir}')
    stats = pstats.Stats(prof, stream=sys.stdout)
    stats.sort_stats('tottime').print_stats(top)
    stats.sort_stats('cumtime').print_stats(top)


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------

def cache_folder(n_sessions: int, seed: int = 0) -> Path:
    """Generate (once) and return the cache folder of `n_sessions` sessions."""
    folder = DATA / f'cache-{n_sessions}-s{seed}'
    info_file = folder / 'bench_info.json'
    if info_file.exists():
        info = json.loads(info_file.read_text())
        if info.get('generator_version') == GENERATOR_VERSION and info.get('real_files') and \
                (folder / 'datasets.pqt').exists() and (folder / 'sessions.pqt').exists():
            return folder
    sys.path.insert(0, str(HERE))
    from make_cache import make_cache
    print(f'generating {n_sessions:,} sessions in {folder} ...', file=sys.stderr, flush=True)
    if folder.exists():
        import shutil
        shutil.rmtree(folder)
    info = make_cache(folder, n_sessions=n_sessions, seed=seed)
    info['generator_version'] = GENERATOR_VERSION
    info_file.write_text(json.dumps(info, indent=1))
    print(f"  {info['n_datasets']:,} datasets in {info['seconds']} s", file=sys.stderr)
    return folder


def run_worker(cache_dir: Path, python: str = sys.executable, repeat: int = 7,
               startup_runs: int = 3, ops: list[str] | None = None,
               env: dict | None = None, cwd: str | None = None) -> dict:
    """Run `worker` in a fresh process of `python`; return its results."""
    cmd = [python, str(Path(__file__).resolve()), '--worker', str(cache_dir),
           '--repeat', str(repeat), '--startup-runs', str(startup_runs)]
    if ops:
        cmd += ['--ops', ','.join(ops)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise RuntimeError(f'worker failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
                       f'{proc.stderr[-3000:]}')


def target_of(op: str, n_sessions: int) -> float | None:
    targets = OPERATIONS[op][1]
    return targets.get(n_sessions, targets.get(0))


def _ms(seconds) -> str:
    if seconds is None:
        return '-'
    return f'{seconds * 1e3:.1f}' if seconds < 10 else f'{seconds * 1e3:.0f}'


def format_table(all_results: dict[int, dict]) -> str:
    """A text table of our figures (ms) with their targets."""
    rows = [('sessions', 'datasets', 'operation', 'first ms', 'median ms', 'min ms', 'cpu ms',
             'target ms', 'ok', 'n')]
    for n_sessions, res in all_results.items():
        n_datasets = res.get('n_datasets', '')
        for phase, suffix in PHASES.items():
            for op, (label, _) in OPERATIONS.items():
                r = res.get(phase, {}).get(op)
                if r is None:
                    continue
                target = target_of(op, n_sessions)
                if 'error' in r:
                    rows.append((f'{n_sessions:,}', f'{n_datasets:,}', label + suffix,
                                 'error', r['error'][:50], '', '', '', '', ''))
                    continue
                ok = '' if target is None else ('yes' if r['median'] < target else 'NO')
                rows.append((f'{n_sessions:,}', f'{n_datasets:,}', label + suffix,
                             _ms(r['first']), _ms(r['median']), _ms(r.get('min')),
                             _ms(r.get('cpu')), _ms(target), ok,
                             '' if r.get('n') is None else str(r['n'])))
        mem = res.get('memory')
        if mem:
            target = MEMORY_TARGETS_MB.get(n_sessions)
            ok = '' if target is None else ('yes' if mem['peak_mb'] < target else 'NO')
            rows.append((f'{n_sessions:,}', f'{n_datasets:,}', 'start-up memory (MB)',
                         f"kept {mem['kept_mb']:.0f}", f"peak {mem['peak_mb']:.0f}", '', '',
                         '' if target is None else f'{target}', ok, ''))
        mem = res.get('memory_after')
        if mem:
            rows.append((f'{n_sessions:,}', f'{n_datasets:,}', 'memory after _cache (MB)',
                         f"kept {mem['kept_mb']:.0f}", f"peak {mem['peak_mb']:.0f}",
                         f"+{mem['added_mb']:.0f}", '', '', '', ''))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(str(c).ljust(w) if i == 2 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, '-' * len(lines[0]))
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default=None,
                        help='comma-separated numbers of sessions (default 10000,40000; '
                             '10000 with --quick)')
    parser.add_argument('--quick', action='store_true',
                        help='10k sessions only, 3 repeats, 1 start-up run')
    parser.add_argument('--repeat', type=int, default=None, help='timed calls per operation')
    parser.add_argument('--startup-runs', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--ops', default=None, help='comma-separated operations to time')
    parser.add_argument('--json', default=None, help='also write the results to this file')
    parser.add_argument('--profile', default=None, metavar='OP', choices=list(OPERATIONS),
                        help='print a cProfile of one operation (on the first size) instead')
    parser.add_argument('--worker', default=None, metavar='CACHE_DIR', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 7)
    startup_runs = args.startup_runs or (1 if args.quick else 3)
    ops = args.ops.split(',') if args.ops else None

    if args.worker and args.profile:
        profile(args.worker, args.profile, repeat)
        return 0
    if args.worker:
        res = worker(args.worker, repeat, startup_runs, ops)
        print(RESULT_TAG + json.dumps(res), flush=True)
        return 0

    sizes = [int(x) for x in (args.sizes or ('10000' if args.quick else '10000,40000'))
             .split(',')]
    if args.profile:
        folder = cache_folder(sizes[0], args.seed)
        # in a fresh process, like the timings
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), '--worker',
                                str(folder), '--profile', args.profile, '--repeat',
                                str(1 if args.profile == 'startup' else repeat)])
    all_results = {}
    for n in sizes:
        folder = cache_folder(n, args.seed)
        res = run_worker(folder, repeat=repeat, startup_runs=startup_runs, ops=ops)
        res['n_datasets'] = json.loads((folder / 'bench_info.json').read_text())['n_datasets']
        all_results[n] = res
    first = next(iter(all_results.values()))
    print(f"one {first['one_version']} ({first['one_file']}), python {first['python']}, "
          f"pandas {first.get('pandas')}; median of {repeat} calls after a first one; "
          f'start-up: median of {startup_runs}; load average at start and end of the runs: '
          + ', '.join(f"{r.get('load_average', float('nan')):.1f}-"
                      f"{r.get('load_average_end', float('nan')):.1f}"
                      for r in all_results.values()))
    print("'ok' compares the median wall time with the target; on a busy machine (load average"
          " > cores) read the cpu column")
    print(format_table(all_results))
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
