"""Servers on 127.0.0.1 for what the Alyx replay server cannot show.

`RawServer` is a raw TCP server for faults no HTTP server produces: a server that accepts a
connection and never answers, and a connection reset in the middle of a request.
`KeepAliveServer` is a JSON server keeping HTTP/1.1 connections alive (werkzeug, behind the
replay server, closes every connection after one answer), counting the connections it accepts.

Each accepted connection follows the next step of `script` (then `default`):

* ``'silent'``: read what the client sends, answer nothing; close after `hang` seconds, so that a
  client without a read timeout gets a connection error rather than blocking the test suite;
* ``'reset'``: read the request, then reset the connection (RST);
* bytes: read the request, send these bytes, close.

``connections`` counts the connections accepted and ``requests`` keeps the first bytes received
on each, e.g. ``b'GET /sessions?limit=10000 HTTP/1.1...'``.
"""
from __future__ import annotations

import http.server
import json
import socket
import struct
import threading
import time


def http_answer(status: int, body: bytes = b'', content_type: str = 'application/json',
                headers: dict | None = None) -> bytes:
    """The bytes of a complete HTTP/1.1 answer that closes the connection."""
    lines = [f'HTTP/1.1 {status} X', f'Content-Type: {content_type}',
             f'Content-Length: {len(body)}', 'Connection: close',
             *(f'{k}: {v}' for k, v in (headers or {}).items())]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode() + body


class RawServer:
    """A scripted TCP server on 127.0.0.1 (see the module's description).

    Parameters
    ----------
    script : list, optional
        What each connection gets, in order of arrival.
    default : str or bytes
        What the connections after the script get.
    hang : float
        Seconds a silent connection is held before it is closed.
    """

    def __init__(self, script: list | None = None, default: str | bytes = 'silent',
                 hang: float = 30.0):
        self.script = list(script or [])
        self.default = default
        self.hang = hang
        self.connections = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(('127.0.0.1', 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.url = f'http://127.0.0.1:{self.port}'
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, daemon=True, name='raw-server')
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
                step = self.script.pop(0) if self.script else self.default
            thread = threading.Thread(target=self._handle, args=(conn, step), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _read_request(self, conn: socket.socket, until: float) -> bytes:
        data = b''
        while b'\r\n\r\n' not in data and time.monotonic() < until and not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def _handle(self, conn: socket.socket, step) -> None:
        conn.settimeout(0.1)
        with conn:
            until = time.monotonic() + self.hang
            request = self._read_request(conn, until)
            with self._lock:
                self.requests.append(request)
            if step == 'reset':
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                return
            if isinstance(step, bytes):
                conn.sendall(step)
                return
            while time.monotonic() < until and not self._stop.is_set():  # silent
                try:
                    if not conn.recv(65536):
                        return  # the client gave up
                except TimeoutError:
                    continue
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: http.server.ThreadingHTTPServer

    def log_message(self, *args):
        pass

    def setup(self):
        with self.server.owner.lock:
            self.server.owner.connections += 1
        super().setup()

    def _answer(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server API
        self.server.owner.requests.append(f'GET {self.path}')
        self._answer({'path': self.path})

    def do_POST(self):  # noqa: N802 - http.server API
        length = int(self.headers.get('Content-Length') or 0)
        self.rfile.read(length)
        self.server.owner.requests.append(f'POST {self.path}')
        if self.path == '/auth-token':
            self._answer({'token': 'b' * 40})
        else:
            self._answer({'id': 'x'}, 201)


class KeepAliveServer:
    """A JSON server keeping connections alive: ``POST /auth-token`` gives a token, any other
    request an echo of its path.  ``connections`` counts the TCP connections accepted,
    ``requests`` the requests ('GET /path')."""

    def __init__(self):
        self.connections = 0
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _KeepAliveHandler)
        self._server.daemon_threads = True
        self._server.owner = self
        self.url = f'http://127.0.0.1:{self._server.server_address[1]}'
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> KeepAliveServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
