"""Remote workloads over a slow link: the Alyx replay server behind a delaying, counting proxy.

The Alyx replay server of the tests (``tests/alyx_server.py``) serves a generated database
(``tests/alyx_synthetic.py``: sessions with trials, wheel and spike sorting files, in Alyx's
wire format) from a child process, behind `latency_proxy.LatencyProxy`, which adds `--delay`
(default 100 ms) to every REST and data request.  Each workload runs in a fresh process
(``remote_workloads.py``) with a fresh data folder, `--repeat` times; the table gives the
median wall time (min-max), the REST and data requests, the sequential round trips (requests
on the critical path), the most data requests in flight at once, and the round-trip bound: for
the sequential workloads the delays on the critical path (sequential round trips x delay), for
``prefetch`` ``(sequential REST round trips + ceil(data requests / streams)) x delay``.

Workloads: ``script4`` (the 4-session script: search, then per session list_datasets, load
trials and wheel, eid2pid, spikes of each probe), ``loop`` (``load_object(eid, 'trials')`` for
N sessions) and ``prefetch`` (``prefetch(eids, 'trials')`` then the same loads; one-next only).

With ``--peer``, ONE-api 3.6.1 (installed as a black box in its own venv, see
``one_api_peer.py``) runs the same workloads on the same server, and the digests of what both
loaded are compared (``same``: byte-identical arrays; ``prefetch`` is compared with the
``loop`` answers of the same N).

Usage::

    python benchmarks/bench_remote.py                   # script4, loop and prefetch, N=200
    python benchmarks/bench_remote.py --n 50 --repeat 3 --workloads script4,prefetch
    python benchmarks/bench_remote.py --peer            # also ONE-api 3.6.1
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / '_data'
WORKLOADS = HERE / 'remote_workloads.py'
#: File of `load_object(eid, 'trials')` not registered, so that trials are 12 files per session
SKIP = ('alf/_ibl_trials.intervals_bpod.npy',)


def data_folder(n_sessions: int, seed: int) -> Path:
    """The generated database of `n_sessions` sessions (made once, kept in benchmarks/_data)."""
    sys.path.insert(0, str(REPO / 'tests'))
    from alyx_synthetic import SyntheticAlyx
    folder = DATA / f'remote-{n_sessions}-s{seed}'
    if SyntheticAlyx.load(folder / 'db.json') is None:
        print(f'generating {n_sessions} sessions in {folder} ...', file=sys.stderr, flush=True)
        start = time.perf_counter()
        db = SyntheticAlyx.generate(folder / 'files', n_sessions, seed=seed, skip=SKIP)
        db.save(folder / 'db.json')
        print(f'  {len(db.datasets)} datasets in {time.perf_counter() - start:.1f} s',
              file=sys.stderr, flush=True)
    return folder


def serve(folder: Path, delay: float, connect_delay: float) -> int:
    """Serve the database behind the proxy until stdin closes (the --serve child process)."""
    sys.path.insert(0, str(REPO / 'tests'))
    sys.path.insert(0, str(HERE))
    from alyx_server import AlyxTestServer
    from alyx_synthetic import SyntheticAlyx
    from latency_proxy import LatencyProxy
    db = SyntheticAlyx.load(folder / 'db.json')
    with AlyxTestServer(database=db) as server, \
            LatencyProxy(server.url, delay=delay, connect_delay=connect_delay) as proxy:
        print(json.dumps({'server': server.url, 'proxy': proxy.url, 'eids': db.eids}),
              flush=True)
        sys.stdin.read()
    return 0


def _our_python() -> str:
    venv = REPO / '.venv' / 'bin' / 'python'
    return str(venv) if venv.exists() else sys.executable


def run_worker(python: str, workload: str, url: str, eids_file: str | None, env: dict,
               cwd: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix='bench-remote-') as tmp:
        run_env = dict(env, HOME=tmp, ONE_PARAMS_DIR=os.path.join(tmp, 'params'),
                       ONE_HTTP_DATA_SERVER=url)
        cmd = [python, str(WORKLOADS), workload, '--url', url,
               '--cache-dir', os.path.join(tmp, 'data')]
        if eids_file:
            cmd += ['--eids', eids_file]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=cwd)
    if proc.returncode:
        return {'error': (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['failed'],
                'stderr': proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict], delay: float, workload: str = 'prefetch') -> dict:
    """Median and range of the wall times, the request counts of the last run, and the
    round-trip bound: the delays on the critical path for the sequential workloads (script4,
    loop), (REST round trips + data requests / streams) x delay for prefetch."""
    good = [r for r in runs if 'error' not in r]
    if not good:
        return {'error': runs[0]['error'][0] if runs else 'no run'}
    walls = [r['wall'] for r in good]
    stats = good[-1]['stats']
    streams = max(stats.get('data_streams') or 1, 1)
    if workload == 'prefetch':
        bound = (stats['sequential_rest'] + math.ceil(stats['data'] / streams)) * delay
    else:
        bound = stats['sequential'] * delay
    return {'median': statistics.median(walls), 'min': min(walls), 'max': max(walls),
            'rest': stats['rest'], 'data': stats['data'], 'sequential': stats['sequential'],
            'streams': stats.get('data_streams'), 'bound': bound, 'digest': good[-1]['digest'],
            'n_arrays': good[-1]['n_arrays'], 'version': good[-1]['one_version'],
            'load': good[-1]['load_average'], 'rest_paths': stats.get('rest_paths', [])}


def format_table(rows: list[dict]) -> str:
    header = ('workload', 'implementation', 'wall median s', 'min-max s', 'REST', 'data',
              'sequential', 'streams', 'bound s', 'answers')
    table = [header]
    for r in rows:
        s = r['summary']
        if 'error' in s:
            table.append((r['workload'], r['impl'], 'error', str(s['error'])[:60], '', '', '',
                          '', '', ''))
            continue
        table.append((r['workload'], r['impl'], f"{s['median']:.2f}",
                      f"{s['min']:.2f}-{s['max']:.2f}", str(s['rest']), str(s['data']),
                      str(s['sequential']), str(s['streams']), f"{s['bound']:.2f}",
                      r.get('answers', '')))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ['  '.join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in table]
    lines.insert(1, '-' * len(lines[0]))
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workloads', default='script4,loop,prefetch')
    parser.add_argument('--n', default='200', help='sessions of loop/prefetch (comma list)')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--delay', type=float, default=0.1, help='seconds per request')
    parser.add_argument('--connect-delay', type=float, default=0.0,
                        help='seconds per new connection')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--peer', action='store_true', help='also run ONE-api 3.6.1')
    parser.add_argument('--peer-repeat', type=int, default=1)
    parser.add_argument('--show-rest', action='store_true',
                        help='print the REST requests of each workload')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--serve', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(Path(args.serve), args.delay, args.connect_delay)

    workloads = args.workloads.split(',')
    sizes = [int(x) for x in args.n.split(',')]
    folder = data_folder(max(sizes + [10]), args.seed)
    child = subprocess.Popen([_our_python(), __file__, '--serve', str(folder), '--delay',
                              str(args.delay), '--connect-delay', str(args.connect_delay)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(child.stdout.readline())
        url = info['proxy']
        implementations = [('one-next', _our_python(), None, dict(os.environ))]
        if args.peer:
            import one_api_peer
            peer = one_api_peer.ensure_peer()
            if peer is None:
                print('ONE-api could not be installed: peer skipped', file=sys.stderr)
            else:
                implementations.append(('ONE-api', str(peer), str(one_api_peer.PEER_VENV),
                                        one_api_peer._clean_env()))
        rows = []
        with tempfile.TemporaryDirectory(prefix='bench-remote-eids-') as tmp:
            print(f'delay {args.delay * 1000:.0f} ms per request, {args.repeat} runs per '
                  f'workload (peer {args.peer_repeat}); load average '
                  f'{os.getloadavg()[0]:.1f}', flush=True)
            for workload in workloads:
                for n in ([4] if workload == 'script4' else sizes):
                    eids_file = None
                    if workload != 'script4':
                        eids_file = os.path.join(tmp, f'eids-{n}.json')
                        Path(eids_file).write_text(json.dumps(info['eids'][:n]))
                    label = workload if workload == 'script4' else f'{workload} N={n}'
                    digests = {}
                    if workload == 'prefetch':  # the same loads as `loop`: the same answers
                        digests = {f"{r['impl']} (loop)": r['summary']['digest'] for r in rows
                                   if r['workload'] == f'loop N={n}' and 'digest' in r['summary']}
                    for impl, python, cwd, env in implementations:
                        if impl == 'ONE-api' and workload == 'prefetch':
                            continue
                        repeat = args.repeat if impl == 'one-next' else args.peer_repeat
                        runs = [run_worker(python, workload, url, eids_file, env, cwd)
                                for _ in range(repeat)]
                        summary = summarise(runs, args.delay, workload)
                        row = {'workload': label, 'impl': impl, 'summary': summary}
                        if 'digest' in summary:
                            digests[impl] = summary['digest']
                        rows.append(row)
                        print(format_table([row]).splitlines()[-1], flush=True)
                        if args.show_rest and 'rest_paths' in summary:
                            print('    ' + '\n    '.join(summary['rest_paths'][:40]))
                    mine = [r for r in rows if r['workload'] == label]
                    if len(set(digests.values())) > 1:
                        for row in mine:
                            row['answers'] = 'DIFFER'
                    elif len(digests) > 1:
                        for row in mine:
                            row['answers'] = 'same'
        print()
        print(format_table(rows))
        print(f'load average at the end: {os.getloadavg()[0]:.1f}')
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    return 0


if __name__ == '__main__':
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
