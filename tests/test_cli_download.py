"""``one download`` run as a program against the Alyx replay server serving a generated database
(tests/alyx_synthetic.py), and against a release served by http.server; requests counted at
the servers."""
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from alyx_server import PASSWORD, USERNAME, AlyxTestServer
from alyx_synthetic import REVISION, SyntheticAlyx
from cli_helpers import one_env, run, run_tty

from one.api import ONE


@pytest.fixture(scope='module')
def db(tmp_path_factory):
    return SyntheticAlyx.generate(tmp_path_factory.mktemp('synthetic'), n_sessions=12,
                                  sessions_per_subject=6)


@pytest.fixture
def server(db):
    with AlyxTestServer(database=db) as server:
        yield server


@pytest.fixture
def env(server, tmp_path):
    """The environment of a `one` process whose default database is the server, logged in."""
    env = one_env(tmp_path / 'home')
    setup = run('setup', '--base-url', server.url, '--username', USERNAME, '--cache-dir',
                tmp_path / 'data', '--data-server', server.url, env=env)
    assert setup.returncode == 0, setup.stderr
    assert run('login', '--password-stdin', env=env, stdin=PASSWORD).returncode == 0
    server.clear_log()
    yield env
    ONE.cache_clear()


def data_requests(server) -> list[str]:
    return [r.path for r in server.requests if '/Subjects/' in r.path]


def rest_requests(server) -> list[str]:
    return [r.path for r in server.requests if '/Subjects/' not in r.path]


def default_files(db, eids, rel_paths) -> dict:
    """served URL path -> (session folder, rel_path, record) of the default datasets of the
    sessions whose rel_path matches (a function of rel_path)."""
    out = {}
    for d in db.datasets:
        eid = d['session'].rstrip('/')[-36:]
        if eid not in eids or not d['file_records'] or not d['default_dataset'] or \
                d['qc'] == 'CRITICAL':
            continue
        url = unquote(urlsplit(d['file_records'][0]['data_url'], allow_fragments=False).path)
        session = '/'.join(url.strip('/').split('/')[:5])
        rel = url.strip('/').split('/', 5)[5]
        rel_path = rel.replace('.' + d['url'][-36:], '')
        if rel_paths(rel_path):
            out[url] = (session, rel_path, d)
    return out


def local_files(folder: Path) -> set[str]:
    """The dataset files in a data folder (not the tables, records or REST cache)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob('*')
            if p.is_file() and '/Subjects/' in p.as_posix() and not p.name.startswith('.')}


def trials(rel_path: str) -> bool:
    return rel_path.startswith('alf/') and '/_ibl_trials.' in f'/{rel_path.split("/")[-1]}'


# ---- download twice, dry run -----------------------------------------------------------------

def test_download_twice_fetches_nothing_the_second_time(env, server, db, tmp_path):
    data = tmp_path / 'data'
    subject = db.sessions[db.eids[0]]['subject']
    eids = [e for e, r in db.sessions.items() if r['subject'] == subject]
    expected = default_files(db, eids, trials)
    first = run('download', '--subject', subject, '--dataset', 'trials', env=env)
    assert first.returncode == 0, first.stderr
    assert sorted(data_requests(server)) == sorted(expected)  # each file once, nothing else
    assert rest_requests(server).count('/datasets') <= 2  # batched, not one per session
    assert local_files(data) == {f'{s}/{r}' for s, r, _ in expected.values()}
    for url, (session, rel_path, _) in expected.items():
        assert (data / session / rel_path).read_bytes() == db.file(url).read_bytes()
    assert f'fetched {len(expected)} files' in first.stderr
    assert (data / 'datasets.pqt').exists()  # the records saved: the folder works offline

    server.clear_log()
    second = run('download', '--subject', subject, '--dataset', 'trials', env=env)
    assert second.returncode == 0, second.stderr
    assert data_requests(server) == []
    assert f'nothing to fetch: the {len(expected)} datasets of {len(eids)} sessions are ' \
           'present and verified' in second.stderr
    # The files saved are usable without the database
    listing = run('list', '-C', data, eids[0], '--collection', 'alf', '--filename', '*trials*',
                  env=env)
    assert listing.returncode == 0 and '_ibl_trials.choice.npy' in listing.stdout


def test_dry_run_fetches_nothing_and_counts_files_and_bytes(env, server, db, tmp_path):
    data = tmp_path / 'data'
    eids = db.eids[:3]
    expected = default_files(db, eids, lambda r: r.startswith('alf/_ibl_wheel.'))
    result = run('download', *eids, '--dataset', 'wheel', '--dry-run', '--json', env=env)
    assert result.returncode == 0, result.stderr
    assert data_requests(server) == [] and local_files(data) == set()
    report = json.loads(result.stdout)
    sizes = sum(d['file_size'] for _, _, d in expected.values())
    assert (report['to_fetch'], report['bytes'], report['present']) == (len(expected), sizes, 0)
    assert report['dry_run'] is True and report['sessions'] == 3
    assert {f['path'] for f in report['files']} == {f'{s}/{r}' for s, r, _ in
                                                    expected.values()}
    assert {f['reason'] for f in report['files']} == {'missing'}

    # After a download: a file changed and one deleted are what a dry run lists, as text
    assert run('download', *eids, '--dataset', 'wheel', env=env).returncode == 0
    (session, rel_path, _), (session2, rel_path2, _) = list(expected.values())[:2]
    tampered, deleted = data / session / rel_path, data / session2 / rel_path2
    content = bytearray(tampered.read_bytes())
    content[-1] ^= 0xFF  # same size, another md5
    tampered.write_bytes(bytes(content))
    deleted.unlink()
    server.clear_log()
    text = run('download', *eids, '--dataset', 'wheel', '--dry-run', env=env)
    assert text.returncode == 0, text.stderr
    lines = sorted(text.stdout.splitlines(), key=lambda line: line.split()[-1])
    listed = sorted([('md5', f'{session}/{rel_path}'), ('missing', f'{session2}/{rel_path2}')],
                    key=lambda x: x[1])
    assert [line.split()[-2:] for line in lines] == [list(x) for x in listed]
    assert 'would fetch 2 files, 12.8 KiB, ' in text.stderr and 'dry run' in text.stderr
    assert data_requests(server) == [] and not deleted.exists()
    assert tampered.read_bytes() == bytes(content)
    # The real run repairs both
    fixed = run('download', *eids, '--dataset', 'wheel', env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert len(data_requests(server)) == 2 and deleted.exists()
    assert tampered.read_bytes() != bytes(content)


# ---- choosing the sessions -------------------------------------------------------------------

def test_eids_file_and_standard_input(env, server, db, tmp_path):
    data = tmp_path / 'data'
    chosen = db.eids[2:5]
    record = db.sessions[chosen[2]]
    by_name = f'{record["subject"]}/{record["start_time"][:10]}/{record["number"]}'
    listing = tmp_path / 'sessions.txt'
    listing.write_text(f'eid  subject\n# picked by hand\n{chosen[0]}  x\n\n{chosen[1]}\n'
                       f'{by_name}\n')
    result = run('download', '--eids', listing, '--dataset', '_ibl_wheel.position',
                 '--collection', 'alf', env=env)
    assert result.returncode == 0, result.stderr
    expected = default_files(db, chosen, lambda r: r == 'alf/_ibl_wheel.position.npy')
    assert len(expected) == 3
    assert local_files(data) == {f'{s}/{r}' for s, r, _ in expected.values()}
    # The same from standard input: nothing more to fetch
    server.clear_log()
    piped = run('download', '--eids', '-', '--dataset', '_ibl_wheel.position', env=env,
                stdin='\n'.join(chosen))
    assert piped.returncode == 0 and data_requests(server) == []
    assert 'nothing to fetch: the 3 datasets of 3 sessions' in piped.stderr
    empty = tmp_path / 'empty.txt'
    empty.write_text('# nothing\n')
    assert run('download', '--eids', empty, env=env).returncode == 2
    missing = run('download', '--eids', tmp_path / 'nope.txt', env=env)
    assert missing.returncode == 2 and 'nope.txt' in missing.stderr


def test_search_options(env, server, db, tmp_path):
    data = tmp_path / 'data'
    subject = db.sessions[db.eids[-1]]['subject']
    days = sorted(r['start_time'][:10] for r in db.sessions.values() if r['subject'] == subject)
    wanted = [e for e, r in db.sessions.items()
              if r['subject'] == subject and days[1] <= r['start_time'][:10] <= days[2]]
    assert len(wanted) == 2
    result = run('download', '--subject', subject, '--date-range', days[1], days[2],
                 '--dataset', '_ibl_trials.choice', env=env)
    assert result.returncode == 0, result.stderr
    searched = [r for r in server.requests if r.path == '/sessions']
    assert len(searched) == 1 and 'date_range' in searched[0].query  # sent to Alyx
    folders = {'/'.join(p.split('/')[:5]) for p in local_files(data)}
    assert folders == {f'{db.sessions[e]["lab"]}/Subjects/{subject}/'
                       f'{db.sessions[e]["start_time"][:10]}/001' for e in wanted}
    nothing = run('download', '--subject', 'NOBODY', '--dataset', 'trials', env=env)
    assert nothing.returncode == 1 and 'no session matches' in nothing.stderr
    none = run('download', wanted[0], '--dataset', 'nosuchobject', env=env)
    assert none.returncode == 1 and 'no dataset matches in the session' in none.stderr


def test_collection_and_revision(env, server, db, tmp_path):
    data = tmp_path / 'data'
    revised = next(e for e, r in db.sessions.items()
                   if any(d['revision'] for d in r['data_dataset_session_related']))
    default = run('download', revised, '--dataset', '_ibl_trials.choice', env=env)
    assert default.returncode == 0, default.stderr
    assert [p.split('/', 5)[5] for p in local_files(data)] == \
        [f'alf/#{REVISION}#/_ibl_trials.choice.npy']
    older = run('download', revised, '--dataset', '_ibl_trials.choice', '--revision',
                '2024-01-01', env=env)
    assert older.returncode == 0, older.stderr
    assert sorted(p.split('/', 5)[5] for p in local_files(data)) == \
        sorted(['alf/_ibl_trials.choice.npy', f'alf/#{REVISION}#/_ibl_trials.choice.npy'])
    probe = next(e for e, r in db.sessions.items() if r['probe_insertion'])
    spikes = run('download', probe, '--dataset', 'spikes', '--collection', 'alf/probe01',
                 '--dry-run', '--json', env=env)
    files = json.loads(spikes.stdout)['files']
    assert files and all('/alf/probe01/spikes.' in f['path'] for f in files)


# ---- lock files ------------------------------------------------------------------------------

def test_lock_fetches_exactly_the_locked_versions(env, server, db, tmp_path):
    """A lock made with the original revision of a revised dataset: the download fetches that
    version (not the default one) and the other locked files, and nothing else."""
    revised = next(e for e, r in db.sessions.items()
                   if any(d['revision'] for d in r['data_dataset_session_related']))
    other = next(e for e in db.eids if e != revised)
    one = ONE(base_url=server.url, username=USERNAME, password=PASSWORD,
              cache_dir=tmp_path / 'analysis', silent=True)
    one.record_loaded = True
    one.load_dataset(revised, '_ibl_trials.choice.npy', revision='2024-01-01')
    one.load_object(other, 'wheel', collection='alf')
    lock = one.save_lock(tmp_path / 'analysis.lock.json')
    locked = json.loads(lock.read_text())['datasets']
    assert len(locked) == 3 and any(d['rel_path'] == 'alf/_ibl_trials.choice.npy' and
                                    d['eid'] == revised for d in locked)
    fresh = tmp_path / 'fresh'
    server.clear_log()
    dry = run('download', '--lock', lock, '-C', fresh, '--dry-run', env=env)
    assert dry.returncode == 0, dry.stderr
    assert len(dry.stdout.splitlines()) == 3 and 'would fetch 3 files' in dry.stderr
    assert data_requests(server) == []
    assert not fresh.exists() or local_files(fresh) == set()

    result = run('download', '--lock', lock, '-C', fresh, env=env)
    assert result.returncode == 0, result.stderr
    fetched = data_requests(server)
    assert sorted(p.rsplit('.', 2)[-2] for p in fetched) == sorted(d['id'] for d in locked)
    sessions = json.loads(lock.read_text())['sessions']
    assert local_files(fresh) == {f'{sessions[d["eid"]]}/{d["rel_path"]}' for d in locked}
    original = next(p for p in fetched if '_ibl_trials.choice' in p)
    assert f'#{REVISION}#' not in original
    assert (fresh / sessions[revised] / 'alf/_ibl_trials.choice.npy').read_bytes() == \
        db.file(original).read_bytes()
    # Checked by 'one cache verify --lock'; the second run fetches nothing
    assert run('cache', 'verify', '--lock', lock, '-C', fresh, env=env).returncode == 0
    server.clear_log()
    again = run('download', '--lock', lock, '-C', fresh, env=env)
    assert again.returncode == 0 and data_requests(server) == []
    assert 'nothing to fetch: the 3 datasets of 2 sessions' in again.stderr
    # Only some sessions of the lock; options that would change what is fetched are refused
    (fresh / sessions[other] / 'alf/_ibl_wheel.position.npy').unlink()
    (fresh / sessions[revised] / 'alf/_ibl_trials.choice.npy').unlink()
    server.clear_log()
    some = run('download', '--lock', lock, '-C', fresh, revised, env=env)
    assert some.returncode == 0, some.stderr
    assert [Path(p).name.split('.')[1] for p in data_requests(server)] == ['choice']
    refused = run('download', '--lock', lock, '--dataset', 'trials', env=env)
    assert refused.returncode == 2 and '--dataset' in refused.stderr
    elsewhere = tmp_path / 'elsewhere.lock.json'
    elsewhere.write_text(lock.read_text().replace(server.url, 'https://alyx.elsewhere.org'))
    unknown = run('download', '--lock', elsewhere, env=env)
    assert unknown.returncode == 2
    assert "the lock file's database, https://alyx.elsewhere.org, is not set up" in \
        unknown.stderr
    bad = tmp_path / 'bad.lock.json'
    bad.write_text('{"not": "a lock"}')
    assert run('download', '--lock', bad, env=env).returncode == 2


# ---- failures, usage, no prompt ----------------------------------------------------------------

def test_a_failing_file_is_named_with_exit_code_1(env, server, db, tmp_path):
    data = tmp_path / 'data'
    eids = db.eids[:2]
    expected = default_files(db, eids, lambda r: r.startswith('alf/_ibl_wheel.'))
    broken_url = sorted(expected)[0]
    session, rel_path, _ = expected[broken_url]
    server.fail(broken_url, status=404, times=None)  # the file server lost it
    result = run('download', *eids, '--dataset', 'wheel', env=env)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f'failed   {session}/{rel_path}']
    assert f'fetched {len(expected) - 1} files' in result.stderr and '1 failed' in \
        result.stderr
    assert local_files(data) == {f'{s}/{r}' for s, r, _ in expected.values()} - \
        {f'{session}/{rel_path}'}
    report = json.loads(run('download', *eids, '--dataset', 'wheel', '--json', env=env).stdout)
    assert report['failed'] == [f'{session}/{rel_path}'] and report['fetched'] == 0
    # Once the server has it again, the next run fetches only that file
    server._faults.clear()
    server.clear_log()
    assert run('download', *eids, '--dataset', 'wheel', env=env).returncode == 0
    assert data_requests(server) == [broken_url]


def test_usage_errors(env, db):
    cases = [
        ([], 'which sessions?'),
        ([db.eids[0], '--subject', 'x'], 'not both'),
        (['--lock', 'x.json', '--subject', 'x'], 'search options'),
        ([db.eids[0], '--base-url', 'http://a', '--url', 'http://b'], 'not allowed with'),
        ([db.eids[0], '--date', '2024-13-01'], 'not a date'),
    ]
    for args, message in cases:
        result = run('download', *args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    unknown = run('download', 'NOBODY/2020-01-01/001', env=env)
    assert unknown.returncode == 1 and 'session not found: NOBODY/2020-01-01/001' in \
        unknown.stderr


def test_no_prompt_off_a_terminal(server, db, tmp_path):
    env = one_env(tmp_path / 'home')
    nothing = run('download', db.eids[0], env=env)  # no database set up
    assert nothing.returncode == 2 and 'one setup' in nothing.stderr
    assert run('setup', '--base-url', server.url, '--username', USERNAME, '--cache-dir',
               tmp_path / 'data', env=env).returncode == 0
    not_logged_in = run('download', db.eids[0], '--dataset', 'wheel', env=env)
    assert not_logged_in.returncode == 2
    assert f'not logged in to {server.url}: run "one login' in not_logged_in.stderr
    assert 'password' not in not_logged_in.stdout.lower()
    other = run('download', db.eids[0], '--base-url', 'http://127.0.0.1:9', env=env)
    assert other.returncode == 2 and 'is not set up' in other.stderr
    # On a terminal it does not ask either: the same answer
    code, shown = run_tty('download', db.eids[0], '--dataset', 'wheel', env=env)
    assert code == 2 and 'not logged in' in shown and 'Enter' not in shown
    assert not (tmp_path / 'data').exists() or local_files(tmp_path / 'data') == set()


def test_database_unreachable(env, server, db, tmp_path):
    url = server.url
    server.stop()
    result = run('download', db.eids[0], '--dataset', 'wheel', '--base-url', url, env=env)
    assert result.returncode == 1 and f'cannot reach {url}' in result.stderr
    searched = run('download', '--subject', 'SYN', '--dataset', 'wheel', env=env)
    assert searched.returncode == 1 and f'cannot reach {url}' in searched.stderr


# ---- releases ----------------------------------------------------------------------------------

def test_download_from_a_release(tmp_path):
    from static_server import StaticServer

    from one.release import make_release
    from one.synthetic import make_dataset_folder

    root = tmp_path / 'release'
    make_dataset_folder(root, n_subjects=2, n_sessions=2, seed=4)
    make_release(root)
    env = one_env(tmp_path / 'home')
    copy = tmp_path / 'copy'
    with StaticServer(root) as server:
        dry = run('download', '--url', server.url, '-C', copy, '--subject', 'KS001',
                  '--dataset', 'trials', '--dry-run', '--json', env=env)
        assert dry.returncode == 0, dry.stderr
        report = json.loads(dry.stdout)
        files = {f['path'] for f in report['files']}
        assert files and all('/KS001/' in f and '_ibl_trials.' in f for f in files)
        assert not any('/Subjects/' in p for p in server.paths())
        result = run('download', '--url', server.url, '-C', copy, '--subject', 'KS001',
                     '--dataset', 'trials', env=env)
        assert result.returncode == 0, result.stderr
        assert local_files(copy) == files
        for file in files:
            assert (copy / file).read_bytes() == (root / file).read_bytes()
        fetched = [p for p in server.paths() if '/Subjects/' in p]
        assert sorted(p.lstrip('/') for p in fetched) == sorted(files)
        again = run('download', '--url', server.url, '-C', copy, '--subject', 'KS001',
                    '--dataset', 'trials', env=env)
        assert again.returncode == 0 and 'nothing to fetch' in again.stderr
        assert len([p for p in server.paths() if '/Subjects/' in p]) == len(files)

        # A lock file made on the release fetches its files into another copy
        from one.api import OneRelease

        release = OneRelease(server.url, cache_dir=tmp_path / 'analysis')
        release.record_loaded = True
        release.load_object('KS001/2024-01-15/001', 'wheel', collection='alf')
        lock = release.save_lock(tmp_path / 'release.lock.json')
        n_locked = len(json.loads(lock.read_text())['datasets'])
        locked = run('download', '--url', server.url, '-C', tmp_path / 'other', '--lock', lock,
                     env=env)
        assert locked.returncode == 0, locked.stderr
        assert f'fetched {n_locked} files' in locked.stderr
        assert {Path(p).name for p in local_files(tmp_path / 'other')} == \
            {'_ibl_wheel.position.npy', '_ibl_wheel.timestamps.npy'}


def test_plan_fetch_matches_prefetch(server, db, tmp_path):
    """The dry-run helper lists exactly what prefetch then downloads, and nothing after."""
    from one._api.prefetch import plan_fetch

    one = ONE(base_url=server.url, username=USERNAME, password=PASSWORD,
              cache_dir=tmp_path / 'data', silent=True)
    eids = db.eids[:4]
    plan = plan_fetch(one, eids, ['wheel', '_ibl_trials.choice'], collection='alf')
    assert len(plan.to_fetch) == len(plan.datasets) > 0
    assert set(plan.problems) == {'missing'}
    assert plan.n_bytes == int(np.nansum(plan.datasets['file_size'].astype(float)))
    server.clear_log()
    files = one.prefetch(eids, ['wheel', '_ibl_trials.choice'], collection='alf')
    assert len(data_requests(server)) == len(plan.to_fetch)
    assert sorted(map(str, (f for fs in files.values() for f in fs))) == \
        sorted(map(str, plan.files))
    after = plan_fetch(one, eids, ['wheel', '_ibl_trials.choice'], collection='alf')
    assert after.problems == [None] * len(after.datasets) and after.n_bytes == 0
    # A file cut short, one changed, one removed: each with its reason; nothing downloaded
    short, changed, gone = after.files[:3]
    short.write_bytes(short.read_bytes()[:-1])
    changed.write_bytes(bytes(b ^ 0xFF for b in changed.read_bytes()))
    gone.unlink()
    server.clear_log()
    damaged = plan_fetch(one, eids, ['wheel', '_ibl_trials.choice'], collection='alf')
    assert damaged.problems[:3] == ['size', 'md5', 'missing']
    assert set(damaged.problems[3:]) == {None} and list(damaged.to_fetch) == [0, 1, 2]
    assert damaged.n_bytes == int(damaged.datasets['file_size'].iloc[:3].sum())
    assert data_requests(server) == [] and not gone.exists()
    # The same once the tables are handed out in ONE-api's shape (UUID ids)
    assert one._cache['datasets'].index.get_level_values('id')[0].__class__.__name__ == 'UUID'
    handed_out = plan_fetch(one, eids, ['wheel', '_ibl_trials.choice'], collection='alf')
    assert handed_out.problems == damaged.problems and handed_out.files == damaged.files
    assert handed_out.eids == damaged.eids
    ONE.cache_clear()


def test_progress_bar_on_a_terminal_only(env, db, tmp_path):
    plain = run('download', db.eids[0], '--dataset', 'trials', env=env)
    assert plain.returncode == 0 and 'Downloading' not in plain.stderr
    code, shown = run_tty('download', db.eids[1], '--dataset', 'trials', env=env, columns=100)
    assert code == 0, shown
    assert 'Downloading: 100%|' in shown and 'fetched ' in shown
