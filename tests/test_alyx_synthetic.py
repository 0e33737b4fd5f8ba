"""Tests of the generated Alyx database (tests/alyx_synthetic.py) and its replay by the server."""
import hashlib
from urllib.parse import quote

import pytest
import requests
from alyx_server import AlyxTestServer
from alyx_synthetic import SyntheticAlyx, parse_django

from one.converters import datasets2records, ses2records


@pytest.fixture(scope='module')
def db(tmp_path_factory):
    return SyntheticAlyx.generate(tmp_path_factory.mktemp('synthetic'), n_sessions=14)


def test_records_describe_the_files(db):
    assert len(db.sessions) == 14
    for record in db.sessions.values():
        for d in record['data_dataset_session_related']:
            path = d['data_url'].split('127.0.0.1:8001', 1)[1]
            data = db.file(path).read_bytes()
            assert len(data) == d['file_size'] and hashlib.md5(data).hexdigest() == d['hash']
            assert d['id'] in path and d['default_revision'] in ('True', 'False')
    # The session read and the datasets endpoint describe the same datasets
    for eid, record in db.sessions.items():
        _, from_session = ses2records(record)
        listed = [d for d in db.datasets if d['session'].endswith(eid)]
        from_list = datasets2records(listed)
        assert from_session['rel_path'].tolist() == from_list['rel_path'].tolist()
        assert from_session['hash'].tolist() == from_list['hash'].tolist()
    # Variation: revisions, sessions without probes, CRITICAL QC, datasets without file
    rel_paths = [d['data_url'] for r in db.sessions.values()
                 for d in r['data_dataset_session_related']]
    assert any('#2024-06-01#' in p for p in rel_paths)
    assert any(not r['probe_insertion'] for r in db.sessions.values())
    assert any(d['qc'] == 'CRITICAL' for d in db.datasets)
    assert any(not d['file_records'] for d in db.datasets)
    assert {p['session'] for p in db.insertions} == {
        eid for eid, r in db.sessions.items() if r['probe_insertion']}


def test_generation_is_deterministic(db, tmp_path):
    again = SyntheticAlyx.generate(tmp_path, n_sessions=14)
    assert again.sessions == db.sessions and again.datasets == db.datasets
    first = next(iter(db.files))
    assert again.file(first).read_bytes() == db.file(first).read_bytes()


def test_save_and_load(db, tmp_path):
    db.save(tmp_path / 'db.json')
    loaded = SyntheticAlyx.load(tmp_path / 'db.json')
    assert loaded.sessions == db.sessions and loaded.files == db.files
    assert SyntheticAlyx.load(tmp_path / 'missing.json') is None


def test_parse_django():
    assert parse_django('pk,abc') == [('pk', 'abc')]
    assert parse_django("id__in,['a', 'b'],name,x") == [('id__in', ['a', 'b']), ('name', 'x')]
    assert parse_django("pk__in,('a',)") == [('pk__in', ('a',))]
    with pytest.raises(ValueError):
        parse_django('pk')
    with pytest.raises(ValueError):
        parse_django("pk__in,['a'")


def test_server_answers_from_the_database(db):
    with AlyxTestServer(database=db) as server:
        session = requests.Session()
        token = session.post(f'{server.url}/auth-token', data={
            'username': server.username, 'password': server.password}).json()['token']
        session.headers['Authorization'] = f'Token {token}'
        eid = db.eids[0]
        record = session.get(f'{server.url}/sessions/{eid}').json()
        assert record['id'] == eid and record['url'] == f'{server.url}/sessions/{eid}'
        assert session.get(f'{server.url}/sessions/{"0" * 8}-0000-4000-8000-{"0" * 12}'
                           ).status_code == 404
        subject = record['subject']
        listed = session.get(f'{server.url}/sessions', params={'subject': subject}).json()
        assert listed['count'] == sum(r['subject'] == subject for r in db.sessions.values())
        # Batched dataset query over several sessions, paginated
        eids = db.eids[:3]
        django = quote(f'session__in,{eids}')
        page = session.get(f'{server.url}/datasets?django={django}&limit=10').json()
        expected = [d for d in db.datasets if d['session'][-36:] in eids]
        assert page['count'] == len(expected) and len(page['results']) == 10
        assert page['next'].startswith(server.url) and 'offset=10' in page['next']
        assert page['results'][0]['session'].startswith(server.url)
        # Data files, with their bytes
        url = record['data_dataset_session_related'][0]['data_url']
        assert requests.get(url).content == db.file(url[len(server.url):]).read_bytes()
        # A filter the database does not implement is answered 501, naming it
        r = session.get(f'{server.url}/datasets', params={'protected': 1})
        assert r.status_code == 501 and 'protected' in r.text
        # The other endpoints still come from the recordings
        assert session.get(f'{server.url}/labs').status_code == 200
