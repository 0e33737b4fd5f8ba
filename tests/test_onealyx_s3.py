"""Tests of OneAlyx downloads from S3 with an HTTP fallback (`OneAlyx._download_datasets`).

Alyx is the replay server (tests/alyx_server.py) with two more answers in the layout of a real
Alyx: the data repository 'aws_cortexlab' (its ``json`` field holding the bucket and keys), and
the datasets list of the session, where each dataset has, beside its recorded file record, one
in an 'aws' repository.  S3 is moto's real server on 127.0.0.1 (fixtures in conftest.py).  The
cache tables are the database's (downloaded in 'auto' mode) with an ``exists_aws`` column added,
as in the IBL's tables.  Files that come over HTTP are served by the replay server, so which
source gave a file is seen in its request log.
"""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs
from uuid import UUID

import numpy as np
import pytest
from alyx_server import PASSWORD, USERNAME

from one._api import s3 as _remote_s3
from one._download import ChecksumMismatch, HTTPStatusError, SizeMismatch
from one.alf.exceptions import ALFObjectNotFound
from one.api import ONE, OneAlyx

REPO = Path(__file__).parents[1]
FIXTURES = Path(__file__).parent / 'fixtures' / 'alyx'
EID = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'
SESSION = 'testlab/Subjects/ZFM-01935/2024-03-14/001'
CHOICE = '901e18bb-99bf-48f4-a5a4-5d9f695a8581'  # alf/_ibl_trials.choice.npy
GO_CUE = '624acdf5-0392-4642-8b1b-a48e59bddcb6'  # alf/_ibl_trials.goCue_times.npy
BUCKET = 'one-test-data'
REPO_PATH = '/data/testlab/Subjects/'


def _repository(bucket: str = BUCKET, keys: bool = True) -> dict:
    """A data-repository record of an S3 bucket (the layout of the recorded ones)."""
    json_field = {'bucket_name': bucket}
    if keys:
        json_field.update({'Access key ID': 'testing', 'Secret access key': 'testing',
                           'region_name': 'us-east-1'})
    return {'name': 'aws_cortexlab', 'timezone': 'America/New_York', 'globus_path': '',
            'hostname': None, 'data_url': None, 'repository_type': 'AWS',
            'globus_endpoint_id': None, 'globus_is_personal': False, 'json': json_field}


def _dataset_list() -> dict:
    """The recorded datasets list of the session, each dataset also in an 'aws' repository."""
    body = json.loads((FIXTURES / 'datasets_list_session.json').read_text())
    for record in body['results']:
        http = record['file_records'][0]
        record['file_records'].append({
            'id': http['id'][:-4] + 'a0a0', 'data_repository': 'aws_cortexlab',
            'data_repository_path': REPO_PATH, 'relative_path': http['relative_path'],
            'data_url': None, 'exists': True})
    return body


def _aws_record(body: dict, dataset_id: str) -> dict:
    record = next(r for r in body['results'] if r['url'].endswith(dataset_id))
    return next(fr for fr in record['file_records'] if fr['data_repository'].startswith('aws'))


def _key(dataset_id: str) -> str:
    """The S3 key of a dataset of the session (its data file's name has the UUID)."""
    file = next((FIXTURES / 'files' / SESSION).rglob(f'*.{dataset_id}.*'))
    return 'data/' + file.relative_to(FIXTURES / 'files').as_posix()


def _fill(client, bucket: str, acl: str | None = None) -> None:
    """Upload the session's data files to `bucket` (keys ``data/<lab>/Subjects/...``)."""
    extra = {'ACL': acl} if acl else {}
    client.create_bucket(Bucket=bucket, **extra)
    for file in sorted((FIXTURES / 'files' / SESSION).rglob('*')):
        if file.is_file():
            key = 'data/' + file.relative_to(FIXTURES / 'files').as_posix()
            client.put_object(Bucket=bucket, Key=key, Body=file.read_bytes(), **extra)


@pytest.fixture
def s3(s3env):
    """A boto3 client of the moto server, with the session's files in `BUCKET`."""
    import boto3

    client = boto3.client('s3', region_name='us-east-1')
    _fill(client, BUCKET)
    return client


def _make_one(alyx_server, cache_dir, monkeypatch) -> OneAlyx:
    """OneAlyx in 'auto' mode: the database's cache tables, with ``exists_aws`` True."""
    monkeypatch.setenv('ONE_HTTP_DATA_SERVER', alyx_server.url)  # files over HTTP: the replay
    ONE.cache_clear()
    one = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                  cache_dir=cache_dir, silent=True, mode='auto')
    one._cache['datasets']['exists_aws'] = True
    return one


@pytest.fixture
def one(alyx_server, s3, tmp_path, monkeypatch):
    """OneAlyx in 'auto' mode whose database has the session's files on S3."""
    alyx_server.add_response('GET', '/data-repository/aws_cortexlab', _repository())
    alyx_server.add_response('GET', '/datasets', _dataset_list())
    yield _make_one(alyx_server, tmp_path / 'data', monkeypatch)
    ONE.cache_clear()


def _http_files(alyx_server) -> set:
    """Dataset ids of the data files requested from the HTTP data server."""
    return {r.path.rsplit('.', 2)[-2] for r in alyx_server.requests
            if r.path.startswith('/testlab/Subjects/')}


def _exists_aws(one, *ids) -> list:
    table = one._cache['datasets']  # UUID ids, as ONE-api's
    by_id = dict(zip(table.index.get_level_values('id'), table['exists_aws']))
    return [bool(by_id[UUID(i)]) for i in ids]


def _trial_ids(one) -> list:
    table = one._cache['datasets'].loc[UUID(EID)]
    return [str(x) for x in table.index[table['rel_path'].str.startswith('alf/_ibl_trials.')]]


def _uuid(eid: str):
    from uuid import UUID
    return UUID(eid)


def _expected(dataset_id: str) -> np.ndarray:
    return np.load(next((FIXTURES / 'files' / SESSION).rglob(f'*.{dataset_id}.*')))


# --------------------------------------------------------------------------------------------
# From S3
# --------------------------------------------------------------------------------------------
def test_load_from_s3(one, alyx_server):
    trials = one.load_object(EID, 'trials')
    np.testing.assert_array_equal(trials['choice'], _expected(CHOICE))
    np.testing.assert_array_equal(trials['goCue_times'], _expected(GO_CUE))
    assert _http_files(alyx_server) == set()  # nothing over HTTP
    # The records of the datasets to download, in one query
    queries = [parse_qs(r.query) for r in alyx_server.requests if r.path == '/datasets']
    assert len(queries) == 1 and queries[0]['exists'] == ['True']
    django = queries[0]['django'][0]
    assert django.startswith('id__in,') and all(i in django for i in _trial_ids(one))
    local = one.cache_dir / SESSION / 'alf' / '_ibl_trials.choice.npy'
    assert local.is_file()
    assert not list(local.parent.glob('.*'))  # no partial files left
    assert all(_exists_aws(one, *_trial_ids(one)))
    # A dataset in another collection; already present files are not downloaded again
    spikes = one.load_dataset(EID, 'spikes.times.npy', collection='alf/probe00')
    assert spikes.size > 0 and _http_files(alyx_server) == set()
    alyx_server.clear_log()
    one.load_object(EID, 'trials')
    assert alyx_server.count('GET', '/datasets') == 0


def test_pickled_after_s3_downloads(one, alyx_server):
    """The S3 client stays behind when the instance is pickled: the copy gets its own."""
    import pickle

    one.load_object(EID, 'trials')
    copy = pickle.loads(pickle.dumps(one))
    local = copy.cache_dir / SESSION / 'alf' / '_ibl_trials.choice.npy'
    local.unlink()
    np.testing.assert_array_equal(copy.load_object(EID, 'trials')['choice'], _expected(CHOICE))
    assert local.is_file() and _http_files(alyx_server) == set()  # from S3 again


def test_uuid_filenames(one, alyx_server):
    one.uuid_filenames = True
    file = one.load_dataset(EID, '_ibl_trials.choice.npy', download_only=True)
    assert file == one.cache_dir / SESSION / 'alf' / f'_ibl_trials.choice.{CHOICE}.npy'
    assert file.is_file() and _http_files(alyx_server) == set()
    # keep_uuid overrides the attribute
    one.uuid_filenames = False
    row = one._cache['datasets'].loc[[(UUID(EID), UUID(GO_CUE))]]
    (file,) = one._download_datasets(row, keep_uuid=True)
    assert file.name == f'_ibl_trials.goCue_times.{GO_CUE}.npy' and file.is_file()
    (file,) = one._download_aws(map(lambda x: x[1], row.iterrows()))  # rows, as the seed
    assert file.name == '_ibl_trials.goCue_times.npy' and file.is_file()


def test_public_bucket_is_read_anonymously(alyx_server, s3env, tmp_path, monkeypatch):
    import boto3

    _fill(boto3.client('s3', region_name='us-east-1'), 'one-public-bucket', acl='public-read')
    alyx_server.add_response('GET', '/data-repository/aws_cortexlab',
                             _repository('one-public-bucket', keys=False))
    alyx_server.add_response('GET', '/datasets', _dataset_list())
    for key in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):
        monkeypatch.delenv(key)  # no credentials at all: unsigned requests
    one = _make_one(alyx_server, tmp_path / 'data', monkeypatch)
    choice = one.load_dataset(EID, '_ibl_trials.choice.npy')
    np.testing.assert_array_equal(choice, _expected(CHOICE))
    assert _http_files(alyx_server) == set()


# --------------------------------------------------------------------------------------------
# Fallback to HTTP
# --------------------------------------------------------------------------------------------
def test_missing_on_s3_comes_over_http(one, alyx_server, s3):
    s3.delete_object(Bucket=BUCKET, Key=_key(CHOICE))  # S3 answers 404
    body = _dataset_list()
    record = next(r for r in body['results'] if r['url'].endswith(GO_CUE))
    record['file_records'] = record['file_records'][:1]  # no file record on S3
    alyx_server.add_response('GET', '/datasets', body)
    one._cache['_meta']['modified_time'] = None
    trials = one.load_object(EID, 'trials')
    np.testing.assert_array_equal(trials['choice'], _expected(CHOICE))
    np.testing.assert_array_equal(trials['goCue_times'], _expected(GO_CUE))
    assert _http_files(alyx_server) == {CHOICE, GO_CUE}
    others = [i for i in _trial_ids(one) if i not in (CHOICE, GO_CUE)]
    assert _exists_aws(one, CHOICE, GO_CUE) == [False, False]
    assert all(_exists_aws(one, *others))
    assert one._cache['_meta']['modified_time'] is not None
    # Without update_cache, exists_aws is left alone
    one._cache['datasets']['exists_aws'] = True
    (one.cache_dir / SESSION / 'alf' / '_ibl_trials.choice.npy').unlink()
    one._download_datasets(one._cache['datasets'].loc[[(UUID(EID), UUID(CHOICE))]],
                           update_cache=False)
    assert _exists_aws(one, CHOICE) == [True]


def test_absent_from_alyx_answer_comes_over_http(one, alyx_server):
    body = _dataset_list()
    body['results'] = [r for r in body['results'] if not r['url'].endswith(CHOICE)]
    body['count'] = len(body['results'])
    alyx_server.add_response('GET', '/datasets', body)
    choice = one.load_dataset(EID, '_ibl_trials.choice.npy')
    np.testing.assert_array_equal(choice, _expected(CHOICE))
    assert _http_files(alyx_server) == {CHOICE} and _exists_aws(one, CHOICE) == [False]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_s3_unreachable(one, alyx_server, monkeypatch, caplog):
    monkeypatch.setenv('AWS_ENDPOINT_URL', f'http://127.0.0.1:{_closed_port()}')
    monkeypatch.setenv('AWS_MAX_ATTEMPTS', '1')  # botocore's own retries, to keep it short
    with caplog.at_level(logging.DEBUG, logger='one.api'):
        trials = one.load_object(EID, 'trials')
    np.testing.assert_array_equal(trials['choice'], _expected(CHOICE))
    assert _http_files(alyx_server) == set(_trial_ids(one))
    assert 'S3 downloads stopped' in caplog.text
    assert all(_exists_aws(one, *_trial_ids(one)))  # an outage says nothing about the data


def test_s3_credentials_failing(alyx_server, s3, tmp_path, monkeypatch, caplog):
    """A private bucket, a repository without keys and no credentials anywhere."""
    for key in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):
        monkeypatch.delenv(key)
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true')
    alyx_server.add_response('GET', '/data-repository/aws_cortexlab',
                             _repository(keys=False))
    alyx_server.add_response('GET', '/datasets', _dataset_list())
    one = _make_one(alyx_server, tmp_path / 'data', monkeypatch)
    with caplog.at_level(logging.DEBUG, logger='one.api'):
        trials = one.load_object(EID, 'trials')
    np.testing.assert_array_equal(trials['choice'], _expected(CHOICE))
    assert _http_files(alyx_server) == set(_trial_ids(one))
    assert 'S3 downloads stopped' in caplog.text and 'credentials' in caplog.text
    assert all(_exists_aws(one, *_trial_ids(one)))


def test_no_aws_repository(alyx_server, tmp_path, monkeypatch, caplog):
    """A database without S3 (the recorded one answers 404): HTTP, asked once."""
    one = _make_one(alyx_server, tmp_path / 'data', monkeypatch)
    with caplog.at_level(logging.DEBUG, logger='one.api'):
        one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert 'Not downloading from S3: AlyxNotFound' in caplog.text
    one.load_dataset(EID, '_ibl_trials.goCue_times.npy')
    assert _http_files(alyx_server) == {CHOICE, GO_CUE}
    assert alyx_server.count('GET', '/data-repository/aws_cortexlab') == 1
    assert alyx_server.count('GET', '/datasets') == 0


def test_repository_without_bucket(alyx_server, tmp_path, monkeypatch, caplog):
    """A repository record whose json names no bucket (a file server's): HTTP, asked once."""
    record = json.loads((FIXTURES / 'data_repository_list.json').read_text())['results'][0]
    alyx_server.add_response('GET', '/data-repository/aws_cortexlab', record)
    assert record['json'] is None
    one = _make_one(alyx_server, tmp_path / 'data', monkeypatch)
    with caplog.at_level(logging.DEBUG, logger='one.api'):
        one.load_dataset(EID, '_ibl_trials.choice.npy')
        one.load_dataset(EID, '_ibl_trials.goCue_times.npy')
    assert 'names no S3 bucket' in caplog.text
    assert _http_files(alyx_server) == {CHOICE, GO_CUE}
    assert alyx_server.count('GET', '/data-repository/aws_cortexlab') == 1


def test_not_all_on_aws(one, alyx_server, caplog):
    table = one._cache['datasets']
    table.loc[(UUID(EID), UUID(CHOICE)), 'exists_aws'] = False  # an edit the next load sees
    with caplog.at_level(logging.DEBUG, logger='one.api'):
        one.load_object(EID, 'trials')
    assert 'Not downloading from S3: 1 of' in caplog.text
    assert _http_files(alyx_server) == set(_trial_ids(one))
    assert alyx_server.count('GET', '/data-repository/aws_cortexlab') == 0
    assert alyx_server.count('GET', '/datasets') == 0


def test_md5_mismatch_on_s3(one, alyx_server, s3):
    # Same size, other bytes: the S3 copy is bad
    for dataset_id in (CHOICE, GO_CUE):
        size = len(s3.get_object(Bucket=BUCKET, Key=_key(dataset_id))['Body'].read())
        s3.put_object(Bucket=BUCKET, Key=_key(dataset_id), Body=b'\x01' * size)
    choice = one.load_dataset(EID, '_ibl_trials.choice.npy')
    np.testing.assert_array_equal(choice, _expected(CHOICE))
    assert _http_files(alyx_server) == {CHOICE} and _exists_aws(one, CHOICE) == [False]
    # When HTTP fails too, the bad file is not placed
    alyx_server.fail(f'/{SESSION}/alf/_ibl_trials.goCue_times.{GO_CUE}.npy', status=404,
                     times=None)
    with pytest.raises(ALFObjectNotFound):
        one.load_dataset(EID, '_ibl_trials.goCue_times.npy')
    folder = one.cache_dir / SESSION / 'alf'
    assert not (folder / '_ibl_trials.goCue_times.npy').exists()
    assert not list(folder.glob('.*'))
    assert _exists_aws(one, GO_CUE) == [False]


def test_size_mismatch_on_s3(one, alyx_server, s3):
    s3.put_object(Bucket=BUCKET, Key=_key(CHOICE), Body=b'too short')
    choice = one.load_dataset(EID, '_ibl_trials.choice.npy')
    np.testing.assert_array_equal(choice, _expected(CHOICE))
    assert _http_files(alyx_server) == {CHOICE} and _exists_aws(one, CHOICE) == [False]


def test_hostile_s3_record_refused(one, alyx_server, tmp_path, caplog):
    body = _dataset_list()
    _aws_record(body, CHOICE)['relative_path'] = \
        '../../../../../../outside/alf/_ibl_trials.choice.npy'
    _aws_record(body, GO_CUE)['data_repository_path'] = '/data/../../outside/'
    alyx_server.add_response('GET', '/datasets', body)
    with caplog.at_level(logging.WARNING):
        trials = one.load_object(EID, 'trials')
    assert caplog.text.count('Refusing the S3 path') == 2
    np.testing.assert_array_equal(trials['choice'], _expected(CHOICE))
    assert _http_files(alyx_server) == {CHOICE, GO_CUE}
    assert _exists_aws(one, CHOICE, GO_CUE) == [False, False]
    assert not (tmp_path / 'outside').exists() and not Path('/outside').exists()


def test_mismatched_s3_record_refused(one, alyx_server, caplog):
    body = _dataset_list()
    _aws_record(body, CHOICE)['relative_path'] = 'ZFM-01935/2024-03-14/001/alf/other.npy'
    alyx_server.add_response('GET', '/datasets', body)
    with caplog.at_level(logging.WARNING):
        one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert 'does not match its relative path' in caplog.text
    assert _http_files(alyx_server) == {CHOICE}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def test_dataset_records_in_batches(one, alyx_server):
    ids = [str(x) for x in one._cache['datasets'].index.get_level_values('id')]
    assert len(ids) == 137
    records = _remote_s3.dataset_records(one.alyx, ids)
    assert CHOICE in records and records[CHOICE]['name'] == '_ibl_trials.choice.npy'
    queries = [parse_qs(r.query)['django'][0] for r in alyx_server.requests
               if r.path == '/datasets']
    asked = [q.count("'") // 2 for q in queries]
    assert asked == [100, 37]
    assert all(i in ''.join(queries) for i in ids)


def test_s3_key():
    record = {'data_repository_path': '/data/lab/Subjects/',
              'relative_path': 'subj/2020-01-01/001/alf/#2021-01-01#/obj.attr.npy'}
    uuid = '11111111-1111-4111-8111-111111111111'
    assert _remote_s3.s3_key(record, 'alf/#2021-01-01#/obj.attr.npy', uuid) == \
        f'data/lab/Subjects/subj/2020-01-01/001/alf/#2021-01-01#/obj.attr.{uuid}.npy'
    assert _remote_s3.s3_key({'relative_path': 'alf/obj.attr.npy'}, 'alf/obj.attr.npy',
                             uuid) == f'alf/obj.attr.{uuid}.npy'
    bad = [{'relative_path': 's/alf/../../x/alf/obj.attr.npy'},
           {'relative_path': '/etc/alf/obj.attr.npy'},
           {'data_repository_path': 'data/..', 'relative_path': 's/alf/obj.attr.npy'},
           {'relative_path': 's\\..\\alf/obj.attr.npy'},
           {'relative_path': 's/xalf/obj.attr.npy'},
           {'relative_path': 'alf/obj.attr.npy\x00'},
           {'relative_path': ''}]
    for record in bad:
        with pytest.raises(_remote_s3.BadS3Record):
            _remote_s3.s3_key(record, 'alf/obj.attr.npy', uuid)


def test_aws_file_record_and_failures():
    records = [{'data_repository': 'flatiron_lab', 'exists': True},
               {'data_repository': 'aws_lab', 'exists': False},
               {'data_repository': 'aws_cortexlab', 'exists': True, 'relative_path': 'x'}]
    assert _remote_s3.aws_file_record({'file_records': records}) is records[2]
    assert _remote_s3.aws_file_record({'file_records': records[:2]}) is None
    assert _remote_s3.aws_file_record(None) is None
    assert _remote_s3.is_dataset_failure(ChecksumMismatch('x'))
    assert _remote_s3.is_dataset_failure(SizeMismatch('x'))
    assert _remote_s3.is_dataset_failure(HTTPStatusError('x', status_code=404))
    assert not _remote_s3.is_dataset_failure(HTTPStatusError('x', status_code=403))
    assert not _remote_s3.is_dataset_failure(ConnectionError('x'))


def test_not_on_aws_reason():
    import pandas as pd

    frame = pd.DataFrame({'rel_path': ['a', 'b']})
    assert _remote_s3.not_on_aws_reason(frame) is None
    frame['exists_aws'] = [True, True]
    assert _remote_s3.not_on_aws_reason(frame) is None
    for values in ([True, False], [True, None], [True, pd.NA]):
        frame['exists_aws'] = pd.Series(values, dtype=object)
        assert '1 of 2' in _remote_s3.not_on_aws_reason(frame)
    frame['exists_aws'] = pd.array([True, pd.NA], dtype='boolean')
    assert '1 of 2' in _remote_s3.not_on_aws_reason(frame)


def test_import_does_not_load_boto3():
    code = 'import sys, one.api; print("boto3" in sys.modules, "botocore" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.split() == ['False', 'False']


def test_records_fixture_layout():
    """The added S3 file records have the fields of the recorded HTTP ones."""
    body = _dataset_list()
    http, aws = body['results'][0]['file_records']
    assert set(http) == set(aws) and aws['data_repository'].startswith('aws')


def test_prefetch_from_s3(one, alyx_server):
    """The records of a batched listing name the S3 files: no query per download."""
    one.mode = 'remote'
    alyx_server.clear_log()
    files = one.prefetch(EID, 'trials')[_uuid(EID)]
    assert len(files) == len(_trial_ids(one)) and all(f.exists() for f in files)
    assert _http_files(alyx_server) == set()  # all from S3
    queries = [parse_qs(r.query) for r in alyx_server.requests if r.path == '/datasets']
    assert len(queries) == 1 and queries[0]['django'][0].startswith('session__in,')
    assert alyx_server.count('GET', '/data-repository/aws_cortexlab') == 1
    alyx_server.clear_log()
    trials = one.load_object(EID, 'trials')
    np.testing.assert_array_equal(trials['choice'], _expected(CHOICE))
    assert alyx_server.requests == []


def test_prefetch_without_files_on_s3(one, alyx_server, monkeypatch):
    """When the listed records show no file on S3, the bucket is not even asked for."""
    body = json.loads((FIXTURES / 'datasets_list_session.json').read_text())
    alyx_server.add_response('GET', '/datasets', body)
    one.mode = 'remote'
    alyx_server.clear_log()
    files = one.prefetch(EID, 'trials')[_uuid(EID)]
    assert len(files) == len(_trial_ids(one))
    assert _http_files(alyx_server) == set(_trial_ids(one))
    assert alyx_server.count('GET', '/data-repository/aws_cortexlab') == 0
