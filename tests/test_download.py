"""Tests of the download engine `one._download` against real HTTP servers on 127.0.0.1.

`FileServer` below is a threaded HTTP/1.1 file server started by the tests.  It supports
``Range`` requests (206, 416), ETags and basic authentication, records every request, and
injects scripted faults for real: error statuses with ``Retry-After``, connections cut in the
middle of a body, corrupted bodies, ignored ``Range`` headers, slow answers and chunked
transfers.  Nothing is mocked.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import json
import logging
import os
import re
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests

from one import _download as dl
from one._download import (
    ChecksumMismatch,
    DownloadConnectionError,
    DownloadError,
    DownloadTask,
    HTTPStatusError,
    SizeMismatch,
    UnsafePath,
    dataset_record_to_url,
    download_files,
    file_record_to_url,
    http_download_file,
    http_download_file_list,
    safe_join,
    url_to_local_path,
)

FIXTURES = Path(__file__).parent / 'fixtures' / 'alyx'
FILES = FIXTURES / 'files'
REPO = Path(__file__).parents[1]
MiB = 1 << 20


# --------------------------------------------------------------------------------------------
# A real file server with fault injection
# --------------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: _Server

    def log_message(self, *args):
        pass

    def setup(self):
        owner = self.server.owner
        with owner._lock:
            owner.connections += 1
        if owner.tls is not None:  # the handshake runs in this connection's thread
            self.request = owner.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def do_GET(self):  # noqa: N802 - http.server API
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        owner.record(self.command, self.path, path, self.headers)
        fault = owner.next_fault(path)
        try:
            self._answer(owner, path, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, headers: dict, body: bytes = b'') -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _answer(self, owner: FileServer, path: str, fault: dict) -> None:
        if fault.get('delay'):
            time.sleep(fault['delay'])
        if 'status' in fault:
            body = b'error'
            self._send(fault['status'], {'Content-Length': str(len(body)),
                                         **fault.get('headers', {})}, body)
            return
        if owner.auth is not None:
            expected = 'Basic ' + base64.b64encode(':'.join(owner.auth).encode()).decode()
            if self.headers.get('Authorization') != expected:
                self._send(401, {'Content-Length': '0', 'WWW-Authenticate': 'Basic'})
                return
        file = owner.root / path.lstrip('/')
        if not file.is_file():
            self._send(404, {'Content-Length': '0'})
            return
        data = file.read_bytes()
        if fault.get('corrupt'):
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
        size = len(data)
        headers = {'ETag': f'"{hashlib.md5(data).hexdigest()}"',
                   'Content-Type': 'application/octet-stream'}
        status, first, last = 200, 0, size - 1
        spec = self.headers.get('Range')
        if spec and not fault.get('ignore_range'):
            a, _, b = spec.removeprefix('bytes=').partition('-')
            first = int(a)
            last = min(int(b), size - 1) if b else size - 1
            if first >= size:
                self._send(416, {'Content-Range': f'bytes */{size}', 'Content-Length': '0'})
                return
            status = 206
            headers['Content-Range'] = f'bytes {first}-{last}/{size}'
        body = data[first:last + 1]
        if fault.get('gzip'):  # a server compressing despite 'Accept-Encoding: identity'
            body = gzip.compress(body)
            headers['Content-Encoding'] = 'gzip'
        if fault.get('chunked'):
            if 'length' in fault:  # a false Content-Length beside the chunks
                headers['Content-Length'] = str(fault['length'])
            self._send(status, {**headers, 'Transfer-Encoding': 'chunked'})
            for start in range(0, len(body), 1000):
                piece = body[start:start + 1000]
                self.wfile.write(f'{len(piece):x}\r\n'.encode() + piece + b'\r\n')
            self.wfile.write(b'0\r\n\r\n')
            return
        self._send(status, {**headers, 'Content-Length': str(len(body))})
        if 'cut' in fault:  # send part of the body, then drop the connection
            self.wfile.write(body[:fault['cut']])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.get('drop_after'):  # the whole answer, then the keep-alive connection dies
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            owner.dropped.set()
            return
        if fault.get('slow'):  # a slow server: the body in 8 pieces over `slow` seconds
            step = max(1, len(body) // 8)
            for start in range(0, len(body), step):
                self.wfile.write(body[start:start + step])
                self.wfile.flush()
                time.sleep(fault['slow'] / 8)
            return
        self.wfile.write(body)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FileServer

    def handle_error(self, request, client_address):
        # clients may hang up, or refuse the certificate
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


class FileServer:
    """A threaded file server on 127.0.0.1 serving `root`, with scripted faults.

    `tls` is an optional server-side `ssl.SSLContext` (HTTPS).  ``connections`` counts the
    connections accepted; ``dropped`` is set once a ``drop_after`` fault closed a connection.
    """

    def __init__(self, root: Path, tls: ssl.SSLContext | None = None):
        self.root = Path(root)
        self.tls = tls
        self.connections = 0
        self.dropped = threading.Event()
        self.auth: tuple[str, str] | None = None
        self.requests: list[dict] = []
        self._faults: dict[str, list[dict]] = defaultdict(list)
        self._always: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._server = _Server(('127.0.0.1', 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        scheme = 'http' if self.tls is None else 'https'
        return f'{scheme}://127.0.0.1:{self.port}/{path.lstrip("/")}'

    def add_faults(self, path: str, *faults: dict) -> None:
        """Faults applied to the next requests of `path`, one per request."""
        with self._lock:
            self._faults['/' + path.lstrip('/')].extend(faults)

    def always(self, path: str, fault: dict) -> None:
        """A fault applied to every request of `path`."""
        self._always['/' + path.lstrip('/')] = fault

    def next_fault(self, path: str) -> dict:
        with self._lock:
            if self._faults[path]:
                return self._faults[path].pop(0)
        return self._always.get(path, {})

    def record(self, method: str, raw: str, path: str, headers) -> None:
        """Keep a request: ``headers`` as a dict, ``auth`` every Authorization value sent."""
        with self._lock:
            self.requests.append({'method': method, 'raw': raw, 'path': path,
                                  'headers': dict(headers),
                                  'auth': headers.get_all('Authorization') or []})

    def gets(self, path: str) -> list[dict]:
        return [r for r in self.requests if r['path'] == '/' + path.lstrip('/')]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / 'server'
    shutil.copytree(FILES, root)
    srv = FileServer(root)
    yield srv
    srv.close()


def _write(server: FileServer, name: str, data: bytes) -> tuple[str, int, str]:
    """Put a file on the server; return its URL, size and md5."""
    path = server.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return server.url(name), len(data), hashlib.md5(data).hexdigest()


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob('.*') if p.suffix in ('.part', '.lock')]


@pytest.fixture
def big_data():
    """3.5 MiB of deterministic, non-repeating bytes."""
    return b''.join(hashlib.sha256(i.to_bytes(4, 'little')).digest()
                    for i in range(int(3.5 * MiB) // 32))


def _session_records(server: FileServer):
    """The datasets of the fixture session, with data_url pointing at the test server."""
    session = json.loads((FIXTURES / 'sessions_read.json').read_text())
    records = session['data_dataset_session_related']
    for record in records:
        record['data_url'] = record['data_url'].replace('http://127.0.0.1:8001', server.url(''))
    return records


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('rel, expected', [
    ('lab/Subjects/s/2024-01-01/001/alf/a.b.npy', 'lab/Subjects/s/2024-01-01/001/alf/a.b.npy'),
    ('./alf//a.b.npy', 'alf/a.b.npy'),
    ('alf/x/../a.b.npy', 'alf/a.b.npy'),
    ('alf\\probe00\\a.b.npy', 'alf/probe00/a.b.npy'),
    ('alf/#2024-06-01#/a.b.npy', 'alf/#2024-06-01#/a.b.npy'),
])
def test_safe_join_accepts_relative_paths(tmp_path, rel, expected):
    assert safe_join(tmp_path, rel) == tmp_path / expected


@pytest.mark.parametrize('rel', [
    '../evil.npy', 'alf/../../evil.npy', '/etc/passwd', '\\\\server\\share\\x', 'C:/x.npy',
    'c:x.npy', 'alf/C:/x.npy', '..\\..\\evil', '', '.', 'alf/..', 'a\x00b',
])
def test_safe_join_refuses_escapes(tmp_path, rel):
    with pytest.raises(UnsafePath) as info:
        safe_join(tmp_path / 'cache', rel)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DownloadError)
    assert 'Refusing the path' in str(info.value)


def test_safe_join_accepts_path_objects(tmp_path):
    from pathlib import PureWindowsPath
    assert safe_join(tmp_path, PureWindowsPath('alf\\a.b.npy')) == tmp_path / 'alf' / 'a.b.npy'
    assert safe_join(tmp_path, Path('alf/a.b.npy')) == tmp_path / 'alf' / 'a.b.npy'


def test_url_to_local_path(tmp_path):
    uuid = '901e18bb-99bf-48f4-a5a4-5d9f695a8581'
    url = f'http://h:8001/testlab/Subjects/ZFM-01935/2024-03-14/001/alf/_ibl_trials.choice.{uuid}.npy'
    rel = 'testlab/Subjects/ZFM-01935/2024-03-14/001/alf/'
    assert url_to_local_path(url, tmp_path) == tmp_path / rel / '_ibl_trials.choice.npy'
    assert url_to_local_path(url, tmp_path, keep_uuid=True) == \
        tmp_path / rel / f'_ibl_trials.choice.{uuid}.npy'
    # A revision folder, whether its '#' are quoted or not
    for folder in ('#2024-06-01#', '%232024-06-01%23'):
        url = f'https://h/lab/Subjects/s/2024-03-12/001/alf/{folder}/obj.attr.{uuid}.npy'
        assert url_to_local_path(url, tmp_path) == \
            tmp_path / 'lab/Subjects/s/2024-03-12/001/alf/#2024-06-01#/obj.attr.npy'
    # Aggregates keep the part from 'aggregates/' on
    url = f'https://h/public/aggregates/Subjects/lab/s/_ibl_subjectTrials.table.{uuid}.pqt'
    assert url_to_local_path(url, tmp_path) == \
        tmp_path / 'aggregates/Subjects/lab/s/_ibl_subjectTrials.table.pqt'


@pytest.mark.parametrize('url', [
    'http://h/lab/Subjects/s/2024-01-01/001/../../../../../../etc/passwd.npy',
    'http://h/lab/Subjects/s/2024-01-01/001/alf/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/'
    '%2e%2e/x.y.npy',
    'http://h/../../x.y.npy',
])
def test_url_to_local_path_refuses_hostile_paths(tmp_path, url):
    with pytest.raises(UnsafePath):
        url_to_local_path(url, tmp_path / 'cache')


def test_hostile_file_name_refused(server, tmp_path):
    with pytest.raises(UnsafePath):
        http_download_file(server.url('a/..'), target_dir=tmp_path / 'dl', silent=True)
    with pytest.raises(UnsafePath):
        http_download_file(server.url('a/%2e%2e'), target_dir=tmp_path / 'dl', silent=True)
    assert server.requests == []


# --------------------------------------------------------------------------------------------
# Tasks and small helpers
# --------------------------------------------------------------------------------------------
def test_task_cleans_unknown_expectations(tmp_path):
    task = DownloadTask('http://h/x', str(tmp_path / 'x'), size=float('nan'), md5='')
    assert task.size is None and task.md5 is None and isinstance(task.destination, Path)
    task = DownloadTask('http://h/x', tmp_path / 'x', size=12.0, md5=' ABCDEF ')
    assert task.size == 12 and task.md5 == 'abcdef'
    with pytest.raises(ValueError):
        DownloadTask('http://h/x', tmp_path / 'x', byte_range=(0, 0))


def test_unsupported_scheme(tmp_path):
    with pytest.raises(ValueError, match='ftp://h/x'):
        download_files([DownloadTask('ftp://h/x', tmp_path / 'x')])
    with pytest.raises(ValueError, match='n_threads'):
        download_files([DownloadTask('http://h/x', tmp_path / 'x')], n_threads=0)
    assert download_files([]) == []


def test_errors_pickle_with_their_attributes():
    import pickle

    error = ChecksumMismatch('bad file', 'http://h/x', '/tmp/x', 'a' * 32, 'b' * 32)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ChecksumMismatch and str(copy) == 'bad file'
    assert (copy.url, copy.path, copy.expected, copy.actual) == \
        ('http://h/x', Path('/tmp/x'), 'a' * 32, 'b' * 32)
    copy = pickle.loads(pickle.dumps(HTTPStatusError('404', 'u', None, status_code=404)))
    assert copy.status_code == 404 and isinstance(copy, requests.HTTPError)


def test_retry_after_parsing():
    retry_after = dl.http_headers.retry_after
    assert retry_after('3') == 3.0
    assert retry_after('0.5') == 0.5
    assert retry_after(None) is None
    assert retry_after('soon') is None
    assert retry_after('Wed, 21 Oct 2015 07:28:00 GMT') == 0.0  # a date in the past
    future = time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime(time.time() + 100))
    assert 50 < retry_after(future) <= 100


def test_content_range_parsing():
    content_range = dl.http_headers.content_range
    assert content_range('bytes 0-99/1000') == (0, 99, 1000)
    assert content_range('bytes 10-19/*') == (10, 19, None)
    assert content_range('bytes */1000') == (None, None, 1000)
    assert content_range('items 0-1/2') is None
    assert content_range(None) is None


def test_n_threads_from_environment(monkeypatch):
    code = 'import one._download as d, one.webclient as w; print(d.N_THREADS, w.N_THREADS)'
    env = {**os.environ, 'ONE_HTTP_DL_THREADS': '7'}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ['7', '7']
    assert dl.N_THREADS == 4  # ONE's default
    monkeypatch.setenv('ONE_HTTP_DL_THREADS', '12')
    assert dl.N_THREADS == 12  # read at use


def test_bad_n_threads_is_named_at_use(tmp_path):
    """A bad ONE_HTTP_DL_THREADS does not stop `import one.webclient`; using the setting says
    which variable is wrong."""
    code = ('import one.api, one.webclient as w\n'
            'from one._download import DownloadTask, download_files\n'
            'try:\n'
            '    download_files([DownloadTask("http://127.0.0.1:9/x", "x")])\n'
            'except ValueError as ex:\n'
            '    print(ex)\n'
            'w.N_THREADS\n')
    env = {**os.environ, 'ONE_HTTP_DL_THREADS': 'abc'}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.stdout.strip() == 'ONE_HTTP_DL_THREADS must be a whole number, not "abc"'
    assert out.returncode == 1 and out.stderr.strip().endswith(
        'ValueError: ONE_HTTP_DL_THREADS must be a whole number, not "abc"')


def test_record_to_url():
    record = json.loads((FIXTURES / 'datasets_read.json').read_text())
    urls = dataset_record_to_url(record)
    assert urls == [record['file_records'][0]['data_url']]
    assert dataset_record_to_url([record, record]) == urls * 2
    assert file_record_to_url(record['file_records'] + [{'data_url': None}]) == urls
    assert dataset_record_to_url({'file_records': []}) == []


# --------------------------------------------------------------------------------------------
# Downloads that work
# --------------------------------------------------------------------------------------------
def test_download_session_datasets(server, tmp_path):
    """All the datasets of a real Alyx session: names without UUID, sizes and md5s checked."""
    cache = tmp_path / 'cache'
    records = _session_records(server)
    tasks = [DownloadTask(r['data_url'], url_to_local_path(r['data_url'], cache),
                          size=r['file_size'], md5=r['hash']) for r in records]
    paths = download_files(tasks, n_threads=4)
    assert paths == [t.destination for t in tasks]
    for path, record in zip(paths, records):
        assert path.name == record['name']
        assert path.parent.name == record['collection'].split('/')[-1]
        assert hashlib.md5(path.read_bytes()).hexdigest() == record['hash']
    assert len(server.requests) == len(records)
    assert _leftovers(cache) == []
    # Again: the files are verified and kept, nothing is downloaded
    assert download_files(tasks, return_md5=True) == \
        [(t.destination, r['hash']) for t, r in zip(tasks, records)]
    assert len(server.requests) == len(records)


def test_revision_folder_url_is_quoted(server, tmp_path):
    session = json.loads((FIXTURES / 'sessions_read_with_revision_2probes.json').read_text())
    (record,) = [r for r in session['data_dataset_session_related'] if r['revision']]
    url = record['data_url'].replace('http://127.0.0.1:8001', server.url(''))
    path, md5 = http_download_file(url, target_dir=tmp_path, return_md5=True, silent=True)
    assert md5 == record['hash'] and path.name == url.rsplit('/', 1)[-1]
    (request,) = server.requests
    assert '%232024-06-01%23' in request['raw']


def test_existing_bad_file_is_replaced(server, tmp_path):
    (record, *_) = _session_records(server)
    dest = tmp_path / record['name']
    dest.write_bytes(b'x' * record['file_size'])  # right size, wrong content
    task = DownloadTask(record['data_url'], dest, size=record['file_size'], md5=record['hash'])
    download_files([task])
    assert hashlib.md5(dest.read_bytes()).hexdigest() == record['hash']
    assert len(server.requests) == 1


def test_duplicate_destinations_download_once(server, tmp_path):
    (record, *_) = _session_records(server)
    task = DownloadTask(record['data_url'], tmp_path / 'a.npy', size=record['file_size'],
                        md5=record['hash'])
    same = DownloadTask(record['data_url'], tmp_path / 'a.npy', size=record['file_size'],
                        md5=record['hash'])
    assert download_files([task, same], n_threads=2) == [task.destination] * 2
    assert len(server.requests) == 1


def test_redirects_are_followed(server, tmp_path):
    url, size, md5 = _write(server, 'real/x.bin', b'moved' * 100)
    server.always('old/x.bin', {'status': 302, 'headers': {'Location': url}})
    (path,) = download_files([DownloadTask(server.url('old/x.bin'), tmp_path / 'x.bin',
                                           size=size, md5=md5)])
    assert path.read_bytes() == b'moved' * 100
    server.always('loop.bin', {'status': 302, 'headers': {'Location': server.url('loop.bin')}})
    with pytest.raises(DownloadError, match='loop.bin'):
        download_files([DownloadTask(server.url('loop.bin'), tmp_path / 'loop.bin')])


def test_chunked_answer_without_length(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'chunked.bin', big_data[:100_000])
    server.always('chunked.bin', {'chunked': True})
    ((path, digest),) = download_files([DownloadTask(url, tmp_path / 'c.bin')], return_md5=True)
    assert digest == md5 and path.stat().st_size == size


def test_compressed_answer(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'data.bin', big_data[:200_000] * 5)
    server.always('data.bin', {'gzip': True})
    dest = tmp_path / 'data.bin'
    download_files([DownloadTask(url, dest, size=size, md5=md5)])
    assert dest.read_bytes() == big_data[:200_000] * 5
    assert server.requests[0]['headers']['Accept-Encoding'] == 'identity'


def test_progress_bar(server, tmp_path, capsys):
    records = _session_records(server)[:5]
    tasks = [DownloadTask(r['data_url'], tmp_path / r['name'], size=r['file_size'],
                          md5=r['hash']) for r in records]
    download_files(tasks, progress=True, desc='Test batch')
    err = capsys.readouterr().err
    assert 'Test batch' in err and '100%' in err


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------
def test_md5_mismatch_downloads_again_then_raises(server, tmp_path, caplog):
    (record, *_) = _session_records(server)
    path = urlsplit(record['data_url']).path
    server.always(path, {'corrupt': True})
    dest = tmp_path / 'cache' / record['name']
    task = DownloadTask(record['data_url'], dest, size=record['file_size'], md5=record['hash'])
    with caplog.at_level(logging.WARNING, 'one._download'), \
            pytest.raises(ChecksumMismatch) as info:
        download_files([task], backoff=0)
    error = info.value
    assert error.url == record['data_url'] and error.path == dest
    assert error.expected == record['hash'] and error.actual != record['hash']
    assert record['data_url'] in str(error) and str(dest) in str(error)
    assert 'also after downloading it again' in str(error)
    assert len(server.gets(path)) == 2  # downloaded, then downloaded again from scratch
    assert 'downloading it again' in caplog.text
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_md5_mismatch_once_then_good(server, tmp_path):
    (record, *_) = _session_records(server)
    path = urlsplit(record['data_url']).path
    server.add_faults(path, {'corrupt': True})
    dest = tmp_path / record['name']
    task = DownloadTask(record['data_url'], dest, size=record['file_size'], md5=record['hash'])
    assert download_files([task], backoff=0) == [dest]
    assert hashlib.md5(dest.read_bytes()).hexdigest() == record['hash']
    assert len(server.gets(path)) == 2


def test_bad_download_never_replaces_a_good_file(server, tmp_path):
    url, size, md5 = _write(server, 'good.bin', b'good data' * 1000)
    dest = tmp_path / 'good.bin'
    dest.write_bytes(b'good data' * 1000)
    server.always('good.bin', {'corrupt': True})
    with pytest.raises(ChecksumMismatch):
        download_files([DownloadTask(url, dest, size=size, md5=md5, clobber=True)], backoff=0)
    assert dest.read_bytes() == b'good data' * 1000
    # A server that fails for good doesn't touch it either
    server.always('good.bin', {'status': 503})
    with pytest.raises(HTTPStatusError):
        download_files([DownloadTask(url, dest, clobber=True)], retries=1, backoff=0)
    assert dest.read_bytes() == b'good data' * 1000


def test_size_mismatch_is_refused_before_downloading(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'big.bin', big_data)
    dest = tmp_path / 'big.bin'
    with pytest.raises(SizeMismatch) as info:
        download_files([DownloadTask(url, dest, size=size + 1, md5=md5)])
    assert info.value.expected == size + 1 and info.value.actual == size
    assert url in str(info.value)
    assert len(server.requests) == 1 and not dest.exists()


def test_cut_download_resumes(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'big.bin', big_data)
    cut = int(1.5 * MiB) + 123
    server.add_faults('big.bin', {'cut': cut})
    dest = tmp_path / 'big.bin'
    ((path, digest),) = download_files([DownloadTask(url, dest, size=size, md5=md5)],
                                       backoff=0, return_md5=True)
    assert digest == md5 and path.read_bytes() == big_data
    first, second = server.gets('big.bin')
    assert 'Range' not in first['headers']
    assert second['headers']['Range'] == f'bytes={cut}-'
    assert second['headers']['If-Range'] == f'"{md5}"'  # only resumed if unchanged
    assert _leftovers(tmp_path) == []


def test_cut_download_resumes_without_known_md5(server, tmp_path, big_data):
    """Within one call the answer's ETag guards the resume, even when no md5 is known."""
    url, size, md5 = _write(server, 'big.bin', big_data)
    server.add_faults('big.bin', {'cut': MiB + 7}, {'cut': 2 * MiB + 1})
    path = http_download_file(url, target_dir=tmp_path, silent=True)
    assert path.read_bytes() == big_data
    ranges = [r['headers'].get('Range') for r in server.gets('big.bin')]
    assert ranges == [None, f'bytes={MiB + 7}-', f'bytes={3 * MiB + 8}-']  # cuts add up


def test_repeated_cuts_after_progress_keep_going(server, tmp_path, big_data):
    """Each attempt that moves the transfer on resets the retry count."""
    url, size, md5 = _write(server, 'big.bin', big_data)
    server.add_faults('big.bin', {'cut': MiB + 1}, {'cut': MiB + 1}, {'cut': MiB + 1})
    dest = tmp_path / 'big.bin'
    download_files([DownloadTask(url, dest, size=size, md5=md5)], retries=1, backoff=0)
    assert dest.read_bytes() == big_data
    assert len(server.gets('big.bin')) == 4


def test_cuts_without_progress_give_up(server, tmp_path, big_data):
    """A server that ignores Range and always cuts at the same place can't loop for ever."""
    url, size, md5 = _write(server, 'big.bin', big_data)
    server.always('big.bin', {'cut': 2 * MiB, 'ignore_range': True})
    with pytest.raises(DownloadConnectionError, match='stopped after'):
        download_files([DownloadTask(url, tmp_path / 'big.bin', size=size, md5=md5)],
                       retries=2, backoff=0)
    assert len(server.gets('big.bin')) == 4  # progress once, then 3 failed attempts
    assert (tmp_path / '.big.bin.part').stat().st_size == 2 * MiB  # kept to resume later


def test_stale_partial_file_is_resumed(server, tmp_path, big_data):
    """A partial file left by a process that died is hashed, then completed."""
    url, size, md5 = _write(server, 'big.bin', big_data)
    dest = tmp_path / 'big.bin'
    part = tmp_path / '.big.bin.part'
    part.write_bytes(big_data[:2 * MiB])
    download_files([DownloadTask(url, dest, size=size, md5=md5)])
    assert dest.read_bytes() == big_data and not part.exists()
    (request,) = server.gets('big.bin')
    assert request['headers']['Range'] == f'bytes={2 * MiB}-'


def test_stale_partial_file_with_bad_bytes(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'big.bin', big_data)
    dest = tmp_path / 'big.bin'
    (tmp_path / '.big.bin.part').write_bytes(b'\0' * MiB)  # not the start of the file
    download_files([DownloadTask(url, dest, size=size, md5=md5)], backoff=0)
    assert dest.read_bytes() == big_data
    ranges = [r['headers'].get('Range') for r in server.gets('big.bin')]
    assert ranges == [f'bytes={MiB}-', None]  # resumed, found bad, downloaded again


def test_complete_partial_file_is_only_verified(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'big.bin', big_data)
    dest = tmp_path / 'big.bin'
    (tmp_path / '.big.bin.part').write_bytes(big_data)
    download_files([DownloadTask(url, dest, size=size, md5=md5)])
    assert dest.read_bytes() == big_data and server.requests == []
    # Size unknown: the server answers 416 to the resume request, the part is verified
    dest.unlink()
    (tmp_path / '.big.bin.part').write_bytes(big_data)
    download_files([DownloadTask(url, dest, md5=md5)])
    assert dest.read_bytes() == big_data
    assert [r['headers'].get('Range') for r in server.requests] == [f'bytes={size}-']


def test_stale_partial_file_without_md5_is_not_trusted(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'big.bin', big_data)
    (tmp_path / '.big.bin.part').write_bytes(b'\0' * MiB)
    path = http_download_file(url, target_dir=tmp_path, silent=True)
    assert path.read_bytes() == big_data
    assert [r['headers'].get('Range') for r in server.requests] == [None]


def test_server_ignoring_range_restarts(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'big.bin', big_data)
    server.add_faults('big.bin', {'cut': MiB + 5}, {'ignore_range': True})
    dest = tmp_path / 'big.bin'
    download_files([DownloadTask(url, dest, size=size, md5=md5)], backoff=0)
    assert dest.read_bytes() == big_data
    assert len(server.gets('big.bin')) == 2


def test_server_error_then_success(server, tmp_path, caplog):
    (record, *_) = _session_records(server)
    path = urlsplit(record['data_url']).path
    server.add_faults(path, {'status': 500}, {'status': 502}, {'status': 429},
                      {'status': 408})
    dest = tmp_path / record['name']
    task = DownloadTask(record['data_url'], dest, size=record['file_size'], md5=record['hash'])
    with caplog.at_level(logging.DEBUG, 'one._download'):
        assert download_files([task], backoff=0.001) == [dest]
    assert hashlib.md5(dest.read_bytes()).hexdigest() == record['hash']
    assert len(server.gets(path)) == 5
    assert caplog.text.count('Retrying') == 4


def test_retry_after_is_honoured(server, tmp_path, caplog):
    """A 503 with Retry-After: 0 is retried at once, although the backoff would be long."""
    url, size, md5 = _write(server, 'x.bin', b'abc' * 100)
    server.add_faults('x.bin', {'status': 503, 'headers': {'Retry-After': '0'}})
    with caplog.at_level(logging.DEBUG, 'one._download'):
        download_files([DownloadTask(url, tmp_path / 'x.bin', size=size, md5=md5)],
                       backoff=1000)
    delays = [float(x) for x in re.findall(r'Retrying \S+ in ([\d.]+) s', caplog.text)]
    assert len(delays) == 1 and delays[0] <= 0.1  # what it asked, and a little jitter
    assert len(server.gets('x.bin')) == 2


def test_server_error_forever(server, tmp_path):
    url, size, md5 = _write(server, 'x.bin', b'abc' * 100)
    server.always('x.bin', {'status': 500})
    dest = tmp_path / 'x.bin'
    with pytest.raises(HTTPStatusError) as info:
        download_files([DownloadTask(url, dest, size=size, md5=md5)], retries=2, backoff=0)
    error = info.value
    assert error.status_code == 500 and isinstance(error, requests.HTTPError)
    assert url in str(error) and str(dest) in str(error) and '3 attempts' in str(error)
    assert len(server.gets('x.bin')) == 3
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_not_found_is_not_retried(server, tmp_path, caplog):
    url = server.url('nothing/here.npy')
    with pytest.raises(HTTPStatusError) as info:
        download_files([DownloadTask(url, tmp_path / 'here.npy')], backoff=0)
    assert info.value.status_code == 404 and url in str(info.value)
    assert len(server.requests) == 1
    with pytest.raises(HTTPStatusError):
        http_download_file(url, target_dir=tmp_path, silent=True)
    assert f'404 {url}' in caplog.text


def test_connection_refused(tmp_path):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    url = f'http://127.0.0.1:{port}/x.npy'
    dest = tmp_path / 'x.npy'
    with pytest.raises(DownloadConnectionError) as info:
        download_files([DownloadTask(url, dest)], retries=1, backoff=0)
    error = info.value
    assert isinstance(error, requests.ConnectionError) and isinstance(error, ConnectionError)
    assert url in str(error) and '2 attempts' in str(error)
    assert error.url == url and error.path == dest
    assert not dest.exists()


def test_read_timeout_is_retried(server, tmp_path, caplog):
    """The first answer comes too late: it is given up and the file asked for again."""
    url, size, md5 = _write(server, 'x.bin', b'abc' * 100)
    server.add_faults('x.bin', {'delay': 1.0})
    dest = tmp_path / 'x.bin'
    with caplog.at_level(logging.DEBUG, 'one._download'):
        download_files([DownloadTask(url, dest, size=size, md5=md5)], timeout=(5, 0.2),
                       backoff=0)
    assert dest.read_bytes() == b'abc' * 100
    assert len(server.gets('x.bin')) == 2  # the second request happened
    assert re.search(r'Retrying .*x\.bin .*[Rr]ead timed out', caplog.text)


def test_read_timeout_is_retried_once_only(server, tmp_path):
    url, size, md5 = _write(server, 'x.bin', b'abc' * 100)
    server.add_faults('x.bin', {'delay': 1.0}, {'delay': 1.0}, {'delay': 1.0})
    dest = tmp_path / 'x.bin'
    with pytest.raises(dl.DownloadTimeout, match=r'nothing within 0\.2 s \(read timeout\)'):
        download_files([DownloadTask(url, dest, size=size, md5=md5)], timeout=(5, 0.2),
                       retries=4, backoff=0)
    assert len(server.gets('x.bin')) == 2 and not dest.exists()


def test_slow_transfer_with_progress_is_not_a_timeout(server, tmp_path, big_data):
    """A server sending data slowly but steadily never hits the read timeout (it bounds the
    wait between two reads, not the whole transfer)."""
    url, size, md5 = _write(server, 'big.bin', big_data)
    server.add_faults('big.bin', {'slow': 1.0})
    dest = tmp_path / 'big.bin'
    download_files([DownloadTask(url, dest, size=size, md5=md5)], timeout=(5, 0.6), backoff=0)
    assert dest.read_bytes() == big_data and len(server.gets('big.bin')) == 1


def test_batch_with_one_failure(server, tmp_path, caplog):
    records = _session_records(server)[:4]
    tasks = [DownloadTask(r['data_url'], tmp_path / r['name'], size=r['file_size'],
                          md5=r['hash']) for r in records]
    missing = server.url('missing/file.npy')
    tasks.insert(2, DownloadTask(missing, tmp_path / 'file.npy'))
    with pytest.raises(HTTPStatusError, match='missing/file.npy'):
        download_files(tasks, n_threads=3)
    assert all(t.destination.exists() for t in tasks if t.url != missing)
    paths = download_files(tasks, raise_on_error=False)
    assert paths[2] is None and all(p is not None for i, p in enumerate(paths) if i != 2)
    assert download_files(tasks, raise_on_error=False, return_md5=True)[2] == (None, None)


def test_return_errors_gives_each_failure(server, tmp_path, caplog):
    """With return_errors, each failed file's exception takes the place of its path; nothing
    is raised or logged."""
    good = _session_records(server)[:2]
    url, size, md5 = _write(server, 'bad.bin', b'x' * 1000)
    server.always('bad.bin', {'corrupt': True})
    tasks = [DownloadTask(r['data_url'], tmp_path / r['name'], size=r['file_size'],
                          md5=r['hash']) for r in good]
    tasks += [DownloadTask(server.url('missing/file.npy'), tmp_path / 'file.npy'),
              DownloadTask(url, tmp_path / 'bad.bin', size=size, md5=md5),
              DownloadTask(url, tmp_path / 'short.bin', size=size + 1)]
    with caplog.at_level(logging.ERROR):
        out = download_files(tasks, return_errors=True, backoff=0)
    assert out[:2] == [t.destination for t in tasks[:2]]
    assert isinstance(out[2], HTTPStatusError) and out[2].status_code == 404
    assert isinstance(out[3], ChecksumMismatch) and out[3].path == tmp_path / 'bad.bin'
    assert isinstance(out[4], SizeMismatch) and out[4].expected == size + 1
    assert caplog.records == []
    with_md5 = download_files(tasks, return_errors=True, return_md5=True, raise_on_error=True)
    assert with_md5[0] == (tasks[0].destination, good[0]['hash'])
    assert isinstance(with_md5[2][0], HTTPStatusError) and with_md5[2][1] is None


def test_stop_on_starts_no_further_file(server, tmp_path):
    records = _session_records(server)[:3]
    tasks = [DownloadTask(r['data_url'], tmp_path / r['name'], size=r['file_size'],
                          md5=r['hash']) for r in records]
    # The largest file starts first: this one, which fails
    tasks.append(DownloadTask(server.url('missing/file.npy'), tmp_path / 'file.npy',
                              size=10 * MiB))
    seen = []

    def stop_on(error):
        seen.append(error)
        return isinstance(error, HTTPStatusError)

    out = download_files(tasks, n_threads=1, return_errors=True, stop_on=stop_on)
    assert out[:3] == [None] * 3 and isinstance(out[3], HTTPStatusError)
    assert seen == [out[3]] and len(server.requests) == 1
    out = download_files(tasks, n_threads=1, return_errors=True, stop_on=lambda error: False)
    assert out[:3] == [t.destination for t in tasks[:3]] and isinstance(out[3], HTTPStatusError)


# --------------------------------------------------------------------------------------------
# ONE's helpers
# --------------------------------------------------------------------------------------------
def test_http_download_file(server, tmp_path):
    (record, *_) = _session_records(server)
    url = record['data_url']
    assert http_download_file('') is None
    assert http_download_file('', return_md5=True) == (None, None)
    path = http_download_file(url, target_dir=tmp_path, silent=True)
    assert path == tmp_path / Path(urlsplit(url).path).name  # the server's name (UUID kept)
    assert hashlib.md5(path.read_bytes()).hexdigest() == record['hash']
    # An existing file is returned as is (md5 computed when asked), unless clobber
    path.write_bytes(b'local')
    assert http_download_file(url, target_dir=tmp_path, silent=True, return_md5=True) == \
        (path, hashlib.md5(b'local').hexdigest())
    assert len(server.requests) == 1
    assert http_download_file(url, target_dir=str(tmp_path), silent=True, clobber=True) == path
    assert hashlib.md5(path.read_bytes()).hexdigest() == record['hash']
    assert len(server.requests) == 2


def test_http_download_file_default_folder(server, tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    url, size, md5 = _write(server, 'x.bin', b'abc')
    assert http_download_file(url, silent=True) == tmp_path / 'Downloads' / 'x.bin'


def test_http_download_file_chunks_auth_headers(server, tmp_path, big_data):
    url, size, md5 = _write(server, 'big.bin', big_data)
    server.auth = ('user', 'secret')
    with pytest.raises(HTTPStatusError) as info:
        http_download_file(url, target_dir=tmp_path, silent=True)
    assert info.value.status_code == 401
    path, digest = http_download_file(url, chunks=(1000, 5000), target_dir=tmp_path,
                                      silent=True, username='user', password='secret',
                                      return_md5=True, headers={'X-Test': 'yes'})
    assert path.read_bytes() == big_data[1000:6000]
    assert digest == hashlib.md5(big_data[1000:6000]).hexdigest()
    request = server.requests[-1]
    assert request['headers']['Range'] == 'bytes=1000-5999'
    assert request['headers']['X-Test'] == 'yes'


def test_http_download_file_list(server, tmp_path):
    records = _session_records(server)[:6]
    urls = [r['data_url'] for r in records]
    paths = http_download_file_list(urls, target_dir=tmp_path, silent=True)
    assert paths == [tmp_path / Path(urlsplit(u).path).name for u in urls]
    folders = [tmp_path / f'd{i}' for i in range(len(urls))]
    paths, md5s = http_download_file_list(urls, target_dir=folders, silent=True,
                                          return_md5=True)
    assert isinstance(paths, tuple) and isinstance(md5s, tuple)
    assert [p.parent for p in paths] == folders
    assert list(md5s) == [r['hash'] for r in records]
    with pytest.raises(AssertionError):
        http_download_file_list(urls, target_dir=folders[:2], silent=True)
    assert http_download_file_list(['', urls[0]], target_dir=tmp_path, silent=True)[0] is None


# --------------------------------------------------------------------------------------------
# Several processes, one cache
# --------------------------------------------------------------------------------------------
_WORKER = """
import json, sys, time
from pathlib import Path
from one._download import DownloadTask, download_files
tasks = [DownloadTask(**t) for t in json.loads(sys.argv[1])]
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
paths = download_files(tasks, n_threads=3)
print(json.dumps([str(p) for p in paths]))
"""


def test_eight_processes_one_cache(server, tmp_path, big_data):
    """Eight processes download the same files into one cache at the same time."""
    cache = tmp_path / 'cache'
    records = _session_records(server)[:10]
    for record in records:  # slow answers, so that the processes really overlap
        server.always(urlsplit(record['data_url']).path, {'slow': 0.1})
    url, size, md5 = _write(server, 'lab/Subjects/s/2024-01-01/001/raw/big.bin', big_data)
    server.always('lab/Subjects/s/2024-01-01/001/raw/big.bin', {'slow': 0.5})
    specs = [{'url': r['data_url'], 'destination': str(url_to_local_path(r['data_url'], cache)),
              'size': r['file_size'], 'md5': r['hash']} for r in records]
    specs.append({'url': url, 'destination': str(url_to_local_path(url, cache)), 'size': size,
                  'md5': md5})
    go = tmp_path / 'go'
    procs = [subprocess.Popen([sys.executable, '-c', _WORKER, json.dumps(specs), str(go)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    time.sleep(0.5)  # let them all start and wait
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert json.loads(out) == [s['destination'] for s in specs]
    for spec in specs:
        assert hashlib.md5(Path(spec['destination']).read_bytes()).hexdigest() == spec['md5']
        # the lock lets one process download each file; the others find it verified
        assert len(server.gets(urlsplit(spec['url']).path)) == 1
    assert _leftovers(cache) == []


def test_partial_file_lock_is_exclusive_and_leaves_nothing(tmp_path):
    dest = tmp_path / 'x.npy'
    inside, overlaps, committed = [], [], []

    def hold(i):
        part = dl.part.Part(dest)
        try:
            assert part.exclusive
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(i)
            with part.open(0) as f:
                f.write(str(i).encode())
            time.sleep(0.01)
            inside.remove(i)
            if i % 2:
                part.commit(dest)
                committed.append(i)
        finally:
            part.close(keep=False)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [] and len(committed) == 4
    assert list(tmp_path.iterdir()) == [dest]  # no partial or lock file left
    assert int(dest.read_text()) in committed


def test_hashing_in_a_helper_thread(server, tmp_path, big_data, monkeypatch):
    """Long transfers are hashed by a helper thread; cuts and bad data still handled."""
    monkeypatch.setattr(dl.engine, 'PIPE_THRESHOLD', MiB)
    url, size, md5 = _write(server, 'big.bin', big_data)
    server.add_faults('big.bin', {'cut': MiB + 11})
    dest = tmp_path / 'big.bin'
    ((path, digest),) = download_files([DownloadTask(url, dest, size=size, md5=md5)],
                                       backoff=0, return_md5=True)
    assert digest == md5 and path.read_bytes() == big_data
    server.always('big.bin', {'corrupt': True})
    with pytest.raises(ChecksumMismatch):
        download_files([DownloadTask(url, tmp_path / 'other.bin', size=size, md5=md5)])
    pipe = dl.hashing.HashPipe(hashlib.md5())
    pipe.update(big_data)  # longer than one buffer
    assert pipe.hexdigest() == md5


def test_without_file_locks(server, tmp_path, monkeypatch):
    """Where flock is unavailable (some network file systems), a private temporary file and
    the atomic rename keep the destination correct.  ENOLCK can't be produced on a local file
    system, so flock is replaced by a function raising it (the only mock in this file)."""
    import errno

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, 'No locks available')

    monkeypatch.setattr(dl.part.fcntl, 'flock', no_flock)
    records = _session_records(server)[:3]
    cache = tmp_path / 'cache'
    tasks = [DownloadTask(r['data_url'], cache / r['name'], size=r['file_size'],
                          md5=r['hash']) for r in records]
    assert download_files(tasks) == [t.destination for t in tasks]
    assert sorted(p.name for p in cache.iterdir()) == sorted(r['name'] for r in records)


def test_unwritable_destination(server, tmp_path):
    (record, *_) = _session_records(server)
    (tmp_path / 'afile').write_text('in the way')
    dest = tmp_path / 'afile' / record['name']
    with pytest.raises(DownloadError) as info:
        download_files([DownloadTask(record['data_url'], dest)])
    assert str(dest) in str(info.value) and record['data_url'] in str(info.value)
    assert server.requests == []


# --------------------------------------------------------------------------------------------
# Small files: read whole into memory, checked before anything is written
# --------------------------------------------------------------------------------------------
def _bytes(n: int, seed: int = 0) -> bytes:
    """`n` deterministic, non-repeating bytes."""
    out = b''.join(hashlib.sha256(f'{seed}-{i}'.encode()).digest() for i in range(n // 32 + 1))
    return out[:n]


def test_small_file_bad_md5_never_replaces_a_good_file(server, tmp_path, caplog):
    """A corrupt small answer is fetched again, then refused with an error naming the file and
    its URL; the good file already in place is untouched and no partial file is left."""
    data = _bytes(50_000)
    url, size, md5 = _write(server, 'lab/alf/small.npy', data)
    dest = tmp_path / 'cache' / 'lab' / 'alf' / 'small.npy'
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data)
    server.always('lab/alf/small.npy', {'corrupt': True})
    task = DownloadTask(url, dest, size=size, md5=md5, clobber=True)
    with caplog.at_level(logging.WARNING, 'one._download'), \
            pytest.raises(ChecksumMismatch) as info:
        download_files([task], backoff=0)
    error = info.value
    assert error.path == dest and error.url == url
    assert str(dest) in str(error) and url in str(error)
    assert error.expected == md5 and error.actual not in (None, md5)
    assert 'also after downloading it again' in str(error)
    assert 'downloading it again' in caplog.text
    assert len(server.gets('lab/alf/small.npy')) == 2
    assert dest.read_bytes() == data and _leftovers(tmp_path) == []
    # Without a good file in place, nothing at all is left behind
    other = tmp_path / 'cache' / 'lab' / 'alf' / 'other.npy'
    with pytest.raises(ChecksumMismatch):
        download_files([DownloadTask(url, other, size=size, md5=md5)], backoff=0)
    assert not other.exists() and _leftovers(tmp_path) == []
    # A corrupt answer, then a good one: the file lands, verified
    server.always('lab/alf/small.npy', {})
    server.add_faults('lab/alf/small.npy', {'corrupt': True})
    ((path, digest),) = download_files([DownloadTask(url, other, size=size, md5=md5)],
                                       backoff=0, return_md5=True)
    assert digest == md5 and path.read_bytes() == data


def test_small_file_cut_is_fetched_again_whole(server, tmp_path):
    """A small answer cut in the middle is not kept: the retry asks for the whole file."""
    data = _bytes(200_000, seed=1)
    url, size, md5 = _write(server, 'cut.bin', data)
    server.add_faults('cut.bin', {'cut': 100_000})
    dest = tmp_path / 'cut.bin'
    ((path, digest),) = download_files([DownloadTask(url, dest, size=size, md5=md5)],
                                       backoff=0, return_md5=True)
    assert digest == md5 and path.read_bytes() == data
    first, second = server.gets('cut.bin')
    assert 'Range' not in second['headers']
    assert _leftovers(tmp_path) == []


def test_small_answer_longer_than_announced(server, tmp_path):
    """A server sending more bytes than its Content-Length announces is not believed."""
    data = _bytes(30_000, seed=2)
    url, size, md5 = _write(server, 'long.bin', data)
    server.always('long.bin', {'chunked': True, 'length': 20_000})
    dest = tmp_path / 'long.bin'
    with pytest.raises(DownloadConnectionError) as info:
        download_files([DownloadTask(url, dest)], retries=1, backoff=0)
    assert 'longer than the announced 20000 bytes' in str(info.value)
    assert str(dest) in str(info.value)
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_small_file_over_a_longer_stale_partial_file(server, tmp_path):
    """A stale partial file longer than the real file, a server ignoring the Range header: the
    new data must replace all of the old bytes."""
    data = _bytes(9_000, seed=3)
    url, _, md5 = _write(server, 'x.npy', data)
    dest = tmp_path / 'x.npy'
    (tmp_path / '.x.npy.part').write_bytes(b'stale' * 4_000)  # 20,000 bytes
    server.always('x.npy', {'ignore_range': True})
    ((path, digest),) = download_files([DownloadTask(url, dest, md5=md5)], return_md5=True)
    assert digest == md5 and path.read_bytes() == data
    assert server.gets('x.npy')[0]['headers']['Range'] == 'bytes=20000-'
    assert _leftovers(tmp_path) == []


def test_empty_file(server, tmp_path):
    url, size, md5 = _write(server, 'empty.npy', b'')
    ((path, digest),) = download_files([DownloadTask(url, tmp_path / 'empty.npy', size=0,
                                                     md5=md5)], return_md5=True)
    assert digest == md5 and path.read_bytes() == b''


# --------------------------------------------------------------------------------------------
# HTTP transports: urllib3 straight, requests for proxies and authentication objects
# --------------------------------------------------------------------------------------------
def test_connections_are_kept_between_files_and_batches(server, tmp_path):
    records = _session_records(server)[:8]
    tasks = [DownloadTask(r['data_url'], tmp_path / r['name'], size=r['file_size'],
                          md5=r['hash']) for r in records]
    download_files(tasks[:4], n_threads=1)
    download_files(tasks[4:], n_threads=1)
    assert len(server.requests) == 8 and server.connections == 1


def test_connection_dropped_between_files(server, tmp_path, caplog):
    """The server closes a kept-alive connection after an answer: the next file opens a new
    connection instead of failing on the dead one."""
    url_a, size_a, md5_a = _write(server, 'a.bin', b'a' * 5000)
    url_b, size_b, md5_b = _write(server, 'b.bin', b'b' * 5000)
    server.add_faults('a.bin', {'drop_after': True})
    download_files([DownloadTask(url_a, tmp_path / 'a.bin', size=size_a, md5=md5_a)],
                   n_threads=1)
    assert server.dropped.wait(10)
    with caplog.at_level(logging.DEBUG, 'one._download'):
        download_files([DownloadTask(url_b, tmp_path / 'b.bin', size=size_b, md5=md5_b)],
                       n_threads=1)
    assert (tmp_path / 'b.bin').read_bytes() == b'b' * 5000
    assert 'Retrying' not in caplog.text and server.connections == 2


def test_error_answer_carries_a_response(server, tmp_path):
    url, _, _ = _write(server, 'x.bin', b'abc')
    server.always('x.bin', {'status': 403})
    with pytest.raises(HTTPStatusError) as info:
        download_files([DownloadTask(url, tmp_path / 'x.bin')])
    response = info.value.response
    assert isinstance(response, requests.Response)
    assert response.status_code == 403 and response.text == 'error' and response.url == url


def test_redirect_to_another_server_drops_credentials(server, tmp_path):
    other = FileServer(tmp_path / 'other')
    try:
        url, size, md5 = _write(other, 'x.bin', b'elsewhere' * 100)
        server.always('moved.bin', {'status': 302, 'headers': {'Location': url}})
        dest = tmp_path / 'x.bin'
        download_files([DownloadTask(server.url('moved.bin'), dest, size=size, md5=md5,
                                     auth=('user', 'secret'), headers={'X-Test': 'yes'})])
        assert dest.read_bytes() == b'elsewhere' * 100
        assert len(server.gets('moved.bin')[0]['auth']) == 1
        (request,) = other.requests
        assert request['auth'] == [] and request['headers']['X-Test'] == 'yes'
        # A token header (any case) doesn't follow either
        download_files([DownloadTask(server.url('moved.bin'), dest, size=size, md5=md5,
                                     headers={'authorization': 'Token abc'}, clobber=True)])
        assert server.gets('moved.bin')[1]['auth'] == ['Token abc']
        assert other.requests[1]['auth'] == []
    finally:
        other.close()
    # Within one server, the credentials follow the redirect
    url, size, md5 = _write(server, 'real.bin', b'here' * 100)
    server.auth = ('user', 'secret')
    server.always('old.bin', {'status': 301, 'headers': {'Location': '/real.bin'}})
    download_files([DownloadTask(server.url('old.bin'), tmp_path / 'real.bin', size=size,
                                 md5=md5, auth=('user', 'secret'))])
    assert (tmp_path / 'real.bin').read_bytes() == b'here' * 100


def test_credentials_from_netrc(server, tmp_path, monkeypatch):
    url, size, md5 = _write(server, 'x.bin', b'private' * 10)
    server.auth = ('user', 'secret')
    netrc = tmp_path / 'netrc'
    netrc.write_text('machine 127.0.0.1 login user password secret\n')
    netrc.chmod(0o600)
    monkeypatch.setenv('NETRC', str(netrc))
    download_files([DownloadTask(url, tmp_path / 'x.bin', size=size, md5=md5)])
    assert (tmp_path / 'x.bin').read_bytes() == b'private' * 10


def test_basic_auth_replaces_an_authorization_header(server, tmp_path):
    """As with requests, the (username, password) pair wins over an Authorization header,
    whatever its case, and only one Authorization header is sent."""
    url, size, md5 = _write(server, 'x.bin', b'private' * 10)
    server.auth = ('user', 'secret')
    download_files([DownloadTask(url, tmp_path / 'x.bin', size=size, md5=md5,
                                 auth=('user', 'secret'),
                                 headers={'authorization': 'Token abc'})])
    assert (tmp_path / 'x.bin').read_bytes() == b'private' * 10
    (value,) = server.requests[0]['auth']
    assert value.startswith('Basic ')


def test_authentication_object(server, tmp_path):
    """A requests authentication object: the request goes through requests."""
    url, size, md5 = _write(server, 'x.bin', b'private' * 10)
    server.auth = ('user', 'secret')
    auth = requests.auth.HTTPBasicAuth('user', 'secret')
    download_files([DownloadTask(url, tmp_path / 'x.bin', size=size, md5=md5, auth=auth)])
    assert (tmp_path / 'x.bin').read_bytes() == b'private' * 10


def test_proxy_from_environment(server, tmp_path, monkeypatch):
    """With a proxy in the environment the request goes through requests, to the proxy (the
    test server answers proxy requests for its own files)."""
    url, size, md5 = _write(server, 'x.bin', b'proxied' * 10)
    for name in ('HTTP_PROXY', 'http_proxy'):
        monkeypatch.setenv(name, server.url(''))
    for name in ('NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'):
        monkeypatch.delenv(name, raising=False)
    remote = 'http://files.example.invalid/x.bin'
    download_files([DownloadTask(remote, tmp_path / 'x.bin', size=size, md5=md5)])
    assert (tmp_path / 'x.bin').read_bytes() == b'proxied' * 10
    assert server.requests[0]['raw'] == remote


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS file server with a self-signed certificate for 127.0.0.1 (made by openssl)."""
    if shutil.which('openssl') is None:
        pytest.skip('needs the openssl command')
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', str(key), '-out',
                    str(cert), '-days', '2', '-subj', '/CN=127.0.0.1', '-addext',
                    'subjectAltName=IP:127.0.0.1'], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    root = tmp_path / 'tls-root'
    root.mkdir()
    srv = FileServer(root, tls=context)
    srv.cert = cert
    yield srv
    srv.close()


def test_https_with_a_ca_bundle_from_the_environment(tls_server, tmp_path, monkeypatch):
    url, size, md5 = _write(tls_server, 'x.bin', b'secure' * 1000)
    assert url.startswith('https://')
    for name in ('REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):
        monkeypatch.delenv(name, raising=False)
    dest = tmp_path / 'x.bin'
    with pytest.raises(DownloadConnectionError) as info:  # an unknown certificate
        download_files([DownloadTask(url, dest, size=size, md5=md5)], retries=0)
    assert 'CERTIFICATE_VERIFY_FAILED' in str(info.value) and not dest.exists()
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', str(tls_server.cert))
    ((path, digest),) = download_files([DownloadTask(url, dest, size=size, md5=md5)],
                                       return_md5=True)
    assert digest == md5 and path.read_bytes() == b'secure' * 1000


def test_connections_of_parallel_downloads_are_kept_between_batches(server, tmp_path):
    """Each of the 4 download threads keeps its connection for the next batch."""
    records = _session_records(server)[:16]
    tasks = [DownloadTask(r['data_url'], tmp_path / r['name'], size=r['file_size'],
                          md5=r['hash']) for r in records]
    download_files(tasks[:8], n_threads=4)
    first = server.connections
    download_files(tasks[8:], n_threads=4)
    assert len(server.requests) == 16 and 1 <= first <= 4 and server.connections == first
