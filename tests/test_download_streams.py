"""Tests of the number of concurrent downloads (one/_download/streams.py and its use by
`download_files`), against real HTTP servers on 127.0.0.1 that count requests in flight."""
import http.server
import logging
import socketserver
import threading

import pytest

from one._download import DownloadTask, download_files
from one._download.streams import (
    LARGE_FILE,
    MAX_STREAMS,
    TINY_FILE,
    choose_streams,
    max_per_host,
)


class CountingServer:
    """Serves `size` bytes at any path; records the most requests that were in progress at once.

    With `hold` (n), each request waits (at most `HOLD_TIMEOUT` s) until n requests are in
    progress together, then all go on: a client running n streams shows n in flight whatever
    the load of the machine, and one running fewer only gets slow.
    """

    HOLD_TIMEOUT = 5.0

    def __init__(self, size: int = 100):
        self.size = size
        self.in_flight = self.peak = self.count = 0
        self._lock = threading.Lock()
        self._hold = 0
        self._released = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                with owner._lock:
                    owner.in_flight += 1
                    owner.count += 1
                    owner.peak = max(owner.peak, owner.in_flight)
                    if owner.in_flight >= owner._hold:
                        owner._released.set()
                owner._released.wait(owner.HOLD_TIMEOUT)
                with owner._lock:
                    owner.in_flight -= 1
                self.send_response(200)
                self.send_header('Content-Length', str(owner.size))
                self.end_headers()
                self.wfile.write(b'x' * owner.size)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._server = Server(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self._server.server_address[1]}'
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def hold(self, n: int) -> None:
        """Hold the next requests until `n` are in progress together; reset the peak."""
        with self._lock:
            self._hold, self.peak = n, 0
            self._released.clear()

    def close(self):
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def servers():
    made = []

    def make(**kwargs):
        made.append(CountingServer(**kwargs))
        return made[-1]
    yield make
    for server in made:
        server.close()


@pytest.fixture(autouse=True)
def _no_stream_settings(monkeypatch):
    monkeypatch.delenv('ONE_HTTP_DL_THREADS', raising=False)
    monkeypatch.delenv('ONE_HTTP_DL_MAX_PER_HOST', raising=False)


def _tasks(server, folder, n, size=100):
    return [DownloadTask(f'{server.url}/f{i}.bin', folder / f'f{i}.bin', size=size)
            for i in range(n)]


def test_choose_streams(monkeypatch):
    assert choose_streams([4096] * 2400) == MAX_STREAMS == 32
    assert choose_streams([4096] * 3) == 3
    assert choose_streams([TINY_FILE] * 100) == 16
    assert choose_streams([LARGE_FILE] * 10) == 4
    assert choose_streams([LARGE_FILE] * 2) == 2
    assert choose_streams([LARGE_FILE] * 10 + [10] * 5) == 9
    assert choose_streams([LARGE_FILE] * 10 + [TINY_FILE] * 20 + [10] * 40) == 32
    assert choose_streams([None] * 20) == 20
    assert choose_streams([]) == 1
    monkeypatch.setenv('ONE_HTTP_DL_THREADS', '3')
    assert choose_streams([4096] * 2400) == 3
    monkeypatch.setenv('ONE_HTTP_DL_THREADS', 'many')
    with pytest.raises(ValueError, match='ONE_HTTP_DL_THREADS'):
        choose_streams([1])
    assert max_per_host() == 32
    monkeypatch.setenv('ONE_HTTP_DL_MAX_PER_HOST', '0')
    with pytest.raises(ValueError, match='ONE_HTTP_DL_MAX_PER_HOST'):
        max_per_host()


def test_many_small_files_get_many_streams(servers, tmp_path):
    server = servers()
    server.hold(5)  # more than ONE's 4 threads
    paths = download_files(_tasks(server, tmp_path, 40))
    assert all(p.stat().st_size == 100 for p in paths) and server.count == 40
    assert 5 <= server.peak <= MAX_STREAMS


def test_threads_setting_and_per_host_bound(servers, tmp_path, monkeypatch):
    server = servers()
    monkeypatch.setenv('ONE_HTTP_DL_THREADS', '2')
    server.hold(2)
    download_files(_tasks(server, tmp_path / 'a', 8))
    assert server.peak == 2
    monkeypatch.delenv('ONE_HTTP_DL_THREADS')
    server.hold(3)
    download_files(_tasks(server, tmp_path / 'b', 8), n_threads=3)
    assert server.peak == 3
    # The bound per server applies to any number of threads; two servers get one each
    monkeypatch.setenv('ONE_HTTP_DL_MAX_PER_HOST', '3')
    other = servers()
    server.hold(3)
    other.hold(3)
    tasks = _tasks(server, tmp_path / 'c', 9) + _tasks(other, tmp_path / 'd', 9)
    paths = download_files(tasks, n_threads=10)
    assert len(set(paths)) == 18 and all(p.exists() for p in paths)
    assert server.peak == 3 and other.peak == 3


def test_s3_streams_keep_their_connections(s3env, tmp_path, caplog):
    """200 small objects from moto's S3 server with 32 streams: the S3 clients keep a connection
    for each stream (botocore's default pool of 10 would discard the others after each file,
    with a warning, and open new ones)."""
    import boto3

    from one._download import s3_config
    from one.remote import aws

    client = boto3.client('s3', config=s3_config())
    client.create_bucket(Bucket='bucket')
    for i in range(200):
        client.put_object(Bucket='bucket', Key=f'data/{i}.bin', Body=b'x' * 100)
    resource = boto3.resource('s3', config=aws._config(False))
    caplog.set_level(logging.WARNING, logger='urllib3')
    for s3, folder in ((None, 'engine'), (resource, 'aws')):  # the engine's client, ours
        tasks = [DownloadTask(f's3://bucket/data/{i}.bin', tmp_path / folder / f'{i}.bin',
                              size=100, s3=s3) for i in range(200)]
        assert choose_streams([t.size for t in tasks]) == MAX_STREAMS
        paths = download_files(tasks)
        assert all(p.stat().st_size == 100 for p in paths)
    assert 'Connection pool is full' not in caplog.text
    assert client.meta.config.max_pool_connections == max_per_host() == MAX_STREAMS
