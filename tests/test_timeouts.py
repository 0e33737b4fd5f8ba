"""Bounded waits: connect and read timeouts on every request (REST, HTTP data, S3), settable per
instance and by ``ONE_HTTP_TIMEOUT``; a read timeout is retried once, never more.

The hung server is real: a TCP server on 127.0.0.1 that accepts connections and never answers
(tests/raw_server.py).  It closes a connection after a while, so that a client without a read
timeout gets a connection error, not a timeout, and these tests fail instead of blocking.
S3 is boto3 pointed at that server (``AWS_ENDPOINT_URL``): moto cannot hang.
"""
import re

import pytest
from alyx_server import PASSWORD, USERNAME
from raw_server import RawServer

import one.params
import one.webclient as wc
from one._download import DownloadTask, DownloadTimeout, download_files, s3_config
from one._lib.http_timeouts import DEFAULT_TIMEOUT, resolve_timeout
from one.api import ONE, OneAlyx
from one.remote import aws

EID = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'
CHOICE_URL = ('/testlab/Subjects/ZFM-01935/2024-03-14/001/alf/'
              '_ibl_trials.choice.901e18bb-99bf-48f4-a5a4-5d9f695a8581.npy')


@pytest.fixture
def hung():
    """A server that accepts connections and never answers (closing them after 8 s)."""
    with RawServer(hang=8) as server:
        yield server


def _requests(server: RawServer) -> list[str]:
    """The request lines received."""
    return [r.split(b'\r\n', 1)[0].decode() for r in server.requests]


# --- the setting --------------------------------------------------------------------------------
def test_resolve_timeout(monkeypatch):
    monkeypatch.delenv('ONE_HTTP_TIMEOUT', raising=False)
    assert resolve_timeout() == DEFAULT_TIMEOUT == (10.0, 60.0)
    monkeypatch.setenv('ONE_HTTP_TIMEOUT', '3')
    assert resolve_timeout() == (3.0, 3.0)  # the connect timeout is never longer
    monkeypatch.setenv('ONE_HTTP_TIMEOUT', '45.5')
    assert resolve_timeout() == (10.0, 45.5)
    assert resolve_timeout(2) == (2.0, 2.0)  # the instance's setting wins
    assert resolve_timeout((4, 100)) == (4.0, 100.0)


@pytest.mark.parametrize('value', ['abc', '0', '-2', 'inf', 'nan'])
def test_bad_timeout_setting_is_named(monkeypatch, value):
    monkeypatch.setenv('ONE_HTTP_TIMEOUT', value)
    with pytest.raises(ValueError, match=f'ONE_HTTP_TIMEOUT must be .* not {value!r}'):
        resolve_timeout()
    with pytest.raises(ValueError, match='timeout must be'):
        resolve_timeout(-1)
    with pytest.raises(ValueError, match='read timeout must be'):
        resolve_timeout((1, 0))


def test_timeout_flows_from_one_to_the_client(alyx_server, tmp_path, monkeypatch):
    ONE.cache_clear()
    try:
        one = ONE(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                  cache_dir=tmp_path, silent=True, timeout=7)
        assert one.alyx.timeout == (7.0, 7.0)
    finally:
        ONE.cache_clear()
    monkeypatch.setenv('ONE_HTTP_TIMEOUT', '12')
    one = OneAlyx(base_url=alyx_server.url, username=USERNAME, cache_dir=tmp_path, silent=True)
    assert one.alyx.timeout == (10.0, 12.0)
    assert wc.AlyxClient(base_url=alyx_server.url, silent=True, cache_dir=tmp_path,
                         timeout=(1, 2)).timeout == (1.0, 2.0)


# --- REST ---------------------------------------------------------------------------------------
def _stored_token_client(url, tmp_path, **kwargs) -> wc.AlyxClient:
    """A client logged in with a stored token: it sends no login request."""
    wc.AlyxClient(base_url=url, silent=True, cache_dir=tmp_path)  # sets the database up
    one.params._store_token(url, USERNAME, 'a' * 40)
    return wc.AlyxClient(base_url=url, username=USERNAME, silent=True, cache_dir=tmp_path,
                         cache_rest=None, **kwargs)


def test_rest_query_to_a_hung_server(hung, tmp_path, monkeypatch):
    """With ONE_HTTP_TIMEOUT=3 a query fails after two attempts of 3 s (one retry)."""
    monkeypatch.setenv('ONE_HTTP_TIMEOUT', '3')
    ONE.cache_clear()
    _stored_token_client(hung.url, tmp_path)
    one = OneAlyx(base_url=hung.url, username=USERNAME, silent=True, cache_dir=tmp_path,
                  deadline=20)
    with pytest.raises(wc.AlyxTimeout) as info:
        one.search(subject='ZFM-01935')
    message = str(info.value)
    assert f'{hung.url}/api/schema' in message and 'did not answer within 3 s' in message
    assert '2 attempts' in message and info.value.attempts == 2
    assert _requests(hung) == ['GET /api/schema HTTP/1.1'] * 2


def test_login_to_a_hung_server_is_sent_once(hung, tmp_path):
    with pytest.raises(wc.AlyxTimeout, match=rf'did not answer within 0.5 s \({hung.url}/'
                                             r'auth-token; read timeout\)'):
        wc.AlyxClient(base_url=hung.url, username=USERNAME, password=PASSWORD, silent=True,
                      cache_dir=tmp_path, timeout=0.5)
    assert _requests(hung) == ['POST /auth-token HTTP/1.1']  # a write: never sent twice


# --- HTTP data ----------------------------------------------------------------------------------
def test_http_download_from_a_hung_server(hung, tmp_path, monkeypatch):
    monkeypatch.setenv('ONE_HTTP_TIMEOUT', '0.5')
    url = f'{hung.url}/data/x.npy'
    with pytest.raises(DownloadTimeout) as info:
        download_files([DownloadTask(url, tmp_path / 'x.npy')], retries=4, backoff=0)
    error = info.value
    assert isinstance(error, TimeoutError) and isinstance(error, ConnectionError)
    assert url in str(error) and 'within 0.5 s' in str(error) and '2 attempts' in str(error)
    assert _requests(hung) == ['GET /data/x.npy HTTP/1.1'] * 2  # retried once, not 4 times
    assert not (tmp_path / 'x.npy').exists()


def test_load_from_a_hung_data_server(alyx_server, hung, tmp_path, monkeypatch):
    """The data server accepts the request and sends nothing (the raw server, silent): the load
    gives up after two attempts of the instance's read timeout and raises the timeout, naming
    the file's URL and the limit, not 'not found'."""
    monkeypatch.setenv('ONE_HTTP_DATA_SERVER', hung.url)
    ONE.cache_clear()
    one = ONE(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
              cache_dir=tmp_path, silent=True, timeout=0.5)
    try:
        # the session's record, its files' data_url on the hung server
        record = one.alyx.rest('sessions', 'read', id=EID, no_cache=True)
        for dataset in record['data_dataset_session_related']:
            if dataset.get('data_url'):
                dataset['data_url'] = dataset['data_url'].replace(alyx_server.url, hung.url)
        alyx_server.add_response('GET', f'/sessions/{EID}', record)
        one.alyx.clear_rest_cache()
        with pytest.raises(DownloadTimeout) as info:
            one.load_dataset(EID, '_ibl_trials.choice.npy')
    finally:
        ONE.cache_clear()
    message = str(info.value)
    assert f'{hung.url}{CHOICE_URL}' in message and 'within 0.5 s' in message, message
    assert _requests(hung) == [f'GET {CHOICE_URL} HTTP/1.1'] * 2  # retried once


def test_load_from_a_hung_release_host(hung, tmp_path):
    """A release whose files are on a server that never answers: the load raises the timeout;
    when several files time out, the error names them all (and the limit)."""
    from static_server import StaticServer

    from one.api import OneRelease
    from one.release import make_release
    from one.synthetic import make_session

    folder = tmp_path / 'release'
    make_session(folder, 'KS001', '2024-01-15', 1, lab='cortexlab', probes=())
    make_release(folder, files_url=hung.url)  # the files on the hung server
    with StaticServer(folder) as host:
        one = OneRelease(host.url, cache_dir=tmp_path / 'cache', timeout=0.5)
        eid = one.search()[0]
        with pytest.raises(DownloadTimeout) as info:
            one.load_dataset(eid, '_ibl_wheel.position.npy')
        assert re.search(rf'{hung.url}/\S+/alf/_ibl_wheel.position.npy', str(info.value))
        assert 'within 0.5 s' in str(info.value)
        hung.requests.clear()
        with pytest.raises(DownloadTimeout) as info:
            one.load_object(eid, 'wheel')
    wheel = [r for r in one.list_datasets(eid) if r.startswith('alf/_ibl_wheel.')]
    assert len(wheel) >= 2
    message = str(info.value)
    assert all(name in message for name in wheel), message
    assert f'{len(wheel)} files timed out' in message and 'within 0.5 s' in message
    assert len(_requests(hung)) == 2 * len(wheel)
    assert not list((tmp_path / 'cache').rglob('*.npy'))


# --- S3 -----------------------------------------------------------------------------------------
@pytest.fixture
def s3_hung(hung, aws_env, monkeypatch):
    """boto3 pointed at the hung server, with fake credentials."""
    aws_env(hung.url)
    monkeypatch.setenv('ONE_HTTP_TIMEOUT', '0.5')
    return hung


def test_s3_download_from_a_hung_server(s3_hung, tmp_path):
    """The engine's S3 transport: botocore tries the call twice, the engine no more."""
    import boto3

    client = boto3.client('s3', config=s3_config())
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (0.5, 0.5)
    task = DownloadTask('s3://bucket/data/x.npy', tmp_path / 'x.npy', s3=client)
    with pytest.raises(DownloadTimeout) as info:
        download_files([task], retries=4, backoff=0)
    assert 's3://bucket/data/x.npy' in str(info.value) and 'within 0.5 s' in str(info.value)
    assert _requests(s3_hung) == ['GET /bucket/data/x.npy HTTP/1.1'] * 2


def test_s3_resources_have_timeouts(s3_hung, tmp_path):
    """The resources made by one.remote.aws: a read timeout is retried once, then raised."""
    from botocore.exceptions import ReadTimeoutError

    s3, bucket = aws.get_s3_public()
    assert s3.meta.client.meta.config.read_timeout == 0.5
    with pytest.raises(ReadTimeoutError, match=f'{s3_hung.url}/{bucket}/data/x.npy'):
        aws.s3_download_file('data/x.npy', tmp_path / 'x.npy', s3=s3, bucket_name=bucket)
    assert _requests(s3_hung) == [f'HEAD /{bucket}/data/x.npy HTTP/1.1'] * 2

    class Alyx:
        timeout = (1.0, 4.0)

        def rest(self, *args, **kwargs):
            return {'json': {'bucket_name': 'b-public'}}

    s3, _ = aws.get_s3_from_alyx(Alyx())
    config = s3.meta.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (1.0, 4.0)  # the client's


def test_local_one_accepts_the_network_settings(tmp_path):
    """ONE(cache_dir=..., timeout=...) on a local folder: nothing to wait for, no error."""
    from one.alf.cache import make_parquet_db
    from one.api import One
    from one.synthetic import make_dataset_folder

    make_dataset_folder(tmp_path, n_subjects=1, n_sessions=1)
    make_parquet_db(tmp_path)
    ONE.cache_clear()
    try:
        assert type(ONE(cache_dir=tmp_path, timeout=3, deadline=10)) is One
    finally:
        ONE.cache_clear()


# --- releases -----------------------------------------------------------------------------------
def test_release_on_a_hung_server(hung, tmp_path):
    """A release host that never answers: its description is asked for twice (one retry),
    each within the instance's read timeout."""
    from one._api.release import OneRelease
    from one._release.info import ReleaseError

    with pytest.raises(ReleaseError, match=f'{hung.url}/cache_info.json'):
        OneRelease(base_url=hung.url, cache_dir=tmp_path, timeout=0.5)
    assert _requests(hung) == ['GET /cache_info.json HTTP/1.1'] * 2

