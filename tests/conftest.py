"""Shared fixtures.

* The ``ONE_*`` environment variables of the person running the tests are removed, here at
  import (before any module of `one` reads them at its own import, e.g.
  ``ONE_REVISION_LAST_BEFORE``) and again before each test; tests that need one set it with
  ``monkeypatch``.  `tests/test_conftest.py` checks this with such variables set.
* Every test runs with its own ONE parameter folder (``ONE_PARAMS_DIR``), default data folder
  (``one.params.CACHE_DIR_DEFAULT``) and home folder (``HOME``, and on Windows ``USERPROFILE``,
  ``APPDATA``, ``LOCALAPPDATA``; ``XDG_CONFIG_HOME`` unset) in a temporary directory, so no test
  reads or writes the real user's parameters (``~/.one``, ``~/.config/one``) or
  ``~/Downloads/ONE``.
* `alyx_server`: an Alyx-compatible server answering with responses recorded from Alyx 3.6.1
  (see ``tests/alyx_server.py``), started for the test and stopped after it.
* `moto_url`, `s3env`: moto's real S3 server on 127.0.0.1 (one per test module), and an
  environment pointing boto3 at it with fake credentials (its state is reset after each test);
  `aws_env` points boto3 at another server (e.g. one that never answers).
"""
import os

import pytest


def _one_environment() -> list[str]:
    return [name for name in os.environ if name.startswith('ONE_')]


for _name in _one_environment():
    del os.environ[_name]

from alyx_server import AlyxTestServer  # noqa: E402 - after the environment is cleared


@pytest.fixture(autouse=True)
def _isolated_one_params(tmp_path_factory, monkeypatch):
    """Keep ONE's parameter files and default data folder out of the user's home."""
    root = tmp_path_factory.mktemp('one_home')
    for name in _one_environment():
        monkeypatch.delenv(name)
    monkeypatch.setenv('ONE_PARAMS_DIR', str(root / 'params'))
    home = root / 'home'
    home.mkdir()
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.setenv('USERPROFILE', str(home))
    monkeypatch.setenv('APPDATA', str(home / 'AppData' / 'Roaming'))
    monkeypatch.setenv('LOCALAPPDATA', str(home / 'AppData' / 'Local'))
    monkeypatch.delenv('XDG_CONFIG_HOME', raising=False)
    import one.params

    monkeypatch.setattr(one.params, 'CACHE_DIR_DEFAULT', str(root / 'Downloads' / 'ONE'))
    return root


@pytest.fixture
def alyx_server():
    """A running `AlyxTestServer` (its URL is ``alyx_server.url``)."""
    with AlyxTestServer() as server:
        yield server


@pytest.fixture(scope='module')
def moto_url():
    """The URL of moto's S3 server on 127.0.0.1 (one server per test module)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f'http://{host}:{port}'
    server.stop()


def _point_boto3_at(monkeypatch, endpoint: str) -> None:
    """Point boto3 at `endpoint` with fake credentials, and nothing of the user's AWS setup."""
    for key in ('AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN'):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('AWS_ENDPOINT_URL', endpoint)
    monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'testing')
    monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'testing')
    monkeypatch.setenv('AWS_DEFAULT_REGION', 'us-east-1')
    monkeypatch.setenv('AWS_CONFIG_FILE', '/nonexistent')
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent')


@pytest.fixture
def aws_env(monkeypatch):
    """``aws_env(endpoint)`` points boto3 at `endpoint` with fake credentials for the test."""
    return lambda endpoint: _point_boto3_at(monkeypatch, endpoint)


@pytest.fixture
def s3env(moto_url, monkeypatch):
    """Point boto3 at the moto server with fake credentials; reset moto's state after."""
    import requests

    _point_boto3_at(monkeypatch, moto_url)
    yield moto_url
    requests.post(f'{moto_url}/moto-api/reset', timeout=10)
