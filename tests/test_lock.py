"""Lock files (one._api.lock): recording what was loaded, writing and reading the file, and loads
refused under a lock; on real files made by one.synthetic."""
import json

import numpy as np
import pytest

from one._api.lock import DatasetNotLocked, LockedDataset, read_lock, write_lock
from one._lib.access_log import RECORD_NAME, AccessLog
from one.alf.cache import make_parquet_db
from one.alf.exceptions import ALFError
from one.api import ONE, One
from one.synthetic import make_session


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / 'data'
    make_session(root, subject='KS001', date='2024-01-15', lab='cortexlab', revision='2024-06-01',
                 probes=('probe00',))
    make_session(root, subject='KS002', date='2024-01-16', lab='cortexlab', probes=())
    make_parquet_db(root, hash_files=True)
    return root


def _eid(one, subject):
    return one.search(subject=subject)[0]


@pytest.mark.filterwarnings('ignore:Multiple revisions')
def test_round_trip(folder, tmp_path):
    one = One(folder)
    one.record_loaded = True
    eid = _eid(one, 'KS001')
    trials = one.load_object(eid, 'trials', collection='alf')
    choice = one.load_dataset(eid, 'alf/_ibl_trials.choice.npy')  # the unrevised version
    spikes = one.load_dataset(eid, 'spikes.times.npy', collection='alf/probe00')
    lock_path = one.save_lock(tmp_path / 'analysis.lock.json')

    text = lock_path.read_text()
    data = json.loads(text)  # plain JSON
    assert data['one_lock'] == 1 and data['database'] is None
    assert data['sessions'] == {str(eid): 'cortexlab/Subjects/KS001/2024-01-15/001'}
    rel_paths = [d['rel_path'] for d in data['datasets']]
    assert rel_paths == sorted(rel_paths)  # sorted: a stable diff
    assert 'alf/_ibl_trials.choice.npy' in rel_paths
    assert 'alf/#2024-06-01#/_ibl_trials.choice.npy' in rel_paths  # the default of trials
    assert 'alf/probe00/spikes.times.npy' in rel_paths
    lines = text.splitlines()
    for dataset in data['datasets']:  # one dataset per line, with all its fields
        line = next(x for x in lines if f'"{dataset["id"]}"' in x)
        assert dataset['rel_path'] in line and dataset['hash'] in line
    table = one._cache['datasets']
    for dataset in data['datasets']:
        row = table.loc[(table.index.get_level_values('id').astype(str) == dataset['id'])]
        assert len(row) == 1
        assert dataset['hash'] == row['hash'].iloc[0]
        assert dataset['file_size'] == row['file_size'].iloc[0]
        assert dataset['eid'] == str(eid)
    revised = next(d for d in data['datasets'] if '#' in d['rel_path'])
    assert revised['revision'] == '2024-06-01'

    lock = read_lock(lock_path)
    assert len(lock) == len(data['datasets']) and lock.path == lock_path
    assert set(lock.sessions) == {str(eid)}

    # Under the lock the same loads work and give the same data
    locked = One(folder, lock=lock_path)
    again = locked.load_object(eid, 'trials', collection='alf')
    np.testing.assert_array_equal(again['intervals'], trials['intervals'])
    np.testing.assert_array_equal(locked.load_dataset(eid, 'alf/_ibl_trials.choice.npy'), choice)
    np.testing.assert_array_equal(
        locked.load_dataset(eid, 'spikes.times.npy', collection='alf/probe00'), spikes)
    # ... and anything else is refused, naming the dataset
    with pytest.raises(DatasetNotLocked, match='alf/_ibl_wheel.position.npy.*is not in the '
                                               'lock file'):
        locked.load_object(eid, 'wheel')
    with pytest.raises(DatasetNotLocked, match='spikes.amps'):
        locked.load_dataset(eid, 'spikes.amps.npy', collection='alf/probe00')
    other = _eid(locked, 'KS002')
    with pytest.raises(ALFError, match='KS002/2024-01-16/001/alf/_ibl_trials'):
        locked.load_object(other, 'trials')
    with pytest.raises(DatasetNotLocked):
        locked.load_collection(eid, 'alf/probe00')
    with pytest.raises(DatasetNotLocked):
        locked.load_datasets(eid, ['_ibl_wheel.position.npy', '_ibl_trials.choice.npy'])


def test_another_version_is_refused(folder, tmp_path):
    one = One(folder)
    one.record_loaded = True
    eid = _eid(one, 'KS001')
    one.load_dataset(eid, 'alf/_ibl_trials.choice.npy')  # the original, not the revision
    lock_path = one.save_lock(tmp_path / 'old.lock.json')
    locked = One(folder, lock=lock_path)
    with pytest.raises(DatasetNotLocked) as info:
        locked.load_dataset(eid, '_ibl_trials.choice.npy')  # the default: the revision
    message = str(info.value)
    assert 'alf/#2024-06-01#/_ibl_trials.choice.npy' in message
    assert 'another version: alf/_ibl_trials.choice.npy' in message
    assert locked.load_dataset(eid, 'alf/_ibl_trials.choice.npy').size > 0


def test_changed_file_is_refused(folder, tmp_path):
    one = One(folder)
    one.record_loaded = True
    eid = _eid(one, 'KS002')
    one.load_dataset(eid, '_ibl_wheel.position.npy')
    lock_path = one.save_lock(tmp_path / 'a.lock.json')
    # The database now says the file has other content (same id, new md5)
    text = lock_path.read_text()
    data = json.loads(text)
    old_hash = data['datasets'][0]['hash']
    lock_path.write_text(text.replace(old_hash, '0' * 32))
    locked = One(folder, lock=lock_path)
    with pytest.raises(DatasetNotLocked, match=f'md5 {old_hash} in the cache tables but 0{{32}}'):
        locked.load_dataset(eid, '_ibl_wheel.position.npy')


def test_one_factory_takes_a_lock(folder, tmp_path):
    one = One(folder)
    one.record_loaded = True
    eid = _eid(one, 'KS002')
    one.load_dataset(eid, '_ibl_wheel.position.npy')
    lock_path = one.save_lock(tmp_path / 'a.lock.json', clear=True)
    with pytest.warns(UserWarning, match='No datasets loaded'):
        assert one.save_lock(tmp_path / 'b.lock.json') is None  # cleared
    assert not (tmp_path / 'b.lock.json').exists()
    ONE.cache_clear()
    try:
        locked = ONE(cache_dir=folder, lock=str(lock_path))
        assert locked.lock is not None and len(locked.lock) == 1
        assert locked.load_dataset(eid, '_ibl_wheel.position.npy').size > 0
        with pytest.raises(DatasetNotLocked):
            locked.load_dataset(eid, '_ibl_wheel.timestamps.npy')
    finally:
        ONE.cache_clear()


def test_nothing_recorded_without_record_loaded(folder, tmp_path):
    one = One(folder)
    one.load_object(_eid(one, 'KS002'), 'wheel')
    with pytest.warns(UserWarning, match='record_loaded'):
        assert one.save_lock(tmp_path / 'x.json') is None


def test_read_lock_errors(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"datasets": []}')
    with pytest.raises(ValueError, match='not a lock file'):
        read_lock(bad)
    bad.write_text('not json')
    with pytest.raises(ValueError, match='invalid JSON'):
        read_lock(bad)
    bad.write_text(json.dumps({'one_lock': 99}))
    with pytest.raises(ValueError, match='format 99'):
        read_lock(bad)
    bad.write_text(json.dumps({'one_lock': 1, 'sessions': {},
                               'datasets': [{'eid': 'a', 'id': 'b', 'rel_path': 'x.y.npy'}]}))
    with pytest.raises(ValueError, match='"sessions" map'):
        read_lock(bad)
    bad.write_text(json.dumps({'one_lock': 1, 'sessions': {}, 'datasets': [{'eid': 'a'}]}))
    with pytest.raises(ValueError, match='dataset 1 has no id, rel_path'):
        read_lock(bad)
    with pytest.raises(FileNotFoundError):
        One(tmp_path, lock=tmp_path / 'missing.json')


def test_write_lock_is_sorted_and_stable(tmp_path):
    datasets = [LockedDataset('e2', 'd2', 'lab/Subjects/b/2024-01-01/001', 'alf/x.y.npy', '', 3,
                              'a' * 32),
                LockedDataset('e1', 'd1', 'lab/Subjects/a/2024-01-01/001', 'alf/#r#/x.y.npy',
                              'r', None, None)]
    first = write_lock(tmp_path / 'one.json', datasets).read_text()
    second = write_lock(tmp_path / 'two.json', datasets[::-1]).read_text()

    def strip(text):
        return [x for x in text.splitlines() if '"created"' not in x]

    assert strip(first) == strip(second)
    lines = first.splitlines()
    assert lines.index('    "e1": "lab/Subjects/a/2024-01-01/001",') < \
        lines.index('    "e2": "lab/Subjects/b/2024-01-01/001"')
    lock = read_lock(tmp_path / 'one.json')
    assert lock.datasets['d1'].file_size is None and lock.datasets['d1'].revision == 'r'
    assert lock.datasets['d2'].path.as_posix() == 'lab/Subjects/b/2024-01-01/001/alf/x.y.npy'


def test_access_log(folder):
    one = One(folder)
    one.load_object(_eid(one, 'KS002'), 'wheel', download_only=True)
    assert not (folder / RECORD_NAME).exists()  # a folder of one's own files: untouched
    log = AccessLog(folder)
    wheel = ['cortexlab/Subjects/KS002/2024-01-16/001/alf/_ibl_wheel.position.npy',
             'cortexlab/Subjects/KS002/2024-01-16/001/alf/_ibl_wheel.timestamps.npy']
    log.touch([folder / p for p in wheel], when=1000.0)
    log.touch([folder / wheel[0]], when=2000.0)
    log.touch([folder.parent / 'elsewhere.npy'], when=3000.0)  # outside: ignored
    assert log.last_loaded() == {wheel[0]: 2000.0, wheel[1]: 1000.0}
    log.forget(wheel[:1])
    assert log.last_loaded() == {wheel[1]: 1000.0}
    # A cut line (a crash mid-write) is skipped
    with open(folder / RECORD_NAME, 'a') as f:
        f.write('["cortexlab/Subjects/KS00')
    assert AccessLog(folder).last_loaded() == {wheel[1]: 1000.0}


@pytest.fixture
def unhashed(tmp_path):
    """A folder indexed without md5 (``one index`` without ``--hash``): the usual case."""
    root = tmp_path / 'plain'
    make_session(root, subject='KS003', date='2024-02-01', lab='cortexlab', probes=())
    make_parquet_db(root, hash_files=False)
    return root


def test_a_changed_file_is_refused_when_the_tables_have_no_md5(unhashed, tmp_path):
    one = One(unhashed)
    assert one._cache['datasets']['hash'].isna().all() or \
        not one._cache['datasets']['hash'].astype(bool).any()
    one.record_loaded = True
    eid = _eid(one, 'KS003')
    position = one.load_dataset(eid, '_ibl_wheel.position.npy')
    choice = one.load_dataset(eid, '_ibl_trials.choice.npy')
    lock_path = one.save_lock(tmp_path / 'a.lock.json')
    locked = {d['rel_path']: d for d in json.loads(lock_path.read_text())['datasets']}
    file = one.eid2path(eid) / 'alf' / '_ibl_wheel.position.npy'
    assert locked['alf/_ibl_wheel.position.npy']['file_size'] == file.stat().st_size
    assert len(locked['alf/_ibl_wheel.position.npy']['hash']) == 32  # hashed from the file

    # Other content, another size: the tables know no size either, the lock does
    np.save(file, np.r_[position, np.zeros(5)])
    under_lock = One(unhashed, lock=lock_path)
    with pytest.raises(DatasetNotLocked, match=r'_ibl_wheel.position.npy.*bytes but'):
        under_lock.load_dataset(eid, '_ibl_wheel.position.npy')
    # Same size, other bytes: the md5 differs
    choice_file = one.eid2path(eid) / 'alf' / '_ibl_trials.choice.npy'
    np.save(choice_file, -choice)
    assert choice_file.stat().st_size == locked['alf/_ibl_trials.choice.npy']['file_size']
    with pytest.raises(DatasetNotLocked, match=r'_ibl_trials.choice.npy.*does not have the md5'):
        under_lock.load_dataset(eid, '_ibl_trials.choice.npy')
    with pytest.raises(DatasetNotLocked):  # download_only does not get round it
        under_lock.load_dataset(eid, '_ibl_trials.choice.npy', download_only=True)
    # Put back: loads again
    np.save(choice_file, choice)
    np.testing.assert_array_equal(under_lock.load_dataset(eid, '_ibl_trials.choice.npy'),
                                  choice)


def test_a_table_size_other_than_the_lock_is_refused(unhashed, tmp_path):
    one = One(unhashed)
    one.record_loaded = True
    eid = _eid(one, 'KS003')
    one.load_dataset(eid, '_ibl_wheel.position.npy')
    lock_path = one.save_lock(tmp_path / 'a.lock.json')
    text = lock_path.read_text()
    size = json.loads(text)['datasets'][0]['file_size']
    lock_path.write_text(text.replace(f'"file_size": {size}', f'"file_size": {size + 1}'))
    with pytest.raises(DatasetNotLocked, match=f'{size} bytes in the cache tables but '
                                               f'{size + 1}'):
        One(unhashed, lock=lock_path).load_dataset(eid, '_ibl_wheel.position.npy')


def test_lock_refusal_is_a_not_found_error(folder, tmp_path):
    from one.alf.exceptions import ALFObjectNotFound
    from one.alf.exceptions import DatasetNotLocked as PublicDatasetNotLocked

    assert PublicDatasetNotLocked is DatasetNotLocked
    assert issubclass(DatasetNotLocked, ALFObjectNotFound)
    one = One(folder)
    one.record_loaded = True
    eid = _eid(one, 'KS002')
    one.load_dataset(eid, '_ibl_wheel.position.npy')
    locked = One(folder, lock=one.save_lock(tmp_path / 'a.lock.json'))
    with pytest.raises(ALFObjectNotFound, match='is not in the lock file'):
        locked.load_dataset(eid, '_ibl_wheel.timestamps.npy')
