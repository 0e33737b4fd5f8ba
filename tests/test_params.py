"""one.params: parameter files, silent and interactive set-up, client map, cache folders.

Every test runs with its own parameter folder (``ONE_PARAMS_DIR``) and default data folder
(see the autouse fixture in conftest.py).  Interactive set-up is driven by replacing
``one.params.input`` and ``one.params.getpass`` with scripted answers: a test cannot type at a
terminal, so this is the one place where prompts are substituted.
"""
import json
import os
import stat
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import one.params as params

URL = 'https://alyx.example.org'
KEY = 'alyx.example.org'


@pytest.fixture
def no_prompt(monkeypatch):
    """Fail the test if anything prompts."""
    def refuse(*args, **kwargs):
        raise AssertionError(f'unexpected prompt: {args}')
    monkeypatch.setattr(params, 'input', refuse, raising=False)
    monkeypatch.setattr(params, 'getpass', refuse)


def script(monkeypatch, answers, passwords=()):
    """Answer prompts in order; return the list of prompts seen."""
    answers, passwords, seen = list(answers), list(passwords), []

    def fake_input(prompt=''):
        seen.append(prompt)
        return answers.pop(0)

    def fake_getpass(prompt=''):
        seen.append(prompt)
        return passwords.pop(0) if passwords else ''
    monkeypatch.setattr(params, 'input', fake_input, raising=False)
    monkeypatch.setattr(params, 'getpass', fake_getpass)
    return seen


def read(name):
    return json.loads((params.get_params_dir() / f'.{name}').read_text())


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# --- keys, defaults, parameter objects --------------------------------------------------------
@pytest.mark.parametrize('url, key', [
    ('https://sub.domain.org/', 'sub.domain.org'),
    ('http://www.domain.org/db/?rest=True', 'www.domain.org_db__rest_true'),
    ('localhost:8000', 'localhost_8000'),
    ('http://127.0.0.1:8000', '127.0.0.1_8000'),
    ('https://openalyx.internationalbrainlab.org', 'openalyx.internationalbrainlab.org'),
])
def test_key_from_url(url, key):
    assert params._key_from_url(url) == key


def test_default_and_params_objects():
    par = params.default()
    assert isinstance(par, params.IBLParams)
    assert par.ALYX_URL == 'https://openalyx.internationalbrainlab.org'
    assert par.ALYX_LOGIN == 'intbrainlab'
    assert par.HTTP_DATA_SERVER == 'https://ibl.flatironinstitute.org/public'
    assert par.HTTP_DATA_SERVER_LOGIN is None and par.HTTP_DATA_SERVER_PWD is None
    new = par.set('ALYX_LOGIN', 'me').set('EXTRA', 1)
    assert (par.ALYX_LOGIN, new.ALYX_LOGIN, new.EXTRA) == ('intbrainlab', 'me', 1)
    with pytest.raises(AttributeError):
        par.ALYX_LOGIN = 'x'
    assert new.as_dict()['EXTRA'] == 1 and isinstance(new, params.IBLParams)
    assert params._to_params({}) is None
    # secrets are masked when shown
    shown = repr(par.set('HTTP_DATA_SERVER_PWD', 'hunter2').set('TOKEN', {'u': {'token': 'T0K'}}))
    assert 'hunter2' not in shown and 'T0K' not in shown


def test_get_params_dir(monkeypatch, tmp_path):
    assert params.get_params_dir() == Path(os.environ['ONE_PARAMS_DIR'])
    monkeypatch.delenv('ONE_PARAMS_DIR')
    import platformdirs
    assert params.get_params_dir() == Path(platformdirs.user_config_dir('one', appauthor=False))


# --- silent set-up ------------------------------------------------------------------------------
def test_setup_silent_writes_private_files(no_prompt, capsys):
    cache_map = params.setup(URL, silent=True, username='me')
    assert cache_map.DEFAULT == KEY
    folder = Path(params.CACHE_DIR_DEFAULT) / KEY
    assert {KEY: str(folder)} == cache_map.CLIENT_MAP and folder.is_dir()
    par = read(KEY)
    assert par == {'ALYX_URL': URL, 'ALYX_LOGIN': 'me',
                   'HTTP_DATA_SERVER': 'https://ibl.flatironinstitute.org/public',
                   'HTTP_DATA_SERVER_LOGIN': None, 'HTTP_DATA_SERVER_PWD': None}
    if os.name == 'posix':
        assert mode(params.get_params_dir() / f'.{KEY}') == 0o600
    assert capsys.readouterr().out == ''  # silent prints nothing


def test_setup_silent_from_environment(no_prompt, monkeypatch, tmp_path):
    monkeypatch.setenv('ONE_ALYX_URL', 'http://env.example.org/')
    monkeypatch.setenv('ONE_ALYX_LOGIN', 'env_user')
    monkeypatch.setenv('ONE_HTTP_DATA_SERVER', 'data.example.org')
    monkeypatch.setenv('ONE_HTTP_DATA_SERVER_LOGIN', 'flat')
    monkeypatch.setenv('ONE_HTTP_DATA_SERVER_PWD', 'secret')
    monkeypatch.setenv('ONE_CACHE_DIR', str(tmp_path / 'env_cache'))
    cache_map = params.setup(silent=True)
    key = 'env.example.org'
    assert key == cache_map.DEFAULT
    assert cache_map.CLIENT_MAP[key] == str(tmp_path / 'env_cache')
    par = read(key)
    assert par['ALYX_URL'] == 'http://env.example.org'
    assert par['ALYX_LOGIN'] == 'env_user'
    assert par['HTTP_DATA_SERVER'] == 'https://data.example.org'
    assert (par['HTTP_DATA_SERVER_LOGIN'], par['HTTP_DATA_SERVER_PWD']) == ('flat', 'secret')
    # arguments win over the environment
    params.setup(URL, silent=True, username='arg_user', cache_dir=tmp_path / 'arg_cache',
                 http_data_server='https://other.org/files')
    par = read(KEY)
    assert (par['ALYX_LOGIN'], par['HTTP_DATA_SERVER']) == ('arg_user', 'https://other.org/files')
    assert params._read_map()['CLIENT_MAP'][KEY] == str(tmp_path / 'arg_cache')


def test_setup_silent_errors(no_prompt):
    with pytest.raises(TypeError, match='NOT_A_PARAM'):
        params.setup(URL, silent=True, NOT_A_PARAM=1)
    with pytest.raises(ValueError, match='ALYX_URL must be valid HTTP URL'):
        params.setup('ftp://alyx.example.org', silent=True)
    with pytest.raises(ValueError, match='HTTP_DATA_SERVER must be valid HTTP URL'):
        params.setup(URL, silent=True, HTTP_DATA_SERVER='ftp://x.org')
    assert not (params.get_params_dir() / f'.{KEY}').exists()


def test_setup_silent_default_database_resets(no_prompt):
    default_url = params.default().ALYX_URL
    params.setup(default_url, silent=True, username='someone')
    key = params._key_from_url(default_url)
    par = read(key)
    par['HTTP_DATA_SERVER_PWD'] = 'x'
    par['TOKEN'] = {'someone': {'token': 'abc'}}
    (params.get_params_dir() / f'.{key}').write_text(json.dumps(par))
    params.setup(silent=True)
    assert read(key) == params.default().as_dict()


def test_setup_silent_warns_on_shared_cache_dir(no_prompt, tmp_path):
    params.setup(URL, silent=True, cache_dir=tmp_path / 'shared')
    with pytest.warns(UserWarning, match='already the data folder of another database'):
        params.setup('https://other.example.org', silent=True, cache_dir=tmp_path / 'shared')


def test_setup_make_default(no_prompt):
    params.setup(URL, silent=True)
    params.setup('https://second.org', silent=True)
    assert params.get_default_client() == URL  # the first stays the default
    params.setup('https://second.org', silent=True, make_default=True)
    assert params.get_default_client() == 'https://second.org'
    assert params.get_default_client(include_schema=False) == 'second.org'


# --- interactive set-up -------------------------------------------------------------------------
def test_setup_interactive(monkeypatch, tmp_path, capsys):
    answers = ['alyx.example.org/',  # ALYX_URL: https:// added, '/' stripped
               '"me"', 'y',  # ALYX_LOGIN in quotes: warned, stripped on agreement
               '',  # HTTP_DATA_SERVER: keep
               'flat',  # HTTP_DATA_SERVER_LOGIN
               str(tmp_path / 'data'),  # cache folder
               'y',  # make default
               'y']  # confirm
    seen = script(monkeypatch, answers, passwords=['pa55'])
    with pytest.warns(UserWarning, match='Do not use quotation marks'):
        cache_map = params.setup()
    assert cache_map.DEFAULT == KEY and cache_map.CLIENT_MAP[KEY] == str(tmp_path / 'data')
    par = read(KEY)
    assert par['ALYX_URL'] == URL and par['ALYX_LOGIN'] == 'me'
    assert par['HTTP_DATA_SERVER'] == 'https://ibl.flatironinstitute.org/public'
    assert (par['HTTP_DATA_SERVER_LOGIN'], par['HTTP_DATA_SERVER_PWD']) == ('flat', 'pa55')
    assert any('Param ALYX_LOGIN, current value is ["intbrainlab"]' in p for p in seen)
    assert 'ONE Parameter files location' in capsys.readouterr().out


def test_setup_interactive_bad_url(monkeypatch):
    script(monkeypatch, ['y', 'ftp://nowhere'])
    with pytest.raises(ValueError, match='HTTP_DATA_SERVER must be valid HTTP URL'):
        params.setup(URL)  # ALYX_URL given: not asked; ALYX_LOGIN 'y'; data server invalid


def test_setup_interactive_abandoned(monkeypatch, capsys):
    params.setup(URL, silent=True, username='kept')
    before = read(KEY)
    script(monkeypatch, ['changed', '', '', '', 'n', 'n'])
    result = params.setup(URL)
    assert 'SETUP ABANDONED' in capsys.readouterr().out
    assert read(KEY) == before
    assert result.ALYX_LOGIN == 'kept'


def test_setup_interactive_cache_dir_conflict(monkeypatch, tmp_path):
    params.setup('https://first.org', silent=True, cache_dir=tmp_path / 'taken')
    answers = ['', '', '', str(tmp_path / 'taken'), 'y',  # conflict: change it
               str(tmp_path / 'free'), 'n', 'y']
    seen = script(monkeypatch, answers)
    cache_map = params.setup(URL)
    assert any('already a cache for another URL' in p for p in seen)
    assert cache_map.CLIENT_MAP[KEY] == str(tmp_path / 'free')
    assert cache_map.DEFAULT == 'first.org'  # answered 'n' to make default


def test_setup_interactive_keeps_tokens(monkeypatch):
    params.setup(URL, silent=True)
    params._store_token(URL, 'me', 'T0K')
    script(monkeypatch, ['', '', '', '', '', 'y'])
    params.setup(URL, make_default=True)
    assert read(KEY)['TOKEN'] == {'me': {'token': 'T0K'}}


# --- get, save, cache folders -------------------------------------------------------------------
def test_get_sets_up_unknown_client_silently(no_prompt, tmp_path):
    par = params.get(URL, silent=True, username='me', cache_dir=tmp_path / 'c')
    assert par.ALYX_URL == URL and par.ALYX_LOGIN == 'me'
    assert str(tmp_path / 'c') == par.CACHE_DIR
    # known now: read back, by URL, by key, or as the default
    assert str(tmp_path / 'c') == params.get(URL).CACHE_DIR
    assert params.get(KEY).ALYX_URL == URL
    assert params.get().ALYX_URL == URL
    assert params.get(URL, username='other').ALYX_LOGIN == 'other'
    assert 'CACHE_DIR' not in read(KEY)


def test_get_without_any_setup_uses_public_database(no_prompt):
    par = params.get(silent=True)
    assert par.ALYX_URL == params.default().ALYX_URL
    assert params.get_default_client() == par.ALYX_URL


def test_save_and_patch_params(no_prompt):
    url = 'https://openalyx.internationalbrainlab.org'
    params.setup(url, silent=True)
    key = params._key_from_url(url)
    par = params.get(url).set('HTTP_DATA_SERVER', 'https://ibl.flatironinstitute.org')
    params.save(par, url)
    stored = read(key)
    assert stored['HTTP_DATA_SERVER'] == 'https://ibl.flatironinstitute.org'
    assert 'CACHE_DIR' not in stored
    if os.name == 'posix':
        assert mode(params.get_params_dir() / f'.{key}') == 0o600
    # reading it back repairs the public database's data server (and saves the fix)
    assert params.get(url).HTTP_DATA_SERVER == 'https://ibl.flatironinstitute.org/public'
    assert read(key)['HTTP_DATA_SERVER'] == 'https://ibl.flatironinstitute.org/public'


def test_get_cache_dir(no_prompt, tmp_path):
    assert params.get_cache_dir() == Path(params.CACHE_DIR_DEFAULT)
    assert Path(params.CACHE_DIR_DEFAULT).is_dir()
    params.setup(URL, silent=True, cache_dir=tmp_path / 'c')
    assert params.get_cache_dir() == tmp_path / 'c'
    assert params.get_cache_dir(URL) == tmp_path / 'c'
    assert params.get_cache_dir(KEY) == tmp_path / 'c'


def test_check_cache_conflict(no_prompt, tmp_path):
    params.check_cache_conflict(tmp_path / 'c')  # nothing set up
    params.check_cache_conflict(None)
    params.setup(URL, silent=True, cache_dir=tmp_path / 'c')
    with pytest.raises(AssertionError, match=KEY):
        params.check_cache_conflict(tmp_path / 'c')
    with pytest.raises(AssertionError):
        params.check_cache_conflict(str(tmp_path / 'c'))
    params.check_cache_conflict(tmp_path / 'other')


def test_delete_params(no_prompt, tmp_path):
    params.setup(URL, silent=True)
    params.setup('https://second.org', silent=True)
    unrelated = params.get_params_dir() / 'notes.txt'
    unrelated.write_text('keep me')
    params.delete_params(URL)
    assert not (params.get_params_dir() / f'.{KEY}').exists()
    cache_map = read('caches')
    assert KEY not in cache_map['CLIENT_MAP'] and cache_map['DEFAULT'] == 'second.org'
    with pytest.warns(UserWarning, match='No parameters found'):
        params.delete_params(URL)
    params.delete_params()
    assert sorted(p.name for p in params.get_params_dir().iterdir()) == ['notes.txt']
    unrelated.unlink()
    params.delete_params()
    assert not params.get_params_dir().exists()


# --- tokens -------------------------------------------------------------------------------------
def test_store_token_keeps_other_users(no_prompt):
    params.setup(URL, silent=True)
    params._store_token(URL, 'a', 'tok_a')
    params._store_token(URL, 'b', 'tok_b')
    assert read(KEY)['TOKEN'] == {'a': {'token': 'tok_a'}, 'b': {'token': 'tok_b'}}
    params._store_token(URL, 'a', None)
    assert read(KEY)['TOKEN'] == {'b': {'token': 'tok_b'}}
    params._store_token(URL, 'b', None)
    assert 'TOKEN' not in read(KEY)
    if os.name == 'posix':
        assert mode(params.get_params_dir() / f'.{KEY}') == 0o600


def test_store_token_from_concurrent_processes(no_prompt):
    """Processes saving tokens at the same time lose none of them (locked read-modify-write)."""
    params.setup(URL, silent=True)
    code = textwrap.dedent(f"""
        import sys
        import one.params as p
        for i in range(15):
            p._store_token({URL!r}, f'{{sys.argv[1]}}{{i}}', f'tok{{i}}')
    """)
    procs = [subprocess.Popen([sys.executable, '-c', code, name], env=os.environ.copy(),
                              cwd=Path(params.__file__).parents[1]) for name in ('a', 'b')]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    tokens = read(KEY)['TOKEN']
    assert sorted(tokens) == sorted(f'{n}{i}' for n in 'ab' for i in range(15))


# --- ONE-api parameters -------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform != 'linux', reason='uses XDG_CONFIG_HOME and HOME')
def test_legacy_params_are_migrated(no_prompt, monkeypatch, tmp_path):
    home = tmp_path / 'home'
    legacy = home / '.one'
    legacy.mkdir(parents=True)
    (legacy / '.caches').write_text(json.dumps(
        {'CLIENT_MAP': {KEY: str(tmp_path / 'data')}, 'DEFAULT': KEY}))
    (legacy / f'.{KEY}').write_text(json.dumps(
        {**params.default().as_dict(), 'ALYX_URL': URL, 'TOKEN': {'me': {'token': 'T'}}}))
    monkeypatch.delenv('ONE_PARAMS_DIR')
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.setenv('XDG_CONFIG_HOME', str(home / '.config'))
    assert params.get_params_dir() == home / '.config' / 'one'
    par = params.get()
    assert par.ALYX_URL == URL and par.TOKEN == {'me': {'token': 'T'}}
    assert str(tmp_path / 'data') == par.CACHE_DIR
    assert (home / '.config' / 'one' / f'.{KEY}').exists()
    assert mode(home / '.config' / 'one' / f'.{KEY}') == 0o600


def test_unreadable_params_file_is_reported(no_prompt):
    params.setup(URL, silent=True)
    (params.get_params_dir() / '.caches').write_text('{not json')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert params.get_default_client() is None
    assert any('unreadable parameter file' in str(w.message) for w in caught)
