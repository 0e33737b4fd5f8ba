"""Many processes querying one account on a throttling Alyx: no exception reaches the caller.

The Alyx replay server of the tests (``tests/alyx_server.py``) runs in this process on
127.0.0.1 and throttles like Django REST framework: beyond ``--rate`` requests in the last
second (all clients together, as one account), it answers 429 with ``Retry-After:
--retry-after``.  ``--processes`` worker processes each log in as the same user and query in a
loop for ``--duration`` seconds (a session list, a session record, a dataset list), with the
REST cache off so that every query reaches the server.  Each worker counts its queries and any
exception that reached it.

Printed: queries done, exceptions reaching the caller (the target is 0), the 429 answers the
clients absorbed (the server's count), requests served, and the query times (median, 99th
percentile, slowest: a throttled query waits for a free slot, and processes querying without
pause take most of them: the slowest waits many rounds).

Run with ``python benchmarks/bench_throttle.py [--processes 8] [--duration 60] [--rate 20]
[--retry-after 1]``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / 'tests'
EID = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'


def _worker(url: str, params_dir: str, duration: float, index: int, out) -> None:
    """Query in a loop for `duration` seconds; put the counts in `out`."""
    os.environ['ONE_PARAMS_DIR'] = params_dir
    sys.path.insert(0, str(TESTS))
    from alyx_server import PASSWORD, USERNAME

    import one.webclient as wc

    stats = {'queries': 0, 'exceptions': [], 'times': []}
    try:
        with tempfile.TemporaryDirectory() as cache:
            alyx = wc.AlyxClient(base_url=url, username=USERNAME, password=PASSWORD,
                                 cache_dir=cache, silent=True, cache_rest=None)
            queries = [lambda: alyx.rest('sessions', 'list', subject='ZFM-01935'),
                       lambda: alyx.rest('sessions', 'read', id=EID),
                       lambda: alyx.rest('datasets', 'list', session=EID)]
            end = time.monotonic() + duration
            i = index
            while time.monotonic() < end:
                start = time.monotonic()
                try:
                    queries[i % len(queries)]()
                    stats['queries'] += 1
                except Exception as ex:  # noqa: BLE001 - what the benchmark counts
                    stats['exceptions'].append(f'{type(ex).__name__}: {ex}'[:300])
                stats['times'].append(time.monotonic() - start)
                i += 1
    except Exception as ex:  # noqa: BLE001 - e.g. the login failed
        stats['exceptions'].append(f'{type(ex).__name__}: {ex}\n{traceback.format_exc()}')
    out.put(stats)


def run(processes: int = 8, duration: float = 60.0, rate: float = 20.0,
        retry_after: float = 1.0) -> dict:
    """Run the benchmark; return its figures."""
    for folder in (str(TESTS), str(Path(__file__).resolve().parent)):  # for the workers too
        if folder not in sys.path:
            sys.path.insert(0, folder)
    from alyx_server import AlyxTestServer

    with tempfile.TemporaryDirectory() as params_dir, AlyxTestServer() as server:
        server.throttle(rate, retry_after)
        context = multiprocessing.get_context('spawn')
        out = context.Queue()
        workers = [context.Process(target=_worker,
                                   args=(server.url, params_dir, duration, i, out))
                   for i in range(processes)]
        start = time.monotonic()
        for w in workers:
            w.start()
        results = [out.get(timeout=duration + 600) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        elapsed = time.monotonic() - start
        served = len(server.requests)
        throttled = server.throttled
    exceptions = [e for r in results for e in r['exceptions']]
    times = sorted(t for r in results for t in r['times']) or [0.0]
    return {'processes': processes, 'duration_s': duration, 'rate_per_s': rate,
            'retry_after_s': retry_after, 'wall_s': round(elapsed, 1),
            'queries': sum(r['queries'] for r in results),
            'exceptions': len(exceptions), 'first_exceptions': exceptions[:3],
            'throttled_429_absorbed': throttled, 'requests_served': served,
            'median_query_s': round(statistics.median(times), 3),
            'p99_query_s': round(times[int(0.99 * (len(times) - 1))], 2),
            'slowest_query_s': round(times[-1], 2),
            'loadavg': Path('/proc/loadavg').read_text().split()[:3]
            if Path('/proc/loadavg').exists() else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--processes', type=int, default=8)
    parser.add_argument('--duration', type=float, default=60.0, help='seconds per process')
    parser.add_argument('--rate', type=float, default=20.0,
                        help='requests per second the server accepts (all clients together)')
    parser.add_argument('--retry-after', type=float, default=1.0,
                        help='seconds in the Retry-After header of the 429 answers')
    parser.add_argument('--json', action='store_true', help='print the figures as JSON')
    args = parser.parse_args(argv)
    figures = run(args.processes, args.duration, args.rate, args.retry_after)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['processes']} processes x {figures['duration_s']:g} s against a server "
              f"accepting {figures['rate_per_s']:g} requests/s (Retry-After: "
              f"{figures['retry_after_s']:g} s); load average {figures['loadavg']}")
        print(f"  queries done                  {figures['queries']}")
        print(f"  exceptions reaching callers   {figures['exceptions']}")
        print(f"  429 answers absorbed          {figures['throttled_429_absorbed']}")
        print(f"  requests served               {figures['requests_served']}")
        print(f"  query time: median {figures['median_query_s']} s, 99th percentile "
              f"{figures['p99_query_s']} s, slowest {figures['slowest_query_s']} s")
        print(f"  wall time                     {figures['wall_s']} s")
        for text in figures['first_exceptions']:
            print(f'  ! {text}')
    return 0 if figures['exceptions'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
