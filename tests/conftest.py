"""Shared fixtures.

* Every test runs with its own ONE parameter folder (``ONE_PARAMS_DIR``) and default data folder
  (``one.params.CACHE_DIR_DEFAULT``) in a temporary directory, so no test reads or writes the
  real user's parameters or ``~/Downloads/ONE``.
* `alyx_server`: an Alyx-compatible server answering with responses recorded from Alyx 3.6.1
  (see ``tests/alyx_server.py``), started for the test and stopped after it.
"""
import pytest
from alyx_server import AlyxTestServer


@pytest.fixture(autouse=True)
def _isolated_one_params(tmp_path_factory, monkeypatch):
    """Keep ONE's parameter files and default data folder out of the user's home."""
    root = tmp_path_factory.mktemp('one_home')
    monkeypatch.setenv('ONE_PARAMS_DIR', str(root / 'params'))
    import one.params

    monkeypatch.setattr(one.params, 'CACHE_DIR_DEFAULT', str(root / 'Downloads' / 'ONE'))
    for name in ('ONE_ALYX_URL', 'ONE_ALYX_LOGIN', 'ONE_ALYX_PWD', 'ONE_HTTP_DATA_SERVER',
                 'ONE_HTTP_DATA_SERVER_LOGIN', 'ONE_HTTP_DATA_SERVER_PWD', 'ONE_CACHE_DIR'):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def alyx_server():
    """A running `AlyxTestServer` (its URL is ``alyx_server.url``)."""
    with AlyxTestServer() as server:
        yield server
