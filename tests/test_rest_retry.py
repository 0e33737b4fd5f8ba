"""The retry policy of the REST client (one._lib.rest_retry) against real servers on 127.0.0.1.

Throttling (429 with ``Retry-After``), gateway errors and slow answers come from the Alyx
replay server (tests/alyx_server.py), which counts the requests it receives; connection resets
come from a raw TCP server (tests/raw_server.py).  Nothing is mocked.
"""
import json
import logging
import re

import pytest
import requests
from alyx_server import PASSWORD, USERNAME
from raw_server import RawServer, http_answer

import one.params
import one.webclient as wc
from one._lib import rest_retry
from one._lib.rest_retry import RetryPolicy, resolve_deadline

EID = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'
SESSION = f'/sessions/{EID}'


@pytest.fixture
def client(alyx_server, tmp_path):
    return wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                         cache_dir=tmp_path / 'cache', silent=True, cache_rest=None)


def _delays(caplog) -> list[float]:
    """The waits before each new attempt, as logged by the policy."""
    return [float(x) for x in re.findall(r'attempt \d+ in ([\d.]+) s', caplog.text)]


# --- throttling ---------------------------------------------------------------------------------
def test_throttled_query_waits_what_retry_after_asks_then_succeeds(alyx_server, client, caplog):
    alyx_server.fail(SESSION, status=429, headers={'Retry-After': '1'},
                     body={'detail': 'Request was throttled. Expected available in 1 second.'})
    with caplog.at_level(logging.DEBUG, 'one.webclient'):
        assert client.rest('sessions', 'read', id=EID)['id'] == EID
    assert alyx_server.count('GET', SESSION) == 2
    (delay,) = _delays(caplog)
    assert 1.0 <= delay <= 1.3  # Retry-After, plus up to 0.1 s + 20 % of jitter


def test_retry_after_is_capped_and_jittered():
    policy = RetryPolicy()
    waits = [policy.wait_for(1, 3600) for _ in range(200)]
    cap = rest_retry.MAX_RETRY_AFTER
    assert all(cap <= w <= cap + 0.1 + 0.2 * cap for w in waits)
    assert len(set(waits)) > 100  # spread, so that throttled processes come back apart
    backoff = [policy.wait_for(n, None) for n in (1, 2, 3, 10)]
    assert 0.25 <= backoff[0] <= 0.5 and 0.5 <= backoff[1] <= 1 and 1 <= backoff[2] <= 2
    assert backoff[3] <= rest_retry.MAX_BACKOFF


def test_throttled_beyond_the_deadline_gives_up_at_once(alyx_server, client):
    client.deadline = 5
    alyx_server.fail(SESSION, status=429, headers={'Retry-After': '30'}, times=None)
    with pytest.raises(wc.AlyxThrottled) as info:
        client.rest('sessions', 'read', id=EID)
    error = info.value
    assert error.retry_after == 30 and error.status_code == 429
    assert isinstance(error, requests.HTTPError)
    message = str(error)
    assert f'{alyx_server.url}{SESSION}' in message and 'asked to wait 30 s' in message
    assert 'deadline of 5 s' in message and 'ONE_REST_DEADLINE' in message
    assert alyx_server.count('GET', SESSION) == 1 and error.attempts == 1


# --- gateway errors, resets ---------------------------------------------------------------------
@pytest.mark.parametrize('status', [502, 503, 504])
def test_gateway_error_twice_then_success(alyx_server, client, status):
    alyx_server.fail(SESSION, status=status, times=2)
    assert client.rest('sessions', 'read', id=EID)['id'] == EID
    assert alyx_server.count('GET', SESSION) == 3


def test_other_server_errors_are_not_retried(alyx_server, client):
    alyx_server.fail(SESSION, status=500, times=None)
    with pytest.raises(wc.AlyxServerError, match='500'):
        client.rest('sessions', 'read', id=EID)
    assert alyx_server.count('GET', SESSION) == 1


def test_deadline_exceeded_names_the_url_and_the_time_waited(alyx_server, client):
    client.deadline = 1.5
    alyx_server.fail(SESSION, status=503, times=None)
    with pytest.raises(wc.AlyxServerError) as info:
        client.rest('sessions', 'read', id=EID)
    error = info.value
    message = str(error)
    assert f'GET {alyx_server.url}{SESSION}' in message and '503' in message
    waited = float(re.search(r'attempts in ([\d.]+) s', message).group(1))
    assert waited == pytest.approx(error.waited, abs=0.05) and waited <= 1.5
    assert 'deadline of 1.5 s per request' in message
    assert error.attempts == alyx_server.count('GET', SESSION) >= 2


def test_deadline_from_the_environment(alyx_server, tmp_path, monkeypatch):
    monkeypatch.setenv('ONE_REST_DEADLINE', '0')
    ac = wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                       cache_dir=tmp_path, silent=True, cache_rest=None)
    assert ac.deadline == 0
    alyx_server.fail(SESSION, status=503)
    with pytest.raises(wc.AlyxServerError, match='deadline of 0 s'):
        ac.rest('sessions', 'read', id=EID)
    assert alyx_server.count('GET', SESSION) == 1
    assert wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, silent=True,
                         cache_dir=tmp_path, deadline=7).deadline == 7


@pytest.mark.parametrize('value', ['soon', '-1'])
def test_bad_deadline_setting_is_named(monkeypatch, value):
    monkeypatch.setenv('ONE_REST_DEADLINE', value)
    with pytest.raises(ValueError, match=f'ONE_REST_DEADLINE must be .* not {value!r}'):
        resolve_deadline()
    with pytest.raises(ValueError, match='deadline must be'):
        resolve_deadline(-3)


def _client_with_stored_token(url, tmp_path) -> wc.AlyxClient:
    """A client logged in with a stored token: it sends no login request."""
    wc.AlyxClient(base_url=url, silent=True, cache_dir=tmp_path)  # sets the database up
    one.params._store_token(url, USERNAME, 'a' * 40)
    return wc.AlyxClient(base_url=url, username=USERNAME, silent=True, cache_dir=tmp_path,
                         cache_rest=None)


def test_connection_reset_is_retried_for_queries(tmp_path):
    body = json.dumps({'id': EID}).encode()
    with RawServer(['reset', 'reset', http_answer(200, body)]) as server:
        ac = _client_with_stored_token(server.url, tmp_path)
        assert ac.get(SESSION) == {'id': EID}
        assert server.connections == 3
        assert all(r.startswith(f'GET {SESSION} '.encode()) for r in server.requests)


def test_connection_reset_of_a_write_is_not_retried(tmp_path):
    with RawServer(['reset'], default=http_answer(201, b'{}')) as server:
        ac = _client_with_stored_token(server.url, tmp_path)
        with pytest.raises(wc.AlyxConnectionError) as info:
            ac.post('/notes', data={'text': 'x'})
        assert f'{server.url}/notes' in str(info.value)
        assert server.connections == 1


# --- writes --------------------------------------------------------------------------------------
@pytest.mark.parametrize('status', [500, 502, 503, 504])
def test_post_is_never_retried(alyx_server, client, status):
    alyx_server.fail('/notes', status=status, method='POST', times=None,
                     headers={'Retry-After': '0'})
    with pytest.raises(wc.AlyxServerError) as info:
        client.rest('notes', 'create', data={'text': 'x'})
    assert info.value.status_code == status
    assert alyx_server.count('POST', '/notes') == 1


def test_throttled_post_is_sent_again(alyx_server, client):
    """A 429 says the server refused the request before acting on it: sending it again after
    the wait asked for cannot create the record twice."""
    alyx_server.fail('/notes', status=429, method='POST', headers={'Retry-After': '0'})
    note = client.rest('notes', 'create', data={'text': 'x'})
    assert note['text'] == 'x' and alyx_server.count('POST', '/notes') == 2
    client.deadline = 1
    alyx_server.fail('/notes', status=429, method='POST', headers={'Retry-After': '5'})
    with pytest.raises(wc.AlyxThrottled, match='asked to wait 5 s'):
        client.rest('notes', 'create', data={'text': 'y'})
    assert alyx_server.count('POST', '/notes') == 3


@pytest.mark.parametrize('verb', ['PATCH', 'PUT', 'DELETE'])
def test_other_writes_are_never_retried(alyx_server, client, verb):
    path = '/notes/0e9b0c5a-6c5f-4a1a-9d4a-8a7e6b8c9d01'
    alyx_server.fail(path, status=503, method=verb, times=None)
    send = {'PATCH': client.patch, 'PUT': client.put, 'DELETE': client.delete}[verb]
    with pytest.raises(wc.AlyxServerError):
        send(path) if verb == 'DELETE' else send(path, data={'text': 'y'})
    assert alyx_server.count(verb, path) == 1


def test_slow_post_is_not_sent_twice(alyx_server, client):
    client.timeout = (5, 0.3)
    alyx_server.delay('/notes', 5, method='POST', times=None)
    with pytest.raises(wc.AlyxTimeout, match='did not answer within 0.3 s'):
        client.rest('notes', 'create', data={'text': 'x'})
    assert alyx_server.count('POST', '/notes') == 1


def test_processes_sharing_a_throttled_account_see_no_exception():
    """benchmarks/bench_throttle.py, short: 2 processes querying for 3 s through one account on
    a server accepting 5 requests per second."""
    import importlib
    import sys
    from pathlib import Path

    folder = str(Path(__file__).resolve().parents[1] / 'benchmarks')
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the worker processes import it by name
    bench = importlib.import_module('bench_throttle')
    figures = bench.run(processes=2, duration=3, rate=5, retry_after=1)
    assert figures['exceptions'] == 0, figures['first_exceptions']
    assert figures['throttled_429_absorbed'] > 0 and figures['queries'] > 0
    assert figures['requests_served'] >= figures['queries'] + figures['throttled_429_absorbed']


def test_cache_archive_download_is_retried(alyx_server, client, tmp_path):
    alyx_server.fail('/cache.zip', status=503)
    assert len(client.download_cache_tables(None, tmp_path / 'tables')) == 4
    assert alyx_server.count('GET', '/cache.zip') == 2


def test_pickled_client_keeps_its_settings(client):
    import pickle

    client.deadline, client.timeout, client.max_page_size = 12, (1.0, 2.0), 500
    clone = pickle.loads(pickle.dumps(client))
    assert (clone.deadline, clone.timeout, clone.max_page_size) == (12, (1.0, 2.0), 500)
