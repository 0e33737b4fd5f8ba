"""A data file server on 127.0.0.1 for tests and benchmarks of many processes downloading at once.

`FileServer` serves files by URL path (e.g. the ``files`` of a `alyx_synthetic.SyntheticAlyx`:
``/<lab>/Subjects/.../<name>.<uuid>.<ext>``), with byte ranges (``Range: bytes=N-``), and logs
every GET: `count(path)` and `counts()` say how often each file was asked for.  Faults:

* `delay`: seconds before each answer (a slower link);
* `hold(path, offset)`: every answer for `path` sends the file up to byte `offset`, then waits
  until `release()` (at most `hold_limit` seconds): a download caught in the middle, e.g. to
  kill its process.  `held` is set once an answer is waiting there.
"""
from __future__ import annotations

import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    owner: FileServer

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        owner = self.owner
        path = unquote(self.path.split('?', 1)[0])
        file = owner.files.get(path)
        with owner.lock:
            owner.log.append((path, self.headers.get('Range')))
        if file is None:
            self.send_error(404)
            return
        if owner.delay:
            owner.stopping.wait(owner.delay)
        data = Path(file).read_bytes()
        start = 0
        match = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(data)}')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        held = owner.held_at(path)
        try:
            if held is not None and not owner.released.is_set() and start <= held:
                self.wfile.write(data[start:held])
                self.wfile.flush()
                owner.held.set()
                owner.released.wait(owner.hold_limit)
                start = max(start, held)
            self.wfile.write(data[start:])
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client killed in the middle of an answer: expected here


class FileServer:
    """Serve files by URL path on 127.0.0.1 (see the module docstring).

    Parameters
    ----------
    files : dict
        The local file of each URL path (``'/lab/Subjects/...'`` -> path).
    delay : float
        Seconds before each answer.
    """

    def __init__(self, files: dict, delay: float = 0.0, hold_limit: float = 30.0):
        self.files = {str(k): Path(v) for k, v in files.items()}
        self.delay = delay
        self.hold_limit = hold_limit
        self.log: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.released = threading.Event()
        self.stopping = threading.Event()
        self._holds: dict[str, int] = {}
        handler = type('Handler', (_Handler,), {'owner': self})
        self._server = _Server(('127.0.0.1', 0), handler)
        self.url = f'http://127.0.0.1:{self._server.server_port}'
        self._thread = None

    def __enter__(self) -> FileServer:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name='file-server')
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- faults ---------------------------------------------------------------------------
    def hold(self, path: str, offset: int) -> None:
        """Hold every answer for `path` at byte `offset` until `release`."""
        with self.lock:
            self._holds[path] = offset
        self.held.clear()
        self.released.clear()

    def release(self) -> None:
        with self.lock:
            self._holds.clear()
        self.released.set()

    def held_at(self, path: str) -> int | None:
        with self.lock:
            return self._holds.get(path)

    # ---- log ------------------------------------------------------------------------------
    def counts(self) -> Counter:
        """GETs by path."""
        with self.lock:
            return Counter(path for path, _ in self.log)

    def count(self, path: str) -> int:
        return self.counts()[path]

    def clear(self) -> None:
        with self.lock:
            self.log.clear()
