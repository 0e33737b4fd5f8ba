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


def test_get_params_dir(monkeypatch):
    assert params.get_params_dir() == Path(os.environ['ONE_PARAMS_DIR'])
    monkeypatch.delenv('ONE_PARAMS_DIR')
    if os.name == 'nt':
        assert params.get_params_dir() == Path(os.environ['APPDATA']) / '.one'
    else:
        assert params.get_params_dir() == Path.home() / '.one'
        assert Path.home() == Path(os.environ['HOME'])  # the test's own home (conftest.py)


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


# --- ONE-api's ~/.one ----------------------------------------------------------------------------
def one_api_text(data):
    """A parameter file as ONE-api writes it: JSON indented by 4, no final newline."""
    return json.dumps(data, indent=4)


@pytest.fixture
def home_one(monkeypatch):
    """ONE-api's parameter folder in the test's temporary home, used as ONE's (no override)."""
    monkeypatch.delenv('ONE_PARAMS_DIR')
    folder = (Path(os.environ['APPDATA']) if os.name == 'nt' else Path.home()) / '.one'
    assert params.get_params_dir() == folder
    return folder


def write_one_api_setup(folder, cache_dir, token='T0K', mode=0o644):
    """Write a set-up the way ONE-api 3.6.1 does (same files, keys, order and format)."""
    folder.mkdir(parents=True, exist_ok=True)
    client = {'ALYX_URL': URL, 'ALYX_LOGIN': 'alice',
              'HTTP_DATA_SERVER': 'https://data.example.org/files',
              'HTTP_DATA_SERVER_LOGIN': 'flat', 'HTTP_DATA_SERVER_PWD': 'pa55',
              'TOKEN': {'alice': {'token': token}}}
    (folder / f'.{KEY}').write_text(one_api_text(client))
    (folder / f'.{KEY}').chmod(mode)
    cache_map = {'CLIENT_MAP': {KEY: str(cache_dir)}, 'DEFAULT': KEY}
    (folder / '.caches').write_text(one_api_text(cache_map))
    return client, cache_map


def test_one_api_setup_works_unchanged_and_stays_shared(no_prompt, home_one, tmp_path):
    client, cache_map = write_one_api_setup(home_one, tmp_path / 'data')
    # read: URL, login, token, data server, cache folder, default client
    par = params.get()
    assert par.as_dict() == {**client, 'CACHE_DIR': str(tmp_path / 'data')}
    assert params.get_default_client() == URL
    assert params.get_cache_dir() == tmp_path / 'data'
    if os.name == 'posix':  # a login token readable by others is made private when read
        assert mode(home_one / f'.{KEY}') == 0o600

    # changed: a new login token, a new password, a new database made the default
    params._store_token(URL, 'bob', 'B0B')
    params.save(params.get(URL).set('HTTP_DATA_SERVER_PWD', 'n3w'), URL)
    params.setup('https://second.org', silent=True, cache_dir=tmp_path / 'second',
                 make_default=True)

    # read again, as ONE-api would: the same files in the same format
    expected = {**client, 'HTTP_DATA_SERVER_PWD': 'n3w',
                'TOKEN': {'alice': {'token': 'T0K'}, 'bob': {'token': 'B0B'}}}
    assert (home_one / f'.{KEY}').read_text() == one_api_text(expected)
    cache_map = {'CLIENT_MAP': {KEY: str(tmp_path / 'data'),
                                'second.org': str(tmp_path / 'second')},
                 'DEFAULT': 'second.org'}
    assert (home_one / '.caches').read_text() == one_api_text(cache_map)
    assert json.loads((home_one / '.second.org').read_text())['ALYX_URL'] == 'https://second.org'
    assert expected['TOKEN'] == params.get(URL).TOKEN
    assert params.get().ALYX_URL == 'https://second.org'
    if os.name == 'posix':
        assert mode(home_one / f'.{KEY}') == 0o600
        assert mode(home_one / '.second.org') == 0o600
    assert not (Path(os.environ['HOME']) / '.config' / 'one').exists()


def test_changes_made_by_one_api_are_seen(no_prompt, home_one, tmp_path):
    write_one_api_setup(home_one, tmp_path / 'data')
    assert params.get().TOKEN == {'alice': {'token': 'T0K'}}
    write_one_api_setup(home_one, tmp_path / 'moved', token='NEW')  # ONE-api changes them
    par = params.get()
    assert par.TOKEN == {'alice': {'token': 'NEW'}}
    assert str(tmp_path / 'moved') == par.CACHE_DIR


def test_params_dir_override_ignores_home(no_prompt, home_one, monkeypatch, tmp_path):
    write_one_api_setup(home_one, tmp_path / 'data')
    monkeypatch.setenv('ONE_PARAMS_DIR', str(tmp_path / 'elsewhere'))
    assert params.get_params_dir() == tmp_path / 'elsewhere'
    assert params.get_default_client() is None
    params.setup('https://second.org', silent=True)
    assert (tmp_path / 'elsewhere' / '.second.org').exists()
    assert not (home_one / '.second.org').exists()


def old_one_next_dir():
    """Where earlier one-next releases kept parameters (platformdirs' config folder, 'one')."""
    if sys.platform == 'win32':
        return Path(os.environ['LOCALAPPDATA']) / 'one'
    if sys.platform == 'darwin':
        return Path.home() / 'Library' / 'Application Support' / 'one'
    return Path.home() / '.config' / 'one'


def test_old_one_next_params_are_moved_once(no_prompt, home_one, tmp_path):
    old = old_one_next_dir()
    old.mkdir(parents=True)
    # ~/.one as ONE-api left it, older than one-next's copy, which has a new password and login
    write_one_api_setup(home_one, tmp_path / 'data')
    (home_one / '.remote').write_text(one_api_text({'globus': {'default': {'a': 1}}}))
    for name in ('.caches', f'.{KEY}', '.remote'):
        os.utime(home_one / name, (1_000_000_000, 1_000_000_000))
    (old / '.caches').write_text(one_api_text(
        {'CLIENT_MAP': {KEY: str(tmp_path / 'data'), 'next.org': str(tmp_path / 'next')},
         'DEFAULT': 'next.org'}))
    (old / f'.{KEY}').write_text(one_api_text(
        {'ALYX_URL': URL, 'ALYX_LOGIN': 'alice', 'HTTP_DATA_SERVER_PWD': 'changed',
         'TOKEN': {'carol': {'token': 'C'}}}))
    (old / '.next.org').write_text(one_api_text({'ALYX_URL': 'https://next.org'}))
    (old / '.remote').write_text(one_api_text({'aws': {'b': 2}}))
    (old / '.params.lock').touch()
    (old / 'unrelated.txt').write_text('not ours')

    assert params.get_default_client() == 'https://next.org'
    client = json.loads((home_one / f'.{KEY}').read_text())
    assert client['HTTP_DATA_SERVER_PWD'] == 'changed'  # the newer file wins
    assert client['HTTP_DATA_SERVER'] == 'https://data.example.org/files'  # kept from ~/.one
    assert client['TOKEN'] == {'alice': {'token': 'T0K'}, 'carol': {'token': 'C'}}
    assert json.loads((home_one / '.caches').read_text())['CLIENT_MAP'] == {
        KEY: str(tmp_path / 'data'), 'next.org': str(tmp_path / 'next')}
    assert json.loads((home_one / '.remote').read_text()) == {
        'globus': {'default': {'a': 1}}, 'aws': {'b': 2}}
    assert str(tmp_path / 'next') == params.get('https://next.org').CACHE_DIR
    if os.name == 'posix':
        assert mode(home_one / '.next.org') == 0o600
    # moved, not copied: only the unrelated file is left, so it happens once
    assert sorted(p.name for p in old.iterdir()) == ['unrelated.txt']
    params.setup(URL, silent=True, username='dave')  # a change after the move is not undone
    params.get()
    assert json.loads((home_one / f'.{KEY}').read_text())['ALYX_LOGIN'] == 'dave'


def test_old_one_next_params_moved_into_empty_home(no_prompt, home_one, tmp_path):
    old = old_one_next_dir()
    old.mkdir(parents=True)
    (old / '.caches').write_text(one_api_text({'CLIENT_MAP': {KEY: str(tmp_path / 'd')},
                                               'DEFAULT': KEY}))
    (old / f'.{KEY}').write_text(one_api_text({'ALYX_URL': URL, 'ALYX_LOGIN': 'erin'}))
    assert params.get().ALYX_LOGIN == 'erin'
    assert not old.exists()
    names = sorted(p.name for p in home_one.iterdir())
    assert names == sorted(['.caches', '.params.lock', f'.{KEY}'])


def test_one_api_rest_cache_is_moved_to_the_cache_folder(no_prompt, home_one, tmp_path):
    write_one_api_setup(home_one, tmp_path / 'data')
    old_rest = home_one / '.rest'
    for client, scheme, name in [(KEY, 'https', 'abc123'), (KEY, 'https', 'def456'),
                                 (KEY, 'http', 'other_scheme'), ('other.org', 'https', 'x')]:
        (old_rest / client / scheme).mkdir(parents=True, exist_ok=True)
        (old_rest / client / scheme / name).write_text(name)
    params.get(URL)
    assert sorted(p.name for p in (tmp_path / 'data' / '.rest').iterdir()) == \
        ['abc123', 'def456']
    assert (tmp_path / 'data' / '.rest' / 'abc123').read_text() == 'abc123'
    assert not (old_rest / KEY).exists()  # the client's old folder is gone, other schemes too
    assert (old_rest / 'other.org' / 'https' / 'x').exists()  # other clients are untouched
    params.get(URL)  # nothing left to move
    assert len(list((tmp_path / 'data' / '.rest').iterdir())) == 2


def test_one_api_rest_cache_not_moved_over_a_current_one(no_prompt, home_one, tmp_path):
    write_one_api_setup(home_one, tmp_path / 'data')
    (home_one / '.rest' / KEY / 'https').mkdir(parents=True)
    (home_one / '.rest' / KEY / 'https' / 'old').write_text('old')
    (tmp_path / 'data' / '.rest').mkdir(parents=True)
    (tmp_path / 'data' / '.rest' / 'current').write_text('current')
    params.get(URL)
    assert [p.name for p in (tmp_path / 'data' / '.rest').iterdir()] == ['current']
    assert not (home_one / '.rest' / KEY).exists()


def test_params_objects_as_dict_and_set(no_prompt, tmp_path):
    from one.remote import base
    params.setup(URL, silent=True, cache_dir=tmp_path / 'c')
    par = params.get(URL)
    changed = par.set('ALYX_LOGIN', 'zoe')
    assert (par.ALYX_LOGIN, changed.ALYX_LOGIN) == ('intbrainlab', 'zoe')
    assert changed.as_dict() == {**par.as_dict(), 'ALYX_LOGIN': 'zoe'}
    params.save(changed, URL)
    assert params.get(URL).ALYX_LOGIN == 'zoe'

    base.save_client_params({'globus': {'default': {'local_endpoint': 'abc', 'n': {'x': 1}}},
                             'with.dot': {'k': 1}})
    remote = base.load_client_params()
    assert isinstance(remote, params.IBLParams)
    assert remote.as_dict() == {'globus': {'default': {'local_endpoint': 'abc', 'n': {'x': 1}}},
                                'with.dot': {'k': 1}}  # keys kept even if not identifiers
    globus = base.load_client_params('globus.default')
    assert isinstance(globus, params.IBLParams) and globus.local_endpoint == 'abc'
    new = globus.set('local_endpoint', 'xyz')
    assert (globus.local_endpoint, new.local_endpoint, new.n) == ('abc', 'xyz', {'x': 1})
    base.save_client_params(new, 'globus.default')
    assert base.load_client_params('globus.default').as_dict() == \
        {'local_endpoint': 'xyz', 'n': {'x': 1}}
    assert base.load_client_params('globus.default.local_endpoint') == 'xyz'
    if os.name == 'posix':
        assert mode(params.get_params_dir() / '.remote') == 0o600


def test_unreadable_params_file_is_reported(no_prompt):
    params.setup(URL, silent=True)
    (params.get_params_dir() / '.caches').write_text('{not json')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert params.get_default_client() is None
    assert any('unreadable parameter file' in str(w.message) for w in caught)


def test_setup_keep_carries_stored_values_over_in_the_same_update(no_prompt):
    params.setup(URL, silent=True, username='ann')
    params._store_token(URL, 'ann', 'T0K')  # e.g. another process logging in meanwhile
    params.save(params.get(URL).set('ALYX_PWD', 'pw'), URL)
    params.setup(URL, silent=True, username='bea', keep=('TOKEN', 'ALYX_PWD'))
    par = params.get(URL)
    assert (par.ALYX_LOGIN, par.TOKEN, par.ALYX_PWD) == ('bea', {'ann': {'token': 'T0K'}}, 'pw')
    params.setup(URL, silent=True, keep=('TOKEN',), ALYX_PWD='given')  # given: replaced
    assert params.get(URL).ALYX_PWD == 'given'
    params.setup(URL, silent=True)  # a silent set-up without keep resets to the standard keys
    assert getattr(params.get(URL), 'TOKEN', None) is None


def test_public_helpers(tmp_path):
    assert params.client_key('http://127.0.0.1:8000/') == '127.0.0.1_8000'
    assert params.normalize_url('alyx.example.org/') == 'https://alyx.example.org'
    with pytest.raises(ValueError, match='ALYX_URL must be valid HTTP URL'):
        params.normalize_url('ftp://x')
    assert params.client_map() == {}
    params.setup('https://a.example.org', silent=True, cache_dir=tmp_path / 'a')
    assert params.client_map() == {'a.example.org': str(tmp_path / 'a')}
    par = params.IBLParams.from_dict({'A': 1})
    assert isinstance(par, params.IBLParams) and par.A == 1
    assert params.IBLParams.from_dict({}) is None


def test_old_rest_cache_under_the_host_name_is_moved(no_prompt, home_one, tmp_path):
    """ONE-api's old REST cache folder is named by the host (ONE-SPEC 10.1), which is not the
    client key for a URL with a port: both names are looked for."""
    url = 'http://127.0.0.1:8000'
    params.setup(url, silent=True, cache_dir=tmp_path / 'data')
    (home_one / '.rest' / '127.0.0.1' / 'http').mkdir(parents=True)
    (home_one / '.rest' / '127.0.0.1' / 'http' / 'abc').write_text('cached')
    params.get(url)
    assert (tmp_path / 'data' / '.rest' / 'abc').read_text() == 'cached'
    assert not (home_one / '.rest' / '127.0.0.1').exists()
