"""A forwarding HTTP proxy on 127.0.0.1 that adds a fixed delay to every request and counts them.

Clients talk to the proxy as if it were the server (``base_url`` and data server URLs point at
it); it forwards each request to the upstream server over kept-alive connections, and replaces
the upstream URL by its own in text answers (JSON records, pagination links, ``Location``) so
that every later request (pages, data files) goes through it too.  Every request waits `delay`
seconds before it is forwarded (a round trip over a long distance); a new client connection can
also wait `connect_delay` (the TCP handshake).

The proxy records each request (kind, method, path, start and end time).  `stats` gives the
number of REST and data requests and the *sequential round trips*: the longest chain of requests
each starting after the previous one ended, i.e. how many delays lie on the critical path.
Requests are 'data' when their path holds ``/Subjects/`` (the ALF data files), else 'rest'.

Another process controls it over HTTP: ``GET /_proxy/stats`` (JSON) and ``POST /_proxy/reset``.

Examples
--------
>>> with LatencyProxy('http://127.0.0.1:8000', delay=0.1) as proxy:   # doctest: +SKIP
...     requests.get(proxy.url + '/sessions')
...     proxy.stats()['rest']
1
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te',
               'trailers', 'transfer-encoding', 'upgrade'}
_TEXT_TYPES = ('json', 'text', 'html', 'xml', 'javascript')


@dataclass
class ProxiedRequest:
    """A request that went through the proxy."""

    kind: str
    method: str
    path: str
    start: float
    end: float
    status: int


def sequential_round_trips(intervals: list[tuple[float, float]]) -> int:
    """The longest chain of intervals each starting after the previous one ended.

    Intervals that overlap were in flight together (one round trip); the greedy choice of the
    earliest-ending interval gives the maximum chain.

    Examples
    --------
    >>> sequential_round_trips([(0, 1), (0.5, 1.5), (1.2, 2), (2.1, 3)])
    3
    """
    chain, last_end = 0, float('-inf')
    for start, end in sorted(intervals, key=lambda x: x[1]):
        if start >= last_end:
            chain += 1
            last_end = end
    return chain


def max_in_flight(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals in progress at the same time.

    Examples
    --------
    >>> max_in_flight([(0, 1), (0.5, 1.5), (1.2, 2), (2.1, 3)])
    2
    """
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def _timeline(log: list[ProxiedRequest]) -> dict:
    """When the REST and data requests began and ended (seconds from the first request), and
    the mean time a request spent in the proxy."""
    if not log:
        return {}
    t0 = min(r.start for r in log)
    out = {'mean_request': sum(r.end - r.start for r in log) / len(log)}
    for kind in ('rest', 'data'):
        times = [(r.start - t0, r.end - t0) for r in log if r.kind == kind]
        if times:
            out[kind] = (min(s for s, _ in times), max(e for _, e in times))
    return out


def _is_data(path: str) -> bool:
    return '/Subjects/' in path


class LatencyProxy:
    """A delaying, counting HTTP proxy in front of one upstream server.

    Parameters
    ----------
    upstream : str
        The server URL, e.g. ``'http://127.0.0.1:8000'``.
    delay : float
        Seconds added to every request (default 0.1).
    connect_delay : float
        Seconds added when a client opens a connection (default 0).
    port : int
        The port to listen on (0: any free port).
    """

    def __init__(self, upstream: str, delay: float = 0.1, connect_delay: float = 0.0,
                 port: int = 0):
        parts = urlsplit(upstream)
        if parts.scheme != 'http':
            raise ValueError(f'Only http:// upstream servers are supported, not {upstream}')
        self.upstream = upstream.rstrip('/')
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or 80
        self.delay = float(delay)
        self.connect_delay = float(connect_delay)
        self._port = port
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._log: list[ProxiedRequest] = []
        self._connections = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ''

    # --- life cycle ------------------------------------------------------------------------
    def start(self) -> str:
        """Start serving in a background thread; return the proxy URL."""
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(('127.0.0.1', self._port), handler)
        self._server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self._server.server_port}'
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name='latency-proxy')
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LatencyProxy:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- counts ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the requests and connections counted so far."""
        with self._lock:
            self._log.clear()
            self._connections = 0

    def requests(self, wait: float = 5.0) -> list[ProxiedRequest]:
        """The requests logged so far, once those in flight have ended (at most `wait` s).

        A request is logged after its answer is sent, so a client that has just read an
        answer would otherwise often ask before its own request is counted.
        """
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=wait)
            return list(self._log)

    def stats(self) -> dict:
        """Counts since the last reset: rest, data, connections, sequential round trips."""
        log = self.requests()
        with self._lock:
            connections = self._connections
        return {
            'rest': sum(r.kind == 'rest' for r in log),
            'data': sum(r.kind == 'data' for r in log),
            'connections': connections,
            'sequential': sequential_round_trips([(r.start, r.end) for r in log]),
            'sequential_rest': sequential_round_trips(
                [(r.start, r.end) for r in log if r.kind == 'rest']),
            'data_streams': max_in_flight([(r.start, r.end) for r in log if r.kind == 'data']),
            'errors': sum(r.status >= 400 for r in log),
            'rest_paths': [f'{r.method} {r.path}' for r in log if r.kind == 'rest'],
            'timeline': _timeline(log),
        }

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _end(self, request: ProxiedRequest | None) -> None:
        with self._idle:
            if request is not None:
                self._log.append(request)
            self._in_flight -= 1
            self._idle.notify_all()

    def _connected(self) -> None:
        with self._lock:
            self._connections += 1


def _make_handler(proxy: LatencyProxy):
    local = threading.local()
    upstream_bytes = proxy.upstream.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'
        # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK would add ~40 ms to every answer
        disable_nagle_algorithm = True

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass

        def setup(self):
            super().setup()
            proxy._connected()
            if proxy.connect_delay:
                time.sleep(proxy.connect_delay)

        def _control(self) -> bool:
            if not self.path.startswith('/_proxy/'):
                return False
            if self.path.startswith('/_proxy/stats'):
                body = json.dumps(proxy.stats()).encode()
            elif self.path.startswith('/_proxy/reset'):
                proxy.reset()
                body = b'{}'
            else:
                body = b'{"detail": "unknown control path"}'
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True

        def _upstream(self) -> http.client.HTTPConnection:
            conn = getattr(local, 'conn', None)
            if conn is None:
                conn = http.client.HTTPConnection(proxy._upstream_host, proxy._upstream_port,
                                                  timeout=120)
                local.conn = conn
            return conn

        def _forward(self, body: bytes | None):
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in _HOP_BY_HOP and k.lower() != 'host'}
            headers['Host'] = f'{proxy._upstream_host}:{proxy._upstream_port}'
            for attempt in (1, 2):
                conn = self._upstream()
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    return conn.getresponse()
                except (ConnectionError, http.client.HTTPException, OSError):
                    conn.close()
                    local.conn = None
                    if attempt == 2:
                        raise
            raise AssertionError('unreachable')

        def _handle(self):
            if self._control():
                return
            proxy._begin()
            request = None
            try:
                request = self._proxy()
            finally:
                proxy._end(request)

        def _proxy(self) -> ProxiedRequest:
            start = time.perf_counter()
            length = int(self.headers.get('Content-Length') or 0)
            body = self.rfile.read(length) if length else None
            if proxy.delay:
                time.sleep(proxy.delay)
            response = self._forward(body)
            content_type = response.getheader('Content-Type', '')
            text = any(t in content_type for t in _TEXT_TYPES)
            self.send_response(response.status)
            for key, value in response.getheaders():
                lower = key.lower()
                if lower in _HOP_BY_HOP or (text and lower == 'content-length'):
                    continue
                if lower == 'location':
                    value = value.replace(proxy.upstream, proxy.url)
                self.send_header(key, value)
            if text or response.getheader('Content-Length') is None:
                data = response.read()
                if text:
                    data = data.replace(upstream_bytes, proxy.url.encode())
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                if self.command != 'HEAD':
                    self.wfile.write(data)
            else:
                self.end_headers()
                while chunk := response.read(1 << 20):
                    if self.command != 'HEAD':
                        self.wfile.write(chunk)
            kind = 'data' if _is_data(self.path) else 'rest'
            return ProxiedRequest(kind, self.command, self.path, start, time.perf_counter(),
                                  response.status)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815

    return Handler


def main(argv=None) -> int:
    """Run a proxy in the foreground: ``latency_proxy.py UPSTREAM [--delay 0.1]``."""
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('upstream')
    parser.add_argument('--delay', type=float, default=0.1)
    parser.add_argument('--connect-delay', type=float, default=0.0)
    parser.add_argument('--port', type=int, default=0)
    args = parser.parse_args(argv)
    proxy = LatencyProxy(args.upstream, args.delay, args.connect_delay, args.port)
    print(proxy.start(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        proxy.stop()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
