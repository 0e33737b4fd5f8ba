"""``one setup``, ``one login`` and ``one logout``: database parameters and login tokens.

Everything goes through `one.params` and `one.webclient`; nothing here writes a file itself.
Values come from the options, then the ``ONE_*`` environment variables, then (on a terminal
only) a prompt, then the stored parameters or the defaults.  Off a terminal nothing is ever
asked: a missing value that has no default is an error (exit 2).
"""
from __future__ import annotations

import argparse
import os
import sys

from one.cli._common import NotFound, UsageError, database

_SETUP_FIELDS = (
    # (option attribute, parameter, environment variable, prompt)
    ('base_url', 'ALYX_URL', 'ONE_ALYX_URL', 'Alyx database URL'),
    ('username', 'ALYX_LOGIN', 'ONE_ALYX_LOGIN', 'Alyx user name'),
    ('data_server', 'HTTP_DATA_SERVER', 'ONE_HTTP_DATA_SERVER', 'HTTP data server URL'),
    ('data_server_login', 'HTTP_DATA_SERVER_LOGIN', 'ONE_HTTP_DATA_SERVER_LOGIN',
     'HTTP data server user name (empty for none)'),
    ('cache_dir', 'CACHE_DIR', 'ONE_CACHE_DIR', 'Data folder'),
)
_KEPT = ('TOKEN', 'ALYX_PWD', 'HTTP_DATA_SERVER_PWD')  # stored values a set-up carries over


def _interactive(args: argparse.Namespace) -> bool:
    return not getattr(args, 'no_input', False) and sys.stdin.isatty()


def _ask(label: str, current) -> str | None:
    shown = f' [{current}]' if current else ''
    answer = input(f'{label}{shown}: ').strip()
    return answer or None


def _is_configured(url: str) -> bool:
    import one.params

    return one.params.client_key(url) in one.params.client_map()


def _stored(url: str) -> dict:
    """The stored parameters of a configured database ({} when it is not set up)."""
    import one.params

    if not _is_configured(url):
        return {}
    return one.params.get(url, silent=True).as_dict()


def _database(args: argparse.Namespace) -> str:
    """The database of login/logout: --base-url, $ONE_ALYX_URL or the default one."""
    return database(args.base_url)


# --------------------------------------------------------------------------------------------
def cmd_setup(args: argparse.Namespace) -> int:
    import one.params

    values = {attr: getattr(args, attr) for attr, *_ in _SETUP_FIELDS}
    for attr, _key, env, _label in _SETUP_FIELDS:
        if values[attr] is None and os.environ.get(env):
            values[attr] = os.environ[env]
    interactive = _interactive(args)
    if values['base_url'] is None and interactive:
        values['base_url'] = _ask('Alyx database URL', one.params.get_default_client() or
                                  one.params.default().ALYX_URL)
    url = values['base_url'] or one.params.get_default_client() or \
        one.params.default().ALYX_URL
    try:
        url = one.params.normalize_url(url)
    except ValueError as e:
        raise UsageError(f'{e}: {url!r}') from e
    stored = _stored(url)
    defaults = {**one.params.default().as_dict(), **stored}
    if interactive:
        suggested = {**defaults, 'CACHE_DIR': stored.get('CACHE_DIR') or os.path.join(
            one.params.CACHE_DIR_DEFAULT, one.params.client_key(url))}
        for attr, key, _env, label in _SETUP_FIELDS[1:]:
            if values[attr] is None:
                values[attr] = _ask(label, suggested.get(key))
    # What the user did not give keeps its stored value (a silent set-up would reset it)
    for attr, key, _env, _label in _SETUP_FIELDS[1:]:
        if values[attr] is None and stored.get(key) is not None:
            values[attr] = stored[key]
    extra = {}
    if values['data_server']:
        extra['HTTP_DATA_SERVER'] = values['data_server']
    if values['data_server_login']:
        extra['HTTP_DATA_SERVER_LOGIN'] = values['data_server_login']
    try:  # one update: logins and stored passwords are kept (a set-up logs nobody out)
        one.params.setup(url, silent=True, make_default=True if args.default else None,
                         username=values['username'], cache_dir=values['cache_dir'],
                         keep=_KEPT, **extra)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from e
    par = one.params.get(url, silent=True)
    default = one.params.get_default_client()
    print(f'{"updated" if stored else "set up"} {par.ALYX_URL}'
          f'{" (the default database)" if default == par.ALYX_URL else ""}')
    for key in ('ALYX_LOGIN', 'HTTP_DATA_SERVER', 'HTTP_DATA_SERVER_LOGIN', 'CACHE_DIR'):
        print(f'  {key:<23}{getattr(par, key, None)}')
    print(f'parameters in {one.params.get_params_dir()}', file=sys.stderr)
    return 0


def _read_password(args: argparse.Namespace, username: str, url: str) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip('\r\n')
        if not password:
            raise UsageError('--password-stdin: no password on standard input')
        return password
    if os.environ.get('ONE_ALYX_PWD'):
        return os.environ['ONE_ALYX_PWD']
    if not _interactive(args):
        raise UsageError('no password: pipe it with --password-stdin or set ONE_ALYX_PWD '
                         '(nothing is asked when not on a terminal)')
    from getpass import getpass

    return getpass(f'Alyx password for {username} on {url}: ')


def cmd_login(args: argparse.Namespace) -> int:
    import one.params
    from one._rest.errors import AlyxAuthError
    from one.webclient import AlyxClient

    url = _database(args)
    username = args.username or os.environ.get('ONE_ALYX_LOGIN') or \
        one.params.get(url, silent=True).ALYX_LOGIN
    if not username:
        if not _interactive(args):
            raise UsageError(f'no user name for {url}: give --username')
        username = input('Alyx user name: ').strip()
    password = _read_password(args, username, url)
    client = AlyxClient(base_url=url, silent=True)
    try:
        client.authenticate(username=username, password=password, cache_token=True,
                            force=True)
    except AlyxAuthError as e:
        raise NotFound(str(e).splitlines()[0]) from None
    print(f'logged in to {url} as {username} (token saved)')
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    import one.params
    from one.webclient import AlyxClient

    url = _database(args)
    par = one.params.get(url, silent=True)
    tokens = getattr(par, 'TOKEN', None) or {}
    username = args.username or os.environ.get('ONE_ALYX_LOGIN') or par.ALYX_LOGIN
    users = list(tokens) if args.all else [username]
    logged_in = [u for u in users if u in tokens]
    if not logged_in:
        raise NotFound(f'{username if not args.all else "nobody"} is not logged in to {url}')
    for user in logged_in:
        client = AlyxClient(base_url=url, silent=True)
        client.authenticate(username=user)  # the stored token: no request is made
        client.logout()  # forgets the token on disk and clears the REST cache
        print(f'logged out {user} from {url} (token removed)')
    return 0


def add_commands(commands, parents: dict) -> None:
    """Add the setup, login and logout subcommands to the ``one`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``one`` parser.
    parents : dict
        Shared option groups: 'common' (--debug).
    """
    common = parents['common']
    no_input = argparse.ArgumentParser(add_help=False)
    no_input.add_argument('--no-input', action='store_true',
                          help='never prompt, even on a terminal')

    setup = commands.add_parser(
        'setup', parents=[common, no_input], help='set up a database (URL, user, data folder)',
        description='Set up or change the parameters of an Alyx database.  Values come from '
                    'the options, then the environment (ONE_ALYX_URL, ONE_ALYX_LOGIN, '
                    'ONE_HTTP_DATA_SERVER, ONE_HTTP_DATA_SERVER_LOGIN, '
                    'ONE_HTTP_DATA_SERVER_PWD, ONE_CACHE_DIR); on a terminal whatever is '
                    'missing is asked for, otherwise the stored values or the defaults are '
                    'kept.  Logins (tokens) are kept.')
    setup.add_argument('--base-url', metavar='URL', help='the Alyx database URL')
    setup.add_argument('--username', metavar='USER', help='the Alyx user name')
    setup.add_argument('--cache-dir', metavar='DIR', help='the data folder')
    setup.add_argument('--data-server', metavar='URL', help='the HTTP data file server')
    setup.add_argument('--data-server-login', metavar='USER',
                       help='the data server user name (password: ONE_HTTP_DATA_SERVER_PWD)')
    setup.add_argument('--default', action='store_true', help='make it the default database')
    setup.set_defaults(run=cmd_setup)

    login = commands.add_parser(
        'login', parents=[common, no_input], help='log in to a database (token saved)',
        description='Log in to an Alyx database and save the token in the parameters '
                    '(readable by you only).  The password is read from standard input with '
                    '--password-stdin, else from ONE_ALYX_PWD, else asked without echo on a '
                    'terminal.')
    login.add_argument('--base-url', metavar='URL',
                       help='the database (default: ONE_ALYX_URL, then the default database)')
    login.add_argument('--username', metavar='USER', help='default: the set-up user name')
    login.add_argument('--password-stdin', action='store_true',
                       help='read the password from the first line of standard input')
    login.set_defaults(run=cmd_login)

    logout = commands.add_parser(
        'logout', parents=[common], help='forget the login token of a database',
        description='Remove the saved login token (and the REST response cache).')
    logout.add_argument('--base-url', metavar='URL',
                        help='the database (default: ONE_ALYX_URL, then the default database)')
    logout.add_argument('--username', metavar='USER', help='default: the set-up user name')
    logout.add_argument('--all', action='store_true', help='log out every user')
    logout.set_defaults(run=cmd_logout)
