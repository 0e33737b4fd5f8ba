"""Time opening a data release over loopback: 10,000 sessions / about a million datasets.

The release is the generated cache of ``bench_one.cache_folder`` (``make_cache.py``: realistic
tables, one session with real trials files) described by `one.release.describe_release`, in
its own folder under ``benchmarks/_data/release-<sessions>-s<seed>/`` (hard links), served by
``python -m http.server`` on 127.0.0.1 in a separate process.  Each measurement runs in a fresh
Python process (``--worker``), timed after ``import one.api``:

* ``first``: ``ONE(base_url=URL, cache_dir=<empty folder>)``: finding out the URL serves a
  release (one GET of ``cache_info.json``), downloading both tables (verified against their md5)
  and loading them.  Target <= 2 s.
* ``revalidate``: ``ONE(base_url=URL, cache_dir=<that folder>, cache_expiry=0)`` afterwards: a
  conditional GET of ``cache_info.json`` (answered 304) and loading the local tables.
  Target <= 0.6 s.
* ``reopen``: the same within the expiry period (no request at all).
* ``load_object``: ``load_object(eid, 'trials')`` of the session with real files, the first
  time (15 files downloaded); the server's log must show exactly those 15 files.

Usage::

    python benchmarks/bench_release.py [--sessions 10000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / '_data'
TARGETS = {'first': 2.0, 'revalidate': 0.6}


def release_folder(n_sessions: int, seed: int = 0) -> Path:
    """The release made of the generated cache (hard links), described once."""
    sys.path.insert(0, str(HERE))
    from bench_one import cache_folder

    source = cache_folder(n_sessions, seed)
    folder = DATA / f'release-{n_sessions}-s{seed}'
    info = json.loads((source / 'bench_info.json').read_text())
    marker = folder / 'bench_info.json'
    if not marker.exists() or json.loads(marker.read_text()) != info:
        if folder.exists():
            shutil.rmtree(folder)
        for path in source.rglob('*'):
            target = folder / path.relative_to(source)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target)
        from one.release import describe_release
        describe_release(folder, tag='bench', origin='bench')
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def worker(url: str, cache_dir: str, what: str) -> None:
    """Runs in a fresh process: time one opening (and loading), print JSON."""
    t0 = time.perf_counter()
    import one.api
    imports = time.perf_counter() - t0
    expiry = 0 if what == 'revalidate' else None
    kwargs = {'cache_expiry': expiry} if expiry is not None else {}
    cpu0, t0 = time.process_time(), time.perf_counter()
    one_ = one.api.ONE(base_url=url, cache_dir=cache_dir, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = {'wall': wall, 'cpu': cpu, 'imports': imports, 'class': type(one_).__name__,
           'n_datasets': len(one_._cache['datasets'])}
    if what == 'load':
        eid = os.environ['BENCH_EID']
        t0 = time.perf_counter()
        trials = one_.load_object(eid, 'trials')
        out['load'] = time.perf_counter() - t0
        out['attributes'] = len(trials)
    print(json.dumps(out))


def _run_worker(url: str, cache_dir: Path, what: str, env: dict | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, '--worker', url, str(cache_dir), what],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if result.returncode:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _loadavg() -> str:
    try:
        return Path('/proc/loadavg').read_text().split(' ', 3)[:3].__str__()
    except OSError:
        return 'n/a'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sessions', type=int, default=10_000)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--worker', nargs=3, metavar=('URL', 'CACHE_DIR', 'WHAT'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0

    folder = release_folder(args.sessions)
    info = json.loads((folder / 'bench_info.json').read_text())
    tables = {p.name: p.stat().st_size for p in folder.glob('*.pqt')}
    port = _free_port()
    log_path = Path(tempfile.mkdtemp(prefix='bench_release_')) / 'server.log'
    log = open(log_path, 'w')  # noqa: SIM115 - open while the server runs
    server = subprocess.Popen(
        [sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1',
         '--directory', str(folder)], stdout=log, stderr=log)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(100):
            try:
                socket.create_connection(('127.0.0.1', port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        print(f'release of {info["n_sessions"]:,} sessions / {info["n_datasets"]:,} datasets; '
              f'tables {", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in tables.items())}')
        print(f'load average before: {_loadavg()}')
        rows = {'first': [], 'revalidate': [], 'reopen': []}
        caches = []
        for _ in range(args.repeat):
            cache_dir = Path(tempfile.mkdtemp(prefix='bench_release_cache_'))
            caches.append(cache_dir)
            rows['first'].append(_run_worker(url, cache_dir, 'first'))
            rows['revalidate'].append(_run_worker(url, cache_dir, 'revalidate'))
            rows['reopen'].append(_run_worker(url, cache_dir, 'reopen'))
        imports = statistics.median(r['imports'] for v in rows.values() for r in v)
        print(f'(each in a fresh process, timed after "import one.api", which took '
              f'{imports:.3f} s)')
        print(f'{"operation":<12}{"median":>9}{"min":>9}{"cpu":>9}   target')
        for name, results in rows.items():
            walls = [r['wall'] for r in results]
            cpus = [r['cpu'] for r in results]
            target = TARGETS.get(name)
            verdict = '' if target is None else \
                f'<= {target:.1f} s {"ok" if statistics.median(walls) <= target else "MISSED"}'
            print(f'{name:<12}{statistics.median(walls):>8.3f}s{min(walls):>8.3f}s'
                  f'{statistics.median(cpus):>8.3f}s   {verdict}')
        assert all(r['class'] == 'OneRelease' for v in rows.values() for r in v)
        # loading an object fetches only its files
        real = info['real_files']
        log.flush()
        before = log_path.read_text().count('"GET ')
        result = _run_worker(url, caches[0], 'load', {'BENCH_EID': real['eid']})
        time.sleep(0.2)
        lines = log_path.read_text().splitlines()
        fetched = [re.search(r'"GET (\S+)', line).group(1) for line in lines
                   if '"GET ' in line][before:]
        data_files = [f for f in fetched if not f.endswith('/cache_info.json')]
        print(f'load_object(trials) first time: {result["load"]:.3f} s, {len(data_files)} files '
              f'fetched ({result["attributes"]} attributes); all trials files of the session: '
              f'{all("_ibl_trials." in f for f in data_files)}')
        print(f'load average after: {_loadavg()}')
        for cache_dir in caches:
            shutil.rmtree(cache_dir, ignore_errors=True)
    finally:
        server.terminate()
        server.wait()
        log.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
