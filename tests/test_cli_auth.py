"""`one setup`, `one login` and `one logout` run as programs, against the Alyx replay server."""
import os

import pytest
from alyx_server import PASSWORD, USERNAME
from cli_helpers import one_env, run, run_tty

import one.params


@pytest.fixture
def env(tmp_path):
    return one_env(tmp_path / 'home')


def _params(url):
    return one.params.get(url, silent=True)


def test_setup_from_options(env, tmp_path):
    data = tmp_path / 'data'
    result = run('setup', '--base-url', 'http://127.0.0.1:9/', '--username', 'alice',
                 '--cache-dir', data, '--data-server', 'http://127.0.0.1:9/files',
                 '--data-server-login', 'reader', env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('set up http://127.0.0.1:9 (the default database)')
    par = _params('http://127.0.0.1:9')
    assert (par.ALYX_URL, par.ALYX_LOGIN, par.HTTP_DATA_SERVER, par.HTTP_DATA_SERVER_LOGIN) == \
        ('http://127.0.0.1:9', 'alice', 'http://127.0.0.1:9/files', 'reader')
    assert str(data) == par.CACHE_DIR and data.is_dir()
    assert one.params.get_default_client() == 'http://127.0.0.1:9'
    # A second database does not become the default without --default
    other = run('setup', '--base-url', 'http://127.0.0.1:10', '--cache-dir', tmp_path / 'd2',
                env=env)
    assert other.returncode == 0, other.stderr
    assert one.params.get_default_client() == 'http://127.0.0.1:9'
    again = run('setup', '--base-url', 'http://127.0.0.1:10', '--default', env=env)
    assert again.stdout.startswith('updated http://127.0.0.1:10 (the default database)')
    assert one.params.get_default_client() == 'http://127.0.0.1:10'
    assert str(tmp_path / 'd2') == _params('http://127.0.0.1:10').CACHE_DIR  # kept
    # Changing one value keeps the others
    change = run('setup', '--base-url', 'http://127.0.0.1:9', '--username', 'bob', env=env)
    assert change.returncode == 0, change.stderr
    par = _params('http://127.0.0.1:9')
    assert par.ALYX_LOGIN == 'bob' and par.HTTP_DATA_SERVER == 'http://127.0.0.1:9/files'
    assert str(data) == par.CACHE_DIR


def test_setup_from_environment(tmp_path):
    env = one_env(tmp_path / 'home', ONE_ALYX_URL='http://127.0.0.1:11',
                  ONE_ALYX_LOGIN='carol', ONE_HTTP_DATA_SERVER='http://127.0.0.1:11/data',
                  ONE_CACHE_DIR=tmp_path / 'envdata')
    result = run('setup', env=env)
    assert result.returncode == 0, result.stderr
    par = _params('http://127.0.0.1:11')
    assert ('carol', 'http://127.0.0.1:11/data', str(tmp_path / 'envdata')) == \
        (par.ALYX_LOGIN, par.HTTP_DATA_SERVER, par.CACHE_DIR)
    # Options win over the environment
    result = run('setup', '--username', 'dave', env=env)
    assert result.returncode == 0, result.stderr
    assert _params('http://127.0.0.1:11').ALYX_LOGIN == 'dave'


def test_setup_never_prompts_off_a_terminal(env, tmp_path):
    # No option, no variable, stdin not a terminal (/dev/null): the public database with its
    # defaults, and no prompt in the output (a prompt reading /dev/null would fail at once)
    result = run('setup', env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'openalyx.internationalbrainlab.org' in result.stdout
    assert '?' not in result.stdout and ': ' not in result.stdout.splitlines()[0]
    par = _params('https://openalyx.internationalbrainlab.org')
    assert par.ALYX_LOGIN == 'intbrainlab'
    assert par.CACHE_DIR.startswith(str(tmp_path / 'home'))  # the default folder, in HOME
    bad = run('setup', '--base-url', 'ftp://nowhere', env=env)
    assert bad.returncode == 2 and 'must be valid HTTP URL' in bad.stderr


def test_setup_prompts_on_a_terminal_for_what_is_missing(env, tmp_path):
    code, shown = run_tty('setup', '--username', 'erin', env=env, answers=[
        ('Alyx database URL', 'http://127.0.0.1:12'),
        ('HTTP data server URL', 'http://127.0.0.1:12/files'),
        ('HTTP data server user name', ''),
        ('Data folder', str(tmp_path / 'ttydata')),
    ])
    assert code == 0, shown
    assert 'Alyx user name' not in shown  # given as an option: not asked
    par = _params('http://127.0.0.1:12')
    assert ('erin', 'http://127.0.0.1:12/files', str(tmp_path / 'ttydata')) == \
        (par.ALYX_LOGIN, par.HTTP_DATA_SERVER, par.CACHE_DIR)
    # --no-input: nothing asked even on a terminal
    code, shown = run_tty('setup', '--base-url', 'http://127.0.0.1:13', '--no-input',
                          '--cache-dir', tmp_path / 'd13', env=env)
    assert code == 0 and 'Alyx user name' not in shown, shown


@pytest.fixture
def configured(alyx_server, env, tmp_path):
    result = run('setup', '--base-url', alyx_server.url, '--username', USERNAME,
                 '--cache-dir', tmp_path / 'data', '--data-server', alyx_server.url, env=env)
    assert result.returncode == 0, result.stderr
    return alyx_server


def _token(url, user=USERNAME):
    return ((getattr(_params(url), 'TOKEN', None) or {}).get(user) or {}).get('token')


def test_login_with_password_on_stdin_then_logout(configured, env):
    server = configured
    result = run('login', '--password-stdin', env=env, stdin=PASSWORD + '\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'logged in to {server.url} as {USERNAME} (token saved)'
    assert server.count('POST', '/auth-token') == 1
    assert _token(server.url) == server.token
    mode = os.stat(one.params.get_params_dir() / f'.{one.params.client_key(server.url)}')
    assert mode.st_mode & 0o077 == 0  # the token file is private
    # The saved token is used by the library: no password, no new login
    from one.api import OneAlyx
    one_ = OneAlyx(base_url=server.url, silent=True)
    assert len(one_.search(subject='ZFM-01935')) == 4
    assert server.count('POST', '/auth-token') == 1
    # A set-up keeps the login
    assert run('setup', '--base-url', server.url, '--username', USERNAME,
               env=env).returncode == 0
    assert _token(server.url) == server.token
    # logout removes it (and the REST cache)
    rest = one_.alyx.rest_cache_dir
    assert any(rest.iterdir())
    out = run('logout', env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f'logged out {USERNAME} from {server.url} (token removed)'
    assert _token(server.url) is None
    assert not any(p.is_file() for p in rest.iterdir())
    again = run('logout', env=env)
    assert again.returncode == 1
    assert again.stderr.strip() == f'one logout: {USERNAME} is not logged in to {server.url}'


def test_login_errors(configured, env, tmp_path):
    server = configured
    wrong = run('login', '--password-stdin', env=env, stdin='not-the-password\n')
    assert wrong.returncode == 1
    assert 'Wrong credentials' in wrong.stderr and 'not-the-password' not in wrong.stderr
    assert _token(server.url) is None
    # Not on a terminal and no password: an error at once, never a prompt
    nothing = run('login', env=env, timeout=60)
    assert nothing.returncode == 2 and '--password-stdin' in nothing.stderr
    empty = run('login', '--password-stdin', env=env, stdin='')
    assert empty.returncode == 2 and 'no password on standard input' in empty.stderr
    unknown = run('login', '--base-url', 'http://127.0.0.1:9', '--password-stdin', env=env,
                  stdin='x\n')
    assert unknown.returncode == 2 and 'one setup --base-url http://127.0.0.1:9' in \
        unknown.stderr
    assert server.count('POST', '/auth-token') == 1  # only the wrong password was sent
    # The password from the environment
    env_pwd = run('login', env={**env, 'ONE_ALYX_PWD': PASSWORD})
    assert env_pwd.returncode == 0, env_pwd.stderr
    assert _token(server.url) == server.token
    everyone = run('logout', '--all', '--base-url', server.url, env=env)
    assert everyone.returncode == 0 and _token(server.url) is None


def test_login_on_a_terminal_does_not_echo_the_password(configured, env):
    code, shown = run_tty('login', env=env, answers=[('password', PASSWORD)])
    assert code == 0, shown
    assert 'logged in to' in shown
    assert PASSWORD not in shown
    assert _token(configured.url) == configured.token


def test_setup_keeps_logins_and_stored_passwords(configured, env):
    """One update under the parameter lock: tokens, a hand-added ALYX_PWD and the data server
    password survive a set-up that changes another value."""
    server = configured
    assert run('login', '--password-stdin', env=env, stdin=PASSWORD).returncode == 0
    par = _params(server.url)
    one.params.save(par.set('ALYX_PWD', 'by-hand').set('HTTP_DATA_SERVER_PWD', 's3cret'),
                    server.url)
    result = run('setup', '--base-url', server.url, '--username', 'someone-else', env=env)
    assert result.returncode == 0, result.stderr
    par = _params(server.url)
    assert par.ALYX_LOGIN == 'someone-else'
    assert par.ALYX_PWD == 'by-hand' and par.HTTP_DATA_SERVER_PWD == 's3cret'
    assert _token(server.url) == server.token
    # A value given in the environment replaces the stored one
    result = run('setup', '--base-url', server.url, env={**env, 'ONE_HTTP_DATA_SERVER_PWD': 'n3w'})
    assert result.returncode == 0, result.stderr
    assert _params(server.url).HTTP_DATA_SERVER_PWD == 'n3w'
    assert _params(server.url).ALYX_PWD == 'by-hand'
