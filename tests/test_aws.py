"""Tests of `one.remote.aws` (and of the S3 transport of the download engine).

S3 is moto's real S3 server (`moto.server.ThreadedMotoServer`) on 127.0.0.1, reached through
``AWS_ENDPOINT_URL``; boto3 talks to it over HTTP exactly as it would to AWS.  Alyx is replaced
by a tiny stand-in object answering the one REST call these functions make (``data-repository``
``read``), with the record layout of a real Alyx.
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from one._download import (
    ChecksumMismatch,
    DownloadTask,
    HTTPStatusError,
    UnsafePath,
    download_files,
)
from one.remote import aws, base

REPO = Path(__file__).parents[1]
FILES = Path(__file__).parent / 'fixtures' / 'alyx' / 'files'
MiB = 1 << 20


def _public_bucket(client, name: str) -> None:
    """Create a bucket that anyone may list, like the IBL's (moto answers 403 otherwise)."""
    client.create_bucket(Bucket=name, ACL='public-read')


def _put(client, bucket: str, key: str, data: bytes) -> None:
    """Upload an object that anyone may read."""
    client.put_object(Bucket=bucket, Key=key, Body=data, ACL='public-read')


@pytest.fixture
def bucket(s3env):
    """A public-looking bucket holding the fixture session files and a few test objects."""
    import boto3

    client = boto3.client('s3', region_name='us-east-1')
    name = 'test-public-bucket'
    _public_bucket(client, name)
    objects = {}
    for file in sorted(FILES.rglob('*.npy'))[:6]:
        key = 'data/' + file.relative_to(FILES).as_posix()
        data = file.read_bytes()
        _put(client, name, key, data)
        objects[key] = data
    _put(client, name, 'folder/', b'')  # a folder placeholder
    _put(client, name, 'folder/a.txt', b'a' * 10)
    _put(client, name, 'folder/sub/', b'')
    _put(client, name, 'folder/sub/b.txt', b'b' * 20)
    _put(client, name, 'folder_alt/c.txt', b'c' * 30)  # look-alike
    big = b''.join(hashlib.sha256(i.to_bytes(4, 'little')).digest()
                   for i in range(3 * MiB // 32))
    _put(client, name, 'big.bin', big)
    objects['big.bin'] = big
    return SimpleNamespace(name=name, client=client, objects=objects)


class AlyxStandIn:
    """Answers ``rest('data-repository', 'read', id=...)`` like Alyx, from given records."""

    def __init__(self, repositories: dict):
        self.repositories = repositories
        self.calls = []

    def rest(self, endpoint, action, id=None, **kwargs):
        self.calls.append((endpoint, action, id))
        assert (endpoint, action) == ('data-repository', 'read')
        return {'name': id, 'data_url': None, 'repository_type': 'Fileserver',
                'json': self.repositories[id]}


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------
def test_constants():
    assert aws.REPO_DEFAULT == 'aws_cortexlab'
    assert aws.S3_BUCKET_IBL == 'ibl-brain-wide-map-public'
    assert aws.REGION_NAME == 'us-east-1'
    assert base.PROC_PRECEDENCE == ('aws', 'http', 'globus', 'kachary')
    assert base.PAR_ID_STR == 'one/remote'


def test_import_does_not_load_boto3():
    code = ('import sys, one.remote.aws as a; loaded = "boto3" in sys.modules; '
            'from one.remote.aws import ClientError; '
            'import botocore.exceptions as e; '
            'print(loaded, ClientError is e.ClientError, "boto3" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.split() == ['False', 'True', 'False']
    with pytest.raises(AttributeError):
        aws.NotAThing  # noqa: B018


def test_get_s3_virtual_host():
    assert aws.get_s3_virtual_host('s3://bucket/path/to/file', 'us-east-1') == \
        'https://bucket.s3.us-east-1.amazonaws.com/path/to/file'
    assert aws.get_s3_virtual_host('bucket/', 'eu-west-2') == \
        'https://bucket.s3.eu-west-2.amazonaws.com'
    assert aws.get_s3_virtual_host('bucket/a/b', 'eu-west-2') == \
        'https://bucket.s3.eu-west-2.amazonaws.com/a/b'
    with pytest.raises(AssertionError):
        aws.get_s3_virtual_host('s3://bucket/path', 'moon')


def test_url2uri():
    url = 'https://bucket.s3.eu-east-1.amazonaws.com/path/to/file'
    assert aws.url2uri(url) == 's3://bucket/path/to/file'
    assert aws.url2uri(url, return_location=True) == ('s3://bucket/path/to/file', 'eu-east-1')
    assert aws.url2uri('https://bucket.s3.amazonaws.com/a.npy', True) == \
        ('s3://bucket/a.npy', None)
    assert aws.url2uri('https://s3.us-west-2.amazonaws.com/bucket/a.npy', True) == \
        ('s3://bucket/a.npy', 'us-west-2')


def test_is_folder():
    assert aws.is_folder(SimpleNamespace(key='a/b/', size=0))
    assert not aws.is_folder(SimpleNamespace(key='a/b/', size=3))
    assert not aws.is_folder(SimpleNamespace(key='a/b', size=0))


def test_get_aws_access_keys():
    alyx = AlyxStandIn({'aws_cortexlab': {'bucket_name': 's3_bucket', 'Access key ID': 'ABCDEF',
                                          'Secret access key': 'shhh'}})
    keys, bucket = aws.get_aws_access_keys(alyx)
    assert bucket == 's3_bucket'
    assert keys == {'aws_access_key_id': 'ABCDEF', 'aws_secret_access_key': 'shhh',
                    'region_name': None}
    assert alyx.calls == [('data-repository', 'read', 'aws_cortexlab')]


# --------------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------------
def _is_unsigned(s3) -> bool:
    from botocore import UNSIGNED
    return s3.meta.client.meta.config.signature_version is UNSIGNED


def test_get_s3_from_alyx(bucket):
    alyx = AlyxStandIn({
        'aws_cortexlab': {'bucket_name': bucket.name},  # public, no keys: anonymous
        'private': {'bucket_name': bucket.name.replace('public', 'private'),
                    'Access key ID': 'testing', 'Secret access key': 'testing',
                    'region_name': 'eu-west-2'},
        'nokeys': {'bucket_name': 'lab-data'},  # no keys, not public: boto3's credentials
    })
    s3, name = aws.get_s3_from_alyx(alyx)
    assert name == bucket.name and _is_unsigned(s3)
    # anonymous access really works on moto
    assert s3.Object(name, 'folder/a.txt').get()['Body'].read() == b'a' * 10
    s3, name = aws.get_s3_from_alyx(alyx, repo_name='private')
    assert name == 'test-private-bucket' and not _is_unsigned(s3)
    assert s3.meta.client.meta.region_name == 'eu-west-2'
    s3, name = aws.get_s3_from_alyx(alyx, repo_name='nokeys')
    assert name == 'lab-data' and not _is_unsigned(s3)


def test_public_resources(s3env):
    s3, name = aws.get_s3_public()
    assert name == aws.S3_BUCKET_IBL and _is_unsigned(s3)
    assert s3.meta.client.meta.region_name == 'us-east-1'
    s3, name = aws.get_s3_allen()
    assert name == 'allen-brain-cell-atlas' and _is_unsigned(s3)
    assert s3.meta.client.meta.region_name == 'us-west-2'


# --------------------------------------------------------------------------------------------
# s3_download_file / s3_download_folder
# --------------------------------------------------------------------------------------------
def test_s3_download_file(bucket, tmp_path, caplog):
    import boto3

    s3 = boto3.resource('s3', region_name='us-east-1')
    key, data = next(iter(bucket.objects.items()))
    dest = tmp_path / 'sub' / 'file.npy'
    assert aws.s3_download_file(key, dest, s3=s3, bucket_name=bucket.name) == dest
    assert dest.read_bytes() == data
    assert [p for p in dest.parent.iterdir() if p.name.startswith('.')] == []
    # Same size: kept without downloading, unless overwrite
    dest.write_bytes(b'\0' * len(data))
    with caplog.at_level(logging.DEBUG, 'one.remote.aws'):
        assert aws.s3_download_file(Path(key), dest, s3=s3, bucket_name=bucket.name) == dest
    assert 'exists and match size -- skipping' in caplog.text
    assert dest.read_bytes() == b'\0' * len(data)
    aws.s3_download_file(key, dest, s3=s3, bucket_name=bucket.name, overwrite=True)
    assert dest.read_bytes() == data
    # A missing object: None, with an error logged
    caplog.clear()
    assert aws.s3_download_file('data/missing.npy', tmp_path / 'm.npy', s3=s3,
                                bucket_name=bucket.name) is None
    assert f'File data/missing.npy not found on {bucket.name}' in caplog.text
    assert not (tmp_path / 'm.npy').exists()


def test_s3_download_file_default_is_public_bucket(bucket, tmp_path):
    _public_bucket(bucket.client, aws.S3_BUCKET_IBL)
    _put(bucket.client, aws.S3_BUCKET_IBL, 'x/y.txt', b'public')
    assert aws.s3_download_file('x/y.txt', tmp_path / 'y.txt').read_bytes() == b'public'


def test_s3_download_file_other_client_error(bucket, tmp_path):
    """Errors other than 404 are raised: an anonymous read of a private object gives 403."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    from one.remote.aws import ClientError

    bucket.client.create_bucket(Bucket='private-bucket')
    bucket.client.put_object(Bucket='private-bucket', Key='secret.txt', Body=b'secret')
    anonymous = boto3.resource('s3', region_name='us-east-1',
                               config=Config(signature_version=UNSIGNED))
    with pytest.raises(ClientError) as info:
        aws.s3_download_file('secret.txt', tmp_path / 'x', s3=anonymous,
                             bucket_name='private-bucket')
    assert info.value.response['Error']['Code'] == '403'
    assert not (tmp_path / 'x').exists()


def test_s3_download_folder(bucket, tmp_path):
    import boto3

    s3 = boto3.resource('s3', region_name='us-east-1')
    dest = tmp_path / 'out'
    files = aws.s3_download_folder('folder', dest, s3=s3, bucket_name=bucket.name)
    assert sorted(files) == [dest / 'a.txt', dest / 'sub' / 'b.txt']
    assert (dest / 'a.txt').read_bytes() == b'a' * 10
    assert (dest / 'sub' / 'b.txt').read_bytes() == b'b' * 20
    assert not (tmp_path / 'out' / 'c.txt').exists() and not (tmp_path / 'folder_alt').exists()
    # A trailing slash means the same folder; existing files of the right size are kept
    (dest / 'a.txt').write_bytes(b'z' * 10)
    assert sorted(aws.s3_download_folder('folder/', dest, s3=s3, bucket_name=bucket.name)) \
        == sorted(files)
    assert (dest / 'a.txt').read_bytes() == b'z' * 10
    aws.s3_download_folder('folder', dest, s3=s3, bucket_name=bucket.name, overwrite=True)
    assert (dest / 'a.txt').read_bytes() == b'a' * 10
    # The destination must be a folder
    (tmp_path / 'file').write_text('x')
    with pytest.raises(AssertionError):
        aws.s3_download_folder('folder', tmp_path / 'file', s3=s3, bucket_name=bucket.name)


def test_s3_download_folder_refuses_hostile_keys(bucket, tmp_path):
    _put(bucket.client, bucket.name, 'evil/../../../escape.txt', b'x')
    listed = [o['Key'] for o in bucket.client.list_objects_v2(
        Bucket=bucket.name, Prefix='evil')['Contents']]
    assert listed == ['evil/../../../escape.txt']  # S3 keys are plain strings
    with pytest.raises(UnsafePath):
        aws.s3_download_folder('evil', tmp_path / 'a' / 'b', s3=bucket.client,
                               bucket_name=bucket.name)
    assert list(tmp_path.rglob('escape.txt')) == []


# --------------------------------------------------------------------------------------------
# The engine's S3 transport
# --------------------------------------------------------------------------------------------
def _record_get_object(client) -> list[dict]:
    """Record the parameters of every GetObject call (a botocore event hook, not a mock)."""
    calls = []
    client.meta.events.register('provide-client-params.s3.GetObject',
                                lambda params, **kw: calls.append(dict(params)))
    return calls


def test_engine_s3_tasks(bucket, tmp_path):
    tasks = [DownloadTask(f's3://{bucket.name}/{key}', tmp_path / key, size=len(data),
                          md5=hashlib.md5(data).hexdigest(), s3=bucket.client)
             for key, data in bucket.objects.items()]
    result = download_files(tasks, return_md5=True)
    for (path, md5), task in zip(result, tasks):
        assert path == task.destination and md5 == task.md5
    assert list(tmp_path.rglob('.*.part')) == [] and list(tmp_path.rglob('.*.lock')) == []


def test_engine_s3_default_client(bucket, tmp_path):
    data = bucket.objects['big.bin']
    (path,) = download_files([DownloadTask(f's3://{bucket.name}/big.bin', tmp_path / 'b',
                                           size=len(data))])
    assert path.read_bytes() == data


def test_engine_s3_resumes_partial_file(bucket, tmp_path):
    data = bucket.objects['big.bin']
    calls = _record_get_object(bucket.client)
    dest = tmp_path / 'big.bin'
    (tmp_path / '.big.bin.part').write_bytes(data[:MiB + 3])
    download_files([DownloadTask(f's3://{bucket.name}/big.bin', dest, size=len(data),
                                 md5=hashlib.md5(data).hexdigest(), s3=bucket.client)])
    assert dest.read_bytes() == data
    assert [c.get('Range') for c in calls] == [f'bytes={MiB + 3}-']


def test_engine_s3_checksum_mismatch(bucket, tmp_path):
    data = bucket.objects['big.bin']
    calls = _record_get_object(bucket.client)
    dest = tmp_path / 'big.bin'
    with pytest.raises(ChecksumMismatch, match=f's3://{bucket.name}/big.bin'):
        download_files([DownloadTask(f's3://{bucket.name}/big.bin', dest, size=len(data),
                                     md5='0' * 32, s3=bucket.client)])
    assert len(calls) == 2 and not dest.exists()


def test_engine_s3_missing_object(bucket, tmp_path):
    from one.remote.aws import ClientError

    with pytest.raises(HTTPStatusError) as info:
        download_files([DownloadTask(f's3://{bucket.name}/nope.bin', tmp_path / 'nope',
                                     s3=bucket.client)])
    assert info.value.status_code == 404 and 'not found' in str(info.value)
    assert isinstance(info.value.__cause__, ClientError)


class CuttingProxy:
    """A TCP proxy to the moto server that drops the first connection fetching `path` after
    `cut` bytes of its answer: a transfer really cut in the middle."""

    def __init__(self, upstream: str, path: str, cut: int):
        import socket
        import threading

        self.upstream = upstream.removeprefix('http://').split(':')
        self.path, self.cut, self.cuts, self.gets = path.encode(), cut, 0, []
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.url = f'http://127.0.0.1:{self.sock.getsockname()[1]}'
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading

        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            threading.Thread(target=self._pipe, args=(client, server, False),
                             daemon=True).start()

    def _pipe(self, client, server, _):
        import contextlib
        import socket
        import threading

        state = {'cut': None}

        def upstream():
            try:
                while data := client.recv(65536):
                    if data.startswith(b'GET ') and self.path in data.split(b'\r\n', 1)[0]:
                        self.gets.append(data.split(b'\r\n', 1)[0].decode())
                        if self.cuts == 0:
                            self.cuts, state['cut'] = 1, self.cut
                    server.sendall(data)
            except OSError:
                pass

        threading.Thread(target=upstream, daemon=True).start()
        sent = 0
        try:
            while data := server.recv(65536):
                if state['cut'] is not None and sent + len(data) >= state['cut']:
                    client.sendall(data[:state['cut'] - sent])
                    break
                client.sendall(data)
                if state['cut'] is not None:
                    sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self):
        self.sock.close()


def test_engine_s3_cut_transfer_resumes(bucket, s3env, tmp_path):
    import boto3

    data = bucket.objects['big.bin']
    proxy = CuttingProxy(s3env, f'/{bucket.name}/big.bin', cut=MiB + 500)
    try:
        client = boto3.client('s3', region_name='us-east-1', endpoint_url=proxy.url)
        calls = _record_get_object(client)
        dest = tmp_path / 'big.bin'
        (path, md5), = download_files([DownloadTask(
            f's3://{bucket.name}/big.bin', dest, size=len(data),
            md5=hashlib.md5(data).hexdigest(), s3=client)], backoff=0, return_md5=True)
    finally:
        proxy.close()
    assert path.read_bytes() == data and md5 == hashlib.md5(data).hexdigest()
    assert proxy.cuts == 1 and len(calls) == 2
    # resumed where the cut left it (the answer's headers took part of the cut bytes)
    assert 'Range' not in calls[0] and calls[1]['Range'].startswith('bytes=')
    assert 0 < int(calls[1]['Range'][6:-1]) < MiB + 500
    assert calls[1]['IfMatch'] == f'"{md5}"'


def test_engine_s3_connection_refused(s3env, tmp_path):
    import socket

    import boto3
    from botocore.config import Config

    from one._download import DownloadConnectionError

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    client = boto3.client('s3', region_name='us-east-1', endpoint_url=f'http://127.0.0.1:{port}',
                          config=Config(retries={'max_attempts': 1}))
    with pytest.raises(DownloadConnectionError, match='s3://bucket/key.npy'):
        download_files([DownloadTask('s3://bucket/key.npy', tmp_path / 'key.npy', s3=client)],
                       retries=1, backoff=0)
    assert not (tmp_path / 'key.npy').exists()


# --------------------------------------------------------------------------------------------
# one.remote.base
# --------------------------------------------------------------------------------------------
def test_client_params(tmp_path, monkeypatch):
    monkeypatch.setenv('ONE_PARAMS_DIR', str(tmp_path / 'params'))
    with pytest.raises(FileNotFoundError):
        base.load_client_params()
    assert base.load_client_params(assert_present=False) is None
    base.save_client_params({'globus': {'default': {'local_endpoint': 'abc'}}})
    assert (tmp_path / 'params' / '.remote').exists()
    pars = base.load_client_params('globus.default')
    assert pars.local_endpoint == 'abc' and pars.as_dict() == {'local_endpoint': 'abc'}
    base.save_client_params({'local_endpoint': 'xyz'}, client_key='globus.admin')
    assert base.load_client_params('globus').admin.local_endpoint == 'xyz'
    assert base.load_client_params('globus.default').local_endpoint == 'abc'
    with pytest.raises(AttributeError):
        base.load_client_params('globus.missing')
    assert base.load_client_params('aws', assert_present=False) is None
    with pytest.raises(ValueError):
        base.save_client_params({'globus': 'not a dict'})


def test_download_client_base():
    with pytest.raises(TypeError):
        base.DownloadClient()

    class Client(base.DownloadClient):
        def to_address(self, data_path, *args, **kwargs):
            return f'addr/{data_path}'

        def download_file(self, file_address, *args, **kwargs):
            return file_address

        @staticmethod
        def setup(*args, **kwargs):
            return None

    assert Client().to_address('x') == 'addr/x'
    alyx = AlyxStandIn({'flatiron': {'bucket_name': 'b'}})
    assert base.DownloadClient.repo_from_alyx('flatiron', alyx)['json'] == {'bucket_name': 'b'}
