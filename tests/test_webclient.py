"""one.webclient.AlyxClient against a real HTTP server answering like Alyx 3.6.1.

The server (tests/alyx_server.py) replays responses recorded from a real Alyx and injects
faults on demand: error statuses, slow answers, expired tokens.  Connection refused and TLS
failures are produced for real (a closed port; https to a plain-HTTP or self-signed server).
The only substitution is ``one.webclient.getpass`` in the interactive login test, because a
test cannot type a password at a terminal.
"""
import contextlib
import hashlib
import io
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import uuid
import warnings
import weakref
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
import requests
from alyx_server import FIXTURES, PASSWORD, USERNAME, AlyxTestServer

import one.params
import one.webclient as wc
from one._rest.cache import RestCache, cache_key
from one._rest.pagination import PaginatedResponse

EID = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'
PID = '1660de06-d188-49e8-b35b-f625d81f460f'


@pytest.fixture
def client(alyx_server, tmp_path):
    return wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                         cache_dir=tmp_path / 'cache', silent=True)


def client_params_file(url):
    return one.params.get_params_dir() / f'.{one.params._key_from_url(url)}'


def closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def recorded_json(name, server):
    """A recorded JSON answer, with the recorded hosts replaced by the test server's."""
    text = (FIXTURES / name).read_text()
    for host in ('http://127.0.0.1:8000', 'http://127.0.0.1:8001'):
        text = text.replace(host, server.url)
    return json.loads(text)


# --- module helpers ---------------------------------------------------------------------------
@pytest.mark.parametrize('url, par, expected', [
    ('website.com/?q=', {'pg': 5}, 'website.com/?pg=5'),
    ('website.com?q=xxx', {'pg': 5, 'foo': ['bar', 'baz']},
     'website.com?q=xxx&pg=5&foo=bar&foo=baz'),
    ('/path?param1=foo bar', {'param2': '#2020-01-03#,#2021-02-01#'},
     '/path?param1=foo+bar&param2=%232020-01-03%23%2C%232021-02-01%23'),
    ('/path', {}, '/path'),
    ('/datasets?revision=%232024-06-01%23', {'limit': 2},
     '/datasets?revision=%232024-06-01%23&limit=2'),
])
def test_update_url_params(url, par, expected):
    assert wc.update_url_params(url, par) == expected


def test_json_encoder():
    data = {'id': uuid.UUID(EID), 'when': datetime(2024, 3, 14, 10, 13), 'day': date(2024, 3, 14),
            'path': Path('a') / 'b.npy', 'n': np.int64(3), 'arr': np.arange(2)}
    assert json.loads(json.dumps(data, cls=wc._JSONEncoder)) == {
        'id': EID, 'when': '2024-03-14T10:13:00', 'day': '2024-03-14', 'path': 'a/b.npy',
        'n': 3, 'arr': [0, 1]}
    with pytest.raises(TypeError):
        json.dumps({'x': object()}, cls=wc._JSONEncoder)


@pytest.mark.parametrize('query, key', [
    ('/insertions/b529f2d8-cdae-4d59-aba2-cbd1b5572e36',
     'f530d6022f61cdc9e38cc66beb3cb71f3003c9a1'),
    ('/endpoint?id=5', '64b5b3476c015e04ee7c4753606b5e967325d34a'),
    ('/docs', '1baff95c2d0e31059720a3716ad5b5a34b61a207'),
])
def test_cache_key_matches_one_api(query, key):
    assert cache_key(query) == key


def test_public_names():
    for name in ('AlyxClient', 'no_cache', 'update_url_params', 'RestScheme',
                 'RestSchemeCoreApi', 'RestSchemeOpenApi', 'validate_endpoint_action',
                 '_PaginatedResponse', '_JSONEncoder', '_cache_response', 'HTTPError'):
        assert hasattr(wc, name), name
    assert wc._PaginatedResponse is PaginatedResponse


# --- authentication -----------------------------------------------------------------------------
def test_login_stores_private_token(alyx_server, client):
    assert client.is_logged_in and client.user == USERNAME
    login = [r for r in alyx_server.requests if r.path == '/auth-token']
    assert len(login) == 1 and login[0].method == 'POST'
    assert b'username=test_user' in login[0].body  # form fields, as Alyx expects
    stored = json.loads(client_params_file(alyx_server.url).read_text())
    assert stored['TOKEN'] == {USERNAME: {'token': alyx_server.token}}
    if os.name == 'posix':
        assert stat.S_IMODE(client_params_file(alyx_server.url).stat().st_mode) == 0o600
    sessions = client.rest('sessions', 'list')
    request = alyx_server.requests[-1]
    assert request.token == alyx_server.token
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers['accept'] == 'application/json'
    assert headers['one-api-version'] == one.__version__
    assert len(sessions) == 6


def test_stored_token_is_reused(alyx_server, client, tmp_path):
    second = wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, silent=True,
                           cache_dir=tmp_path / 'cache')
    assert second.is_logged_in
    assert second.rest('sessions', 'read', id=EID)['id'] == EID
    assert alyx_server.count('POST', '/auth-token') == 1


def test_lazy_login_on_first_request(alyx_server, tmp_path, monkeypatch):
    one.params.setup(alyx_server.url, silent=True, username=USERNAME)
    monkeypatch.setenv('ONE_ALYX_PWD', PASSWORD)
    ac = wc.AlyxClient(base_url=alyx_server.url, silent=True, cache_dir=tmp_path)
    assert not ac.is_logged_in and alyx_server.count() == 0
    assert ac.rest('subjects', 'read', id='ZFM-01935')['nickname'] == 'ZFM-01935'
    assert ac.user == USERNAME and alyx_server.count('POST', '/auth-token') == 1


def test_wrong_password(alyx_server, tmp_path):
    with pytest.raises(wc.AlyxAuthError) as info:
        wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, password='wrong-pass',
                      silent=True, cache_dir=tmp_path)
    ex = info.value
    assert isinstance(ex, requests.HTTPError) and ex.response.status_code == 400
    assert 'user = test_user, password = *****' in str(ex)
    assert 'Unable to log in with provided credentials' in str(ex)
    assert 'wrong-pass' not in str(ex)


def test_silent_without_password_or_token(alyx_server, tmp_path):
    with pytest.warns(UserWarning, match='No password or cached token'), \
            pytest.raises(wc.AlyxAuthError, match='No password or cached token'):
        wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, silent=True,
                      cache_dir=tmp_path)
    assert alyx_server.count() == 0


def test_interactive_login(alyx_server, tmp_path, monkeypatch, capsys):
    one.params.setup(alyx_server.url, silent=True, username=USERNAME)
    monkeypatch.setattr(wc, 'getpass', lambda prompt='': PASSWORD)
    ac = wc.AlyxClient(base_url=alyx_server.url, cache_dir=tmp_path)
    ac.authenticate()
    assert f'Connected to {alyx_server.url} as user "test_user"' in capsys.readouterr().out


def test_token_and_password_never_shown(alyx_server, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    one.params.setup(alyx_server.url, silent=True, username=USERNAME)
    ac = wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                       cache_dir=tmp_path)  # not silent: prints
    ac.rest('sessions', 'list', subject='ZFM-01935')
    alyx_server.expire_tokens()
    ac.rest('sessions', 'read', id=EID)  # logs in again
    ac.print_endpoint_info('sessions', 'read')
    errors = []
    for call in (lambda: ac.rest('sessions', 'read', id='00000000-0000-0000-0000-000000000000'),
                 lambda: ac.get('/sessions?date_range=notadate')):
        with pytest.raises(wc.AlyxHTTPError) as info:
            call()
        errors.append(str(info.value))
    out = capsys.readouterr()
    shown = '\n'.join([out.out, out.err, caplog.text, repr(ac), repr(ac._par), *errors])
    for secret in {alyx_server.token, one.params.get(alyx_server.url).TOKEN[USERNAME]['token'],
                   PASSWORD}:
        assert secret not in shown


def test_expired_token_logs_in_again(alyx_server, client):
    assert client.rest_schemes is not None
    old = alyx_server.token
    alyx_server.expire_tokens()
    assert client.rest('sessions', 'read', id=EID, no_cache=True)['id'] == EID
    assert alyx_server.token != old and client._token == alyx_server.token
    seq = [(r.method, r.path) for r in alyx_server.requests[-3:]]
    assert seq == [('GET', f'/sessions/{EID}'), ('POST', '/auth-token'),
                   ('GET', f'/sessions/{EID}')]
    stored = json.loads(client_params_file(alyx_server.url).read_text())['TOKEN']
    assert stored[USERNAME]['token'] == alyx_server.token


def test_expired_token_without_password_in_silent_mode(alyx_server, client, tmp_path):
    second = wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, silent=True,
                           cache_dir=tmp_path / 'cache')  # stored token, no password
    alyx_server.expire_tokens()
    with pytest.raises(wc.TokenExpired) as info:
        second.rest('sessions', 'read', id=EID, no_cache=True)
    assert isinstance(info.value, wc.AlyxAuthError) and isinstance(info.value,
                                                                   requests.HTTPError)
    assert 'no longer valid' in str(info.value) and alyx_server.url in str(info.value)
    assert not second.is_logged_in


def test_token_rejected_after_new_login(alyx_server, client):
    alyx_server.fail(f'/sessions/{EID}', status=403, body={'detail': 'Invalid token.'},
                     times=2)
    with pytest.raises(wc.TokenExpired, match='again right after a new login'):
        client.rest('sessions', 'read', id=EID, no_cache=True)
    assert alyx_server.count('POST', '/auth-token') == 2


def test_forbidden_without_credentials(alyx_server, client):
    body = json.loads((FIXTURES / 'unauthenticated_sessions.json').read_text())
    alyx_server.fail('/labs', status=403, body=body)
    with pytest.raises(wc.AlyxAuthError, match='Authentication credentials were not provided'):
        client.rest('labs', 'list')
    assert alyx_server.count('POST', '/auth-token') == 1  # no pointless login


def test_logout(alyx_server, client, capsys):
    client.rest('sessions', 'list')
    assert any(client.rest_cache_dir.iterdir())
    client.silent = False
    client.logout()
    assert f'test_user logged out from {alyx_server.url}' in capsys.readouterr().out
    assert not client.is_logged_in and client.user is None
    assert 'TOKEN' not in json.loads(client_params_file(alyx_server.url).read_text())
    assert not any(client.rest_cache_dir.iterdir())
    client.logout()  # no-op


# --- REST queries -------------------------------------------------------------------------------
def test_rest_list_filters(alyx_server, client):
    ses = client.rest('sessions', 'list', subject='ZFM-01935')
    assert isinstance(ses, list) and {s['subject'] for s in ses} == {'ZFM-01935'}
    assert ses[0]['url'].startswith(alyx_server.url)  # recorded hosts rewritten
    ses = client.rest('sessions', 'list', date_range=['2024-03-12', '2024-03-13'])
    # pages as long as the server allows: most answers in one request
    assert alyx_server.requests[-1].query == \
        f'date_range=2024-03-12%2C2024-03-13&limit={wc.LIST_PAGE_LIMIT}'
    assert sorted(s['start_time'][:10] for s in ses) == ['2024-03-12', '2024-03-12']
    assert client.rest('sessions', 'list', subject='NoSuchSubject') == []
    ses = client.rest('sessions', 'list', django=f"pk__in,('{EID}',)")
    assert [s['id'] for s in ses] == [EID]


def test_rest_list_with_id_and_values(alyx_server, client):
    alyx_server.add_response('GET', f'/datasets?django=session__isnull%2CTrue%2Cpk%2C{EID}'
                             '&exists=True', {'count': 0, 'next': None, 'previous': None,
                                              'results': []})
    assert client.rest('datasets', 'list', id=uuid.UUID(EID), exists=True,
                       django='session__isnull,True') == []
    query = parse_qs(alyx_server.requests[-1].query)
    assert query == {'django': [f'session__isnull,True,pk,{EID}'], 'exists': ['True'],
                     'limit': [str(wc.LIST_PAGE_LIMIT)]}


def test_rest_read(alyx_server, client):
    assert client.rest('sessions', 'read', id=EID)['id'] == EID
    assert client.rest('sessions', 'read', uuid.UUID(EID))['id'] == EID
    assert client.rest('insertions', 'read', f'{alyx_server.url}/insertions/{PID}')['id'] == PID
    assert client.rest('subjects', 'read', id='ZFM-01935')['nickname'] == 'ZFM-01935'
    assert client.rest('/sessions', 'read', id=EID)['id'] == EID


def test_rest_argument_checks(client, capsys, caplog):
    with pytest.raises(ValueError, match='REST endpoint "sessionz" does not exist'):
        client.rest('sessionz', 'list')
    with pytest.raises(ValueError, match='Action "fly" for REST endpoint "sessions" does not'):
        client.rest('sessions', 'fly')
    assert client.rest() is None
    assert 'Available endpoints' in capsys.readouterr().out
    assert client.rest('sessions') is None
    out = capsys.readouterr().out
    assert "'list', 'read', 'create', 'update', 'partial_update', 'delete'" in out
    assert 'subject' in out
    with caplog.at_level(logging.WARNING):
        assert client.rest('sessions', 'read') is None
        assert client.rest('sessions', 'partial-update', id=EID) is None
    assert '/sessions/{id}' in caplog.text
    with pytest.warns(UserWarning, match="Unsupported fields '{'colour'}'"), \
            pytest.raises(wc.AlyxServerError):  # sent anyway; not recorded on the server
        client.rest('sessions', 'list', colour='blue')


def test_rest_query_string_forces_list(client):
    ses = client.rest('sessions?subject=ZFM-01935', 'read')
    assert {s['subject'] for s in ses} == {'ZFM-01935'}


def test_cache_info_redirect(alyx_server, client):
    info = client.get('cache/info')
    assert info['origin'] == 'alyx' and info['tables']['datasets']['nrecs'] == 137
    first, second = alyx_server.requests[-2:]
    assert (first.path, second.path) == ('/cache/info', '/cache/info/')
    assert second.token == alyx_server.token  # the token follows the redirect


def test_write_actions_and_json_fields(alyx_server, client):
    rec = client.rest('insertions', 'read', id=PID)
    assert rec['json']['n_units'] == 40
    assert client.json_field_update('insertions', PID, data={'n_units': 41, 'new': 1}) == {
        'qc': 'PASS', 'n_units': 41, 'extended_qc': {'alignment_resolved': True}, 'new': 1}
    assert client.json_field_remove_key('insertions', PID, key='new') == {
        'qc': 'PASS', 'n_units': 41, 'extended_qc': {'alignment_resolved': True}}
    assert client.json_field_remove_key('insertions', PID, key='absent')['n_units'] == 41
    assert client.json_field_write('insertions', PID, 'json', {'a': 1}) == {'a': 1}
    assert client.rest('insertions', 'read', id=PID, no_cache=True)['json'] == {'a': 1}
    assert client.json_field_delete('insertions', PID, 'json') is None
    assert client.json_field_remove_key('insertions', PID, key='a') is None
    patch = [r for r in alyx_server.requests if r.method == 'PATCH'][-1]
    assert json.loads(patch.body) == {'json': None}
    assert patch.headers['Content-Type'] == 'application/json'
    with pytest.raises(ValueError, match='does not exist'):
        client.json_field_write('nope', PID, 'json', {})
    # create, update, delete
    note = client.rest('notes', 'create', data={'text': 'hello', 'object_id': uuid.UUID(EID)})
    assert note['object_id'] == EID and note['text'] == 'hello'
    assert client.rest('notes', 'update', id=note['id'], data={'text': 'bye'})['text'] == 'bye'
    assert client.rest('notes', 'delete', id=note['id']) is None
    with pytest.raises(wc.AlyxNotFound):
        client.rest('notes', 'read', id=note['id'])
    assert client.rest('notes', 'create') is None  # no data: nothing sent


def test_upload_files(alyx_server, client):
    note = client.rest('notes', 'create', data={'text': 'pic'},
                       files={'image': ('a.png', io.BytesIO(b'\x89PNG'))})
    assert note == {'id': note['id'], 'url': note['url'], 'text': 'pic', 'image': 'a.png'}
    assert 'multipart/form-data' in alyx_server.requests[-1].headers['Content-Type']


# --- pagination ---------------------------------------------------------------------------------
@pytest.fixture
def paged(alyx_server, client):
    alyx_server.page_size = alyx_server.max_limit = 2  # a server granting pages of 2 only
    ses = client.rest('sessions', 'list')
    alyx_server.clear_log()
    return ses


def test_pagination_is_lazy(alyx_server, paged):
    assert isinstance(paged, wc._PaginatedResponse) and len(paged) == 6
    recorded = recorded_json('sessions_list_all.json', alyx_server)['results']
    ids = [r['id'] for r in recorded]
    assert paged[0]['id'] == ids[0] and alyx_server.count() == 0  # first page already here
    assert paged[-1]['id'] == ids[-1]
    assert [r.query for r in alyx_server.requests] == ['limit=2&offset=4']
    assert paged[3]['id'] == ids[3] and paged[2]['id'] == ids[2]
    assert alyx_server.count() == 2  # the middle page, once
    assert [s['id'] for s in paged] == ids and alyx_server.count() == 2


def test_pagination_slices_and_sequence_methods(alyx_server, paged):
    recorded = recorded_json('sessions_list_all.json', alyx_server)['results']
    ids = [r['id'] for r in recorded]
    assert [s['id'] for s in paged[:3]] == ids[:3]
    assert [s['id'] for s in paged[::-2]] == ids[::-2]
    assert [s['id'] for s in paged[-2:]] == ids[-2:]
    assert paged[10:] == [] and paged[1:1] == []
    assert paged == recorded and paged == tuple(recorded) and paged != recorded[:-1]
    assert recorded[4] in paged and paged.index(recorded[4]) == 4
    assert [s['id'] for s in reversed(paged)] == ids[::-1]
    with pytest.raises(IndexError):
        paged[6]
    with pytest.raises(IndexError):
        paged[-7]
    with pytest.raises(TypeError):
        paged['a']
    assert 'PaginatedResponse' in repr(paged)


def test_pagination_callbacks_and_count_change(alyx_server, client, paged):
    pages = []

    class Listener:
        def on_page(self, records):
            pages.append(len(records))
    listener = Listener()
    paged.add_callback(weakref.WeakMethod(listener.on_page))
    seen = []
    paged.add_callback(seen.append)
    with pytest.raises(TypeError, match='Expected type "callable"'):
        paged.add_callback('not callable')
    paged[2]
    assert pages == [2] and len(seen) == 1
    del listener  # a dead weak reference is dropped, other callbacks still run
    alyx_server.add_response('GET', '/sessions?limit=2&offset=4', {
        'count': 5, 'next': None, 'previous': None,
        'results': recorded_json('sessions_list_all.json', alyx_server)['results'][4:]})
    with pytest.warns(RuntimeWarning, match='remote results for /sessions endpoint changed'):
        paged[5]
    assert pages == [2] and len(seen) == 2 and paged.is_complete


def test_pagination_uses_cache_args(alyx_server, client):
    alyx_server.page_size = alyx_server.max_limit = 2
    client.rest('sessions', 'list')[5]
    alyx_server.clear_log()
    client.rest('sessions', 'list')[5]
    assert alyx_server.count() == 0  # every page cached
    client.rest('sessions', 'list', no_cache=True)[5]
    assert [r.query for r in alyx_server.requests] == [f'limit={wc.LIST_PAGE_LIMIT}',
                                                       'limit=2&offset=4']


def test_recorded_paginated_answer(alyx_server, client):
    dsets = client.get('/datasets?tag=2024_Q4_test_release&limit=3')
    assert isinstance(dsets, wc._PaginatedResponse) and len(dsets) == 33
    first = recorded_json('datasets_list_tag_paginated.json', alyx_server)['results']
    assert dsets.limit == 3 and dsets[:3] == first
    assert dsets.query == (f'{alyx_server.url}/datasets?limit=3&offset=3'
                           '&tag=2024_Q4_test_release')


def test_pagination_from_an_offset(alyx_server, client):
    alyx_server.page_size = 2
    ses = client.get('/sessions?limit=2&offset=2')
    recorded = recorded_json('sessions_list_all.json', alyx_server)['results']
    assert len(ses) == 6 and ses[2] == recorded[2]
    n = alyx_server.count()
    assert ses[0] == recorded[0] and alyx_server.count() == n + 1


# --- REST cache ---------------------------------------------------------------------------------
def test_get_responses_are_cached(alyx_server, client):
    first = client.rest('sessions', 'list', subject='ZFM-01935')
    n = alyx_server.count()
    assert client.rest('sessions', 'list', subject='ZFM-01935') == first
    assert alyx_server.count() == n
    query = f'/sessions?subject=ZFM-01935&limit={wc.LIST_PAGE_LIMIT}'
    file = client.rest_cache_dir / hashlib.sha1(query.encode()).hexdigest()
    response, expiry = json.loads(file.read_text())
    assert response['results'] == first
    assert timedelta(minutes=4) < datetime.fromisoformat(expiry) - datetime.now() <= \
        timedelta(minutes=5)
    assert client.rest_cache_dir == client.cache_dir / '.rest'


def test_cache_expiry_options(alyx_server, client):
    def fetches(**kwargs):
        n = alyx_server.count('GET', f'/sessions/{EID}')
        client.rest('sessions', 'read', id=EID, **kwargs)
        return alyx_server.count('GET', f'/sessions/{EID}') - n
    assert fetches() == 1 and fetches() == 0
    assert fetches(no_cache=True) == 1 and fetches(no_cache=True) == 1
    assert fetches(expires=True) == 1 and fetches() == 1  # expired on arrival
    client.clear_rest_cache()
    assert fetches(expires=timedelta(days=1)) == 1 and fetches() == 0
    key = cache_key(f'/sessions/{EID}')
    response, _ = RestCache(client.rest_cache_dir).read(key)
    RestCache(client.rest_cache_dir).write(key, response, datetime.now() - timedelta(seconds=1))
    assert fetches() == 1  # the stored expiry time has passed
    n = alyx_server.count()
    client.get(f'/sessions/{EID}', clobber=True)
    assert alyx_server.count() == n + 1


def test_no_cache_context_and_modes(alyx_server, client, tmp_path):
    path = f'/sessions/{EID}'
    client.rest('sessions', 'read', id=EID)
    n = alyx_server.count('GET', path)
    with wc.no_cache(client) as ac:
        assert ac is client and ac.cache_mode is None
        client.rest('sessions', 'read', id=EID)
    assert client.cache_mode == 'GET' and alyx_server.count('GET', path) == n + 1
    off = wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, silent=True,
                        cache_dir=tmp_path / 'off', cache_rest=None)
    off.rest('sessions', 'read', id=EID)
    off.rest('sessions', 'read', id=EID)
    assert alyx_server.count('GET', path) == n + 3
    assert not (tmp_path / 'off' / '.rest').exists()


def test_only_get_is_cached(alyx_server, client):
    client.rest('notes', 'create', data={'text': 'a'})
    client.rest('notes', 'create', data={'text': 'a'})
    assert alyx_server.count('POST', '/notes') == 2
    everything = wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, silent=True,
                               cache_dir=client.cache_dir, cache_rest='*')
    everything.post('/notes', data={'text': 'b'})
    everything.post('/notes', data={'text': 'b'})
    assert alyx_server.count('POST', '/notes') == 3


def test_cached_response_when_offline(tmp_path):
    server = AlyxTestServer()
    server.start()
    try:
        ac = wc.AlyxClient(base_url=server.url, username=USERNAME, password=PASSWORD,
                           silent=True, cache_dir=tmp_path)
        ac.rest('sessions', 'read', id=EID, expires=True)  # cached, already expired
    finally:
        server.stop()
    ac.timeout = (2, 2)
    with pytest.warns(RuntimeWarning, match='Failed to connect, returning cached response'):
        assert ac.rest('sessions', 'read', id=EID)['id'] == EID
    with pytest.raises(wc.AlyxConnectionError):
        ac.rest('sessions', 'read', id=EID, no_cache=True)


def test_corrupt_cache_file_is_replaced(alyx_server, client):
    client.rest('sessions', 'read', id=EID)
    file = client.rest_cache_dir / cache_key(f'/sessions/{EID}')
    file.write_text('[{"id": "trunc')
    n = alyx_server.count()
    assert client.rest('sessions', 'read', id=EID)['id'] == EID
    assert alyx_server.count() == n + 1
    assert json.loads(file.read_text())[0]['id'] == EID
    client.clear_rest_cache()
    assert not any(client.rest_cache_dir.iterdir())


def test_cache_files_are_never_read_half_written(tmp_path):
    """Writers in other processes replace the file; a reader never sees a partial one (ONE#228).

    Each writer stores a ~2 MB response many times under the same key while this process reads
    the file in a loop and decodes every read completely.
    """
    folder = tmp_path / '.rest'
    code = textwrap.dedent(f"""
        import sys
        from datetime import datetime
        from one._rest.cache import RestCache
        cache = RestCache({str(folder)!r})
        payload = [sys.argv[1] * 100] * 20000
        for i in range(25):
            cache.write('key', {{'i': i, 'data': payload}}, datetime.now())
    """)
    RestCache(folder).write('key', {'i': -1, 'data': []}, datetime.now())
    procs = [subprocess.Popen([sys.executable, '-c', code, c],
                              cwd=Path(wc.__file__).parents[1]) for c in 'ab']
    reads = 0
    path = folder / 'key'
    while any(p.poll() is None for p in procs) or reads == 0:
        raw = path.read_bytes()
        response, _ = json.loads(raw)  # raises if ever partial
        assert set(response) == {'i', 'data'}
        reads += 1
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert reads > 0
    assert [p.name for p in folder.iterdir()] == ['key']  # no temporary file left


# --- schema -----------------------------------------------------------------------------------
def test_openapi_scheme(client, capsys):
    scheme = client.rest_schemes
    assert isinstance(scheme, wc.RestSchemeOpenApi)
    assert {'sessions', 'datasets', 'cache', 'cache.zip'} <= set(scheme.endpoints)
    assert not {'api', 'auth-token', ''} & set(scheme.endpoints)
    assert scheme.endpoints == sorted(scheme.endpoints)
    assert scheme.actions('sessions') == ['list', 'read', 'create', 'update',
                                          'partial_update', 'delete']
    assert scheme.url('sessions', 'read') == '/sessions/{id}'
    assert scheme.url('subjects', 'read') == '/subjects/{nickname}'
    names = scheme.field_names('sessions', 'list')
    assert {'subject', 'django', 'limit', 'offset', 'date_range'} <= set(names)
    assert {'subject', 'number', 'start_time'} <= set(scheme.field_names('sessions', 'create'))
    # the seed's idiom: rest_schemes[endpoint]['list']['fields']
    assert [f['name'] for f in scheme['sessions']['list']['fields']] == names
    assert 'sessions' in scheme and len(scheme) == len(scheme.endpoints)
    assert scheme.actions('nope') is None
    assert 'Endpoint "nope" does not exist' in capsys.readouterr().out
    assert scheme.url('sessions', 'fly') is None
    assert 'does not have action "fly"' in capsys.readouterr().out
    client.print_endpoint_info('sessions', 'list')
    out = capsys.readouterr().out
    assert 'GET /sessions' in out and 'subject' in out
    assert client.list_endpoints() == scheme.endpoints


def test_schema_is_cached_for_a_week(alyx_server, client, tmp_path):
    assert client.rest_schemes is client.rest_schemes
    other = wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, silent=True,
                          cache_dir=client.cache_dir)
    other.rest('sessions', 'read', id=EID)
    assert alyx_server.count('GET', '/api/schema') == 1
    headers = {k.lower(): v for k, v in next(
        r for r in alyx_server.requests if r.path == '/api/schema').headers.items()}
    assert headers['accept'] == 'application/vnd.oai.openapi+json'
    file = client.rest_cache_dir / cache_key('/api/schema')
    expiry = datetime.fromisoformat(json.loads(file.read_text())[1])
    assert expiry - datetime.now() > timedelta(days=6)


def test_legacy_coreapi_scheme(tmp_path):
    with AlyxTestServer(legacy_schema=True) as server:
        ac = wc.AlyxClient(base_url=server.url, username=USERNAME, password=PASSWORD,
                           silent=True, cache_dir=tmp_path)
        scheme = ac.rest_schemes
        assert isinstance(scheme, wc.RestSchemeCoreApi)
        assert scheme.url('sessions', 'read') == '/sessions/{id}'
        assert 'subject' in scheme.field_names('sessions', 'list')
        assert {s['subject'] for s in ac.rest('sessions', 'list', subject='ZFM-01935')} == \
            {'ZFM-01935'}
        docs = next(r for r in server.requests if r.path == '/docs')
        assert docs.headers['Accept'] == 'application/coreapi+json'


# --- errors -------------------------------------------------------------------------------------
def test_not_found_names_endpoint_and_id(client):
    bad = '00000000-0000-0000-0000-000000000000'
    with pytest.raises(wc.AlyxNotFound) as info:
        client.rest('sessions', 'read', id=bad)
    ex = info.value
    assert isinstance(ex, requests.HTTPError) and isinstance(ex, LookupError)
    assert ex.response.status_code == 404 and ex.errno == 404
    assert (ex.endpoint, ex.record_id) == ('sessions', bad)
    assert 'sessions' in str(ex) and bad in str(ex)
    assert 'No Session matches the given query' in str(ex)
    with pytest.raises(wc.AlyxNotFound, match='endpoint "no-such-endpoint" not found'):
        client.get('/no-such-endpoint')
    with pytest.raises(wc.AlyxNotFound, match='not-a-uuid'):
        client.get('/sessions/not-a-uuid')


def test_server_error_json_traceback(client):
    with pytest.raises(wc.AlyxServerError) as info:
        client.rest('sessions', 'list', date_range='notadate')
    ex = info.value
    assert ex.response.status_code == 500 and 'IndexError' in ex.detail
    assert '/sessions?date_range=notadate' in str(ex)


def test_server_error_html_then_success(alyx_server, client):
    alyx_server.fail(f'/sessions/{EID}', status=500,
                     body='<html><body><h1>Server Error (500)</h1></body></html>')
    with pytest.raises(wc.AlyxServerError) as info:
        client.rest('sessions', 'read', id=EID)
    assert 'Server Error (500)' in str(info.value) and '<h1>' not in str(info.value)
    assert not isinstance(info.value, json.JSONDecodeError)
    assert not (client.rest_cache_dir / cache_key(f'/sessions/{EID}')).exists()
    assert client.rest('sessions', 'read', id=EID)['id'] == EID


def test_gateway_errors_are_retried(alyx_server, client):
    alyx_server.fail(f'/sessions/{EID}', status=503, times=2)
    assert client.rest('sessions', 'read', id=EID)['id'] == EID
    assert alyx_server.count('GET', f'/sessions/{EID}') == 3
    alyx_server.fail('/notes', status=503, method='POST')
    with pytest.raises(wc.AlyxServerError, match='503'):  # never re-send a POST
        client.rest('notes', 'create', data={'text': 'x'})


def test_bad_request(client):
    with pytest.raises(wc.AlyxBadRequest, match='notasessionpath') as info:
        client.post('/register-file', data={'path': 'notasessionpath',
                                            'filenames': 'a.b.npy',
                                            'name': 'flatiron_testlab'})
    assert info.value.response.status_code == 400


def test_success_with_non_json_body(alyx_server, client):
    alyx_server.add_response('GET', '/labs', '<html>maintenance</html>',
                             content_type='text/html')
    with pytest.raises(wc.AlyxInvalidResponse, match='not JSON') as info:
        client.rest('labs', 'list')
    assert isinstance(info.value, requests.RequestException)
    assert not isinstance(info.value, json.JSONDecodeError)


def test_connection_refused(tmp_path):
    url = f'http://127.0.0.1:{closed_port()}'
    with pytest.raises(wc.AlyxConnectionError) as info:
        wc.AlyxClient(base_url=url, username=USERNAME, password=PASSWORD, silent=True,
                      cache_dir=tmp_path)
    ex = info.value
    assert isinstance(ex, requests.ConnectionError) and isinstance(ex, ConnectionError)
    assert "Can't connect to 127.0.0.1" in str(ex) and 'refused' in str(ex).lower()
    assert PASSWORD not in str(ex)


def test_connection_refused_after_login(alyx_server, client):
    alyx_server.stop()
    with pytest.raises(wc.AlyxConnectionError, match='/labs'):
        client.get('/labs')


def test_timeout(alyx_server, client):
    client.timeout = (5, 0.3)
    alyx_server.delay(f'/sessions/{EID}', 30, times=None)
    with pytest.raises(wc.AlyxTimeout) as info:
        client.rest('sessions', 'read', id=EID)
    ex = info.value
    assert isinstance(ex, requests.Timeout) and isinstance(ex, TimeoutError)
    assert 'did not answer within 0.3 s' in str(ex) and f'/sessions/{EID}' in str(ex)
    assert '2 attempts' in str(ex) and 'ONE_HTTP_TIMEOUT' in str(ex)
    assert alyx_server.count('GET', f'/sessions/{EID}') == 2  # a slow answer is retried once


@pytest.mark.skipif(sys.platform != 'linux', reason='relies on Linux dropping SYNs to a full '
                    'accept queue')
def test_connect_timeout(tmp_path):
    """A server whose accept queue is full never completes the TCP handshake."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(0)
    port = server.getsockname()[1]
    pending = []
    for _ in range(3):  # fill the queue; these connections are never accepted
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(('127.0.0.1', port))
        pending.append(s)
    try:
        with pytest.raises(wc.AlyxConnectTimeout) as info:
            wc.AlyxClient(base_url=f'http://127.0.0.1:{port}', username=USERNAME,
                          password=PASSWORD, silent=True, cache_dir=tmp_path,
                          timeout=(0.3, 5), retries=0)
    finally:
        for s in (*pending, server):
            s.close()
    ex = info.value
    assert isinstance(ex, ConnectionError) and isinstance(ex, TimeoutError)
    assert isinstance(ex, requests.ConnectTimeout)
    assert f'Timed out connecting to 127.0.0.1:{port} after 0.3 s' in str(ex)


def test_tls_to_plain_http_server(alyx_server, tmp_path):
    url = alyx_server.url.replace('http://', 'https://')
    with pytest.raises(wc.AlyxSSLError) as info:
        wc.AlyxClient(base_url=url, username=USERNAME, password=PASSWORD, silent=True,
                      cache_dir=tmp_path)
    assert isinstance(info.value, requests.exceptions.SSLError)
    assert 'TLS/SSL failure' in str(info.value) and url in str(info.value)


def test_tls_untrusted_certificate(tmp_path):
    """A real HTTPS server with a self-signed certificate: verification fails."""
    pytest.importorskip('cryptography')
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from werkzeug.serving import make_server

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, '127.0.0.1')])
    now = datetime.now().astimezone()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / 'cert.pem').write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / 'key.pem').write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / 'cert.pem', tmp_path / 'key.pem')
    server = make_server('127.0.0.1', 0, lambda env, start: [], ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(wc.AlyxSSLError, match='(?i)certificate verify failed'):
            wc.AlyxClient(base_url=f'https://127.0.0.1:{server.server_port}',
                          username=USERNAME, password=PASSWORD, silent=True,
                          cache_dir=tmp_path / 'c')
    finally:
        server.shutdown()
        server.server_close()


def test_error_hierarchy():
    assert issubclass(wc.AlyxConnectTimeout, requests.ConnectTimeout)
    assert issubclass(wc.AlyxConnectTimeout, ConnectionError)
    assert issubclass(wc.AlyxConnectTimeout, TimeoutError)
    assert issubclass(wc.AlyxSSLError, wc.AlyxConnectionError)
    for cls in (wc.AlyxHTTPError, wc.AlyxConnectionError, wc.AlyxTimeout,
                wc.AlyxInvalidResponse):
        assert issubclass(cls, wc.AlyxError) and issubclass(cls, requests.RequestException)


# --- cache tables -----------------------------------------------------------------------------
def test_download_cache_tables(alyx_server, client, tmp_path):
    dest = tmp_path / 'tables'
    files = client.download_cache_tables(None, dest)
    assert sorted(f.name for f in files) == ['QC.json', 'cache_info.json', 'datasets.pqt',
                                             'sessions.pqt']
    assert all(f.parent == dest for f in files)
    assert len(pd.read_parquet(dest / 'sessions.pqt')) == 6
    assert len(pd.read_parquet(dest / 'datasets.pqt')) == 137
    assert sorted(p.name for p in dest.iterdir()) == sorted(f.name for f in files)
    request = alyx_server.requests[-1]
    assert request.path == '/cache.zip' and request.token == alyx_server.token
    # from the location given by /cache/info, relative or absolute; default destination
    assert len(client.download_cache_tables('cache.zip', tmp_path / 'rel')) == 4
    files = client.download_cache_tables(f'{alyx_server.url}/cache.zip')
    assert files[0].parent == client.cache_dir


def _zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize('member', ['../evil.pqt', '/tmp/evil.pqt', 'a/../../evil.pqt',
                                    'C:\\evil.pqt', '..\\evil.pqt'])
def test_download_cache_tables_refuses_zip_slip(alyx_server, client, tmp_path, member):
    good = (FIXTURES / 'cache_zip.zip').read_bytes()
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[member] = b'owned'
    alyx_server.add_response('GET', '/evil.zip', _zip(members),
                             content_type='application/zip')
    dest = tmp_path / 'deep' / 'tables'
    with pytest.raises(wc.BadCacheArchive, match='Refusing to extract') as info:
        client.download_cache_tables(f'{alyx_server.url}/evil.zip', dest)
    assert member in str(info.value)
    assert isinstance(info.value, ValueError)
    assert sorted(p.name for p in tmp_path.rglob('*') if p.is_file()) == []


def test_download_cache_tables_bad_archives(alyx_server, client, tmp_path):
    alyx_server.add_response('GET', '/notzip.zip', b'PK\x03\x04 truncated',
                             content_type='application/zip')
    with pytest.raises(wc.BadCacheArchive, match='not a valid zip'):
        client.download_cache_tables('notzip.zip', tmp_path / 't')
    alyx_server.add_response('GET', '/empty.zip', _zip({'readme.txt': b'x'}),
                             content_type='application/zip')
    with pytest.raises(wc.BadCacheArchive, match='no cache table'):
        client.download_cache_tables('empty.zip', tmp_path / 't')
    good = bytearray(_zip({'sessions.pqt': b'x' * 1000}))
    good[good.index(b'x' * 10)] ^= 0xFF  # flip a byte of the member's data
    alyx_server.add_response('GET', '/crc.zip', bytes(good), content_type='application/zip')
    with pytest.raises(wc.BadCacheArchive, match='damaged'):
        client.download_cache_tables('crc.zip', tmp_path / 't')
    with pytest.raises(wc.AlyxNotFound):
        client.download_cache_tables('no-such.zip', tmp_path / 't')
    assert not any(p.is_file() for p in (tmp_path / 't').rglob('*'))


def test_download_cache_tables_from_other_host_gets_no_token(client, httpserver, tmp_path):
    httpserver.expect_request('/caches/cache.zip').respond_with_data(
        (FIXTURES / 'cache_zip.zip').read_bytes(), content_type='application/zip')
    files = client.download_cache_tables(httpserver.url_for('/caches/cache.zip'), tmp_path)
    assert len(files) == 4
    request, _ = httpserver.log[0]
    assert 'Authorization' not in request.headers


# --- misc ---------------------------------------------------------------------------------------
def test_cache_dir_property(client, tmp_path):
    assert client.cache_dir == tmp_path / 'cache'
    client.cache_dir = tmp_path / 'moved'
    assert (tmp_path / 'moved').is_dir()
    assert client.rest_cache_dir == tmp_path / 'moved' / '.rest'


def test_file_urls(client):
    server = client._par.HTTP_DATA_SERVER
    assert client.rel_path2url('/lab/Subjects/a.npy') == f'{server}/lab/Subjects/a.npy'
    assert client._validate_file_url('lab/a.npy') == f'{server}/lab/a.npy'
    assert client._validate_file_url(f'{server}/x.npy') == f'{server}/x.npy'
    with pytest.raises(AssertionError):
        client._validate_file_url('https://elsewhere.org/x.npy')
    with pytest.raises(AssertionError):
        client.rel_path2url('https://elsewhere.org/x.npy')


def test_pickle_drops_password(client):
    import pickle
    clone = pickle.loads(pickle.dumps(client))
    assert clone._credentials is None and clone.is_logged_in
    assert PASSWORD.encode() not in pickle.dumps(client)


def test_client_repr(client, alyx_server):
    assert repr(client) == f'<AlyxClient {alyx_server.url}, user "test_user">'


@contextlib.contextmanager
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        yield


def test_plain_queries_do_not_warn(client):
    with _no_warnings():
        client.rest('sessions', 'list', subject='ZFM-01935', no_cache=True)
        client.rest('datasets', 'list', session=EID)


# --- data files ---------------------------------------------------------------------------------
@pytest.fixture
def file_server(tmp_path):
    """The test server also serving data files, set up as the client's data server."""
    files = tmp_path / 'files'
    (files / 'testlab' / 'Subjects').mkdir(parents=True)
    (files / 'testlab' / 'Subjects' / 'a.npy').write_bytes(b'a' * 1000)
    (files / 'testlab' / 'Subjects' / 'b.npy').write_bytes(b'b' * 10)
    with AlyxTestServer(files_dir=files) as server:
        one.params.setup(server.url, silent=True, username=USERNAME,
                         HTTP_DATA_SERVER=server.url)
        yield server


def test_download_file(file_server, tmp_path):
    ac = wc.AlyxClient(base_url=file_server.url, username=USERNAME, password=PASSWORD,
                       silent=True, cache_dir=tmp_path / 'cache')
    path = ac.download_file('testlab/Subjects/a.npy', target_dir=tmp_path / 'dl')
    assert path == tmp_path / 'dl' / 'a.npy' and path.read_bytes() == b'a' * 1000
    paths = ac.download_file([f'{file_server.url}/testlab/Subjects/a.npy',
                              'testlab/Subjects/b.npy'], target_dir=tmp_path / 'many',
                             clobber=True)
    assert [p.name for p in paths] == ['a.npy', 'b.npy']
    assert file_server.requests[-1].token is None  # the Alyx token is not sent to files
    with pytest.raises(AssertionError):
        ac.download_file('https://elsewhere.org/a.npy')
    file_server.add_response('GET', '/private/c.npy', 'no', status=401,
                             content_type='text/plain')
    with pytest.raises(requests.HTTPError, match='HTTP_DATA_SERVER_LOGIN'):
        ac.download_file('private/c.npy', target_dir=tmp_path / 'dl')


def test_data_server_ranges(file_server):
    url = f'{file_server.url}/testlab/Subjects/a.npy'
    r = requests.get(url, headers={'Range': 'bytes=10-19'}, timeout=10)
    assert r.status_code == 206 and r.content == b'a' * 10
    assert r.headers['Content-Range'] == 'bytes 10-19/1000'
    assert requests.get(url, headers={'Range': 'bytes=2000-'}, timeout=10).status_code == 416
    assert requests.head(url, timeout=10).headers['Content-Length'] == '1000'


def test_concurrent_requests_log_in_again_once(alyx_server, client):
    """Threads refused with an expired token at the same time share a single new login."""
    assert client.rest_schemes is not None
    alyx_server.expire_tokens()
    alyx_server.delay(f'/sessions/{EID}', 0.2, times=4)  # let the refusals overlap
    results, errors = [], []

    def work():
        try:
            results.append(client.rest('sessions', 'read', id=EID, no_cache=True)['id'])
        except Exception as ex:  # noqa: BLE001 - reported below
            errors.append(ex)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and results == [EID] * 4
    assert alyx_server.count('POST', '/auth-token') == 2  # the first login and one more


def test_download_recorded_dataset(alyx_server, tmp_path):
    """A dataset's recorded data_url (rewritten to the test server) downloads and verifies."""
    did = '901e18bb-99bf-48f4-a5a4-5d9f695a8581'
    if alyx_server.files_dir is None or not any(alyx_server.files_dir.rglob(f'*{did}*')):
        pytest.skip('recorded data files not in tests/fixtures/alyx/files')
    one.params.setup(alyx_server.url, silent=True, username=USERNAME,
                     HTTP_DATA_SERVER=alyx_server.url)
    ac = wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                       silent=True, cache_dir=tmp_path)
    dset = ac.rest('datasets', 'read', id=did)
    (url,) = wc.dataset_record_to_url(dset)
    assert url.startswith(f'{alyx_server.url}/testlab/Subjects/')
    path, md5 = ac.download_file(url, target_dir=tmp_path / 'alf', return_md5=True)
    assert md5 == dset['hash'] and path.stat().st_size == dset['file_size']


# --- connections kept alive ---------------------------------------------------------------------
def test_one_connection_for_all_requests(tmp_path):
    """The login and the queries of a client share one kept-alive TCP connection."""
    from raw_server import KeepAliveServer

    with KeepAliveServer() as server:
        ac = wc.AlyxClient(base_url=server.url, username=USERNAME, password=PASSWORD,
                           cache_dir=tmp_path, silent=True, cache_rest=None)
        for path in ('/sessions?subject=ZFM-01935', f'/sessions/{EID}', '/labs', '/labs'):
            assert ac.get(path) == {'path': path}
        assert ac.post('/notes', data={'text': 'a'}) == {'id': 'x'}
        assert server.requests[0] == 'POST /auth-token' and len(server.requests) == 6
        assert server.connections == 1
