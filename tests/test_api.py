"""`One` on a real data folder made by the synthetic generator and indexed by make_parquet_db.

The folder (see `one.synthetic.make_dataset_folder`) holds 3 subjects x 4 sessions:
KS001 (cortexlab), ZFM-002 (mainenlab), SWC_003 (cortexlab), each with sessions
2024-01-15/001, 2024-01-16/001, 2024-01-16/002 and 2024-01-17/001.  The 17th sessions have a
revision folder alf/#2024-06-01#/ with a new _ibl_trials.choice.npy; ZFM-002 2024-01-15/001 and
SWC_003 2024-01-16/001 have no probe; KS001 2024-01-16/001, ZFM-002 2024-01-15/001,
ZFM-002 2024-01-17/001 and SWC_003 2024-01-16/002 store trials as a parquet table.
"""
import logging
import os
import shutil
import warnings
from datetime import date, datetime, timedelta
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
from data_folders import indexed_folder

import one._api.local as api_local
from one import __version__
from one.alf import exceptions as alferr
from one.alf.cache import load_tables, make_parquet_db, save_tables
from one.alf.path import ALFPath
from one.api import ONE, One
from one.synthetic import REVISION, make_dataset_folder

SUBJECTS = ['KS001', 'SWC_003', 'ZFM-002']


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return indexed_folder(tmp_path_factory.mktemp('one_data'), n_subjects=3, n_sessions=4)


@pytest.fixture
def one(data_root):
    return One(cache_dir=data_root)


@pytest.fixture
def own_root(tmp_path, data_root):
    """A private copy of the data folder, for tests that change files or tables."""
    root = tmp_path / 'data'
    shutil.copytree(data_root, root)
    return root


def _eid(one, subject, day, number=1):
    eids = one.search(subject=subject, date=day, number=number)
    assert len(eids) == 1
    return eids[0]


def _with_tables(root, tables_dir, change):
    """Write modified copies of the tables into tables_dir; return a One using them."""
    cache = load_tables(root)
    change(cache)
    tables_dir.mkdir(exist_ok=True)
    save_tables(cache, tables_dir, clobber=True)
    return One(cache_dir=root, tables_dir=tables_dir)


# ---- construction, modes and the factory ---------------------------------------------------

def test_construction_and_repr(one, data_root):
    assert repr(one) == f'One (offline, {data_root})'
    assert one.offline
    assert one.mode == 'local'
    assert len(one._cache['sessions']) == 12
    assert set(one._cache['datasets'].index.names) == {'eid', 'id'}


def test_bad_mode_raises():
    with pytest.raises(ValueError, match='Mode "online" not recognized'):
        One(cache_dir='.', mode='online')


def test_missing_tables_warn(tmp_path):
    with pytest.warns(UserWarning, match='No cache tables found'):
        one = One(cache_dir=tmp_path)
    assert one.search() == []
    assert one.list_datasets() == []


def test_remote_mode_says_it_is_local(data_root):
    with pytest.warns(UserWarning, match='no database connection'):
        one = One(cache_dir=data_root, mode='remote')
    with pytest.warns(UserWarning, match='query_type "remote"'):
        assert len(one.search(subject='KS001', query_type='remote')) == 4


def test_auto_mode_reloads_expired_tables(data_root):
    one = One(cache_dir=data_root, mode='auto')
    first = one._cache['_meta']['loaded_time']
    one.search(subject='KS001')
    assert one._cache['_meta']['loaded_time'] == first  # not expired: no reload
    one._cache['_meta']['loaded_time'] = datetime.now() - timedelta(days=2)
    one.search(subject='KS001')
    assert one._cache['_meta']['loaded_time'] > first


def test_refresh_mode_reloads_before_each_query(data_root):
    one = One(cache_dir=data_root, mode='refresh')
    loaded = one._cache['_meta']['loaded_time']
    one._cache['sessions'] = one._cache['sessions'].iloc[:0]
    assert len(one.search()) == 12  # reloaded from disk
    assert one._cache['_meta']['loaded_time'] >= loaded
    with pytest.raises(ValueError, match='Unknown refresh type'):
        one.refresh_cache('sometimes')


def test_one_factory_returns_cached_local_instance(data_root):
    ONE.cache_clear()
    first = ONE(cache_dir=data_root)
    assert type(first) is One
    assert first.mode == 'local'
    assert ONE(cache_dir=data_root) is first
    ONE.cache_clear()
    assert ONE(cache_dir=data_root) is not first
    assert ONE.version == __version__
    ONE.cache_clear()


def test_setup_builds_tables(tmp_path):
    make_dataset_folder(tmp_path, n_subjects=1, n_sessions=2)
    one = One.setup(tmp_path, silent=True)
    assert (tmp_path / 'sessions.pqt').exists()
    assert len(one.search()) == 2
    again = One.setup(tmp_path, silent=True)  # existing tables are kept
    assert again.search() == one.search()


# ---- search --------------------------------------------------------------------------------

def test_search_all_sorted_most_recent_first(one):
    eids, details = one.search(details=True)
    assert len(eids) == 12 and all(isinstance(e, UUID) for e in eids)
    keys = [(d['date'], d['subject'], d['number']) for d in details]
    assert keys == sorted(keys, reverse=True)
    assert keys[0] == (date(2024, 1, 17), 'ZFM-002', 1)
    assert set(details[0]) == {'lab', 'subject', 'date', 'number', 'task_protocol', 'projects'}


@pytest.mark.parametrize('query, n', [
    (dict(subject='KS001'), 4),
    (dict(subject='^KS001$'), 4),
    (dict(subject=['KS001', 'ZFM']), 8),
    (dict(subj='SWC'), 4),
    (dict(lab='mainen'), 4),
    (dict(laboratory=['mainenlab', 'cortexlab']), 12),
    (dict(date='2024-01-16'), 6),
    (dict(date_range=['2024-01-16', None]), 9),
    (dict(date_range=[None, '2024-01-15']), 3),
    (dict(date=date(2024, 1, 17)), 3),
    (dict(number=2), 3),
    (dict(num='002'), 3),
    (dict(subject='KS001', date='2024-01-16'), 2),
    (dict(subject='KS001', date='2024-01-16', number=2), 1),
    (dict(dataset='spikes.times'), 10),
    (dict(dataset=['spikes.times', 'trials.table']), 3),
    (dict(dataset='#2024-06-01#'), 3),
    (dict(datasets='spikes.times.npy'), 10),
    (dict(datasets='spikes.times'), 0),
    (dict(datasets=['_ibl_trials.table.pqt', 'clusters.metrics.pqt']), 3),
    (dict(dataset_qc_lte='PASS'), 12),
    (dict(subject='nobody'), 0),
])
def test_search_terms(one, query, n):
    assert len(one.search(**query)) == n


def test_search_without_wildcards_matches_literal_substrings(data_root):
    one = One(cache_dir=data_root, wildcards=False)
    assert len(one.search(subject=['KS001', 'ZFM-002'])) == 8
    assert one.search(subject='^KS') == []  # regex characters are literal
    assert len(one.search(dataset='trials.table.pqt')) == 4


def test_search_no_match_with_details(one):
    assert one.search(subject='nobody', details=True) == ([], None)


def test_search_bad_terms(one):
    with pytest.raises(ValueError, match='Invalid search term "user"'):
        one.search(user='me')
    with pytest.raises(ValueError, match='Ambiguous search term "dat"'):
        one.search(dat='x')
    assert 'dataset' in one.search_terms()


def test_search_dataset_qc(own_root, tmp_path):
    one = One(cache_dir=own_root)
    critical = _eid(one, 'KS001', '2024-01-15')

    def set_qc(cache):
        datasets = cache['datasets']  # from load_tables: UUID ids, as ONE-api's
        eids = datasets.index.get_level_values('eid')
        datasets.loc[eids == critical, 'qc'] = 'CRITICAL'
        spikes = datasets['rel_path'].str.endswith('spikes.times.npy') & (eids != critical)
        datasets.loc[spikes, 'qc'] = 'WARNING'

    one = _with_tables(own_root, tmp_path / 'qc_tables', set_qc)
    assert critical not in one.search(dataset_qc_lte='FAIL')
    assert len(one.search(dataset_qc_lte='FAIL')) == 11
    assert len(one.search(dataset='spikes.times')) == 9  # CRITICAL hidden by default
    assert one.search(dataset='spikes.times', dataset_qc_lte='PASS') == []
    assert len(one.search(dataset='spikes.times', dataset_qc_lte=30)) == 9
    assert len(one.search(dataset='wheel', dataset_qc_lte='PASS')) == 11


def test_search_ignores_missing_datasets(own_root, tmp_path):
    def hide_spikes(cache):
        datasets = cache['datasets']
        datasets.loc[datasets['rel_path'].str.contains('spikes'), 'exists'] = False
    one = _with_tables(own_root, tmp_path / 'tables', hide_spikes)
    assert one.search(dataset='spikes') == []
    assert len(one.search(dataset='wheel')) == 12


# ---- details and listing -------------------------------------------------------------------

def test_list_subjects(one):
    assert one.list_subjects() == SUBJECTS


def test_get_details(one):
    eid = _eid(one, 'ZFM-002', '2024-01-16', 2)
    record = one.get_details(eid)
    assert isinstance(record, pd.Series)
    assert record.name == eid
    assert (record['subject'], record['lab'], record['date'], record['number']) == \
        ('ZFM-002', 'mainenlab', date(2024, 1, 16), 2)
    full = one.get_details(str(eid), full=True)
    assert list(full.index.names) == ['eid', 'id']
    assert set(full.index.get_level_values('eid')) == {eid}
    assert {'rel_path', 'subject', 'lab'} <= set(full.columns)
    assert len(full) == len(one.list_datasets(eid))


def test_get_details_unknown_session(one):
    unknown = UUID('00000000-0000-4000-8000-000000000000')
    with pytest.raises(alferr.ALFObjectNotFound, match=str(unknown)):
        one.get_details(unknown)
    with pytest.raises(ValueError, match='Cannot parse session ID'):
        one.get_details('nobody/2020-01-01/001')


def test_list_datasets_of_a_session(one):
    eid = _eid(one, 'KS001', '2024-01-15')
    rel_paths = one.list_datasets(eid)
    assert rel_paths == sorted(rel_paths)
    assert 'alf/probe00/spikes.times.npy' in rel_paths
    assert '_ibl_experiment.description' not in rel_paths  # not an ALF name: not indexed
    details = one.list_datasets(eid, details=True)
    assert details.index.names == ['id'] and isinstance(details.index[0], UUID)
    assert len(details) == len(rel_paths)
    with_eid = one.list_datasets(eid, details=True, keep_eid_index=True)
    assert with_eid.index.names == ['eid', 'id']
    assert set(with_eid.index.get_level_values('eid')) == {eid}
    assert one.list_datasets(eid, filename='*wheel*') == [
        'alf/_ibl_wheel.position.npy', 'alf/_ibl_wheel.timestamps.npy',
        'alf/_ibl_wheelMoves.intervals.npy', 'alf/_ibl_wheelMoves.peakAmplitude.npy']
    assert one.list_datasets(eid, filename={'object': 'spikes', 'attribute': 'times'}) == [
        'alf/probe00/spikes.times.npy', 'alf/probe01/spikes.times.npy']
    assert one.list_datasets(eid, collection='alf/probe01', filename='clusters*') == [
        'alf/probe01/clusters.channels.npy', 'alf/probe01/clusters.depths.npy',
        'alf/probe01/clusters.metrics.pqt', 'alf/probe01/clusters.uuids.csv']
    assert one.list_datasets(eid, collection='raw*') == [
        'raw_behavior_data/_iblrig_ambientSensorData.raw.jsonable',
        'raw_behavior_data/_iblrig_taskSettings.raw.json',
        'raw_video_data/_iblrig_leftCamera.raw.mp4']


def test_list_datasets_regex_mode(data_root):
    one = One(cache_dir=data_root, wildcards=False)
    eid = _eid(one, 'KS001', '2024-01-15')
    assert one.list_datasets(eid, filename=r'.*wheel\..*') == [
        'alf/_ibl_wheel.position.npy', 'alf/_ibl_wheel.timestamps.npy']
    assert one.list_datasets(eid, collection=r'alf/probe0\d', filename='spikes.times.npy') == [
        'alf/probe00/spikes.times.npy', 'alf/probe01/spikes.times.npy']


def test_list_datasets_unknown_session_is_empty(one):
    unknown = '00000000-0000-4000-8000-000000000000'
    assert one.list_datasets(unknown) == []
    assert one.list_datasets(unknown, details=True).empty


def test_list_datasets_all_sessions(one):
    everything = one.list_datasets()
    assert len(everything) == len(set(everything))
    assert 'alf/#2024-06-01#/_ibl_trials.choice.npy' in everything
    table = one.list_datasets(details=True)
    assert len(table) == len(one._cache['datasets'])
    assert isinstance(table.index.get_level_values('eid')[0], UUID)


def test_list_datasets_revisions(one):
    eid = _eid(one, 'KS001', '2024-01-17')
    assert one.list_datasets(eid, revision=REVISION) == [
        f'alf/#{REVISION}#/_ibl_trials.choice.npy']
    assert f'alf/#{REVISION}#/_ibl_trials.choice.npy' not in one.list_datasets(eid, revision='')
    defaults = one.list_datasets(eid, default_revisions_only=True)  # the index marks the latest
    assert f'alf/#{REVISION}#/_ibl_trials.choice.npy' in defaults
    assert 'alf/_ibl_trials.choice.npy' not in defaults
    one._cache['datasets'] = one._cache['datasets'].drop(columns='default_revision')
    with pytest.raises(alferr.ALFError, match='No default revisions'):
        one.list_datasets(eid, default_revisions_only=True)


def test_list_collections_and_revisions(one):
    eid = _eid(one, 'KS001', '2024-01-17')
    assert sorted(one.list_collections(eid)) == [
        'alf', 'alf/probe00', 'alf/probe01', 'raw_behavior_data', 'raw_video_data']
    assert one.list_collections(eid, collection='alf/*') == ['alf/probe00', 'alf/probe01']
    assert one.list_collections(eid, filename='*wheel*') == ['alf']
    by_collection = one.list_collections(eid, details=True)
    assert set(by_collection['alf/probe00']['rel_path']) == {
        x for x in one.list_datasets(eid) if x.startswith('alf/probe00/')}
    assert sorted(one.list_revisions(eid)) == ['', REVISION]
    assert one.list_revisions(eid, revision='2024*') == [REVISION]
    assert one.list_revisions(eid, filename='*wheel*') == ['']
    assert set(one.list_revisions(eid, details=True)) == {'', REVISION}
    assert sorted(one.list_collections()) == [
        'alf', 'alf/probe00', 'alf/probe01', 'raw_behavior_data', 'raw_video_data']
    assert sorted(one.list_revisions()) == ['', REVISION]


# ---- loading -------------------------------------------------------------------------------

def test_load_object(one, data_root):
    eid = _eid(one, 'KS001', '2024-01-15')
    trials = one.load_object(eid, 'trials', collection='alf')
    assert {'intervals', 'goCue_times', 'choice', 'intervals_bpod'} <= set(trials)
    assert trials['intervals'].shape[1] == 2
    assert len(trials['choice']) == trials['intervals'].shape[0]
    expected = np.load(data_root / 'cortexlab/Subjects/KS001/2024-01-15/001/alf/'
                                   '_ibl_trials.choice.npy')
    np.testing.assert_array_equal(trials['choice'], expected)
    some = one.load_object(eid, 'trials', attribute=['choice', 'goCue*'])
    assert set(some) == {'choice', 'goCue_times'}
    files = one.load_object(eid, 'wheel', download_only=True)
    assert sorted(f.name for f in files) == ['_ibl_wheel.position.npy',
                                            '_ibl_wheel.timestamps.npy']
    assert all(isinstance(f, ALFPath) and f.exists() for f in files)


def test_load_object_from_a_trials_table(one):
    eid = _eid(one, 'KS001', '2024-01-16')
    trials = one.load_object(eid, 'trials')
    assert trials['intervals'].shape[1] == 2
    assert 'choice' in trials and 'intervals_bpod' in trials


def test_load_object_revisions(one, data_root):
    eid = _eid(one, 'KS001', '2024-01-17')
    session = data_root / 'cortexlab/Subjects/KS001/2024-01-17/001/alf'
    original = np.load(session / '_ibl_trials.choice.npy')
    revised = np.load(session / f'#{REVISION}#' / '_ibl_trials.choice.npy')
    assert not np.array_equal(original, revised)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        latest = one.load_object(eid, 'trials', collection='alf')
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if 'No default revision' in m]  # the index marked them
    # choice only was revised; ONE-api names the revisions in this order
    assert 'Multiple revisions: "2024-06-01", ""' in messages
    np.testing.assert_array_equal(latest['choice'], revised)
    without_defaults = One(cache_dir=data_root)
    datasets = without_defaults._cache['datasets']
    without_defaults._cache['datasets'] = datasets.drop(columns='default_revision')
    with pytest.warns(alferr.ALFWarning, match='No default revision'), \
            pytest.warns(alferr.ALFWarning, match='Multiple revisions'):
        latest = without_defaults.load_object(eid, 'trials', collection='alf')
    np.testing.assert_array_equal(latest['choice'], revised)
    before = one.load_object(eid, 'trials', collection='alf', revision='2024-01-01')
    np.testing.assert_array_equal(before['choice'], original)
    with pytest.warns(alferr.ALFWarning, match='Multiple revisions'):
        after = one.load_object(eid, 'trials', collection='alf', revision='2025-01-01')
    np.testing.assert_array_equal(after['choice'], revised)


def test_load_object_default_revision_column(own_root, tmp_path):
    one = One(cache_dir=own_root)
    eid = _eid(one, 'KS001', '2024-01-17')

    def mark_original_default(cache):
        datasets = cache['datasets']
        datasets['default_revision'] = ~datasets['rel_path'].str.contains('#')
    one = _with_tables(own_root, tmp_path / 'tables', mark_original_default)
    original = np.load(own_root / 'cortexlab/Subjects/KS001/2024-01-17/001/alf/'
                                  '_ibl_trials.choice.npy')
    with warnings.catch_warnings():
        warnings.simplefilter('error', alferr.ALFWarning)  # a default exists: no warning
        trials = one.load_object(eid, 'trials', collection='alf')
    np.testing.assert_array_equal(trials['choice'], original)
    assert one.list_datasets(eid, default_revisions_only=True, filename='*choice*') == [
        'alf/_ibl_trials.choice.npy']


def test_revision_last_before_environment_default(one, monkeypatch):
    eid = _eid(one, 'KS001', '2024-01-17')
    monkeypatch.setattr(api_local, 'REVISION_LAST_BEFORE', '2024-01-01')
    path = one.load_dataset(eid, '_ibl_trials.choice.npy', download_only=True)
    assert path.revision == ''
    with pytest.raises(ValueError, match='ONE_REVISION_LAST_BEFORE'):
        one.load_datasets(eid, ['alf/_ibl_trials.choice.npy'])


def test_load_object_errors(one):
    eid = _eid(one, 'KS001', '2024-01-15')
    with pytest.raises(alferr.ALFObjectNotFound, match='objects present: .*trials'):
        one.load_object(eid, 'nothing')
    with pytest.raises(alferr.ALFMultipleObjectsFound, match='wheel.*wheelMoves'):
        one.load_object(eid, 'wheel*')
    with pytest.raises(alferr.ALFMultipleCollectionsFound, match='alf/probe00.*alf/probe01'):
        one.load_object(eid, 'spikes')
    spikes = one.load_object(eid, 'spikes', collection='alf/probe01')
    assert set(spikes) == {'times', 'clusters', 'amps', 'depths'}
    with pytest.raises(ValueError, match='Cannot parse session ID'):
        one.load_object('nobody/2020-01-01/001', 'trials')


def test_load_object_accepts_other_id_forms(one, data_root):
    eid = _eid(one, 'KS001', '2024-01-15')
    path = data_root / 'cortexlab' / 'Subjects' / 'KS001' / '2024-01-15' / '001'
    for form in (eid, str(eid), path, 'KS001/2024-01-15/001', '2024-01-15_1_KS001'):
        wheel = one.load_object(form, 'wheel')
        assert set(wheel) == {'position', 'timestamps'}


def test_load_dataset(one):
    eid = _eid(one, 'KS001', '2024-01-15')
    intervals = one.load_dataset(eid, '_ibl_trials.intervals')  # extension wildcard added
    assert intervals.ndim == 2
    path = one.load_dataset(eid, '*trials.goCue_times.npy', download_only=True)
    assert path.name == '_ibl_trials.goCue_times.npy'
    table = one.load_dataset(eid, 'clusters.metrics.pqt', collection='alf/probe00')
    assert isinstance(table, pd.DataFrame)
    by_path = one.load_dataset(eid, 'alf/probe00/spikes.times.npy')
    assert by_path.ndim == 1
    by_dict = one.load_dataset(eid, {'object': 'wheel', 'attribute': 'position'})
    assert by_dict.ndim == 1


def test_load_dataset_errors(one):
    eid = _eid(one, 'KS001', '2024-01-15')
    with pytest.raises(alferr.ALFMultipleCollectionsFound):
        one.load_dataset(eid, 'spikes.times.npy')
    with pytest.raises(alferr.ALFObjectNotFound, match='Dataset "nothing.here.npy" not found'):
        one.load_dataset(eid, 'nothing.here.npy')
    with pytest.raises(ValueError, match='must be None when dataset is a relative path'):
        one.load_dataset(eid, 'alf/probe00/spikes.times.npy', collection='alf')
    with pytest.warns(UserWarning, match='Wildcards should not be used'):
        one.load_dataset(eid, 'alf/probe00/spikes.times.*')


def test_load_datasets(one):
    eid = _eid(one, 'KS001', '2024-01-15')
    data, records = one.load_datasets(eid, ['_ibl_trials.choice', '_ibl_wheel.position.npy'])
    assert len(data) == 2 and data[0].ndim == 1
    assert records[0]['rel_path'] == 'alf/_ibl_trials.choice.npy'
    assert isinstance(records[0]['id'], UUID) and records[0]['eid'] == eid
    files, _ = one.load_datasets(eid, ['spikes.times.npy'] * 2,
                                 collections=['alf/probe00', 'alf/probe01'], download_only=True)
    assert [f.collection for f in files] == ['alf/probe00', 'alf/probe01']
    data, records = one.load_datasets(
        eid, ['alf/probe00/spikes.amps.npy', 'alf/_ibl_log.info.yaml'])
    assert isinstance(data[1], dict) and records[1]['rel_path'] == 'alf/_ibl_log.info.yaml'
    frame = one.list_datasets(eid, details=True, keep_eid_index=True, filename='*wheel.*')
    files, _ = one.load_datasets(eid, frame, download_only=True)
    assert sorted(f.name for f in files) == ['_ibl_wheel.position.npy',
                                            '_ibl_wheel.timestamps.npy']


def test_load_datasets_errors(one):
    eid = _eid(one, 'KS001', '2024-01-15')
    with pytest.raises(TypeError, match='non-string iterable'):
        one.load_datasets(eid, '_ibl_trials.choice.npy')
    with pytest.raises(ValueError, match='only str or only dicts'):
        one.load_datasets(eid, ['_ibl_trials.choice.npy', {'object': 'wheel'}])
    with pytest.raises(ValueError, match='must match number of datasets'):
        one.load_datasets(eid, ['a.b.npy', 'c.d.npy'], collections=['alf'])
    with pytest.raises(alferr.ALFObjectNotFound, match='not in the cache: alf/nothing.here.npy'):
        one.load_datasets(eid, ['_ibl_trials.choice.npy', 'nothing.here.npy'],
                          collections='alf')
    data, records = one.load_datasets(eid, ['_ibl_trials.choice.npy', 'nothing.here.npy'],
                                      assert_present=False)
    assert data[1] is None and records[1] is None and data[0] is not None
    assert one.load_datasets(eid, [])[0] is None


def test_load_dataset_from_id(one):
    eid = _eid(one, 'KS001', '2024-01-15')
    record = one.list_datasets(eid, details=True, filename='_ibl_wheel.position.npy')
    dset_id = record.index[0]
    data = one.load_dataset_from_id(dset_id)
    assert data.ndim == 1
    path, details = one.load_dataset_from_id(str(dset_id), download_only=True, details=True)
    assert path.name == '_ibl_wheel.position.npy'
    assert details['rel_path'] == 'alf/_ibl_wheel.position.npy'
    assert details.name == (eid, dset_id)
    with pytest.raises(alferr.ALFObjectNotFound):
        one.load_dataset_from_id(UUID('00000000-0000-4000-8000-000000000000'))


@pytest.mark.parametrize('handed_out', [False, True], ids=['str ids', 'UUIDs'])
def test_dataset_id_lookups_follow_table_changes(own_root, handed_out):
    """Internal lookups by id, on the tables as loaded (str ids) or after ``one._cache`` was
    read (UUIDs); ids are given as strings either way."""
    one = One(cache_dir=own_root)
    eid = str(_eid(one, 'KS001', '2024-01-15'))
    wheel = one.list_datasets(eid, details=True, filename='_ibl_wheel.position.npy')
    dset_id = str(wheel.index[0])
    assert one.load_dataset_from_id(dset_id).ndim == 1  # builds the id index
    tables = one._cache if handed_out else one._tables

    def key(*ids):
        return tuple(UUID(x) for x in ids) if handed_out else ids
    # a dataset merged into the table afterwards is found
    session = own_root / 'cortexlab/Subjects/KS001/2024-01-15/001'
    shutil.copy(session / 'alf/_ibl_wheel.position.npy', session / 'alf/_ibl_wheel.copy.npy')
    new_id = '11111111-2222-4333-8444-555555555555'
    record = tables['datasets'].loc[[key(eid, dset_id)]].copy()
    record.index = pd.MultiIndex.from_tuples([(eid, new_id)], names=['eid', 'id'])
    record['rel_path'] = 'alf/_ibl_wheel.copy.npy'
    one._update_cache_from_records(datasets=record)
    assert one.load_dataset_from_id(UUID(new_id), download_only=True).name == \
        '_ibl_wheel.copy.npy'
    assert one._eids_of_datasets([new_id, dset_id, 'unknown']) == [eid, eid, None]
    # records without their session: the session and the exists state go through the ids
    (session / 'alf/_ibl_wheel.copy.npy').unlink()
    without_eid = tables['datasets'].loc[[key(eid, new_id), key(eid, dset_id)]].droplevel('eid')
    files = one._check_filesystem(without_eid)
    assert files[0] is None and files[1].name == '_ibl_wheel.position.npy'
    table = tables['datasets']
    assert not table.loc[key(eid, new_id), 'exists'] and table.loc[key(eid, dset_id), 'exists']
    assert {type(x) for x in table.index.levels[1]} == {UUID if handed_out else str}
    with pytest.raises(alferr.ALFObjectNotFound, match='not found on disk'):
        one.load_dataset_from_id(new_id)
    # the same id in two sessions
    other = str(_eid(one, 'KS001', '2024-01-16'))
    record.index = pd.MultiIndex.from_tuples([(other, new_id)], names=['eid', 'id'])
    one._update_cache_from_records(datasets=record)
    with pytest.raises(alferr.ALFMultipleObjectsFound):
        one.load_dataset_from_id(new_id)
    assert one._eids_of_datasets([new_id])[0] in (eid, other)


def test_tables_handed_to_users_hold_plain_strings(data_root):
    one = One(cache_dir=data_root)
    assert isinstance(one._tables['datasets']['rel_path'].dtype, pd.CategoricalDtype)
    eid = _eid(one, 'KS001', '2024-01-17')
    frames = [one.list_datasets(eid, details=True), one.list_datasets(details=True),
              one.get_details(eid, full=True), one.list_datasets(UUID(int=1), details=True),
              *one.list_revisions(eid, details=True).values()]
    for frame in frames:
        assert not isinstance(frame['rel_path'].dtype, pd.CategoricalDtype)
    details = frames[0]
    details.loc[details.index[0], 'rel_path'] = 'alf/edited.value.npy'  # an ordinary column
    assert details['rel_path'].str.endswith('.value.npy').sum() == 1
    # the tables themselves, once read through _cache: plain strings too
    assert not isinstance(one._cache['datasets']['rel_path'].dtype, pd.CategoricalDtype)
    assert one._cache['datasets']['rel_path'].dtype == frames[1]['rel_path'].dtype


def test_load_collection(one):
    eid = _eid(one, 'KS001', '2024-01-15')
    probe = one.load_collection(eid, 'alf/probe00')
    assert set(probe) == {'spikes', 'clusters'}
    assert set(probe['spikes']) == {'times', 'clusters', 'amps', 'depths'}
    only_spikes = one.load_collection(eid, 'alf/probe00', object='spikes', attribute='times')
    assert set(only_spikes) == {'spikes'} and set(only_spikes['spikes']) == {'times'}
    files = one.load_collection(eid, 'alf/probe00', download_only=True)
    assert isinstance(files, tuple) and len(files) == 8
    with pytest.raises(alferr.ALFError, match='collections present'):
        one.load_collection(eid, 'alf/probe09')
    with pytest.raises(alferr.ALFObjectNotFound):
        one.load_collection(eid, 'alf/probe00', object='nothing')


def test_load_collection_revision_applies_to_revision(one):
    eid = _eid(one, 'KS001', '2024-01-17')
    files = one.load_collection(eid, 'alf', object='trials', revision='2024-01-01',
                                download_only=True)
    assert all(f.revision == '' for f in files)


# ---- files on disk: exists, sizes, hashes, verify once ----------------------------------------

def test_missing_file_updates_exists(own_root):
    one = One(cache_dir=own_root)
    eid = _eid(one, 'KS001', '2024-01-15')
    target = own_root / 'cortexlab/Subjects/KS001/2024-01-15/001/alf/_ibl_wheel.position.npy'
    target.unlink()
    with pytest.raises(alferr.ALFObjectNotFound, match='not found on disk'):
        one.load_dataset(eid, '_ibl_wheel.position.npy')
    datasets = one._cache['datasets']
    row = datasets['rel_path'] == 'alf/_ibl_wheel.position.npy'
    row &= datasets.index.get_level_values('eid') == eid
    assert not datasets.loc[row, 'exists'].item()
    assert one._cache['_meta']['modified_time'] is not None
    one.save_cache()
    reloaded = One(cache_dir=own_root)
    assert str(eid) not in {str(e) for e in reloaded.search(datasets='_ibl_wheel.position.npy')}


def test_hash_checked_once_then_remembered(own_root, caplog):
    one = One(cache_dir=own_root)
    eid = _eid(one, 'KS001', '2024-01-15')
    one.load_object(eid, 'wheel')
    record = own_root / '.one_verified.jsonl'
    assert 'KS001/2024-01-15/001/alf/_ibl_wheel.position.npy' in record.read_text()

    target = own_root / 'cortexlab/Subjects/KS001/2024-01-15/001/alf/_ibl_wheel.position.npy'
    stat = target.stat()
    content = bytearray(target.read_bytes())
    content[-1] ^= 0xFF  # same size, different bytes
    target.write_bytes(bytes(content))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # looks unchanged
    with caplog.at_level(logging.WARNING, logger='one.api'):
        one.load_object(eid, 'wheel')
    assert 'md5 mismatch' not in caplog.text  # size and mtime unchanged: not hashed again

    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with caplog.at_level(logging.WARNING, logger='one.api'):
        wheel = one.load_object(eid, 'wheel')
    assert 'local md5 mismatch on dataset: cortexlab/Subjects/KS001/2024-01-15/001/alf/' \
           '_ibl_wheel.position.npy' in caplog.text
    assert 'position' in wheel  # offline, the file is still returned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='one.api'):
        one.load_object(eid, 'wheel', check_hash=False)
    assert 'mismatch' not in caplog.text


def test_size_mismatch_is_reported(own_root, caplog):
    one = One(cache_dir=own_root)
    eid = _eid(one, 'KS001', '2024-01-15')
    target = own_root / 'cortexlab/Subjects/KS001/2024-01-15/001/alf/_ibl_log.info.yaml'
    target.write_text(target.read_text() + '\nextra: 1\n')
    with caplog.at_level(logging.WARNING, logger='one.api'):
        one.load_dataset(eid, '_ibl_log.info.yaml')
    assert 'local file size mismatch on dataset' in caplog.text


def test_unknown_hash_and_size_are_not_checked(own_root, caplog, tmp_path):
    make_parquet_db(own_root, hash_files=False)  # hash '' (unknown)

    def unknown_sizes(cache):
        cache['datasets']['file_size'] = pd.array([pd.NA] * len(cache['datasets']),
                                                  dtype='UInt64')
    one = _with_tables(own_root, tmp_path / 'tables', unknown_sizes)
    eid = _eid(one, 'KS001', '2024-01-15')
    with caplog.at_level(logging.WARNING, logger='one.api'):
        one.load_object(eid, 'wheel')
    assert 'mismatch' not in caplog.text


# ---- saving and recording ------------------------------------------------------------------

def test_save_cache_only_when_modified_and_round_trip(own_root, tmp_path):
    one = One(cache_dir=own_root)
    before = (own_root / 'datasets.pqt').stat().st_mtime_ns
    one.save_cache()
    assert (own_root / 'datasets.pqt').stat().st_mtime_ns == before  # nothing modified

    saved = tmp_path / 'saved'
    saved.mkdir()
    one.save_cache(saved, force=True)
    copy = One(cache_dir=own_root, tables_dir=saved)
    assert copy.search() == one.search()
    pd.testing.assert_frame_equal(copy._cache['datasets'].reset_index(drop=True)
                                  .astype({'rel_path': object}),
                                  one._cache['datasets'].reset_index(drop=True)
                                  .astype({'rel_path': object}),
                                  check_dtype=False)
    assert copy.load_cache(saved) is not None


def test_save_cache_of_empty_tables_writes_nothing(tmp_path):
    """As ONE-api: modified but empty tables are not written (unless clobber)."""
    with pytest.warns(UserWarning, match='No cache tables found'):
        one = One(cache_dir=tmp_path)
    one._update_cache_from_records(sessions=one._cache['sessions'].iloc[:0])
    one._cache['_meta']['modified_time'] = datetime.now()
    one.save_cache(force=True)
    assert not list(tmp_path.glob('*.pqt'))
    one.save_cache(clobber=True)
    assert sorted(p.name for p in tmp_path.glob('*.pqt')) == ['datasets.pqt', 'sessions.pqt']


def test_record_loaded_and_save_loaded_ids(own_root):
    one = One(cache_dir=own_root)
    with pytest.warns(UserWarning, match='No datasets loaded'):
        assert one.save_loaded_ids() == ([], None)
    one.record_loaded = True
    eid = _eid(one, 'KS001', '2024-01-15')
    one.load_object(eid, 'wheel')
    one.load_dataset(eid, '_ibl_trials.choice.npy')
    ids, filename = one.save_loaded_ids(clear_list=False)
    assert len(ids) == 3 and all(isinstance(i, UUID) for i in ids)
    assert filename.name.endswith('_loaded_dataset_uuids.csv')
    saved = pd.read_csv(filename)
    assert list(saved.columns) == ['dataset_uuid'] and len(saved) == 3
    sessions, filename = one.save_loaded_ids(sessions_only=True)
    assert sessions == [eid]
    assert pd.read_csv(filename).columns.tolist() == ['session_uuid']
    with pytest.warns(UserWarning):
        one.save_loaded_ids()  # the list was cleared


# ---- conversions through One ----------------------------------------------------------------

def test_conversions(one, data_root):
    eid = _eid(one, 'ZFM-002', '2024-01-16', 2)
    path = one.eid2path(eid)
    assert path == ALFPath(data_root, 'mainenlab/Subjects/ZFM-002/2024-01-16/002')
    assert one.path2eid(path / 'alf' / '_ibl_trials.choice.npy') == eid
    assert one.to_eid('2024-01-16_2_ZFM-002') == eid
    assert one.eid2ref(eid, as_dict=False) == '2024-01-16_2_ZFM-002'
    assert Path(one.ref2path('2024-01-16_002_ZFM-002')) == path
