"""Many sessions at once: `one.parallel.map_sessions` against a serial loop, its per-task
overhead over a bare `Client.map`, and the pickled size and unpickling time of a `One`.

1. **Speed-up.**  A child process serves a generated Alyx database (``tests/alyx_synthetic.py``,
   `--n` sessions of real files; made once in ``benchmarks/_data``): the replay server of the
   tests answers the REST queries, ``tests/file_server.py`` the data files, each after
   `--delay` (a link's round trip), keeping connections alive and counting every GET.
   The sessions are snapshot (`OneAlyx.snapshot`), then the same analysis runs over all of them
   from instances starting from the snapshot ('auto' mode: the tables answer, files are
   downloaded), each with a fresh data folder:

   * ``serial``: a loop ``[analysis(one, eid) for eid in eids]`` in this process;
   * ``dask``: ``map_sessions(analysis, eids, one, client=client)`` on a ``LocalCluster`` of
     2 worker processes (1 thread each; its start-up is not timed, and given apart);
   * ``pool``: ``map_sessions(analysis, eids, one)`` on the local process pool (2 processes,
     their start-up included).

   The analysis is CPU and I/O: it loads the session's trials (12 files) and, when it has
   probes, the spikes of ``probe00`` (4 files), then computes bootstrap confidence intervals of
   the reaction times and spike-count statistics, pure numpy (single-threaded operations; no
   BLAS), sized by `--cpu-ms` (calibrated here, so that one session's computation takes about
   that long).  The results must equal the serial loop's, and the server's log must show every
   file downloaded exactly once.

2. **Per-task overhead** of `map_sessions` over a bare ``client.gather(client.map(...))`` of the
   same trivial function with the same scattered `One`, over `--tasks` tasks (median of 3):
   ``(map_sessions - bare) / tasks``.

3. **Pickling** a `One` on the generated cache of `--cache-sessions` sessions (~100 datasets
   each; ``make_cache.py``): the size of ``pickle.dumps(one)`` with the tables as loaded, after
   an edit of one row through ``one._cache`` and after merging 100 records, the time to pickle,
   the time to unpickle in a fresh process (after its imports; median of 3 processes) and again
   in the same process (the instance is reused); and, for scale, the size of the pickled tables.

Usage::

    python benchmarks/bench_parallel.py                      # all, 200 sessions, 10k cache
    python benchmarks/bench_parallel.py --n 50 --skip pickle,overhead
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / 'tests'))

USERNAME = 'test_user'
PASSWORD = 'TapetesBloc18'


# ---- the server child process -----------------------------------------------------------------

def serve(folder: Path, delay: float) -> int:
    """Serve the database (REST) and its files (`--delay` before each file); answer 'stats'
    and 'reset' lines on stdin."""
    from alyx_server import AlyxTestServer
    from alyx_synthetic import SyntheticAlyx
    from file_server import FileServer
    db = SyntheticAlyx.load(folder / 'db.json')
    with AlyxTestServer(database=db, files_dir=False) as server, \
            FileServer(db.files, delay=delay) as files:
        print(json.dumps({'url': server.url, 'files': files.url, 'eids': db.eids}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == 'reset':
                server.clear_log()
                files.clear()
                cpu = os.times()
                print(json.dumps({'cpu': cpu.user + cpu.system}), flush=True)
            elif command == 'stats':
                rest = Counter(r.path for r in server.requests)
                cpu = os.times()
                print(json.dumps({'data': files.counts(), 'rest': rest,
                                  'cpu': cpu.user + cpu.system}), flush=True)
    return 0


class Server:
    def __init__(self, folder: Path, delay: float):
        self.child = subprocess.Popen(
            [sys.executable, __file__, '--serve', str(folder), '--delay', str(delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        info = json.loads(self.child.stdout.readline())
        self.url, self.files, self.eids = info['url'], info['files'], info['eids']

    def ask(self, command: str) -> dict:
        self.child.stdin.write(command + '\n')
        self.child.stdin.flush()
        return json.loads(self.child.stdout.readline())

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait(30)


# ---- the analysis -----------------------------------------------------------------------------

def _compute(values: np.ndarray, seed: int, rounds: int) -> list[float]:
    """Bootstrap percentiles of the mean of `values`: `rounds` resamples (single-threaded)."""
    rng = np.random.default_rng(seed)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [float('nan')] * 3
    means = np.empty(rounds)
    for i in range(rounds):
        means[i] = np.sort(values[rng.integers(0, values.size, values.size)]).mean()
    return [float(x) for x in np.percentile(means, [2.5, 50, 97.5])]


def analysis(one, eid, rounds: int):
    """One session: its trials' reaction times and its first probe's firing, bootstrapped."""
    import warnings

    from one.alf.exceptions import ALFWarning
    with warnings.catch_warnings():  # the revisions of the generated trials
        warnings.simplefilter('ignore', ALFWarning)
        trials = one.load_object(eid, 'trials')
    seed = int(hashlib.md5(str(eid).encode()).hexdigest()[:8], 16)
    reaction = trials['response_times'] - trials['stimOn_times']
    out = {'n_trials': int(len(reaction)), 'reaction': _compute(reaction, seed, rounds)}
    if one.list_datasets(eid, collection='alf/probe00'):
        spikes = one.load_object(eid, 'spikes', collection='alf/probe00')
        counts = np.bincount(spikes['clusters'].astype(np.int64)).astype(float)
        out['n_spikes'] = int(len(spikes['times']))
        out['firing'] = _compute(counts, seed + 1, max(rounds // 4, 1))
    return out


def trivial(one, eid):
    return str(eid)


def calibrate(cpu_ms: float) -> int:
    """Bootstrap rounds whose computation takes about `cpu_ms` for a session of 400 trials."""
    values = np.random.default_rng(0).normal(0.4, 0.1, 400)
    rounds = 200
    while True:
        start = time.process_time()
        _compute(values, 0, rounds)
        _compute(values, 1, max(rounds // 4, 1))
        took = time.process_time() - start
        if took > 0.05:
            return max(1, int(rounds * cpu_ms / 1000 / took))
        rounds *= 2


# ---- 1. speed-up ------------------------------------------------------------------------------

def _instance(url: str, snapshot: Path, folder: Path):
    from one.api import OneAlyx
    return OneAlyx(base_url=url, mode='auto', tables_dir=snapshot, cache_dir=folder,
                   silent=True)


def speed_up(args, server: Server, tmp: Path) -> dict:
    from distributed import Client, LocalCluster

    from one.api import OneAlyx
    from one.parallel import SessionError, map_sessions
    eids = server.eids[:args.n]
    rounds = calibrate(args.cpu_ms)
    fn = functools.partial(analysis, rounds=rounds)
    login = OneAlyx(base_url=server.url, username=USERNAME, password=PASSWORD, silent=True,
                    cache_dir=tmp / 'login')
    server.ask('reset')
    start = time.perf_counter()
    info = login.snapshot(tmp / 'snapshot', eids=eids)
    snapshot_time = time.perf_counter() - start
    snapshot_rest = sum(server.ask('stats')['rest'].values())
    out = {'sessions': len(eids), 'rounds': rounds, 'cpu_ms': args.cpu_ms,
           'delay_ms': args.delay * 1000, 'snapshot_s': snapshot_time,
           'snapshot_requests': snapshot_rest, 'snapshot_counts': info['counts'], 'runs': {}}

    def measure(name, run):
        server_cpu = server.ask('reset')['cpu']
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        results = run()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        stats = server.ask('stats')
        data = stats['data']
        out['runs'][name] = {
            'wall': wall, 'files': len(data), 'downloads': sum(data.values()),
            'max_per_file': max(data.values()) if data else 0,
            'rest': sum(stats['rest'].values()), 'load': load, 'cpu_here': cpu,
            'cpu_server': stats['cpu'] - server_cpu,
            'errors': sum(isinstance(r, SessionError) for r in results)}
        print(f'  {name:<7} {wall:7.2f} s  {len(data)} files, {sum(data.values())} downloads, '
              f'{sum(stats["rest"].values())} REST requests; CPU s: here {cpu:.1f}, server '
              f'{stats["cpu"] - server_cpu:.1f} (load {load:.1f})', flush=True)
        return results

    print(f'{len(eids)} sessions, {rounds} bootstrap rounds (~{args.cpu_ms:.0f} ms CPU) per '
          f'session, {args.delay * 1000:.0f} ms per request; snapshot {snapshot_time:.2f} s '
          f'({snapshot_rest} REST requests)', flush=True)
    one = _instance(server.url, tmp / 'snapshot', tmp / 'serial')
    serial = measure('serial', lambda: [fn(one, e) for e in eids])
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host='127.0.0.1', dashboard_address='127.0.0.1:0')
    client = Client(cluster)
    out['cluster_start_s'] = time.perf_counter() - start
    try:
        one = _instance(server.url, tmp / 'snapshot', tmp / 'dask')
        parallel = measure('dask', lambda: map_sessions(fn, eids, one, client=client,
                                                        progress=False))
    finally:
        client.close()
        cluster.close()
    one = _instance(server.url, tmp / 'snapshot', tmp / 'pool')
    pool = measure('pool', lambda: map_sessions(fn, eids, one, max_workers=2, progress=False))
    out['equal'] = {'dask': parallel == serial, 'pool': pool == serial}
    for name in ('dask', 'pool'):
        out['runs'][name]['speed_up'] = out['runs']['serial']['wall'] / out['runs'][name]['wall']
    return out


# ---- 2. per-task overhead ---------------------------------------------------------------------

def overhead(args, tmp: Path) -> dict:
    from distributed import Client, LocalCluster
    from make_cache import make_cache

    from one.api import One
    from one.parallel import map_sessions
    folder = tmp / 'small-cache'
    make_cache(folder, n_sessions=50, real_files=False)
    one = One(cache_dir=folder)
    eids = [f'{i:08d}-0000-4000-8000-000000000000' for i in range(args.tasks)]
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host='127.0.0.1', dashboard_address='127.0.0.1:0',
                           silence_logs=logging.CRITICAL)  # (heartbeats cut at closing)
    client = Client(cluster)
    bare, ours = [], []
    try:
        map_sessions(trivial, eids[:10], one, client=client, progress=False)  # warm up
        for _ in range(3):
            start = time.perf_counter()
            shared = client.scatter(one, broadcast=True, hash=False)
            results = client.gather(client.map(trivial, [shared] * len(eids), eids,
                                               pure=False))
            bare.append(time.perf_counter() - start)
            assert results == eids
            start = time.perf_counter()
            results = map_sessions(trivial, eids, one, client=client, progress=False)
            ours.append(time.perf_counter() - start)
            assert results == eids
    finally:
        client.close()
        cluster.close()
    b, o = statistics.median(bare), statistics.median(ours)
    return {'tasks': args.tasks, 'bare_s': b, 'map_sessions_s': o,
            'per_task_ms': (o - b) / args.tasks * 1000, 'load': os.getloadavg()[0]}


# ---- 3. pickling ------------------------------------------------------------------------------

_UNPICKLE = """
import pickle, sys, time, json
import one.api, one._api.pickling, pandas, numpy, pyarrow  # the imports of a worker
data = open(sys.argv[1], 'rb').read()
start = time.perf_counter(); one = pickle.loads(data); first = time.perf_counter() - start
start = time.perf_counter(); again = pickle.loads(data); second = time.perf_counter() - start
print(json.dumps({'first': first, 'again': second, 'same': again is one,
                  'datasets': len(one._tables['datasets'])}))
"""


def pickling(args, tmp: Path) -> dict:
    import uuid

    import pandas as pd
    from bench_one import cache_folder

    from one.alf.cache import merge_tables
    from one.api import One
    folder = cache_folder(args.cache_sessions)
    work = tmp / 'pickle-cache'
    work.mkdir()
    for name in ('sessions.pqt', 'datasets.pqt'):  # a copy: the edits are never saved there
        (work / name).write_bytes((folder / name).read_bytes())
    one = One(cache_dir=work)
    n_datasets = len(one._tables['datasets'])
    out = {'datasets': n_datasets, 'cases': {}}

    def case(name):
        start = time.perf_counter()
        data = pickle.dumps(one)
        took = time.perf_counter() - start
        path = tmp / f'{name}.pkl'
        path.write_bytes(data)
        runs = []
        for _ in range(3):
            proc = subprocess.run([sys.executable, '-c', _UNPICKLE, str(path)],
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        first = statistics.median(r['first'] for r in runs)
        again = statistics.median(r['again'] for r in runs)
        assert all(r['same'] and r['datasets'] == len(one._tables['datasets']) for r in runs)
        out['cases'][name] = {'bytes': len(data), 'pickle_s': took, 'unpickle_s': first,
                              'unpickle_again_s': again, 'load': os.getloadavg()[0]}
        print(f'  {name:<24} {len(data):>9,} bytes  pickle {took:6.3f} s  unpickle '
              f'{first:6.3f} s (again {again * 1e6:.0f} us)', flush=True)

    print(f'pickling a One on {n_datasets:,} datasets', flush=True)
    case('as loaded')
    table = one._cache['datasets']
    row = table.index[10]
    table.loc[row, 'qc'] = 'PASS' if table.loc[row, 'qc'] == 'CRITICAL' else 'CRITICAL'
    case('one row edited (_cache)')
    eid = table.index[0][0]
    extra = table.iloc[[0] * 100].copy()
    extra.index = pd.MultiIndex.from_tuples([(eid, uuid.uuid4()) for _ in range(100)],
                                            names=['eid', 'id'])
    merge_tables(one._cache, datasets=extra)
    case('+100 merged records')
    out['tables_pickled_bytes'] = len(pickle.dumps(
        {k: v for k, v in one._tables.items() if not k.startswith('_')}))
    print(f'  (the tables themselves pickle to {out["tables_pickled_bytes"]:,} bytes)')
    return out


# ---- main -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--n', type=int, default=200, help='sessions of the speed-up run')
    parser.add_argument('--delay', type=float, default=0.02, help='seconds per request')
    parser.add_argument('--cpu-ms', type=float, default=100.0,
                        help='computation per session, in ms of CPU')
    parser.add_argument('--tasks', type=int, default=1000, help='tasks of the overhead run')
    parser.add_argument('--cache-sessions', type=int, default=10_000,
                        help='sessions of the cache of the pickling run (~100 datasets each)')
    parser.add_argument('--skip', default='', help='comma list of speedup,overhead,pickle')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--serve', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(Path(args.serve), args.delay)
    skip = set(filter(None, args.skip.split(',')))
    results = {'load_average_start': os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix='bench-parallel-') as tmp:
        tmp = Path(tmp)
        # the parameters of this run only (the workers inherit them)
        os.environ.update(HOME=str(tmp), ONE_PARAMS_DIR=str(tmp / 'params'))
        if 'speedup' not in skip:
            from bench_remote import data_folder
            server = Server(data_folder(max(args.n, 10), args.seed), args.delay)
            os.environ['ONE_HTTP_DATA_SERVER'] = server.files
            try:
                results['speed_up'] = speed_up(args, server, tmp)
            finally:
                server.close()
            for name in ('dask', 'pool'):
                run = results['speed_up']['runs'][name]
                print(f'{name}: {run["speed_up"]:.2f}x faster than the serial loop; results '
                      f'equal: {results["speed_up"]["equal"][name]}; every file downloaded '
                      f'once: {run["max_per_file"] == 1 and run["files"] > 0}; '
                      f'{run["errors"]} errors')
            print(f'(LocalCluster start-up: {results["speed_up"]["cluster_start_s"]:.2f} s, '
                  'not included)')
        if 'overhead' not in skip:
            over = results['overhead'] = overhead(args, tmp)
            print(f'per-task overhead of map_sessions over client.map: '
                  f'{over["per_task_ms"]:.2f} ms ({over["tasks"]} tasks: bare '
                  f'{over["bare_s"]:.2f} s, map_sessions {over["map_sessions_s"]:.2f} s; load '
                  f'{over["load"]:.1f})', flush=True)
        if 'pickle' not in skip:
            results['pickle'] = pickling(args, tmp)
    results['load_average_end'] = os.getloadavg()
    print(f'load average {results["load_average_start"][0]:.1f} at the start, '
          f'{results["load_average_end"][0]:.1f} at the end')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
