"""Pickling a `One` (one/_api/pickling.py): a small recipe without secrets, rebuilt once per
process, carrying the tables only where they differ from the files; unpickled here and in fresh
Python processes, against real folders, the Alyx replay server and a release on `http.server`."""
import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pandas as pd
import pytest
from alyx_server import PASSWORD, USERNAME
from data_folders import indexed_folder, publish
from static_server import StaticServer

import one.params
from one._api import pickling
from one.alf.cache import merge_tables
from one.api import ONE, One, OneAlyx, OneRelease

SESSION = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'  # a recorded session of the replay server


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    return indexed_folder(tmp_path_factory.mktemp('source'), n_subjects=2, n_sessions=3)


@pytest.fixture(autouse=True)
def _fresh():
    pickling.forget_instances()
    ONE.cache_clear()
    yield
    pickling.forget_instances()
    ONE.cache_clear()


def in_other_process(data: bytes, code: str, tmp_path: Path) -> dict:
    """Unpickle `data` as ``one`` in a fresh Python process, run `code`, which sets ``out``
    (JSON), and return ``out``."""
    path = tmp_path / f'one-{uuid.uuid4().hex}.pkl'
    path.write_bytes(data)
    script = textwrap.dedent("""
        import json, pickle, sys
        one = pickle.loads(open(sys.argv[1], 'rb').read())
        out = {}
    """) + textwrap.dedent(code) + '\nprint(json.dumps(out, default=str))\n'
    result = subprocess.run([sys.executable, '-c', script, str(path)], capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pickle_is_a_small_recipe_and_rebuilds_the_instance(source, tmp_path):
    local = One(cache_dir=source, mode='local', wildcards=False)
    local.uuid_filenames = True
    data = pickle.dumps(local)
    assert len(data) < 2000  # folders and settings, no table
    recipe = pickling.recipe_of(local)
    assert recipe['tables'] is None and not any(
        isinstance(v, pd.DataFrame) for v in recipe.values())
    eids = local.search()
    out = in_other_process(data, """
        out['eids'] = [str(e) for e in one.search()]
        out['type'] = type(one).__name__
        out['settings'] = [one.mode, one.wildcards, one.uuid_filenames, str(one.cache_dir)]
        out['datasets'] = one.list_datasets(out['eids'][0])
        out['same'] = pickle.loads(open(sys.argv[1], 'rb').read()) is one
    """, tmp_path)
    assert out['eids'] == [str(e) for e in eids] and out['type'] == 'One'
    assert out['settings'] == ['local', False, True, str(source)]
    assert out['datasets'] == local.list_datasets(eids[0])
    assert out['same']  # a second unpickling in that process gives the same instance
    here = pickle.loads(data)
    assert here is not local and pickle.loads(data) is here
    assert here.list_datasets(eids[0]) == local.list_datasets(eids[0])


def test_unsaved_changes_travel(source, tmp_path):
    folder = tmp_path / 'data'
    indexed_folder(folder, n_subjects=1, n_sessions=2)
    local = One(cache_dir=folder)
    eid = local.search()[0]
    datasets = local._cache['datasets']
    some = local.list_datasets(eid, details=True, keep_eid_index=True)
    # an edit in place (not flagged as a modification), a merged record and a removed row
    datasets.loc[some.index[0], 'qc'] = 'FAIL'
    new = some.iloc[[1]].rename(index={some.index[1][1]: uuid.uuid4()}, level='id')
    new['rel_path'] = 'alf/_ibl_extra.values.npy'
    merge_tables(local._cache, datasets=new)
    local._cache['datasets'] = local._cache['datasets'].drop(index=[some.index[2]])
    data = pickle.dumps(local)
    assert len(data) < 16_000  # three rows, not the table
    out = in_other_process(data, f"""
        frame = one.list_datasets('{eid}', details=True)
        out['listed'] = one.list_datasets('{eid}')
        out['qc'] = str(frame.loc[frame['rel_path'] == '{some['rel_path'].iloc[0]}', 'qc'].iloc[0])
    """, tmp_path)
    assert out['listed'] == local.list_datasets(eid)
    assert 'alf/_ibl_extra.values.npy' in out['listed']
    assert some['rel_path'].iloc[2] not in out['listed']
    assert out['qc'] == 'FAIL'
    # once saved, the tables no longer travel
    local.save_cache(force=True)
    local.load_cache()
    assert pickling.recipe_of(local)['tables'] is None
    assert len(pickle.dumps(local)) < 2000


def test_recipe_changes_with_the_table_files(source, tmp_path):
    folder = tmp_path / 'data'
    indexed_folder(folder, n_subjects=1, n_sessions=2)
    first = pickle.loads(pickle.dumps(One(cache_dir=folder)))
    assert pickle.loads(pickle.dumps(One(cache_dir=folder))) is first
    (folder / 'sessions.pqt').touch()  # e.g. written again by a snapshot
    assert pickle.loads(pickle.dumps(One(cache_dir=folder))) is not first


def test_copies_are_independent(source):
    local = One(cache_dir=source)
    for clone in (copy.copy(local), copy.deepcopy(local)):
        assert clone is not local and clone._tables is not local._tables
        assert clone.search() == local.search()
    assert copy.copy(local) is not copy.copy(local)


def test_onealyx_pickles_no_secret_and_queries_remotely(alyx_server, tmp_path):
    remote = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                     cache_dir=tmp_path / 'cache', silent=True, timeout=7)
    # a data server password and a stored Alyx password in the parameters, too
    par = one.params.get(alyx_server.url, silent=True)
    one.params.save(par.set('HTTP_DATA_SERVER_PWD', 's3cr3t-data').set('ALYX_PWD', PASSWORD),
                    alyx_server.url)
    remote.list_datasets(SESSION)  # a session read, an S3 look-up started, tables modified
    token = remote.alyx._token
    assert token
    data = pickle.dumps(remote)
    for secret in (PASSWORD, token, 's3cr3t-data'):
        assert secret.encode() not in data
    assert len(data) < 64 * 1024
    recipe = pickling.recipe_of(remote)
    assert recipe['alyx']['username'] == USERNAME and recipe['mode'] == 'remote'
    alyx_server.clear_log()
    out = in_other_process(data, f"""
        out['mode'] = one.mode
        out['timeout'] = list(one.alyx.timeout)
        from one.webclient import no_cache
        with no_cache(one.alyx):  # a request, not the REST cache shared on disk
            out['datasets'] = one.list_datasets('{SESSION}', query_type='remote')
    """, tmp_path)
    assert out['mode'] == 'remote' and out['timeout'][1] == 7
    assert out['datasets'] == remote.list_datasets(SESSION)
    # the other process logged in with the token of the parameter files: no password sent
    assert alyx_server.count('POST', '/auth-token') == 0
    assert alyx_server.count('GET', f'/sessions/{SESSION}') == 1
    assert {r.token for r in alyx_server.requests} == {alyx_server.token}


def test_onealyx_auto_mode_rebuilt_without_requests(alyx_server, tmp_path):
    with pytest.warns(UserWarning, match='No cache tables'):
        remote = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                         cache_dir=tmp_path / 'cache', silent=True, mode='local')
    remote.mode = 'auto'
    data = pickle.dumps(remote)
    alyx_server.clear_log()
    out = in_other_process(data, "out['mode'] = one.mode", tmp_path)
    assert out['mode'] == 'auto' and alyx_server.requests == []


def test_release_pickles_its_url_and_loads_files(tmp_path):
    root = tmp_path / 'release'
    indexed_folder(root, n_subjects=1, n_sessions=2)
    publish(root)
    with StaticServer(root) as server:
        release = OneRelease(server.url, cache_dir=tmp_path / 'copy')
        eid = release.search()[0]
        data = pickle.dumps(release)
        assert len(data) < 2000
        server.clear()
        out = in_other_process(data, f"""
            out['type'] = type(one).__name__
            out['url'] = one.base_url
            trials = one.load_object('{eid}', 'trials')
            out['n'] = len(trials['choice'])
        """, tmp_path)
    assert out['type'] == 'OneRelease' and out['url'] == release.base_url
    assert out['n'] == len(release.load_object(eid, 'trials')['choice'])
    assert server.paths() and all('trials' in p for p in server.paths())  # only the files


def _extra_record(one, eid, rel_path='alf/_extra.values.npy'):
    some = one.list_datasets(eid, details=True, keep_eid_index=True)
    new = some.iloc[[0]].rename(index={some.index[0][1]: str(uuid.uuid4())}, level='id')
    new['rel_path'] = rel_path
    return new


@pytest.mark.parametrize('how', ['pickle', 'copy'])
def test_a_save_into_another_folder_than_the_tables_does_not_count(tmp_path, how):
    """Tables in a snapshot folder, saved into the data folder: the receiver loads the
    snapshot folder, so the records saved elsewhere travel with the instance."""
    snapshot, data = tmp_path / 'snapshot', tmp_path / 'data'
    indexed_folder(snapshot, n_subjects=1, n_sessions=2)
    data.mkdir()
    sender = One(cache_dir=data, tables_dir=snapshot, mode='local')
    eid = sender.search()[0]
    merge_tables(sender._tables, datasets=_extra_record(sender, eid))
    sender.save_cache()
    assert (data / 'datasets.pqt').exists()  # saved, but not where the tables come from
    pickling.forget_instances()
    receiver = pickle.loads(pickle.dumps(sender)) if how == 'pickle' else copy.copy(sender)
    assert 'alf/_extra.values.npy' in receiver.list_datasets(eid)
    assert receiver.list_datasets(eid) == sender.list_datasets(eid)
    # saved into the tables folder itself, nothing needs to travel
    sender.save_cache(save_dir=snapshot, force=True)
    assert pickling.recipe_of(sender)['tables'] is None


def test_a_reused_instance_does_not_keep_the_edits_of_earlier_tasks(tmp_path):
    folder = tmp_path / 'data'
    indexed_folder(folder, n_subjects=1, n_sessions=2)
    data = pickle.dumps(One(cache_dir=folder, mode='local'))
    first = pickle.loads(data)  # a task in a worker
    eid = first.search()[0]
    listed = first.list_datasets(eid)
    first._cache['datasets'] = first._cache['datasets'].iloc[:3]  # drops rows in memory
    assert len(first.list_datasets(eid)) < len(listed)
    second = pickle.loads(data)  # the next task (or the next map_sessions) in that worker
    assert second is not first and second.list_datasets(eid) == listed
    # an edit in place is seen too
    second._cache['datasets'].iloc[0, second._cache['datasets'].columns.get_loc('qc')] = 'FAIL'
    third = pickle.loads(data)
    assert third is not second
    assert (third._cache['datasets']['qc'] == 'FAIL').sum() == 0
    # a task that only reads the tables (even through `_cache`) leaves the instance reusable
    assert len(third._cache['datasets']) and pickle.loads(data) is third
    third.wildcards = False  # or changes a setting
    assert pickle.loads(data) is not third


def test_unchanged_tables_are_compared_with_the_files_once(tmp_path, monkeypatch):
    """After `one._cache` was read, the first pickle compares the tables with the files; the
    next ones, with no edit meanwhile, load nothing; an edit in place is still sent."""
    import one.alf.cache
    folder = tmp_path / 'data'
    indexed_folder(folder, n_subjects=1, n_sessions=2)
    local = One(cache_dir=folder)
    datasets = local._cache['datasets']
    loads = []
    real = one.alf.cache._load_tables
    monkeypatch.setattr(one.alf.cache, '_load_tables',
                        lambda *a, **k: loads.append(a) or real(*a, **k))  # a counting spy
    assert pickling.recipe_of(local)['tables'] is None and len(loads) == 1
    for _ in range(3):
        assert pickling.recipe_of(local)['tables'] is None
    assert len(loads) == 1
    datasets.loc[datasets.index[0], 'qc'] = 'FAIL'
    changes = pickling.recipe_of(local)['tables']['changes']
    assert list(changes) == ['datasets'] and len(changes['datasets'].upsert) == 1
    assert len(loads) == 2


def test_a_receiver_that_cannot_see_the_table_files(tmp_path):
    folder = tmp_path / 'snapshot'
    indexed_folder(folder, n_subjects=1, n_sessions=2)
    sender = One(cache_dir=tmp_path / 'data', tables_dir=folder, mode='local')
    data = pickle.dumps(sender)
    (folder / 'datasets.pqt').rename(tmp_path / 'datasets.pqt')  # as on a node without it
    with pytest.raises(FileNotFoundError, match=rf'{folder}.*does not hold datasets\.pqt'):
        pickle.loads(data)
    (tmp_path / 'datasets.pqt').rename(folder / 'datasets.pqt')
    os.utime(folder / 'sessions.pqt', ns=(0, 0))  # another copy of the file
    from one.alf.exceptions import ALFWarning
    with pytest.warns(ALFWarning, match='sessions.pqt .* not those the One was pickled with'):
        receiver = pickle.loads(data)
    assert receiver.search() == sender.search()


def test_alyx_client_pickles_no_secret(alyx_server, tmp_path):
    """`one.alyx` alone (e.g. in a functools.partial sent to workers) leaves out the token,
    the passwords and the data server's password; the receiving process reads them from its
    parameter files and is logged in with the stored token."""
    from one.webclient import AlyxClient
    client = AlyxClient(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                        cache_dir=tmp_path / 'cache', silent=True)
    par = one.params.get(alyx_server.url, silent=True)
    one.params.save(par.set('HTTP_DATA_SERVER_PWD', 's3cr3t-data').set('ALYX_PWD', PASSWORD),
                    alyx_server.url)
    client._par = client._par.set('HTTP_DATA_SERVER_PWD', 's3cr3t-data')
    token = client._token
    assert token and client.is_logged_in
    data = pickle.dumps(client)
    for secret in (PASSWORD, token, 's3cr3t-data'):
        assert secret.encode() not in data
    alyx_server.clear_log()
    out = in_other_process(data, f"""
        client = one
        out['logged_in'] = client.is_logged_in
        out['data_pwd'] = client._par.HTTP_DATA_SERVER_PWD
        out['subject'] = client.rest('sessions', 'read', id='{SESSION}')['subject']
    """, tmp_path)
    assert out['logged_in'] and out['data_pwd'] == 's3cr3t-data' and out['subject']
    assert alyx_server.count('POST', '/auth-token') == 0
    assert {r.token for r in alyx_server.requests} == {alyx_server.token}
    assert client.is_logged_in and client._token == token  # the sender keeps its own
