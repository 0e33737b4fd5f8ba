"""The test environment itself: the person running the tests can't change their outcome.

`conftest.py` removes the ``ONE_*`` environment variables; run with some of them set, the tests
that depend on them (the revision default of the loads, the parameters, the cache folder) must
still pass.
"""
import os
import subprocess
import sys
from pathlib import Path

import one._api.local
import one._download.defaults as download_defaults

HERE = Path(__file__).parent

USER_ENVIRONMENT = {
    'ONE_REVISION_LAST_BEFORE': '2020-01-01',  # made 5 tests of test_api.py fail
    'ONE_SAVE_ON_DELETE': 'true',
    'ONE_CACHE_DIR': '/nonexistent/one_cache',
    'ONE_ALYX_URL': 'http://127.0.0.1:9',
    'ONE_ALYX_LOGIN': 'someone',
    'ONE_HTTP_DL_THREADS': '1',
    'ONE_HTTP_TIMEOUT': '0.001',
    'ONE_SOMETHING_NEW': 'x',
}


def test_no_one_environment_reaches_the_tests():
    assert sorted(k for k in os.environ if k.startswith('ONE_')) == ['ONE_PARAMS_DIR']
    # modules reading the environment at import saw it cleared
    assert one._api.local.REVISION_LAST_BEFORE is None
    assert one._api.local.SAVE_ON_DELETE is False
    assert download_defaults.N_THREADS == 4


def test_user_environment_is_ignored(tmp_path):
    """Run the tests affected by the user's environment with it set: they pass."""
    tests = [
        'test_conftest.py::test_no_one_environment_reaches_the_tests',
        'test_api.py::test_load_object_revisions', 'test_api.py::test_load_dataset',
        'test_api.py::test_load_dataset_errors', 'test_api.py::test_load_datasets',
        'test_api.py::test_load_datasets_errors', 'test_params.py',
    ]
    env = {**os.environ, **USER_ENVIRONMENT}
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--rootdir', str(HERE),
         *tests], cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ' passed' in result.stdout and 'failed' not in result.stdout
