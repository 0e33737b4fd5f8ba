"""`one.parallel.map_sessions` on a real `dask.distributed.LocalCluster` of 2 worker processes and
on a local process pool, all on 127.0.0.1: the Alyx replay server (tests/alyx_server.py)
answers the database, a counting file server (tests/file_server.py) the data files, and the
workers start from a snapshot of the sessions.  Workers share one cache folder; a worker killed
mid-download (SIGKILL) leaves no corrupt file and its session is run again.

The workers and the test share one parameter folder (as the machines of a cluster share a home
folder): the workers read the login token the test saved there.
"""
import functools
import hashlib
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import numpy as np
import pytest
from alyx_server import PASSWORD, USERNAME, AlyxTestServer
from alyx_synthetic import SyntheticAlyx
from file_server import FileServer

import one.params
from one._api import pickling
from one.api import ONE, OneAlyx
from one.parallel import SessionError, map_sessions, run_session

distributed = pytest.importorskip('distributed')

BIG = 'alf/probe00/spikes.times.npy'  # > 1 MiB: streamed to its partial file


# ---- the world: parameters, servers, snapshot; the cluster -----------------------------------

@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('parallel')
    db = SyntheticAlyx.generate(root / 'source', n_sessions=6, n_spikes=150_000)
    env = {'ONE_PARAMS_DIR': str(root / 'params'), 'HOME': str(root / 'home')}
    (root / 'home').mkdir()
    with pytest.MonkeyPatch.context() as mp, AlyxTestServer(database=db) as server, \
            FileServer(db.files) as files:
        for key, value in env.items():
            mp.setenv(key, value)
        one.params.setup(server.url, silent=True, cache_dir=root / 'default',
                         username=USERNAME, HTTP_DATA_SERVER=files.url)
        remote = OneAlyx(base_url=server.url, username=USERNAME, password=PASSWORD,
                         silent=True)  # logs in: the token is saved in the parameters
        remote.snapshot(root / 'snapshot', eids=db.eids)
        yield SimpleNamespace(root=root, db=db, env=env, server=server, files=files,
                              snapshot=root / 'snapshot')


@pytest.fixture(autouse=True)
def _shared_parameters(world, monkeypatch):
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    pickling.forget_instances()
    ONE.cache_clear()


@pytest.fixture(scope='module')
def client(world):
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host='127.0.0.1',
        dashboard_address='127.0.0.1:0', env=world.env)
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def start(world, folder) -> OneAlyx:
    """An instance on the snapshot's tables, downloading files into `folder` ('auto' mode:
    the tables answer, the files come from the data server)."""
    return OneAlyx(base_url=world.server.url, mode='auto', tables_dir=world.snapshot,
                   cache_dir=folder, silent=True)


# ---- analyses (module functions: the workers import them) --------------------------------------

def trials_summary(one, eid):
    """A small analysis of a session: its trials and its first probe's spikes."""
    trials = one.load_object(eid, 'trials', revision='')
    out = {'n_trials': len(trials['choice']), 'rt': float(np.nanmean(
        trials['response_times'] - trials['stimOn_times']))}
    if one.list_datasets(eid, collection='alf/probe00'):
        spikes = one.load_object(eid, 'spikes', collection='alf/probe00')
        out['n_spikes'] = len(spikes['times'])
    return out


def failing_on(one, eid, bad):
    if str(eid) == bad:
        raise ValueError(f'no good trials in {eid}')
    return trials_summary(one, eid)


def recording_pid(one, eid, folder):
    Path(folder, str(eid)).write_text(str(os.getpid()))
    return trials_summary(one, eid)


def serial(world, eids, fn=trials_summary, folder=None):
    local = start(world, folder or world.root / 'serial')
    return [fn(local, e) for e in eids]


# ---- tests ------------------------------------------------------------------------------------

@pytest.mark.filterwarnings('ignore:Multiple revisions')
@pytest.mark.parametrize('where', ['dask', 'pool'])
def test_results_equal_a_serial_loop_and_each_file_is_fetched_once(world, client, tmp_path,
                                                                    where):
    eids = world.db.eids
    world.files.clear()
    expected = serial(world, eids, folder=tmp_path / 'serial')
    loaded = set(world.files.counts())
    world.files.clear()
    world.server.clear_log()
    one = start(world, tmp_path / 'data')
    twice = eids + eids[::-1]  # the same sessions in two workers at once
    results = map_sessions(trials_summary, twice, one, **(
        {'client': client} if where == 'dask' else {'max_workers': 2}))
    assert results == expected + expected[::-1]
    counts = world.files.counts()
    assert set(counts) == loaded and len(loaded) > 5 * len(eids)
    assert set(counts.values()) == {1}  # every file downloaded once
    assert not list((tmp_path / 'data').rglob('*.part'))
    # the workers start from the snapshot: no query about sessions or datasets (the REST
    # schema and the S3 repository are asked for once per worker)
    assert {r.path for r in world.server.requests} <= {'/api/schema',
                                                        '/data-repository/aws_cortexlab'}


@pytest.mark.filterwarnings('ignore:Multiple revisions')
@pytest.mark.parametrize('where', ['dask', 'pool'])
def test_a_failing_session_is_reported_and_the_others_returned(world, client, tmp_path, where):
    eids = world.db.eids[:4]
    bad = eids[1]
    one = start(world, tmp_path / 'data')
    fn = functools.partial(failing_on, bad=bad)
    results = map_sessions(fn, eids, one, retries=1, **(
        {'client': client} if where == 'dask' else {'max_workers': 2}))
    error = results[1]
    assert isinstance(error, SessionError)
    assert (error.eid, error.type, error.attempts) == (bad, 'ValueError', 2)
    assert error.message == f'no good trials in {bad}' and 'failing_on' in error.traceback
    assert str(error) == f'session {bad}: ValueError: no good trials in {bad} (after 2 attempts)'
    expected = serial(world, eids[:1] + eids[2:])
    assert [results[0]] + results[2:] == expected
    no_retry = map_sessions(fn, [bad], one, retries=0, client=client if where == 'dask' else None)
    assert no_retry[0].attempts == 1


@pytest.mark.filterwarnings('ignore:Multiple revisions')
@pytest.mark.parametrize('where', ['dask', 'pool'])
def test_worker_killed_mid_download(world, client, tmp_path, where):
    db, files = world.db, world.files

    def big_file(eid):  # the URL path of the session's BIG file, if it has one
        for d in db.sessions[eid]['data_dataset_session_related']:
            if f"{d['collection']}/{d['name']}" == BIG:
                return urlsplit(d['data_url']).path
        return None

    eids = [e for e in db.eids if big_file(e)][:3]
    victim = eids[0]
    url_path = big_file(victim)
    session_folder = url_path[:url_path.index('/001/') + 5]
    source = db.files[url_path]
    size = source.stat().st_size
    assert size > (1 << 20)
    data = tmp_path / 'data'
    pids = tmp_path / 'pids'
    pids.mkdir()
    files.clear()
    files.hold(url_path, size - 50_000)  # a 1 MiB chunk is written, the rest awaited
    one = start(world, data)
    fn = functools.partial(recording_pid, folder=str(pids))
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(results=map_sessions(
        fn, eids, one, retries=1,
        **({'client': client} if where == 'dask' else {'max_workers': 2}))))
    runner.start()
    try:
        assert files.held.wait(60), 'the download never started'
        # the victim's partial file (the other worker may be fetching another session's)
        part = _wait_for(lambda: next((p for p in data.rglob('.spikes.times*.part')
                                       if session_folder in p.as_posix()
                                       and p.stat().st_size >= 1 << 20), None))
        pid = int((pids / victim).read_text())
        os.kill(pid, signal.SIGKILL)
        # the session runs again elsewhere: its download resumes, and is held at the same byte
        _wait_for(lambda: files.count(url_path) >= 2)
        destination = part.parent / part.name[1:-len('.part')]
        assert not destination.exists()  # only the hidden partial file, never a partial file
    finally:
        files.release()
        runner.join(120)
    assert not runner.is_alive()
    counts = files.counts()
    assert counts[url_path] == 2  # killed once, then resumed
    resumed = [r for p, r in files.log if p == url_path][1]
    assert resumed == f'bytes={1 << 20}-'
    # the files of the session killed were caught in flight at most once; the sessions of
    # the other worker were not affected (each file of theirs fetched once)
    assert max(counts.values()) == 2
    assert {n for p, n in counts.items() if not p.startswith(session_folder)} == {1}
    assert hashlib.md5(destination.read_bytes()).hexdigest() == \
        hashlib.md5(source.read_bytes()).hexdigest()
    assert not list(data.rglob('*.part'))
    assert outcome['results'] == serial(world, eids, folder=tmp_path / 'serial')


def _wait_for(check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError('timed out waiting')


def test_empty_and_bad_arguments(world, tmp_path):
    one = start(world, tmp_path / 'data')
    assert map_sessions(trials_summary, [], one) == []
    with pytest.raises(ValueError, match='retries'):
        map_sessions(trials_summary, world.db.eids[:1], one, retries=-1)


def listing(one, eid):
    return one.list_datasets(eid, collection='alf')


def test_remote_mode_on_the_workers(world, client, tmp_path):
    """A OneAlyx in remote mode works on the workers: each reads its sessions from the
    database with the token of the shared parameters (never sent with the instance)."""
    remote = OneAlyx(base_url=world.server.url, cache_dir=tmp_path / 'data', silent=True)
    assert remote.mode == 'remote'
    eids = world.db.eids[:4]
    world.server.clear_log()
    results = map_sessions(listing, eids, remote, client=client)
    requests = list(world.server.requests)  # the workers'
    reads = [r.path for r in requests if r.path.startswith('/sessions/')]
    assert sorted(reads) == sorted(f'/sessions/{e}' for e in eids)  # each read once
    assert requests and all(r.token == world.server.token for r in requests)
    assert world.server.count('POST', '/auth-token') == 0
    assert results == [listing(remote, e) for e in eids]


def test_session_error():
    error = SessionError.from_exception('e1', KeyError('x'), attempts=2)
    assert (error.type, error.message, error.attempts) == ('KeyError', "'x'", 2)
    copy = pickle.loads(pickle.dumps(error))
    assert copy == error and hash(copy) == hash(error) and copy.attempts == 2
    assert isinstance(copy, Exception) and str(copy) == "session e1: KeyError: 'x' (after 2 " \
        'attempts)'

    def leaves(one, eid):
        sys.exit(3)
    result = run_session(leaves, None, 'e2', retries=0)
    assert isinstance(result, SessionError) and result.type == 'SystemExit'


def test_pool_takes_a_lambda_and_shows_progress(world, tmp_path, capfd):
    one = start(world, tmp_path / 'data')
    eids = world.db.eids[:3]
    results = map_sessions(lambda one, eid: str(one.eid2path(eid)), eids, one, progress=True,
                           max_workers=2)
    assert results == [str(one.eid2path(e)) for e in eids]
    shown = capfd.readouterr().err
    assert 'sessions' in shown and '3/3' in shown


def test_dask_is_imported_only_when_used():
    import subprocess
    code = ('import sys, one.api; print("one.parallel" in sys.modules, "one._api.pickling" in '
            'sys.modules); import one.parallel; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ['False', 'False', '[]']  # nothing of it imported by one.api


def add_a_record(one, eid):
    """ONE's documented pattern: merge records into `one._cache`, then `save_cache`."""
    import uuid as uuid_module

    from one.alf.cache import merge_tables
    datasets = one.list_datasets(eid, details=True, keep_eid_index=True).iloc[:1].copy()
    new_id = uuid_module.uuid5(uuid_module.NAMESPACE_URL, f'extra/{eid}')
    datasets.index = datasets.index.set_levels([new_id], level='id', verify_integrity=False)
    datasets['rel_path'] = 'alf/_extra.values.npy'
    merge_tables(one._cache, datasets=datasets)
    one.save_cache()
    return str(new_id)


def test_workers_saving_the_tables_lose_no_record(world, client, tmp_path):
    from one.alf.cache import load_tables
    one = start(world, tmp_path / 'data')
    eids = world.db.eids
    added = map_sessions(add_a_record, eids, one, client=client)
    assert not any(isinstance(r, SessionError) for r in added)
    saved = load_tables(tmp_path / 'data')['datasets']
    ids = {str(i) for i in saved.index.get_level_values('id')}
    assert set(added) <= ids  # every worker's record, whoever saved last
    assert len(saved) == len(one._tables['datasets']) + len(eids)


class Unloadable:
    """Pickles, but cannot be rebuilt: as a tables folder not mounted on a node."""

    def __reduce__(self):
        return _cannot_rebuild, ('/shared/snapshots/ephys',)


def _cannot_rebuild(folder):
    raise FileNotFoundError(f'no table file in {folder}')


def test_a_one_the_dask_workers_cannot_rebuild_is_each_sessions_error(world, client):
    results = map_sessions(listing, ['a', 'b', 'c'], Unloadable(), client=client)
    assert [(r.eid, r.type, r.message) for r in results] == [
        (e, 'FileNotFoundError', 'no table file in /shared/snapshots/ephys') for e in 'abc']
    assert all('_cannot_rebuild' in r.traceback for r in results)


@pytest.mark.filterwarnings('ignore:Multiple revisions')
@pytest.mark.parametrize('mode', ['auto', 'remote'])
def test_a_dask_worker_of_several_threads_shares_one_instance(world, tmp_path, mode):
    """A worker with 4 threads runs 4 sessions at once on its one instance (in remote mode,
    each merging the records it reads into the shared tables)."""
    eids = world.db.eids
    with distributed.LocalCluster(n_workers=1, threads_per_worker=4, processes=True,
                                  host='127.0.0.1', dashboard_address='127.0.0.1:0',
                                  env=world.env) as cluster, distributed.Client(cluster) as c:
        if mode == 'auto':
            one = start(world, tmp_path / 'data')
        else:
            one = OneAlyx(base_url=world.server.url, cache_dir=tmp_path / 'data', silent=True)
        twice = eids + eids[::-1]
        results = map_sessions(trials_summary, twice, one, client=c)
        listed = map_sessions(listing, twice, one, client=c)
    expected = serial(world, eids, folder=tmp_path / 'serial')
    assert results == expected + expected[::-1]
    assert listed == [listing(one, e) for e in twice]


def test_killed_worker_attempts_are_those_dask_made():
    import dask.config
    from distributed.scheduler import KilledWorker

    from one.parallel import _dask_attempts
    assert _dask_attempts(KilledWorker('task', 'worker', 2)) == 3

    class KilledWorker(Exception):  # noqa: N818 - as older versions of distributed name it
        """Without the number of failures allowed."""

    with dask.config.set({'distributed.scheduler.allowed-failures': 5}):
        assert _dask_attempts(KilledWorker('task', 'worker')) == 6
    assert _dask_attempts(ValueError('x')) == 1
