"""The retry policy of the REST client (one._rest.retry) against real servers on 127.0.0.1.

Throttling (429 with ``Retry-After``), gateway errors and slow answers come from the Alyx
replay server (tests/alyx_server.py), which counts the requests it receives; connection resets
come from a raw TCP server (tests/raw_server.py).  Nothing is mocked.
"""
import io
import json
import logging
import re

import pytest
import requests
from alyx_server import PASSWORD, USERNAME
from raw_server import RawServer, http_answer

import one.params
import one.webclient as wc
from one._rest import retry as rest_retry
from one._rest.retry import RetryPolicy, resolve_deadline

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
    assert waited == pytest.approx(error.waited, abs=0.05)
    assert 'deadline of 1.5 s per call' in message
    assert error.attempts == alyx_server.count('GET', SESSION) >= 2


class FakeClock:
    """Monotonic seconds advanced only by `sleep` (and by the test): waits cost nothing."""

    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _response(status: int, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response.raw = io.BytesIO(b'')
    response.url = 'http://x/s'
    return response


def test_no_attempt_starts_past_the_deadline():
    """Attempts answered 503 for ever: each one starts with time left before the deadline, and
    the one after the last would have started too late."""
    clock = FakeClock()
    starts = []

    def attempt(timeout):
        starts.append(clock.now)
        return _response(503)

    policy = RetryPolicy(deadline=20)
    with pytest.raises(wc.AlyxServerError) as info:
        policy.send(attempt, 'GET', 'http://x/s', '/s', (1, 5), sleep=clock.sleep, clock=clock)
    assert len(starts) >= 4 and info.value.attempts == len(starts)
    assert all(t <= 20 - rest_retry.MIN_ATTEMPT for t in starts)
    assert starts == sorted(starts) and clock.now == starts[-1]  # no wait after the last


def test_an_attempt_sent_again_waits_no_longer_than_the_time_left():
    """A read timeout of 2 s and a deadline of 3 s: the query sent again after the first
    timeout waits 1 s for its answer, not 2, and the call ends at the deadline."""
    clock = FakeClock()
    limits = []

    def attempt(timeout):
        limits.append(timeout)
        clock.now += timeout[1]  # the server never answers
        raise requests.ReadTimeout('read timed out')

    policy = RetryPolicy(deadline=3)
    with pytest.raises(wc.AlyxTimeout, match=r'did not answer within 1 s') as info:
        policy.send(attempt, 'GET', 'http://x/s', '/s', (2.0, 2.0), sleep=clock.sleep,
                    clock=clock)
    assert limits == [(2.0, 2.0), (1.0, 1.0)] and clock.now == 3
    assert info.value.attempts == 2
    # Too little left for another attempt: none is sent
    clock.now, limits[:] = 0.0, []
    with pytest.raises(wc.AlyxTimeout):
        RetryPolicy(deadline=2.2).send(attempt, 'GET', 'http://x/s', '/s', (2.0, 2.0),
                                       sleep=clock.sleep, clock=clock)
    assert limits == [(2.0, 2.0)]


def _fake_time(client) -> FakeClock:
    clock = FakeClock()
    client._clock, client._sleep = clock, clock.sleep
    return clock


def test_pages_of_a_list_share_the_deadline_of_the_call(alyx_server, client):
    """The waits of the first page count against the deadline of the call when later pages are
    throttled; the time between reading two pages does not."""
    clock = _fake_time(client)
    client.deadline = 10
    client.page_size = alyx_server.max_limit = 2
    alyx_server.fail('/sessions', status=429, headers={'Retry-After': '6'})  # the first page
    sessions = client.rest('sessions', 'list')
    assert isinstance(sessions, wc._PaginatedResponse) and len(sessions) == 6
    assert 6 <= clock.now <= 7.3
    clock.now += 1000  # read later: not counted
    alyx_server.fail('/sessions?limit=2&offset=2', status=429, headers={'Retry-After': '1'})
    assert sessions[2]['id']  # 7.3 + 1.3 s of the 10 spent: the page is asked for again
    alyx_server.fail('/sessions?limit=2&offset=4', status=429, headers={'Retry-After': '6'},
                     times=None)
    with pytest.raises(wc.AlyxThrottled, match='deadline of 10 s per call'):
        sessions[4]
    pages = _page_queries(alyx_server)
    assert pages.count('limit=2&offset=4') == 1  # a second wait of 6 s: past the deadline
    assert len(pages) == 2 + 2 + 1


def _page_queries(server, path='/sessions') -> list[str]:
    return [r.query for r in server.requests if r.path == path]


def test_a_new_login_shares_the_deadline_of_the_call(alyx_server, client):
    """The token is refused, the new login is throttled: the query sent after it has what is
    left of the call's deadline."""
    clock = _fake_time(client)
    client.deadline = 10
    alyx_server.fail(SESSION, status=403, body={'detail': 'Invalid token.'})
    alyx_server.fail(SESSION, status=429, headers={'Retry-After': '6'}, times=None)
    alyx_server.fail('/auth-token', status=429, headers={'Retry-After': '6'}, method='POST')
    with pytest.raises(wc.AlyxThrottled, match='deadline of 10 s per call'):
        client.rest('sessions', 'read', id=EID)
    assert alyx_server.count('POST', '/auth-token') == 3  # the first login, and twice again
    assert alyx_server.count('GET', SESSION) == 2  # refused, throttled: no time left to wait
    assert 6 <= clock.now <= 7.3


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
