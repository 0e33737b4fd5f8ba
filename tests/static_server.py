"""A static web server on 127.0.0.1 for tests: Python's `http.server` serving a folder.

Every request is logged in `requests` as ``(method, path, status, headers)``; `paths()` gives
the paths of the successful GETs.  Conditional GETs (``If-Modified-Since``) get 304 as from
any static server; there are no ETags and no byte ranges.

Examples
--------
>>> with StaticServer(folder) as server:     # doctest: +SKIP
...     url = server.url                      # e.g. 'http://127.0.0.1:40123'
...     server.paths()                        # ['/cache_info.json', ...]
"""
from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class _Handler(SimpleHTTPRequestHandler):
    server_log: list

    def log_request(self, code='-', size='-'):
        self.server_log.append((self.command, unquote(self.path), int(code),
                                dict(self.headers.items())))

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class StaticServer:
    """Serve `folder` over HTTP on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.requests: list = []
        handler = type('Handler', (_Handler,), {'server_log': self.requests})
        self._server = ThreadingHTTPServer(
            ('127.0.0.1', 0), functools.partial(handler, directory=str(self.folder)))
        self._server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self._server.server_port}'
        self._thread = None

    def __enter__(self) -> StaticServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving (later requests are refused)."""
        if self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._thread = None

    def paths(self, status: int | None = 200) -> list:
        """The paths of the GET requests answered with `status` (any status when None)."""
        return [path for method, path, code, _ in self.requests
                if method == 'GET' and (status is None or code == status)]

    def clear(self) -> None:
        self.requests.clear()
