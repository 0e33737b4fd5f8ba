"""Throughput of the download engine (`one._download`) on loopback, against bare requests.

A file server runs in a separate process (so that it does not share the client's GIL): a
threaded HTTP/1.1 server (`http.server` with ``ThreadingMixIn``, one thread per connection) with
keep-alive, ``TCP_NODELAY``, ``Range`` support, ``sendfile`` for large bodies and a single write
per small answer.  It serves one large file (1 GiB by default) and 2,000 small files (4-16 KiB,
like ALF trials/wheel datasets).  The CPU time of the server process is read from ``/proc`` and
printed per small file, to show that the server is not what limits the figures.

Cases (median of R runs; the cases take turns; the destination is emptied between runs)
--------------------------------------------------------------------------------------
* ``requests, discard``: one streaming GET of the large file, ``iter_content(1 MiB)``, bytes
  thrown away: the ceiling of the HTTP stack.
* ``requests, to file``: the same, written to a file (no hashing).
* ``engine, size only``: `download_files` with the expected size (no md5 known, none computed).
* ``engine, size + md5``: `download_files` with size and md5 (hashed while streaming, checked
  before the rename).
* ``md5 alone``: hashlib's md5 over 256 MiB in memory: the ceiling of any verified download on
  this CPU, whatever the network.
* ``requests, small``: the small files with 4 threads, one `requests.Session` per thread,
  ``get().content`` written with ``open().write()`` (no temporary file, lock or check).
* ``urllib3, small``: the same with one shared `urllib3.PoolManager` (``request().data``): the
  HTTP stack the engine uses for plain HTTP(S).
* ``engine, small``: the small files with `download_files` (4 threads), size and md5 known:
  lock, temporary file, verification and rename for each.

Run with ``python benchmarks/bench_download.py [--big-mb 1024] [--small 2000] [--repeat 5]
[--threads 4] [--dest DIR]``; ``--big-mb 0`` skips the large file.  The destination defaults to
a folder in ``/dev/shm`` (memory) when it exists, so that the figures measure the engine rather
than the disk; pass ``--dest`` to time a real disk.  Generated data go to
``benchmarks/_data/download/``.
"""
from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import shutil
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATA = Path(__file__).parent / '_data' / 'download'


# --------------------------------------------------------------------------------------------
# Server (runs in its own process: ``bench_download.py --serve ROOT``)
# --------------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    root = Path('.')

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):  # noqa: N802 - http.server API
        path = self.root / self.path.split('?', 1)[0].lstrip('/')
        try:
            f = open(path, 'rb')  # noqa: SIM115 - closed below
        except OSError:
            self.connection.sendall(b'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n')
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            first, last, status = 0, size - 1, '200 OK'
            extra = ''
            rng = self.headers.get('Range')
            if rng and rng.startswith('bytes='):
                a, _, b = rng[6:].partition('-')
                first = int(a)
                last = min(int(b), size - 1) if b else size - 1
                status = '206 Partial Content'
                extra = f'Content-Range: bytes {first}-{last}/{size}\r\n'
            length = last - first + 1
            head = (f'HTTP/1.1 {status}\r\nContent-Length: {length}\r\n{extra}'
                    'Content-Type: application/octet-stream\r\n\r\n').encode()
            if length <= 1 << 20:
                f.seek(first)
                self.connection.sendall(head + f.read(length))
            else:
                self.connection.sendall(head)
                self.connection.sendfile(f, first, length)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve(root: str) -> None:
    _Handler.root = Path(root)
    server = _Server(('127.0.0.1', 0), _Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def make_data(big_mb: int, n_small: int) -> tuple[Path, str, list[tuple[str, int, str]]]:
    """Create (once) the large file and the small files; return their names, sizes, md5s."""
    DATA.mkdir(parents=True, exist_ok=True)
    big = DATA / f'big_{big_mb}MiB.bin'
    if not big.exists() or big.stat().st_size != big_mb << 20:
        block = os.urandom(1 << 20)
        tmp = big.with_suffix('.tmp')
        with open(tmp, 'wb') as f:
            for i in range(big_mb):
                f.write(block[i % 997:] + block[:i % 997])
        tmp.replace(big)
    big_md5 = _md5_file(big)
    small_dir = DATA / 'small'
    small_dir.mkdir(exist_ok=True)
    small = []
    rng = __import__('random').Random(0)
    for i in range(n_small):
        name = f'small/lab/Subjects/s{i // 500:02d}/2024-01-01/001/alf/obj{i:05d}.attr.npy'
        path = DATA / name
        size = rng.randint(4096, 16384)
        if not path.exists() or path.stat().st_size != size:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(size))
        small.append((name, size, hashlib.md5(path.read_bytes()).hexdigest()))
    return big, big_md5, small


def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def _process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process `pid` (Linux; None elsewhere)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def timed(cases: dict, repeat: int, reset, server_pid: int | None = None) -> dict:
    """Median wall time, client CPU time and server CPU time of each case; the cases take
    turns, so that a change of machine load affects them all alike."""
    times: dict = {name: ([], [], []) for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            reset()
            s0 = None if server_pid is None else _process_cpu(server_pid)
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            s1 = None if s0 is None else _process_cpu(server_pid)
            times[name][0].append(wall)
            times[name][1].append(cpu)
            if s1 is not None:
                times[name][2].append(s1 - s0)
    reset()
    return {name: (statistics.median(w), statistics.median(c),
                   statistics.median(s) if s else None) for name, (w, c, s) in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--big-mb', type=int, default=1024)
    parser.add_argument('--small', type=int, default=2000)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, default=4)
    parser.add_argument('--dest', default=None)
    parser.add_argument('--serve', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)

    import requests
    import urllib3

    from one._download import DownloadTask, download_files

    big, big_md5, small = make_data(args.big_mb, args.small)
    big_size = big.stat().st_size
    base = args.dest or ('/dev/shm' if os.path.isdir('/dev/shm') else None)
    dest = Path(tempfile.mkdtemp(prefix='one-bench-dl-', dir=base))
    server = subprocess.Popen([sys.executable, __file__, '--serve', str(DATA)],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        url = f'http://127.0.0.1:{port}'

        def reset():
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True, exist_ok=True)

        results = {}
        session = requests.Session()

        def requests_discard():
            with session.get(f'{url}/{big.name}', stream=True) as r:
                for _ in r.iter_content(1 << 20):
                    pass

        def requests_file():
            with session.get(f'{url}/{big.name}', stream=True) as r, \
                    open(dest / big.name, 'wb') as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)

        def engine(md5):
            def run():
                download_files([DownloadTask(f'{url}/{big.name}', dest / big.name,
                                             size=big_size, md5=big_md5 if md5 else None)],
                               progress=False)
            return run

        mb = big_size / 1e6
        big_cases = {'requests, discard': requests_discard, 'requests, to file': requests_file,
                     'engine, size only': engine(False), 'engine, size + md5': engine(True)}
        if not args.big_mb:
            big_cases = {}
        for name, (seconds, _, _) in timed(big_cases, args.repeat, reset).items():
            results[name] = mb / seconds
            print(f'{name:<22} {results[name]:8.0f} MB/s   ({big_size / 2**20:.0f} MiB file)',
                  flush=True)

        block = os.urandom(256 << 20)
        md5_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            hashlib.md5(block).hexdigest()
            md5_times.append(time.perf_counter() - t0)
        results['md5 alone'] = 256 * 1.048576 / statistics.median(md5_times)
        print(f'{"md5 alone":<22} {results["md5 alone"]:8.0f} MB/s   '
              '(hashlib, 256 MiB in memory)', flush=True)
        del block

        local = threading.local()

        def write(target: Path, content: bytes) -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, 'wb') as f:
                f.write(content)

        def fetch(item):
            s = getattr(local, 's', None)
            if s is None:
                s = local.s = requests.Session()
            name = item[0]
            write(dest / name, s.get(f'{url}/{name}').content)

        def requests_small():
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(fetch, small))

        manager = urllib3.PoolManager(maxsize=args.threads)

        def fetch_urllib3(item):
            name = item[0]
            write(dest / name, manager.request('GET', f'{url}/{name}').data)

        def urllib3_small():
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(fetch_urllib3, small))

        def engine_small():
            download_files([DownloadTask(f'{url}/{name}', dest / name, size=size, md5=md5)
                            for name, size, md5 in small], n_threads=args.threads,
                           progress=False)

        n = len(small)
        small_cases = {'requests, small': requests_small, 'urllib3, small': urllib3_small,
                       'engine, small': engine_small}
        print(f'\n{n} files of 4-16 KiB, {args.threads} threads; CPU per file: client '
              '(this process, all threads) and server (its process)', flush=True)
        for name, (seconds, cpu, server_cpu) in timed(small_cases, args.repeat, reset,
                                                      server.pid).items():
            results[name] = n / seconds
            server_text = '' if server_cpu is None else \
                f', server {server_cpu / n * 1e6:4.0f} us'
            print(f'{name:<22} {results[name]:8.0f} files/s (client {cpu / n * 1e6:4.0f} us'
                  f'{server_text})', flush=True)
        if big_cases:
            ratio = results['engine, size only'] / results['requests, to file']
            print(f'\nlarge file: engine (size only) / requests (to file) = {ratio:.2f}; '
                  f'engine (md5) / md5 alone = '
                  f'{results["engine, size + md5"] / results["md5 alone"]:.2f}')
        print(f'small files: engine / requests = '
              f'{results["engine, small"] / results["requests, small"]:.2f}; engine / urllib3 = '
              f'{results["engine, small"] / results["urllib3, small"]:.2f}')
        print(f'destination: {dest.parent}; load average {os.getloadavg()[0]:.1f} on '
              f'{os.cpu_count()} CPUs')
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == '__main__':
    main()
