"""Opening releases by URL (`one.api.OneRelease`, `ONE(base_url=...)`): a release made from the
synthetic generator, served by a real `http.server` (tests/static_server.py) and by moto's S3
server, both on 127.0.0.1; the servers' own logs say which files were fetched."""
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from data_folders import publish
from static_server import StaticServer

from one import params as one_params
from one._api.release import find_release
from one._download import ChecksumMismatch, DownloadConnectionError, SizeMismatch
from one._lib.confine import UnsafePath
from one._tables import parquet
from one.alf.cache import make_parquet_db
from one.alf.exceptions import ALFObjectNotFound
from one.api import ONE, One, OneAlyx, OneRelease
from one.release import NotARelease, ReleaseError, export_files
from one.synthetic import make_dataset_folder, make_session

BUCKET = 'release-bucket'
PREFIX = 'mylab/v1'


def _publish(folder, **kwargs):
    """Publish, then date cache_info.json a minute back (a static server's Last-Modified has
    a resolution of a second: only a date older than a second is trusted), after any
    previous version."""
    path = Path(kwargs.get('out_dir') or folder) / 'cache_info.json'
    previous = path.stat().st_mtime if path.exists() else 0
    info = publish(folder, **kwargs)
    stamp = max(time.time() - 60, previous + 2)
    os.utime(path, (stamp, stamp))
    return info


@pytest.fixture
def source(tmp_path):
    """A published synthetic folder of 6 sessions (a plain `One` reads it as well)."""
    root = tmp_path / 'source'
    make_dataset_folder(root, n_subjects=2, n_sessions=3)
    _publish(root, tag='v1')
    return root


@pytest.fixture(autouse=True)
def _forget_one():
    ONE.cache_clear()
    yield
    ONE.cache_clear()


class HTTPHost:
    """The release folder served by http.server."""

    kind = 'http'

    def __init__(self, folder):
        self.folder = folder
        self.server = StaticServer(folder).__enter__()
        self.url = self.server.url

    def fetched(self) -> list:
        return [p.lstrip('/') for p in self.server.paths()]

    def clear(self):
        self.server.clear()

    def sync(self):
        pass  # serves the folder itself

    def close(self):
        self.server.stop()


class S3Host:
    """The release folder uploaded to moto's S3 server (bucket/prefix); moto's recorder logs
    the requests it serves."""

    kind = 's3'

    def __init__(self, folder, moto_url, prefix=PREFIX):
        import boto3
        from moto.moto_api import recorder
        self.folder, self.moto_url, self.prefix = folder, moto_url, prefix
        # the server runs in this process: keep its recording file out of the working folder
        self._previous_location = recorder._location
        recorder._location = str(folder.parent / 'moto_recording')
        self.s3 = boto3.client('s3')
        self.s3.create_bucket(Bucket=BUCKET)
        self.url = f's3://{BUCKET}/{prefix}'
        self._uploaded = {}
        self.sync()
        requests.post(f'{moto_url}/moto-api/recorder/reset-recording', timeout=10)
        requests.post(f'{moto_url}/moto-api/recorder/start-recording', timeout=10)

    def sync(self):
        """Upload the new and changed files (as `aws s3 sync` would, hidden files left out)."""
        from concurrent.futures import ThreadPoolExecutor
        todo = []
        for path in sorted(self.folder.rglob('*')):
            if path.is_file() and not any(p.startswith('.') for p in
                                          path.relative_to(self.folder).parts):
                key = f'{self.prefix}/{path.relative_to(self.folder).as_posix()}'
                st = path.stat()
                if self._uploaded.get(key) != (st.st_size, st.st_mtime_ns):
                    todo.append((key, path))
                    self._uploaded[key] = (st.st_size, st.st_mtime_ns)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kp: self.s3.put_object(Bucket=BUCKET, Key=kp[0],
                                                        Body=kp[1].read_bytes()), todo))

    def gets(self) -> list:
        """(path below the prefix, request headers) of each GET served."""
        text = requests.get(f'{self.moto_url}/moto-api/recorder/download-recording',
                            timeout=10).text
        seen = []
        for line in filter(None, text.splitlines()):
            entry = json.loads(line)
            if entry['method'] == 'GET' and '/moto-api/' not in entry['url']:
                path = requests.utils.unquote(entry['url'].split('://', 1)[1].split('/', 1)[1])
                path = path.split('?')[0]
                seen.append((path.removeprefix(f'{BUCKET}/{self.prefix}/'), entry['headers']))
        return seen

    def fetched(self) -> list:
        return [path for path, _ in self.gets()]

    def clear(self):
        requests.post(f'{self.moto_url}/moto-api/recorder/reset-recording', timeout=10)
        requests.post(f'{self.moto_url}/moto-api/recorder/start-recording', timeout=10)

    def close(self):
        from moto.moto_api import recorder
        requests.post(f'{self.moto_url}/moto-api/recorder/stop-recording', timeout=10)
        recorder._location = self._previous_location


@pytest.fixture(params=['http', 's3'])
def host(request, source):
    if request.param == 'http':
        served = HTTPHost(source)
    else:
        served = S3Host(source, request.getfixturevalue('s3env'))
    yield served
    served.close()


@pytest.fixture
def http_host(source):
    served = HTTPHost(source)
    yield served
    served.close()


def _files(folder: Path) -> set:
    return {p.relative_to(folder).as_posix() for p in folder.rglob('*')
            if p.is_file() and not p.name.startswith('.')}


def _trials_session(local: One):
    """A session with trials as separate .npy files, and its trials relative paths."""
    for eid in local.search(dataset='_ibl_trials.choice.npy'):
        files = [d for d in local.list_datasets(eid, collection='alf')
                 if d.startswith('alf/_ibl_trials.')]
        return eid, files
    raise AssertionError('no such session')


def _assert_same_object(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], pd.DataFrame):
            pd.testing.assert_frame_equal(a[key], b[key])
        else:
            np.testing.assert_array_equal(a[key], b[key])


# ---- opening and answering as a local One --------------------------------------------------

def test_open_by_url_answers_as_local_one(host, source, tmp_path):
    one = ONE(base_url=host.url)
    assert isinstance(one, OneRelease) and not isinstance(one, OneAlyx)
    assert one.base_url == host.url
    # default cache folder per URL, under the ONE downloads folder
    assert Path(one.cache_dir).parent == Path(one_params.CACHE_DIR_DEFAULT)
    assert sorted(host.fetched()) == ['cache_info.json', 'datasets.pqt', 'sessions.pqt']
    local = One(cache_dir=source)
    for query in ({}, {'subject': 'KS001'}, {'dataset': 'spikes.times'},
                  {'date_range': ['2024-01-16', '2024-01-16']}, {'laboratory': 'mainen'},
                  {'datasets': ['_ibl_trials.table.pqt'], 'dataset_qc_lte': 'FAIL'}):
        assert one.search(**query) == local.search(**query), query
    eids = local.search()
    assert len(eids) == 6
    for eid in eids[:3]:
        assert one.list_datasets(eid) == local.list_datasets(eid)
        pd.testing.assert_frame_equal(one.list_datasets(eid, details=True),
                                      local.list_datasets(eid, details=True))
        assert one.list_collections(eid) == local.list_collections(eid)
        assert one.list_revisions(eid) == local.list_revisions(eid)
        pd.testing.assert_series_equal(one.get_details(eid), local.get_details(eid))
    assert one.list_datasets() == local.list_datasets()
    assert one.list_subjects() == local.list_subjects()
    eid, _ = _trials_session(local)
    _assert_same_object(one.load_object(eid, 'trials'), local.load_object(eid, 'trials'))
    np.testing.assert_array_equal(one.load_dataset(eid, 'spikes.times', collection='alf/probe00'),
                                  local.load_dataset(eid, 'spikes.times',
                                                     collection='alf/probe00'))
    data, records = one.load_datasets(eid, ['_ibl_wheel.position.npy', 'clusters.metrics.pqt'],
                                      collections=['alf', 'alf/probe01'])
    expected, _ = local.load_datasets(eid, ['_ibl_wheel.position.npy', 'clusters.metrics.pqt'],
                                      collections=['alf', 'alf/probe01'])
    np.testing.assert_array_equal(data[0], expected[0])
    pd.testing.assert_frame_equal(data[1], expected[1])
    # what was downloaded is a copy of the source's files
    for rel in _files(Path(one.cache_dir)) - {'cache_info.json', 'sessions.pqt',
                                               'datasets.pqt'}:
        assert (Path(one.cache_dir) / rel).read_bytes() == (source / rel).read_bytes()


def test_only_requested_files_fetched(host, source):
    one = OneRelease(host.url)
    local = One(cache_dir=source)
    eid, trials = _trials_session(local)
    host.clear()
    one.load_object(eid, 'trials', collection='alf')
    session_path = local.eid2path(eid).relative_to(source).as_posix()
    expected = sorted(f'{session_path}/{rel}' for rel in trials)
    assert sorted(host.fetched()) == expected
    downloaded = _files(Path(one.cache_dir)) - {'cache_info.json', 'sessions.pqt',
                                                 'datasets.pqt'}
    assert sorted(downloaded) == expected
    host.clear()
    one.load_object(eid, 'trials', collection='alf')  # present and verified: no request
    assert host.fetched() == []


def test_one_line_then_same_instance_and_no_request_within_expiry(http_host):
    one = ONE(base_url=http_host.url)
    assert ONE(base_url=http_host.url) is one
    ONE.cache_clear()
    http_host.clear()
    again = ONE(base_url=http_host.url)  # a copy younger than the expiry: no request
    assert isinstance(again, OneRelease) and http_host.fetched() == []
    assert again.search() == one.search()


def test_revalidation_is_conditional(http_host):
    one = OneRelease(http_host.url, cache_expiry=0)
    http_host.clear()
    one.search(subject='KS001')  # expired: revalidated, 304
    (method, path, status, headers), = http_host.server.requests
    assert (path, status) == ('/cache_info.json', 304) and 'If-Modified-Since' in headers
    http_host.clear()
    OneRelease(http_host.url, cache_dir=one.cache_dir, cache_expiry=0)
    assert http_host.server.paths(None) == ['/cache_info.json']
    assert http_host.server.paths() == []


def test_s3_revalidation_uses_etag(s3env, source):
    host = S3Host(source, s3env)
    one = OneRelease(host.url, mode='refresh')
    state = json.loads((Path(one.cache_dir) / '.one_release.json').read_text())
    assert state['etag']
    host.clear()
    one.search()
    (path, headers), = host.gets()  # a conditional GET (answered 304: no table)
    assert path == 'cache_info.json' and headers.get('If-None-Match') == state['etag']


def test_instance_sees_tables_updated_by_another(host, source, tmp_path):
    """Two instances (or processes) on one cache folder: when the second has downloaded a new
    version, the host answers the first's revalidation 304, and the first loads the tables
    now on disk all the same."""
    first = OneRelease(host.url, cache_dir=tmp_path / 'shared')
    second = OneRelease(host.url, cache_dir=tmp_path / 'shared')
    before = first.search()
    new = make_session(source, 'KS001', '2024-03-01', 1, lab='cortexlab', probes=())
    _publish(source, tag='v2')
    host.sync()
    second.refresh_cache('refresh')
    assert len(second.search()) == len(before) + 1
    host.clear()
    first.refresh_cache('refresh')
    assert not [p for p in host.fetched() if p.endswith('.pqt')]  # nothing new to download
    assert len(first.search()) == len(before) + 1 and first.release_info.tag == 'v2'
    new_eid = first.path2eid(Path(first.cache_dir) / new.relative_to(source))
    assert first.load_object(new_eid, 'trials')['choice'].size
    # 'auto' mode too, once its check is due
    third = OneRelease(host.url, cache_dir=tmp_path / 'shared', mode='auto')
    _publish(source, tag='v3')
    host.sync()
    second.refresh_cache('refresh')
    third.cache_expiry = pd.Timedelta(0).to_pytimedelta()
    third.search()
    assert third.release_info.tag == 'v3'


def test_data_folder_with_its_own_tables_is_refused(http_host, tmp_path):
    """A folder indexed by `one index` (or holding a database's tables) is not a release's
    copy: opening a release into it would replace its tables.  Refused; nothing changes."""
    data = tmp_path / 'mydata'
    make_dataset_folder(data, n_subjects=1, n_sessions=2)
    make_parquet_db(data)
    before = {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}
    for kwargs in ({}, {'mode': 'local'}, {'tables_dir': data}):
        with pytest.raises(ReleaseError, match='cache tables .* not a copy of the release'):
            OneRelease(http_host.url, **{'cache_dir': data, **kwargs})
    with pytest.raises(ReleaseError, match='choose another cache_dir'):
        ONE(base_url=http_host.url, cache_dir=data)
    assert {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()} == before
    assert http_host.fetched() == ['cache_info.json']  # the probe of ONE only


def test_republished_release_seen_after_refresh(host, source):
    one = ONE(base_url=host.url)
    before = one.search()
    new = make_session(source, 'KS001', '2024-03-01', 1, lab='cortexlab', probes=())
    _publish(source, tag='v2')
    host.sync()
    host.clear()
    assert one.search() == before  # within the expiry: the tables are not revalidated
    assert host.fetched() == []
    one.refresh_cache('refresh')
    eids = one.search()
    assert len(eids) == len(before) + 1
    assert one.release_info.tag == 'v2'
    assert sorted(host.fetched()) == ['cache_info.json', 'datasets.pqt', 'sessions.pqt']
    new_eid = next(e for e in eids if e not in before)
    assert one.eid2path(new_eid).relative_to(one.cache_dir).as_posix() == \
        new.relative_to(source).as_posix()
    trials = one.load_object(new_eid, 'trials')
    assert len(trials['choice']) > 0
    # another process opening after the expiry sees it too; unchanged tables are kept
    host.clear()
    other = OneRelease(host.url, cache_expiry=0)
    assert other.search() == eids
    assert set(host.fetched()) <= {'cache_info.json'}  # revalidated, no table downloaded


def test_auto_mode_revalidates_after_expiry(http_host, source):
    one = OneRelease(http_host.url, mode='auto', cache_expiry=3600)
    n = len(one.search())
    make_session(source, 'ZFM-002', '2024-04-01', 1, lab='mainenlab', probes=())
    _publish(source)
    assert len(one.search()) == n
    one.cache_expiry = pd.Timedelta(0).to_pytimedelta()
    assert len(one.search()) == n + 1


def test_concurrent_opening_downloads_the_tables_once(http_host, tmp_path):
    """Threads (like processes) opening the same cache folder at once: one downloads the
    tables under the folder's lock, the others find them and revalidate (304)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(3) as pool:
        ones = list(pool.map(lambda _: OneRelease(http_host.url, cache_dir=tmp_path / 'c'),
                             range(3)))
    assert all(o.search() == ones[0].search() for o in ones)
    assert sorted(http_host.fetched()) == ['cache_info.json', 'datasets.pqt', 'sessions.pqt']


def test_tampered_file_refused_and_not_kept(host, source):
    local = One(cache_dir=source)
    eid, _ = _trials_session(local)
    rel = 'alf/_ibl_wheel.position.npy'
    server_file = local.eid2path(eid) / rel
    data = bytearray(server_file.read_bytes())
    data[-8:] = b'\x00' * 8  # same size, other bytes
    server_file.write_bytes(bytes(data))
    host.sync()
    one = OneRelease(host.url)
    with pytest.raises(ChecksumMismatch) as info:
        one.load_dataset(eid, '_ibl_wheel.position.npy', collection='alf')
    assert rel.split('/')[-1] in str(info.value)
    session_dir = Path(one.cache_dir) / server_file.relative_to(source).parent
    assert not session_dir.exists() or not any(session_dir.iterdir())  # nothing kept
    # other files load
    assert one.load_dataset(eid, '_ibl_wheel.timestamps.npy', collection='alf').size
    # a file of another size is refused the same way
    server_file.write_bytes(bytes(data) + b'extra')
    host.sync()
    with pytest.raises(SizeMismatch, match='_ibl_wheel.position'):
        one.load_dataset(eid, '_ibl_wheel.position.npy', collection='alf')
    assert not any(p.name.startswith('.') and 'position' in p.name
                   for p in Path(one.cache_dir).rglob('*'))


def test_tampered_table_refused(http_host, source, caplog):
    one = OneRelease(http_host.url)
    before = (Path(one.cache_dir) / 'datasets.pqt').read_bytes()
    make_session(source, 'KS001', '2024-03-01', 1, lab='cortexlab', probes=())
    _publish(source)
    with open(source / 'datasets.pqt', 'ab') as f:  # changed after cache_info.json
        f.write(b'junk')
    with pytest.raises(ReleaseError, match='datasets table'):
        one.refresh_cache('refresh')
    assert (Path(one.cache_dir) / 'datasets.pqt').read_bytes() == before
    assert not [p for p in Path(one.cache_dir).iterdir() if p.name.endswith(('.part',
                                                                             '.release'))]
    # revalidated by a query (auto mode): logged, the tables downloaded before are used
    n = len(one.search())
    one.cache_expiry = pd.Timedelta(0).to_pytimedelta()
    with caplog.at_level(logging.ERROR, logger='one.api'):
        assert len(one.search()) == n
    assert 'datasets table' in caplog.text and 'tables downloaded before' in caplog.text


def test_table_tampered_without_changing_its_size_refused(http_host, source):
    """Only the md5 can tell: the bytes of datasets.pqt changed on the host, not its size."""
    one = OneRelease(http_host.url)
    before = (Path(one.cache_dir) / 'datasets.pqt').read_bytes()
    make_session(source, 'KS001', '2024-03-01', 1, lab='cortexlab', probes=())
    _publish(source)
    table = bytearray((source / 'datasets.pqt').read_bytes())
    middle = len(table) // 2
    table[middle:middle + 8] = bytes(255 - b for b in table[middle:middle + 8])
    (source / 'datasets.pqt').write_bytes(bytes(table))
    with pytest.raises(ReleaseError, match='datasets table.*md5'):
        one.refresh_cache('refresh')
    assert (Path(one.cache_dir) / 'datasets.pqt').read_bytes() == before


def test_local_mode_makes_no_request(http_host, tmp_path):
    """ONE(base_url=URL, mode='local'): no request, whether or not a copy is on disk."""
    assert find_release(base_url=http_host.url, mode='local') == (False, None)
    assert http_host.server.requests == []
    one = OneRelease(http_host.url)  # a copy in the default folder
    ONE.cache_clear()
    http_host.clear()
    offline = ONE(base_url=http_host.url, mode='local')
    assert isinstance(offline, OneRelease) and offline.cache_dir == one.cache_dir
    assert offline.search() == one.search()
    assert http_host.server.requests == []


def test_default_folders_of_releases_differ(tmp_path):
    from one._release.sync import default_release_dir
    urls = ('https://h.org/a_b', 'https://h.org/a/b', 'http://h.org/a/b', 's3://h.org/a/b')
    folders = [default_release_dir(url) for url in urls]
    assert len(set(folders)) == len(urls)
    assert all(f.parent == Path(one_params.CACHE_DIR_DEFAULT) for f in folders)
    assert default_release_dir('https://h.org/a/b/') == folders[1]  # the same release


def test_import_loads_no_network_library():
    """`import one.api` stays cheap: requests, urllib3, boto3 and the download engine are
    imported when a request is made."""
    import subprocess
    import sys
    code = ('import sys, one.api; print(sorted(m for m in ("requests", "urllib3", "boto3", '
            '"one._download") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1]).stdout
    assert out.strip() == '[]'


def test_offline_after_download(http_host, source, caplog):
    one = ONE(base_url=http_host.url)
    local = One(cache_dir=source)
    eid, _ = _trials_session(local)
    trials = one.load_object(eid, 'trials')
    cache_dir = one.cache_dir
    http_host.close()
    ONE.cache_clear()
    offline = ONE(base_url=http_host.url, mode='local')
    assert isinstance(offline, OneRelease) and offline.offline
    assert offline.search() == local.search()
    _assert_same_object(offline.load_object(eid, 'trials'), trials)
    with pytest.raises(ALFObjectNotFound):
        offline.load_object(eid, 'wheel')  # never downloaded
    # the folder remembers its URL
    ONE.cache_clear()
    again = ONE(cache_dir=cache_dir)
    assert isinstance(again, OneRelease) and again.base_url == http_host.url
    # online mode with the host gone: an error is logged, the local copy is used; the
    # instance stays online (the host is tried again after the expiry), and a load that
    # needs the host says it cannot be reached
    with caplog.at_level(logging.ERROR, logger='one.api'):
        gone = OneRelease(cache_dir=cache_dir, cache_expiry=0)
    gone.cache_expiry = pd.Timedelta(hours=1).to_pytimedelta()
    assert gone.mode == 'remote' and not gone.offline
    assert 'cannot be read' in caplog.text and 'Connection refused' in caplog.text
    _assert_same_object(gone.load_object(eid, 'trials'), trials)
    with pytest.raises(DownloadConnectionError, match=http_host.url):
        gone.load_object(eid, 'wheel')


def test_lock_file(http_host, source, tmp_path):
    """A lock file saved from a release's loads makes another instance refuse the rest."""
    from one._api.lock import DatasetNotLocked
    one = OneRelease(http_host.url)
    one.record_loaded = True
    eid, _ = _trials_session(One(cache_dir=source))
    one.load_object(eid, 'wheel')
    lock = one.save_lock(tmp_path / 'analysis.lock.json')
    locked = ONE(base_url=http_host.url, lock=lock)
    assert locked.load_object(eid, 'wheel')['position'].size
    with pytest.raises(DatasetNotLocked):
        locked.load_object(eid, 'trials')


def test_local_mode_without_copy(http_host, tmp_path):
    with pytest.raises(ReleaseError, match='No local copy'):
        OneRelease(http_host.url, cache_dir=tmp_path / 'empty', mode='local')
    with pytest.raises(ValueError, match='needs the URL'):
        OneRelease(cache_dir=tmp_path / 'empty')


def test_unreachable_release_without_copy():
    import socket

    from one.release import ReleaseUnreachable
    with socket.socket() as sock:  # a port nobody listens on: connections are refused
        sock.bind(('127.0.0.1', 0))
        url = f'http://127.0.0.1:{sock.getsockname()[1]}/release'
    with pytest.raises(ReleaseUnreachable, match='Could not reach'):
        OneRelease(url)


def test_cache_dir_of_another_release(http_host, tmp_path):
    one = OneRelease(http_host.url)
    with pytest.raises(ReleaseError, match='holds the copy of the release'):
        OneRelease('http://127.0.0.1:1/other', cache_dir=one.cache_dir)


@pytest.mark.parametrize('kind', ['http', 's3'])
def test_uuid_layout(kind, request, source, tmp_path):
    """Tables under caches/<name>/, files under data/ with the dataset UUID in their names, as
    on IBL's public bucket."""
    site = tmp_path / 'site'
    _publish(source, out_dir=site / 'caches' / 'v1', layout='uuid', files_url='../../data')
    export_files(source, site / 'data', tables_dir=site / 'caches' / 'v1')
    if kind == 'http':
        served = HTTPHost(site)
        url = f'{served.url}/caches/v1'
    else:
        served = S3Host(site, request.getfixturevalue('s3env'), prefix='ibl')
        url = f's3://{BUCKET}/ibl/caches/v1'
    try:
        one = ONE(base_url=url)
        assert one.release_info.layout == 'uuid'
        local = One(cache_dir=site / 'caches' / 'v1')
        eid, trials = _trials_session(local)
        served.clear()
        obj = one.load_object(eid, 'trials', collection='alf')
        fetched = served.fetched()
        assert len(fetched) == len(trials)
        ids = one.list_datasets(eid, details=True)
        session_path = one.eid2path(eid).relative_to(one.cache_dir).as_posix()
        for rel in trials:
            dataset_id = ids.index[ids['rel_path'] == rel][0]
            stem, ext = rel.rsplit('.', 1)
            remote = f'{session_path}/{stem}.{dataset_id}.{ext}'
            assert (f'data/{remote}' if kind == 'http' else f'{BUCKET}/ibl/data/{remote}'
                    .removeprefix(f'{BUCKET}/ibl/')) in fetched
            # stored locally under its plain name
            assert (Path(one.cache_dir) / session_path / rel).read_bytes() == \
                (source / session_path / rel).read_bytes()
        _assert_same_object(obj, One(cache_dir=source).load_object(eid, 'trials',
                                                                    collection='alf'))
    finally:
        served.close()


def test_hostile_paths_in_tables_refused(http_host, source, tmp_path):
    """A release whose tables name files outside the session folders: never requested from
    the host, never read from or written to outside the cache folder (every kind of hostile
    path and every load: tests/test_confine.py)."""
    datasets, meta = parquet.load(source / 'datasets.pqt')
    datasets = datasets.reset_index()
    row = datasets.index[0]
    victim = tmp_path / 'victim.npy'  # a local file the hostile path points at
    np.save(victim, np.arange(3))
    cache_dir = tmp_path / 'cache'
    depth = len(cache_dir.relative_to(tmp_path).parts) + 5  # session path + climb out
    hostile = '/'.join(['..'] * depth) + '/victim.npy'
    datasets.loc[row, 'rel_path'] = hostile
    datasets.loc[row, 'file_size'] = victim.stat().st_size
    datasets.loc[row, 'hash'] = hashlib.md5(victim.read_bytes()).hexdigest()
    dataset_id = datasets.loc[row, 'id']
    parquet.save(source / 'datasets.pqt', datasets.set_index(['eid', 'id']), meta)
    info = json.loads((source / 'cache_info.json').read_text())
    info['tables']['datasets'].update(
        md5=hashlib.md5((source / 'datasets.pqt').read_bytes()).hexdigest(),
        size=(source / 'datasets.pqt').stat().st_size)
    (source / 'cache_info.json').write_text(json.dumps(info))
    one = OneRelease(http_host.url, cache_dir=cache_dir)
    http_host.clear()
    with pytest.raises(UnsafePath, match=f'Refusing dataset {dataset_id}.*climbs out'):
        one.load_dataset_from_id(dataset_id)  # as a local One on these tables
    assert http_host.fetched() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cache', 'source', 'victim.npy']
    # the other datasets of that session load as usual
    eid = datasets.loc[row, 'eid']
    assert one.load_object(eid, 'wheel')['position'].size


def test_hostile_table_file_in_description(http_host, source, tmp_path):
    info = json.loads((source / 'cache_info.json').read_text())
    info['tables']['datasets']['file'] = '../../../etc/passwd'
    (source / 'cache_info.json').write_text(json.dumps(info))
    with pytest.raises(NotARelease, match='climbs out'):
        OneRelease(http_host.url, cache_dir=tmp_path / 'cache')
    assert http_host.fetched() == ['cache_info.json']
    assert not (tmp_path / 'cache' / 'datasets.pqt').exists()


def test_files_url_above_the_host_refused(http_host, source, tmp_path):
    info = json.loads((source / 'cache_info.json').read_text())
    info['files']['url'] = '../../data'
    (source / 'cache_info.json').write_text(json.dumps(info))
    one = OneRelease(http_host.url, cache_dir=tmp_path / 'cache')
    eid = one.search()[0]
    with pytest.raises(NotARelease, match='above'):
        one.load_object(eid, 'wheel')


# ---- telling releases from databases -------------------------------------------------------

def test_alyx_url_is_not_a_release(alyx_server):
    assert find_release(base_url=alyx_server.url) == (False, None)
    assert [r.path for r in alyx_server.requests] == ['/cache_info.json']
    alyx_server.requests.clear()
    # a login, or a configured database: no request at all
    assert find_release(base_url=alyx_server.url, username='u') == (False, None)
    one_params.setup(client=alyx_server.url, silent=True)
    assert find_release(base_url=alyx_server.url) == (False, None)
    assert alyx_server.requests == []


def test_find_release(http_host, tmp_path):
    is_release, answer = find_release(base_url=http_host.url + '/')
    assert is_release and answer.status == 200
    assert find_release(base_url=f's3://{BUCKET}/x') == (True, None)
    assert find_release(cache_dir=tmp_path) == (False, None)
    assert find_release(base_url='not a url') == (False, None)
    with StaticServer(tmp_path) as empty:  # a web server without a release
        assert find_release(base_url=empty.url) == (False, None)


def test_one_factory_warns_about_ignored_arguments(http_host):
    with pytest.warns(UserWarning, match='"foo" is ignored'):
        one = ONE(base_url=http_host.url, foo=1, silent=True)
    assert isinstance(one, OneRelease)


# ---- S3 credentials -----------------------------------------------------------------------

def test_s3_anonymous_public_bucket(s3env, source, monkeypatch):
    host = S3Host(source, s3env)
    policy = {'Version': '2012-10-17', 'Statement': [{
        'Effect': 'Allow', 'Principal': '*', 'Action': 's3:GetObject',
        'Resource': f'arn:aws:s3:::{BUCKET}/*'}]}
    host.s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    for key in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):
        monkeypatch.delenv(key)
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true')
    one = OneRelease(host.url)
    from botocore import UNSIGNED
    assert one._source.s3.meta.config.signature_version is UNSIGNED
    eid = one.search()[0]
    assert one.load_object(eid, 'wheel')['position'].size


def test_s3_profile(s3env, source, monkeypatch, tmp_path):
    host = S3Host(source, s3env)
    credentials = tmp_path / 'credentials'
    credentials.write_text('[lab]\naws_access_key_id = testing\n'
                           'aws_secret_access_key = testing\n')
    for key in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):
        monkeypatch.delenv(key)
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', str(credentials))
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true')
    with pytest.raises(ReleaseError, match='anonymous request was refused.*pass profile='):
        OneRelease(host.url, cache_dir=tmp_path / 'anonymous')  # the private bucket refuses
    with pytest.raises(ReleaseError, match=r'profile \(nobody\) could not be found; name a'):
        OneRelease(host.url, profile='nobody', cache_dir=tmp_path / 'nobody')
    one = OneRelease(host.url, profile='lab', cache_dir=tmp_path / 'signed')
    assert len(one.search()) == 6


def test_no_warning_on_open(http_host):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        one = ONE(base_url=http_host.url)
        one.search()
    shutil.rmtree(one.cache_dir)


# ---- conditional GETs of cache_info.json -------------------------------------------------

def test_etag_revalidation(httpserver):
    """A host that sends ETags (nginx, S3 websites...) is revalidated with If-None-Match."""
    from one._release.remote import ReleaseSource
    body = b'{"x": 1}'
    httpserver.expect_ordered_request('/r/cache_info.json').respond_with_data(
        body, headers={'ETag': '"v1"', 'Last-Modified': 'Mon, 01 Jan 2024 00:00:00 GMT'})
    httpserver.expect_ordered_request(
        '/r/cache_info.json', headers={'If-None-Match': '"v1"'}).respond_with_data(
        b'', status=304)
    httpserver.expect_ordered_request('/r/cache_info.json').respond_with_data(
        body, headers={'ETag': 'W/"weak"'})
    source = ReleaseSource(httpserver.url_for('/r'))
    first = source.fetch(source.info_url)
    assert (first.status, first.body, first.etag) == (200, body, '"v1"')
    again = source.fetch(source.info_url, first.etag, first.last_modified)
    assert again.status == 304 and again.body is None
    weak = source.fetch(source.info_url)
    assert weak.etag is None  # a weak ETag promises no identical bytes: not used


@pytest.mark.parametrize('date, trusted', [('12:00:00', False), ('12:00:01', False),
                                           ('12:00:02', True), ('13:00:00', True)])
def test_last_modified_too_recent_is_not_trusted(date, trusted):
    """A Last-Modified within a second or two of the server's clock (its Date header) could
    hide a second change in the same second: it is not used for the next conditional GET.
    (A raw server sends exactly these headers: the dates are fixed, whatever the time.)"""
    from raw_server import RawServer, http_answer

    from one._release.remote import ReleaseSource
    modified = 'Mon, 01 Jan 2024 12:00:00 GMT'
    headers = {'Last-Modified': modified, 'Date': f'Mon, 01 Jan 2024 {date} GMT'}
    with RawServer(default=http_answer(200, b'{}', headers=headers)) as server:
        answer = ReleaseSource(server.url).fetch(f'{server.url}/cache_info.json')
    assert answer.last_modified == modified and answer.fresh_validators is trusted


def test_host_errors(httpserver):
    from one._release.remote import ReleaseSource
    httpserver.expect_request('/gone/cache_info.json').respond_with_data('', status=404)
    httpserver.expect_request('/broken/cache_info.json').respond_with_data('', status=418)
    with pytest.raises(NotARelease, match='HTTP 404'):
        ReleaseSource(httpserver.url_for('/gone')).fetch(httpserver.url_for('/gone/cache_info.json'))
    with pytest.raises(ReleaseError, match='HTTP 418'):
        ReleaseSource(httpserver.url_for('/broken')).fetch(
            httpserver.url_for('/broken/cache_info.json'))


def test_transient_host_error_retried(httpserver):
    from one._release.remote import ReleaseSource
    httpserver.expect_ordered_request('/r/cache_info.json').respond_with_data('', status=503)
    httpserver.expect_ordered_request('/r/cache_info.json').respond_with_data(b'{"a": 1}')
    source = ReleaseSource(httpserver.url_for('/r'))
    assert source.fetch(source.info_url).body == b'{"a": 1}'
    assert len(httpserver.log) == 2
