"""Tests of one.api.OneAlyx against the Alyx replay server (tests/alyx_server.py)."""
import json
import logging
import os
import subprocess
import sys
import warnings
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs
from uuid import UUID

import numpy as np
import pytest
from alyx_server import PASSWORD, USERNAME, AlyxTestServer

import one._api.remote as remote
from one import util
from one import webclient as wc
from one._download import UnsafePath
from one.alf.cache import make_parquet_db
from one.alf.exceptions import ALFMultipleCollectionsFound, ALFObjectNotFound
from one.api import ONE, One, OneAlyx
from one.synthetic import make_dataset_folder

EID = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'  # 2024-03-14, its data files are served
EID_12 = 'c25ba874-0eb1-4921-b6e3-976877429206'  # 2024-03-12
FIXTURES = Path(__file__).parent / 'fixtures' / 'alyx'


@pytest.fixture
def one(alyx_server, tmp_path):
    ONE.cache_clear()
    instance = ONE(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                   cache_dir=tmp_path / 'data', silent=True)
    yield instance
    ONE.cache_clear()


def test_construction(one, alyx_server, tmp_path):
    assert isinstance(one, OneAlyx)
    assert repr(one) == f'One (online, {alyx_server.url})'
    assert one.alyx.base_url == alyx_server.url and one.alyx.is_logged_in
    assert one.cache_dir == tmp_path / 'data'
    assert not one.offline and one.mode == 'remote'
    with pytest.raises(AttributeError):
        one.cache_dir = tmp_path


def test_search_remote(one, alyx_server):
    eids = one.search(subject='ZFM-01935')
    assert isinstance(eids, util.LazyId) and len(eids) == 4
    assert all(isinstance(e, UUID) for e in eids) and UUID(EID) in eids
    eids, details = one.search(subject='ZFM-01935', details=True)
    assert details[0]['subject'] == 'ZFM-01935' and isinstance(details[0]['date'], date)
    assert str(eids[0]) == details[0]['id']
    days = one.search(date_range=['2024-03-12', '2024-03-13'])
    assert UUID(EID_12) in days and UUID(EID) not in days
    assert len(one.search(datasets='spikes.times.npy')) == len(
        alyx_server_list(one, datasets='spikes.times.npy'))
    assert len(one.search(dataset_types='trials.choice')) > 0
    assert len(one.search(subject='NoSuchSubject')) == 0
    with pytest.raises(ValueError):
        one.search(foobar='x')


def alyx_server_list(one, **kwargs):
    return list(one.alyx.rest('sessions', 'list', **kwargs))


def test_search_terms(one):
    terms = one.search_terms(query_type='remote')
    assert {'dataset', 'datasets', 'date_range', 'lab', 'laboratory', 'subject',
            'dataset_types', 'django'} <= set(terms)
    assert one.search_terms(query_type='local') == One._search_terms


def test_search_params():
    terms = ('dataset', 'datasets', 'date_range', 'laboratory', 'lab', 'subject', 'number',
             'projects', 'django')
    params = remote.search_params(
        {'dataset': 'trials', 'lab': 'cortexlab', 'date_range': ['2020-01-01', '2020-01-03'],
         'django': 'subject__nickname,KS023', 'number': 2}, terms)
    assert params == {'django': 'subject__nickname,KS023,'
                                'data_dataset_session_related__name__icontains,trials',
                      'lab': 'cortexlab', 'date_range': '2020-01-01,2020-01-03', 'number': 2}
    assert remote.search_params({'laboratory': 'x', 'proj': 'p'}, terms) == \
        {'lab': 'x', 'projects': 'p'}
    assert remote.search_params({'date_range': '2020-01-01'}, terms) == \
        {'date_range': '2020-01-01,2020-01-01'}
    with pytest.raises(TypeError):
        remote.search_params({'dataset': ['a', 'b']}, terms)


def test_list_datasets_and_details(one):
    files = one.list_datasets(EID)
    assert 'alf/_ibl_trials.choice.npy' in files and files == sorted(files)
    assert one.list_datasets(EID, collection='alf', filename='*trials.choice*') == \
        ['alf/_ibl_trials.choice.npy']
    # The session and its datasets are now in the tables
    assert UUID(EID) in one._cache['sessions'].index  # ids are UUIDs, as in ONE-api
    assert len(one.list_datasets(EID, query_type='local')) == len(files)
    details = one.get_details(EID)
    assert details['subject'] == 'ZFM-01935' and details['date'] == date(2024, 3, 14)
    assert details['local_path'] == one.cache_dir.joinpath(
        'testlab', 'Subjects', 'ZFM-01935', '2024-03-14', '001')
    full = one.get_details(EID, full=True)
    assert full['id'] == EID and 'data_dataset_session_related' in full


def test_load_object_downloads(one, alyx_server, caplog):
    eid = one.search(subject='ZFM-01935')[0]
    assert str(eid) == EID
    trials = one.load_object(eid, 'trials')
    assert {'choice', 'intervals', 'stimOn_times'} <= set(trials)
    session = one.cache_dir / 'testlab' / 'Subjects' / 'ZFM-01935' / '2024-03-14' / '001'
    choice = session / 'alf' / '_ibl_trials.choice.npy'
    assert choice.exists()
    expected = np.load(choice)
    np.testing.assert_array_equal(trials['choice'], expected)
    # Already there: nothing downloaded again
    alyx_server.clear_log()
    one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert not any('trials.choice' in r.path for r in alyx_server.requests)
    # A corrupted file is downloaded again
    choice.write_bytes(b'\x00' * choice.stat().st_size)
    with caplog.at_level(logging.WARNING):
        reloaded = one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert 'md5 mismatch' in caplog.text
    np.testing.assert_array_equal(reloaded, expected)
    # load_datasets too
    data, records = one.load_datasets(EID, ['_ibl_trials.goCue_times.npy',
                                            '_ibl_leftCamera.times.npy'])
    assert len(data) == 2 and all(x is not None for x in data)
    # load_collection on a fresh instance reads the session from Alyx first
    ONE.cache_clear()
    other = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                    cache_dir=one.cache_dir, silent=True)
    collection = other.load_collection(EID, 'alf', object='trials')
    assert set(collection) == {'trials'} and 'choice' in collection['trials']


def test_failed_download_gives_none(one, alyx_server):
    one.list_datasets(EID)
    dsets = one._cache['datasets'].loc[UUID(EID)]
    row = dsets[dsets['rel_path'] == 'alf/_ibl_trials.choice.npy']
    alyx_server.fail('/testlab/Subjects/ZFM-01935/2024-03-14/001/alf/'
                     '_ibl_trials.choice.901e18bb-99bf-48f4-a5a4-5d9f695a8581.npy',
                     status=404, times=None)
    assert one._download_datasets(row) == [None]


def test_download_refuses_paths_outside_cache(tmp_path):
    with pytest.raises(UnsafePath):
        remote.download_task('http://x/a.npy', tmp_path, '../outside', 'a.npy', None, None,
                             None)
    task = remote.download_task('http://x/a.npy', tmp_path, 'lab/Subjects/s/2020-01-01/001',
                                'alf/a.b.npy', 10, '', None, uuid_name='abc')
    assert task.destination == tmp_path.joinpath(
        'lab', 'Subjects', 's', '2020-01-01', '001', 'alf', 'a.b.abc.npy')
    assert remote.uuid_url_path('alf/#2020-01-01#/a.b.npy', 'u') == 'alf/#2020-01-01#/a.b.u.npy'


def test_connection_refused_uses_local_tables(alyx_server, tmp_path, caplog):
    ONE.cache_clear()
    cache_dir = tmp_path / 'data'
    first = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                    cache_dir=cache_dir, silent=True)
    first.load_object(EID, 'trials')
    first.save_cache(force=True)
    url = alyx_server.url
    alyx_server.stop()
    with caplog.at_level(logging.ERROR):
        offline = OneAlyx(base_url=url, username=USERNAME, password=PASSWORD,
                          cache_dir=cache_dir, silent=True, retries=0)
    assert 'Failed to connect to Alyx' in caplog.text
    assert offline.mode == 'local' and offline.offline
    assert repr(offline) == f'One (offline, {url})'
    assert 'alf/_ibl_trials.choice.npy' in offline.list_datasets(EID)
    assert UUID(EID) in offline.search(subject='ZFM-01935')
    trials = offline.load_object(EID, 'trials')
    assert 'choice' in trials


def test_local_mode(alyx_server, tmp_path):
    cache_dir = tmp_path / 'data'
    first = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                    cache_dir=cache_dir, silent=True)
    first.list_datasets(EID)
    first.save_cache(force=True)
    alyx_server.clear_log()
    local = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                    cache_dir=cache_dir, silent=True, mode='local')
    assert local.offline
    assert local.search(subject='ZFM') == [UUID(EID)]
    assert 'alf/_ibl_trials.choice.npy' in local.list_datasets(EID)
    assert isinstance(local.get_details(EID).name, UUID)
    assert not any(r.path.startswith('/sessions') for r in alyx_server.requests)


PID = '1660de06-d188-49e8-b35b-f625d81f460f'


def test_insertions(one):
    assert one.pid2eid(PID) == (UUID(EID), 'probe00')
    assert one.eid2pid(EID) == ([UUID(PID)], ['probe00'])
    pids, labels, records = one.eid2pid(EID, details=True)
    assert records[0]['name'] == 'probe00'
    pids = one.search_insertions()
    assert isinstance(pids, util.LazyId) and len(pids) == 4 and UUID(PID) in pids
    pids, records = one.search_insertions(session=EID, details=True)
    assert list(pids) == [UUID(PID)] and records[0]['session'] == EID
    terms = ('dataset', 'laboratory', 'number', 'django', 'session', 'name')
    assert remote.search_params({'dataset': 'spikes', 'number': 1, 'lab': 'x'}, terms,
                                dataset_filter='datasets__name__icontains',
                                number_field='experiment_number') == \
        {'django': 'datasets__name__icontains,spikes', 'experiment_number': 1, 'lab': 'x'}


def test_dataset_types(one, alyx_server, capsys):
    dset_id = '901e18bb-99bf-48f4-a5a4-5d9f695a8581'
    assert one.dataset2type(dset_id) == 'trials.choice'
    assert one.dataset2type(UUID(dset_id)) == 'trials.choice'
    with pytest.raises(ValueError):
        one.dataset2type('no_such_dataset.npy')  # not in the tables
    one.list_datasets(EID)
    assert one.dataset2type('alf/_ibl_trials.choice.npy') == 'trials.choice'
    record = one.describe_dataset('trials.choice')
    assert record['name'] == 'trials.choice'
    assert 'Choice: -1' in capsys.readouterr().out
    assert one.describe_dataset(dset_id)['name'] == 'trials.choice'
    datasets = alyx_server_list_datasets(one)
    alyx_server.add_response(
        'GET', f'/datasets?django=session__id,{EID},dataset_type__name,trials.choice', datasets)
    assert list(one.type2datasets(EID, 'trials.choice')) == ['alf/_ibl_trials.choice.npy']
    details = one.type2datasets(EID, 'trials.choice', details=True)
    assert details.index.get_level_values('id')[0] == UUID(datasets[0]['url'][-36:])
    with pytest.raises(TypeError):
        one.type2datasets(EID, 3)


def alyx_server_list_datasets(one):
    return [one.alyx.rest('datasets', 'read', id='901e18bb-99bf-48f4-a5a4-5d9f695a8581')]


def test_remote_only_methods_offline(alyx_server, tmp_path):
    with pytest.warns(UserWarning, match='No cache tables'):
        local = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                        cache_dir=tmp_path, silent=True, mode='local')
    for method, args in ((local.pid2eid, (PID,)),
                         (local.dataset2type, (EID,)), (local.describe_dataset, ('x',)),
                         (local.eid2pid, (EID,)), (local.type2datasets, (EID, 'x')),
                         (local.list_aggregates, ('subjects',))):
        with pytest.raises(NotImplementedError):
            method(*args)
    with pytest.warns(UserWarning, match='No insertions data loaded'):
        assert local.search_insertions() == []  # answered from the (missing) local table


def test_auto_mode_downloads_cache_tables(alyx_server, tmp_path):
    cache_dir = tmp_path / 'data'
    auto = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                   cache_dir=cache_dir, silent=True, mode='auto')
    assert (cache_dir / 'sessions.pqt').exists() and (cache_dir / 'datasets.pqt').exists()
    assert len(auto._cache['sessions']) == 6 and len(auto._cache['datasets']) == 137
    assert UUID(EID) in auto.search(subject='ZFM-01935')  # a local query
    # Fresh tables: not downloaded again
    alyx_server.clear_log()
    auto.load_cache(clobber=True)
    assert alyx_server.count('GET', '/cache.zip') == 0
    # A release tag: its tables in their own folder
    auto.load_cache(tag='2024_Q4_test_release')
    assert auto._tables_dir == cache_dir / '2024_Q4_test_release'
    # (the recorded tag info gives no location: the server's /cache.zip is downloaded)
    assert (cache_dir / '2024_Q4_test_release' / 'sessions.pqt').exists()
    assert alyx_server.count('GET', '/cache.zip') == 1


def test_auto_mode_unknown_tag(alyx_server, tmp_path, caplog):
    cache_dir = tmp_path / 'data'
    auto = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                   cache_dir=cache_dir, silent=True, mode='auto')
    with caplog.at_level(logging.ERROR):
        auto.load_cache(tag='no_such_tag')
    assert 'Failed to load the remote cache file' in caplog.text
    assert auto.mode == 'remote'


def test_download_revision_file(one):
    """'#' of revision folders is quoted in the URL; the file lands in its revision folder."""
    files = one.list_datasets(EID_12, filename='_ibl_trials.choice.npy')
    assert 'alf/#2024-06-01#/_ibl_trials.choice.npy' in files
    file = one.load_dataset(EID_12, '_ibl_trials.choice.npy', collection='alf',
                            revision='2024-06-01', download_only=True)
    assert file == one.cache_dir.joinpath('testlab', 'Subjects', 'ZFM-01935', '2024-03-12',
                                          '001', 'alf', '#2024-06-01#',
                                          '_ibl_trials.choice.npy')
    assert file.stat().st_size > 0
    task = remote.download_task('http://h/a/#r#/b.npy?x=1', one.cache_dir, 's/2020-01-01/001',
                                'alf/#r#/b.npy', None, None, None)
    assert task.url == 'http://h/a/%23r%23/b.npy?x=1'  # the engine quotes revision folders


def _aggregate_record(url, rel_path, dset_id, name):
    return {'url': f'{url}/datasets/{dset_id}', 'name': name, 'session': None,
            'file_size': 10, 'hash': 'abc', 'qc': 'NOT_SET', 'default_dataset': True,
            'file_records': [{'exists': True,
                              'data_url': f'{url}/{rel_path}'.replace(name, name.replace(
                                  '.pqt', f'.{dset_id}.pqt'))}]}


def test_list_aggregates(one, alyx_server):
    url = alyx_server.url
    ids = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222',
           '33333333-3333-4333-8333-333333333333']
    records = [
        _aggregate_record(url, 'aggregates/Subjects/testlab/ZFM-01935/'
                          '_ibl_subjectTrials.table.pqt', ids[0], '_ibl_subjectTrials.table.pqt'),
        _aggregate_record(url, 'public/aggregates/Subjects/testlab/KS023/'
                          '_ibl_subjectTrials.table.pqt', ids[1], '_ibl_subjectTrials.table.pqt'),
        _aggregate_record(url, 'aggregates/Tags/2024_Q4/_ibl_tag.table.pqt', ids[2],
                          '_ibl_tag.table.pqt'),
    ]
    alyx_server.add_response('GET', '/datasets?django=session__isnull,True', records)
    subjects = one.list_aggregates('subjects')
    assert sorted(subjects.index) == [UUID(x) for x in ids[:2]]
    assert set(subjects['identifier']) == {'testlab/ZFM-01935', 'testlab/KS023'}
    assert all(p.startswith('aggregates/Subjects/') for p in subjects['rel_path'])
    one_subject = one.list_aggregates('Subjects', 'ZFM-01935',
                                      dataset='_ibl_subjectTrials.table.pqt')
    assert list(one_subject.index) == [UUID(ids[0])]
    assert list(one.list_aggregates('tags').index) == [UUID(ids[2])]
    assert one.list_aggregates('tags', 'nothing').empty


# ---- search results in the tables, remote conversions ------------------------------------------

def _subject_sessions() -> list:
    return json.loads((FIXTURES / 'sessions_list_subject.json').read_text())['results']


def test_search_merges_sessions_into_tables(one):
    assert one._cache['sessions'].empty
    eids = one.search(subject='ZFM-01935')
    sessions = one._cache['sessions']
    assert sorted(sessions.index) == sorted(eids)
    row = sessions.loc[UUID(EID)]
    assert row['subject'] == 'ZFM-01935' and row['lab'] == 'testlab'
    assert row['date'] == date(2024, 3, 14) and row['number'] == 1
    assert row['projects'] == 'ibl_neuropixel_brainwide_01'
    # the merged sessions are found locally, also after a save/load round trip
    assert UUID(EID) in one.search(subject='ZFM-01935', query_type='local')
    one.save_cache(force=True)
    one.load_cache()
    assert UUID(EID_12) in one.search(date='2024-03-12', query_type='local')


def test_search_merges_later_pages_when_fetched(tmp_path):
    ONE.cache_clear()
    with AlyxTestServer(page_size=2) as server:
        server.max_limit = 2  # a server granting pages of 2 records only
        one = OneAlyx(base_url=server.url, username=USERNAME, password=PASSWORD,
                      cache_dir=tmp_path, silent=True)
        eids = one.search(subject='ZFM-01935')
        assert len(eids) == 4
        assert len(one._cache['sessions']) == 2  # the first page only
        last = eids[-1]  # fetches the second page
        assert len(one._cache['sessions']) == 4 and last in one._cache['sessions'].index


def test_eid2path_asks_alyx_when_tables_do_not_know(one, alyx_server):
    expected = one.cache_dir / 'testlab' / 'Subjects' / 'ZFM-01935' / '2024-03-14' / '001'
    record = next(r for r in _subject_sessions() if r['id'] == EID)
    alyx_server.add_response('GET', f'/sessions?django=pk,{EID}',
                             {'count': 1, 'next': None, 'previous': None, 'results': [record]})
    assert one.eid2path(EID) == expected
    assert str(one._cache['sessions'].index[0]) == EID  # and the session is now known
    alyx_server.clear_log()
    assert one.eid2path(EID, query_type='local') == expected
    assert one.eid2path([EID, EID]) == [expected, expected]
    missing = '00000000-0000-4000-8000-000000000000'
    alyx_server.add_response('GET', f'/sessions?django=pk,{missing}',
                             {'count': 0, 'next': None, 'previous': None, 'results': []})
    assert one.eid2path(missing) is None
    assert one.eid2path(missing, query_type='local') is None


def test_path2eid_searches_alyx(one, alyx_server):
    record = next(r for r in _subject_sessions() if r['id'] == EID)
    alyx_server.add_response(
        'GET', '/sessions?subject=ZFM-01935&date_range=2024-03-14,2024-03-14&number=1',
        {'count': 1, 'next': None, 'previous': None, 'results': [record]})
    path = one.cache_dir / 'testlab' / 'Subjects' / 'ZFM-01935' / '2024-03-14' / '001'
    assert one.path2eid(path / 'alf' / '_ibl_trials.choice.npy', query_type='local') is None
    assert one.path2eid(path / 'alf' / '_ibl_trials.choice.npy') == UUID(EID)
    assert one.path2eid([path]) == [UUID(EID)]
    assert one.path2eid(one.cache_dir / 'not' / 'a' / 'session') is None
    # the search put the session into the tables: a local query now knows it
    assert one.path2eid(path, query_type='local') == UUID(EID)


def test_path2url_from_the_file_record(one, alyx_server):
    one.list_datasets(EID)  # the session is now in the tables
    path = one.eid2path(EID, query_type='local') / 'alf' / '_ibl_trials.choice.npy'
    record = next(r for r in _subject_sessions() if r['id'] == EID)
    alyx_server.add_response(
        'GET', '/sessions?subject=ZFM-01935&date_range=2024-03-14,2024-03-14&number=1',
        {'count': 1, 'next': None, 'previous': None, 'results': [record]})
    records = json.loads((FIXTURES / 'datasets_list_session.json').read_text())['results']
    choice = [r for r in records if r['name'] == '_ibl_trials.choice.npy']
    alyx_server.add_response('GET', f'/datasets?session={EID}&name=_ibl_trials.choice.npy',
                             {'count': len(choice), 'next': None, 'previous': None,
                              'results': choice})
    url = one.path2url(path)
    tail = ('/testlab/Subjects/ZFM-01935/2024-03-14/001/alf/'
            '_ibl_trials.choice.901e18bb-99bf-48f4-a5a4-5d9f695a8581.npy')
    assert url == alyx_server.url + tail  # the file record's data_url
    # locally, the URL is made from the configured data server and the tables
    assert one.path2url(path, query_type='local') == one.alyx._par.HTTP_DATA_SERVER + tail
    alyx_server.add_response('GET', f'/datasets?session={EID}&name=nothing.here.npy',
                             {'count': 0, 'next': None, 'previous': None, 'results': []})
    with pytest.raises(ALFObjectNotFound, match='nothing.here.npy'):
        one.path2url(path.with_name('nothing.here.npy'))


def test_describe_revision(one, alyx_server, capsys):
    alyx_server.add_response('GET', '/revisions/2024-03-20',
                             {'name': '2024-03-20', 'description': 'Re-extracted trials',
                              'created_datetime': '2024-03-20T10:00:00'})
    assert one.describe_revision('2024-03-20') is None
    assert capsys.readouterr().out.strip() == 'Re-extracted trials'
    record = one.describe_revision('#2024-03-20#', full=True)
    assert record['name'] == '2024-03-20'
    assert one.describe_revision('1999-01-01', full=True) is None
    assert capsys.readouterr().out.strip().endswith('revision "1999-01-01" not found')


def test_onealyx_setup_silent(alyx_server, tmp_path):
    ONE.cache_clear()
    instance = OneAlyx.setup(base_url=alyx_server.url, silent=True, username=USERNAME,
                             password=PASSWORD, cache_dir=tmp_path / 'data')
    assert isinstance(instance, OneAlyx) and instance.alyx.base_url == alyx_server.url
    assert instance.cache_dir == tmp_path / 'data'
    params = ONE.setup(base_url=alyx_server.url, silent=True, cache_dir=tmp_path / 'other')
    assert Path(next(iter(params.CLIENT_MAP.values()))) == tmp_path / 'other'


def test_auto_mode_warns_of_another_origin(alyx_server, tmp_path):
    ONE.cache_clear()
    cache_dir = tmp_path / 'data'
    make_dataset_folder(cache_dir, seed=1)
    make_parquet_db(cache_dir)  # origin: the folder
    info = json.loads((FIXTURES / 'cache_info.json').read_text())
    info['date_created'] = '2099-01-01 00:00'  # newer than the local tables
    alyx_server.add_response('GET', '/cache/info/', info)
    one = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                  cache_dir=cache_dir, mode='auto', silent=True)
    with pytest.warns(UserWarning, match=r'another origin \("alyx" instead of ".*data"\)'):
        one.load_cache(clobber=True)
    assert one._cache['_meta']['raw']['datasets']['origin'] == {'alyx'}
    info['date_created'] = '2099-02-01 00:00'
    alyx_server.add_response('GET', '/cache/info/', info)
    with warnings.catch_warnings():  # the same origin again: no warning
        warnings.simplefilter('error')
        one.load_cache(clobber=True)
    assert alyx_server.count('GET', '/cache.zip') == 2


# ---- the failure cases, through OneAlyx ------------------------------------------------

CHOICE_URL = ('/testlab/Subjects/ZFM-01935/2024-03-14/001/alf/'
              '_ibl_trials.choice.901e18bb-99bf-48f4-a5a4-5d9f695a8581.npy')


def _session_record(alyx_server) -> dict:
    record = json.loads((FIXTURES / 'sessions_read.json').read_text())
    return json.loads(json.dumps(record).replace('http://127.0.0.1:8000', alyx_server.url))


def test_wrong_password_through_one(alyx_server, tmp_path):
    ONE.cache_clear()
    with pytest.raises(wc.AlyxAuthError, match='Unable to log in') as info:
        ONE(base_url=alyx_server.url, username=USERNAME, password='not-the-password',
            cache_dir=tmp_path, silent=True)
    assert 'not-the-password' not in str(info.value)


def test_expired_token_during_a_session_logs_in_again(one, alyx_server):
    one.search(subject='ZFM-01935')
    old_token = alyx_server.token
    alyx_server.expire_tokens()
    alyx_server.clear_log()
    trials = one.load_object(EID, 'trials')  # sessions read -> 403 -> one login -> retry
    assert 'choice' in trials
    assert alyx_server.count('POST', '/auth-token') == 1
    assert one.alyx._token != old_token and one.alyx._token == alyx_server.token


def test_server_error_then_success_on_a_file(one, alyx_server):
    one.list_datasets(EID)
    alyx_server.fail(CHOICE_URL, status=503, times=2)
    choice = one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert choice.shape[0] > 0
    assert alyx_server.count('GET', CHOICE_URL) == 3


def test_file_with_wrong_md5_on_the_server(one, alyx_server, caplog):
    """The data server keeps sending bytes of the right size but another md5: the download is
    tried again, then given up with an error naming the file; no bad file is left."""
    one.list_datasets(EID)
    _serve_file_record(alyx_server, None)  # the file record gets tagged (tested below)
    good = (FIXTURES / 'files' / CHOICE_URL.lstrip('/')).read_bytes()
    alyx_server.add_response('GET', CHOICE_URL, b'\x00' * len(good))
    with caplog.at_level(logging.ERROR), pytest.raises(ALFObjectNotFound):
        one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert 'md5' in caplog.text and '_ibl_trials.choice' in caplog.text
    assert alyx_server.count('GET', CHOICE_URL) >= 2  # downloaded again before giving up
    target = one.eid2path(EID, query_type='local') / 'alf' / '_ibl_trials.choice.npy'
    assert not target.exists()
    leftovers = [p.name for p in one.cache_dir.rglob('*_ibl_trials.choice*')
                 if not p.name.endswith('.lock')]
    assert leftovers == []  # no partial download kept either


def test_good_file_is_never_replaced_by_a_bad_download(one, alyx_server):
    one.load_dataset(EID, '_ibl_trials.choice.npy')
    target = one.eid2path(EID, query_type='local') / 'alf' / '_ibl_trials.choice.npy'
    good = target.read_bytes()
    _serve_file_record(alyx_server, None)
    alyx_server.add_response('GET', CHOICE_URL, b'\x01' * len(good))
    # the database now claims another md5: the local file looks bad, and so is the download
    record = _session_record(alyx_server)
    dset = next(d for d in record['data_dataset_session_related']
                if d['name'] == '_ibl_trials.choice.npy')
    dset['hash'] = '0' * 32
    alyx_server.add_response('GET', f'/sessions/{EID}', record)
    with wc.no_cache(one.alyx), pytest.raises(ALFObjectNotFound):
        one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert alyx_server.count('GET', CHOICE_URL) >= 2  # the download was tried
    assert target.read_bytes() == good


CHOICE_ID = '901e18bb-99bf-48f4-a5a4-5d9f695a8581'
CHOICE_FILE_RECORD = 'bf15c4ff-d306-4bf3-a49d-746b76d28a9a'  # in files_list_dataset.json
FILES_QUERY = f'/files?django=dataset,{CHOICE_ID},data_repository__globus_is_personal,False'


def _serve_file_record(alyx_server, json_field) -> dict:
    """Answer the files list query of the choice dataset with its recorded file record (its
    ``json`` field set), and a PATCH of that record with the record tagged.  The replay server
    has no recorded detail of this file record, so the PATCH answer is added here and what the
    client sent is read from the request log."""
    body = json.loads((FIXTURES / 'files_list_dataset.json').read_text())
    record = body['results'][0]
    record['json'] = json_field
    alyx_server.add_response('GET', FILES_QUERY, body)
    tagged = {**record, 'json': {**(json_field or {}), 'mismatch_hash': True}}
    alyx_server.add_response('PATCH', f'/files/{CHOICE_FILE_RECORD}', tagged)
    return record


def _patches(alyx_server) -> list:
    return [json.loads(r.body) for r in alyx_server.requests
            if r.method == 'PATCH' and r.path == f'/files/{CHOICE_FILE_RECORD}']


def test_file_staying_bad_is_tagged_on_alyx(one, alyx_server, caplog):
    """A file whose md5 differs from the database's also after a second download: its file
    record on Alyx gets 'mismatch_hash' in its json field, the json it had kept."""
    one.list_datasets(EID)
    _serve_file_record(alyx_server, {'note': 'kept'})
    good = (FIXTURES / 'files' / CHOICE_URL.lstrip('/')).read_bytes()
    alyx_server.add_response('GET', CHOICE_URL, b'\x00' * len(good))
    with caplog.at_level(logging.ERROR), pytest.raises(ALFObjectNotFound):
        one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert 'md5' in caplog.text and CHOICE_ID in caplog.text
    lists = [r for r in alyx_server.requests if r.method == 'GET' and r.path == '/files']
    assert len(lists) == 1
    assert parse_qs(lists[0].query)['django'] == [FILES_QUERY.partition('=')[2]]
    assert _patches(alyx_server) == [{'json': {'note': 'kept', 'mismatch_hash': True}}]


def test_file_with_wrong_size_is_tagged_on_alyx(one, alyx_server):
    one.list_datasets(EID)
    _serve_file_record(alyx_server, None)
    alyx_server.add_response('GET', CHOICE_URL, b'\x00' * 3)
    with pytest.raises(ALFObjectNotFound):
        one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert _patches(alyx_server) == [{'json': {'mismatch_hash': True}}]


def test_failed_tag_only_warns(one, alyx_server, caplog):
    one.list_datasets(EID)
    _serve_file_record(alyx_server, None)
    alyx_server.fail(f'/files/{CHOICE_FILE_RECORD}', 403, method='PATCH',
                     body={'detail': 'You do not have permission to perform this action.'})
    good = (FIXTURES / 'files' / CHOICE_URL.lstrip('/')).read_bytes()
    alyx_server.add_response('GET', CHOICE_URL, b'\x00' * len(good))
    with pytest.warns(UserWarning, match=f'{CHOICE_ID}.*permission'), \
            caplog.at_level(logging.ERROR), pytest.raises(ALFObjectNotFound):
        one.load_dataset(EID, '_ibl_trials.choice.npy')
    assert 'md5' in caplog.text
    assert alyx_server.count('PATCH', f'/files/{CHOICE_FILE_RECORD}') == 1


def test_good_download_is_not_tagged(one, alyx_server):
    one.list_datasets(EID)
    _serve_file_record(alyx_server, None)
    assert one.load_dataset(EID, '_ibl_trials.choice.npy').shape[0] > 0
    assert alyx_server.count('GET', '/files') == 0
    assert alyx_server.count('PATCH', f'/files/{CHOICE_FILE_RECORD}') == 0


def test_hostile_dataset_url_is_refused(one, alyx_server, tmp_path, caplog):
    record = _session_record(alyx_server)
    dset = next(d for d in record['data_dataset_session_related']
                if d['name'] == '_ibl_trials.choice.npy')
    dset['data_url'] = dset['data_url'].replace('/testlab/Subjects/', '/testlab/../../../../')
    alyx_server.add_response('GET', f'/sessions/{EID}', record)
    with caplog.at_level(logging.ERROR):
        one.list_datasets(EID)
        with pytest.raises(ALFObjectNotFound):
            one.load_dataset(EID, '_ibl_trials.choice.npy')
    outside = [p for p in tmp_path.rglob('_ibl_trials.choice*')
               if not p.is_relative_to(one.cache_dir)]
    assert outside == []


_EIGHT_PROCESSES = '''
import sys
from one.api import OneAlyx
one = OneAlyx(base_url=sys.argv[1], username=sys.argv[2], password=sys.argv[3],
              cache_dir=sys.argv[4], silent=True)
trials = one.load_object(sys.argv[5], 'trials')
print(sorted(trials))
'''


def test_eight_processes_load_into_one_cache(alyx_server, tmp_path):
    cache_dir = tmp_path / 'data'
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, '-c', _EIGHT_PROCESSES, alyx_server.url,
                               USERNAME, PASSWORD, str(cache_dir), EID],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for _ in range(8)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1].decode()[-2000:] for o in outputs]
    assert len({o[0] for o in outputs}) == 1 and b'choice' in outputs[0][0]
    session = cache_dir / 'testlab' / 'Subjects' / 'ZFM-01935' / '2024-03-14' / '001' / 'alf'
    served = FIXTURES / 'files' / 'testlab' / 'Subjects' / 'ZFM-01935' / '2024-03-14' / '001'
    for file in session.glob('_ibl_trials.*'):
        source = next((served / 'alf').glob(file.stem + '.*' + file.suffix))
        assert file.read_bytes() == source.read_bytes(), file.name
    assert not [p for p in session.iterdir() if p.name.startswith('.')
                and not p.name.endswith('.lock')]


def test_server_gone_mid_session_carries_on_locally(alyx_server, tmp_path, caplog):
    one = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                  cache_dir=tmp_path / 'data', silent=True, retries=0)
    one.load_object(EID, 'trials')
    alyx_server.stop()
    with caplog.at_level(logging.ERROR), wc.no_cache(one.alyx):
        eids = one.search(subject='ZFM-01935')
        assert UUID(EID) in eids and isinstance(eids, list)  # from the local table
        assert one.mode == 'local' and one.offline
        with pytest.warns(UserWarning, match='no database connection'):
            trials = one.load_object(EID, 'trials', query_type='remote')
        assert 'choice' in trials
        assert 'alf/_ibl_trials.choice.npy' in one.list_datasets(EID)
    said = [r for r in caplog.records if 'cannot be reached' in r.getMessage()]
    assert len(said) == 1 and 'local mode' in said[0].getMessage()


def test_server_gone_before_loading(alyx_server, tmp_path, caplog):
    first = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                    cache_dir=tmp_path / 'data', silent=True, retries=0)
    first.load_object(EID, 'trials')
    alyx_server.stop()
    with caplog.at_level(logging.ERROR), wc.no_cache(first.alyx):
        choice = first.load_dataset(EID, '_ibl_trials.choice.npy')
    assert choice.size > 0 and first.mode == 'local'
    assert 'cannot be reached' in caplog.text


def test_load_aggregate_downloads_and_loads(one, alyx_server, tmp_path):
    import hashlib

    import pandas as pd
    table = pd.DataFrame({'session': ['a', 'b', 'c'], 'performance': [0.5, 0.7, 0.9]})
    table.to_parquet(tmp_path / 'table.pqt')
    data = (tmp_path / 'table.pqt').read_bytes()
    dset_id = '44444444-4444-4444-8444-444444444444'
    rel_path = 'aggregates/Subjects/testlab/ZFM-01935/_ibl_subjectTrials.table.pqt'
    served = f'/{rel_path}'.replace('.table.pqt', f'.table.{dset_id}.pqt')
    record = _aggregate_record(alyx_server.url, rel_path, dset_id,
                               '_ibl_subjectTrials.table.pqt')
    record.update(file_size=len(data), hash=hashlib.md5(data).hexdigest())
    other = _aggregate_record(
        alyx_server.url, 'aggregates/Subjects/testlab/KS023/_ibl_subjectTrials.table.pqt',
        '55555555-5555-4555-8555-555555555555', '_ibl_subjectTrials.table.pqt')
    alyx_server.add_response('GET', '/datasets?django=session__isnull,True', [record, other])
    alyx_server.add_response('GET', served, data)
    loaded = one.load_aggregate('subjects', 'testlab/ZFM-01935', '_ibl_subjectTrials.table')
    pd.testing.assert_frame_equal(loaded, table)
    path = one.load_aggregate('subjects', 'ZFM-01935', '_ibl_subjectTrials.table.pqt',
                              download_only=True)
    assert path == one.cache_dir / rel_path and path.read_bytes() == data
    assert alyx_server.count('GET', served) == 1  # the second call found the file on disk
    with pytest.raises(ALFMultipleCollectionsFound, match='KS023'):
        one.load_aggregate('subjects', 'testlab', '_ibl_subjectTrials.table')
    with pytest.raises(ALFObjectNotFound, match='wheel.*subjects/testlab/ZFM-01935'):
        one.load_aggregate('subjects', 'testlab/ZFM-01935', '_ibl_wheel.position')
