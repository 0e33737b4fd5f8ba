"""Confinement: nothing outside the cache folder is read or written because a table said so.

`one._lib.confine` checks paths built from table or server data; every load path of `One`
(load_object, load_dataset, load_datasets, load_collection, load_dataset_from_id), eid2path,
record2path and the download destinations use it.

How non-access is proven: the file a hostile table points at, outside the cache, is a FIFO
(`OpenDetector`).  A thread waits to open it for writing, which the kernel lets happen only
when someone opens it for reading: any read attempt, from Python or from C (numpy, pyarrow),
is seen, without mocking anything.  `test_detector_sees_a_read` shows the detector working.
"""
import os
import threading
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest

import one._api.remote as remote
from one._api.paths import dataset_file, session_folder
from one._download import UnsafePath as DownloadUnsafePath
from one._download import safe_join, url_to_local_path
from one._lib import confine as confine_module
from one._lib.confine import Confinement, UnsafePath, confine, relative_parts
from one._lib.files import md5
from one.alf.cache import load_tables, make_parquet_db, save_tables
from one.alf.exceptions import ALFError
from one.alf.path import ALFPath
from one.api import One

pytestmark = pytest.mark.skipif(os.name == 'nt', reason='FIFOs and links: POSIX only')

SESSION = 'lab/Subjects/subj/2020-01-01/001'


class OpenDetector:
    """A FIFO at `path`; `opened` is set when anyone opens it for reading."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(self.path)
        self.opened = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._wait_for_reader, daemon=True)
        self._thread.start()

    def _wait_for_reader(self):
        fd = os.open(self.path, os.O_WRONLY)  # blocks until a reader opens the FIFO
        if not self._closing:
            self.opened.set()
        os.close(fd)  # the reader sees an empty file

    def close(self):
        self._closing = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # releases the waiting thread
        self._thread.join(10)
        os.close(fd)
        assert not self._thread.is_alive()


@pytest.fixture
def detectors():
    made = []

    def make(path):
        made.append(OpenDetector(path))
        return made[-1]

    yield make
    for detector in made:
        detector.close()


# ----------------------------------------------------------------------------- the helper

def test_detector_sees_a_read(tmp_path, detectors):
    """The control: reading the sentinel is detected (here hashing it, as a load does)."""
    detector = detectors(tmp_path / 'outside' / 'obj.attr.npy')
    assert not detector.opened.is_set()
    assert md5(detector.path) == 'd41d8cd98f00b204e9800998ecf8427e'  # read: empty
    assert detector.opened.wait(10)


@pytest.mark.parametrize('value, parts', [
    ('alf/obj.attr.npy', ['alf', 'obj.attr.npy']),
    ('./alf//x/../obj.attr.npy', ['alf', 'obj.attr.npy']),
    ('alf\\probe00\\obj.attr.npy', ['alf', 'probe00', 'obj.attr.npy']),
    ('alf/#2020-01-01#/obj.attr.npy', ['alf', '#2020-01-01#', 'obj.attr.npy']),
])
def test_relative_parts(value, parts):
    assert relative_parts(value) == parts


@pytest.mark.parametrize('value, reason', [
    ('/etc/passwd', 'is absolute'),
    ('\\\\server\\share\\x.npy', 'is absolute'),
    ('C:/x.npy', 'is absolute'),
    ('c:x.npy', 'is absolute'),
    ('alf/D:/x.npy', 'contains a drive ("D:")'),
    ('../x.npy', 'climbs out of'),
    ('alf/../../x.npy', 'climbs out of'),
    ('..\\..\\x.npy', 'climbs out of'),
    ('alf/x.npy\x00.txt', 'contains a NUL character'),
    ('', 'names no file'),
    ('alf/..', 'names no file'),
])
def test_relative_parts_refuses(tmp_path, value, reason):
    with pytest.raises(UnsafePath) as info:
        relative_parts(value, tmp_path, what='dataset 42')
    message = str(info.value)
    assert message.startswith('Refusing dataset 42: ') and reason in message
    assert info.value.value == value and info.value.root == tmp_path
    assert isinstance(info.value, ValueError)


def test_confine_checks_each_part_on_its_own(tmp_path):
    assert confine(tmp_path, SESSION, 'alf/a.b.npy') == tmp_path / SESSION / 'alf/a.b.npy'
    assert confine(tmp_path, '', 'aggregates/a.b.pqt') == tmp_path / 'aggregates/a.b.pqt'
    # a rel_path may not climb into a neighbouring session, even if it stays in the cache
    with pytest.raises(UnsafePath, match='climbs out'):
        confine(tmp_path, SESSION, '../../002/alf/a.b.npy')
    with pytest.raises(UnsafePath, match='names no file'):
        confine(tmp_path, '', '.')
    assert confine(tmp_path, '', allow_empty=True) == tmp_path


def test_confine_refuses_links_pointing_out(tmp_path):
    root, outside = tmp_path / 'cache', tmp_path / 'outside'
    (root / SESSION).mkdir(parents=True)
    outside.mkdir()
    (outside / 'a.b.npy').write_bytes(b'x')
    # a folder link pointing out
    (root / SESSION / 'alf').symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath) as info:
        confine(root, SESSION, 'alf/a.b.npy', what='dataset 7')
    assert 'through a symbolic link' in str(info.value) and str(outside) in str(info.value)
    assert info.value.value == f'{SESSION}/alf/a.b.npy'
    # a file link pointing out, and a dangling one (writing there would create the target)
    (root / SESSION / 'raw').mkdir()
    (root / SESSION / 'raw' / 'c.d.npy').symlink_to(outside / 'a.b.npy')
    (root / SESSION / 'raw' / 'e.f.npy').symlink_to(outside / 'not-yet.npy')
    for rel in ('raw/c.d.npy', 'raw/e.f.npy'):
        with pytest.raises(UnsafePath, match='symbolic link'):
            confine(root, SESSION, rel)
    # resolve=False checks the text only
    assert confine(root, SESSION, 'alf/a.b.npy', resolve=False) == root / SESSION / 'alf/a.b.npy'
    # links inside the cache are fine, and so is a cache folder that is itself a link
    (root / SESSION / 'inside').symlink_to(root / SESSION / 'raw', target_is_directory=True)
    assert confine(root, SESSION, 'inside/x.y.npy') == root / SESSION / 'inside/x.y.npy'
    (tmp_path / 'link_to_cache').symlink_to(root, target_is_directory=True)
    assert confine(tmp_path / 'link_to_cache', SESSION, 'inside/x.y.npy').exists() is False


def test_confinement_reuses_resolved_folders(tmp_path, monkeypatch):
    (tmp_path / SESSION / 'alf').mkdir(parents=True)
    guard = Confinement(tmp_path)
    calls = []
    real = confine_module.os.path.realpath
    monkeypatch.setattr(confine_module.os.path, 'realpath', lambda p: calls.append(p) or real(p))
    for name in ('a.b.npy', 'a.c.npy', 'a.d.npy'):
        guard(SESSION, f'alf/{name}')
    assert len(calls) == 1  # the folder once, not every file


def test_download_paths_share_the_checks(tmp_path):
    root, outside = tmp_path / 'cache', tmp_path / 'outside'
    (root / SESSION).mkdir(parents=True)
    outside.mkdir()
    (root / SESSION / 'alf').symlink_to(outside, target_is_directory=True)
    with pytest.raises(DownloadUnsafePath) as info:
        safe_join(root, f'{SESSION}/alf/a.b.npy')
    assert isinstance(info.value, UnsafePath) and 'symbolic link' in str(info.value)
    with pytest.raises(DownloadUnsafePath, match='symbolic link'):
        url_to_local_path(f'http://h/{SESSION}/alf/a.b.npy', root)
    for session, rel in ((SESSION, 'alf/a.b.npy'), ('../x', 'a.b.npy'), (SESSION, '/a.b.npy')):
        with pytest.raises(DownloadUnsafePath):
            remote.download_task('http://h/a.b.npy', root, session, rel, 1, None, None)
        with pytest.raises(DownloadUnsafePath):
            remote.local_destination(root, session, rel, 'a4b1d3f2-0d6f-4c2b-9c8e-7e1a2b3c4d5e')
    # the error names the dataset
    with pytest.raises(DownloadUnsafePath, match='dataset 0d6f'):
        remote.local_destination(root, SESSION, '../../../x.npy', dataset_id='0d6f')
    assert list(outside.iterdir()) == []


def test_dataset_file_and_session_folder(tmp_path):
    guard = Confinement(tmp_path)
    dset = '0b2bf1e9-3bb2-4b1c-9f5a-0c6f9d6a1e11'
    assert dataset_file(guard, SESSION, 'alf/a.b.npy', dset, uuid_filenames=True) == \
        tmp_path / SESSION / f'alf/a.b.{dset}.npy'
    with pytest.raises(UnsafePath, match=f'Refusing dataset {dset} of session 5 '
                                         r'\(rel_path\): "/abs/a.b.npy" is absolute'):
        dataset_file(guard, SESSION, '/abs/a.b.npy', dset, eid=5)
    record = {'lab': 'lab', 'subject': 'subj', 'date': '2020-01-01', 'number': 1}
    assert session_folder(tmp_path, record) == tmp_path / SESSION
    for field, value in (('lab', '/etc'), ('subject', '../../..'), ('subject', '/abs'),
                         ('lab', 'C:'), ('subject', 'a\x00b'), ('number', '/../..')):
        with pytest.raises(UnsafePath, match='Refusing session 9'):
            session_folder(tmp_path, {**record, field: value}, eid=9)


# ------------------------------------------------------------------- hostile tables, One API

def _one_session(root: Path) -> tuple:
    """A cache with one session holding alf/obj.attr.npy; returns (eid, dataset id)."""
    file = root / SESSION / 'alf' / 'obj.attr.npy'
    file.parent.mkdir(parents=True)
    np.save(file, np.arange(3))
    make_parquet_db(root, hash_ids=True)
    cache = load_tables(root)
    eid, dataset_id = cache['datasets'].index[0]
    return str(eid), str(dataset_id)


def _hostile(root: Path, rel_path=None, **session_fields) -> One:
    cache = load_tables(root)
    datasets, sessions = cache['datasets'].copy(), cache['sessions'].copy()
    if rel_path is not None:
        datasets['rel_path'] = datasets['rel_path'].astype(object)
        datasets.iloc[0, datasets.columns.get_loc('rel_path')] = rel_path
        datasets['file_size'] = pd.array([pd.NA] * len(datasets), dtype='UInt64')
        # a hash to check: a load opens the file to hash it (a FIFO has no size, so the
        # loaders would not open it otherwise)
        datasets['hash'] = '0' * 32
    for field, value in session_fields.items():
        sessions[field] = sessions[field].astype(object)
        sessions.iloc[0, sessions.columns.get_loc(field)] = value
    cache['datasets'], cache['sessions'] = datasets, sessions
    save_tables(cache, root, clobber=True)
    return One(cache_dir=root)


def _load_calls(one: One, eid, dataset_id, rel_path: str):
    """Every load path, each selecting the hostile dataset."""
    return {
        'load_object': lambda: one.load_object(eid, 'obj'),
        'load_object_download_only': lambda: one.load_object(eid, 'obj', download_only=True),
        'load_dataset': lambda: one.load_dataset(eid, 'obj.attr.npy'),
        'load_dataset_rel_path': lambda: one.load_dataset(eid, rel_path),
        'load_datasets': lambda: one.load_datasets(eid, ['obj.attr.npy']),
        'load_datasets_rel_path': lambda: one.load_datasets(eid, [rel_path]),
        'load_collection': lambda: one.load_collection(eid, '*'),
        'load_dataset_from_id': lambda: one.load_dataset_from_id(dataset_id),
        'record2path': lambda: one.record2path(one._cache['datasets'].iloc[0]),
    }


def _case(tmp_path, detectors, case):
    """(One on a hostile table, eid, dataset id, rel_path, detector of the outside file)."""
    root = tmp_path / 'cache'
    eid, dataset_id = _one_session(root)
    outside = tmp_path / 'outside'
    if case == 'absolute rel_path':
        detector = detectors(outside / 'alf' / 'obj.attr.npy')
        rel_path = str(detector.path)
        one = _hostile(root, rel_path)
    elif case == '.. in rel_path':
        detector = detectors(outside / 'alf' / 'obj.attr.npy')
        rel_path = '../../../../../../outside/alf/obj.attr.npy'
        one = _hostile(root, rel_path)
    elif case == 'drive letter':
        rel_path = 'C:/outside/alf/obj.attr.npy'
        detector = detectors(root / SESSION / 'C:' / 'outside' / 'alf' / 'obj.attr.npy')
        one = _hostile(root, rel_path)
    elif case == 'NUL':
        rel_path = 'alf/obj.attr.npy\x00/../../x'
        detector = detectors(outside / 'alf' / 'obj.attr.npy')
        one = _hostile(root, rel_path)
    elif case == '.. in subject':
        rel_path = 'alf/obj.attr.npy'
        detector = detectors(tmp_path / '2020-01-01' / '001' / rel_path)
        one = _hostile(root, rel_path, lab='', subject='..')
    elif case == 'absolute lab':
        rel_path = 'alf/obj.attr.npy'
        detector = detectors(outside / 'Subjects' / 'subj' / '2020-01-01' / '001' / rel_path)
        one = _hostile(root, rel_path, lab=str(outside))
    elif case == 'folder link pointing out':
        rel_path = 'alf/obj.attr.npy'
        detector = detectors(outside / 'alf' / 'obj.attr.npy')
        alf = root / SESSION / 'alf'
        (alf / 'obj.attr.npy').unlink()
        alf.rmdir()
        alf.symlink_to(outside / 'alf', target_is_directory=True)
        one = _hostile(root, rel_path)
    elif case == 'file link pointing out':
        rel_path = 'alf/obj.attr.npy'
        detector = detectors(outside / 'secret.npy')
        (root / SESSION / rel_path).unlink()
        (root / SESSION / rel_path).symlink_to(detector.path)
        one = _hostile(root, rel_path)
    else:
        raise ValueError(case)
    return one, UUID(eid), UUID(dataset_id), rel_path, detector


CASES = ('absolute rel_path', '.. in rel_path', 'drive letter', 'NUL', '.. in subject',
         'absolute lab', 'folder link pointing out', 'file link pointing out')
CALLS = ('load_object', 'load_object_download_only', 'load_dataset', 'load_dataset_rel_path',
         'load_datasets', 'load_datasets_rel_path', 'load_collection', 'load_dataset_from_id',
         'record2path')

UNFILTERED = ('load_dataset_rel_path', 'load_dataset_from_id', 'record2path')


def _assert_refused(calls: dict, case: str, eid, dataset_id, rel_path, tmp_path) -> None:
    """Every call raises UnsafePath naming the dataset, the session and the offending value
    (or, for a name no ALF filter can select, is not found)."""
    assert set(calls) == set(CALLS)
    for name, call in calls.items():
        if case in ('drive letter', 'NUL') and name not in UNFILTERED:
            # not an ALF path: the filters on ALF parts can't select it, so it is not found
            with pytest.raises(ALFError):
                call()
            continue
        with pytest.raises(UnsafePath) as info:
            call()
        message = str(info.value)
        assert message.startswith('Refusing '), (name, message)
        if name != 'record2path':  # (record2path goes through eid2path: the session only)
            assert f'dataset {dataset_id}' in message, (name, message)
        assert str(eid) in message, (name, message)
        if case in ('.. in subject', 'absolute lab'):  # the session folder is refused
            assert '"../2020-01-01/001"' in message or f'"{tmp_path}' in message
        else:  # the offending value is named
            assert repr(rel_path)[1:-1] in message or rel_path in message, (name, message)


@pytest.mark.parametrize('case', CASES)
def test_hostile_tables_are_refused_by_every_load(tmp_path, detectors, case):
    one, eid, dataset_id, rel_path, detector = _case(tmp_path, detectors, case)
    _assert_refused(_load_calls(one, eid, dataset_id, rel_path), case, eid, dataset_id,
                    rel_path, tmp_path)
    assert not detector.opened.is_set(), f'{case}: a file outside the cache was opened'


@pytest.mark.parametrize('case', CASES)
def test_hostile_release_tables_are_refused_by_every_load(tmp_path, detectors, case):
    """The same tables published as a release and opened by URL (`OneRelease`): the same
    errors as a local `One`, nothing read outside the cache, nothing requested from the host
    but the release's description and tables."""
    from static_server import StaticServer

    from one.api import OneRelease
    from one.release import describe_release

    _, eid, dataset_id, rel_path, detector = _case(tmp_path, detectors, case)
    site = tmp_path / 'site'  # the host serves the hostile tables; the cache keeps its files
    site.mkdir()
    for name in ('sessions.pqt', 'datasets.pqt'):
        (tmp_path / 'cache' / name).rename(site / name)
    (tmp_path / 'cache' / 'cache_info.json').unlink(missing_ok=True)
    describe_release(site)
    with StaticServer(site) as server:
        release = OneRelease(server.url, cache_dir=tmp_path / 'cache')
        _assert_refused(_load_calls(release, eid, dataset_id, rel_path), case, eid,
                        dataset_id, rel_path, tmp_path)
        assert sorted(server.paths()) == ['/cache_info.json', '/datasets.pqt', '/sessions.pqt']
    assert not detector.opened.is_set(), f'{case}: a file outside the cache was opened'


@pytest.mark.parametrize('case', ['absolute rel_path', '.. in rel_path', '.. in subject',
                                  'absolute lab', 'folder link pointing out',
                                  'file link pointing out'])
def test_without_confinement_the_outside_file_is_read(tmp_path, detectors, monkeypatch, case):
    """The control of the test above: with the confinement planted away, loads do read the
    outside file, and the detector sees it."""
    import one._api.local

    def unconfined(guard, session_path, rel_path, *args, **kwargs):
        return ALFPath(guard.root, session_path, rel_path)

    monkeypatch.setattr(one._api.local, 'dataset_file', unconfined)
    one, eid, dataset_id, rel_path, detector = _case(tmp_path, detectors, case)
    one.load_dataset_from_id(dataset_id)
    assert detector.opened.wait(10)


@pytest.mark.parametrize('case', ['.. in subject', 'absolute lab'])
def test_hostile_session_fields_refused_by_eid2path(tmp_path, detectors, case):
    one, eid, *_ = _case(tmp_path, detectors, case)
    with pytest.raises(UnsafePath, match=f'Refusing session {eid}'):
        one.eid2path(eid)


def test_sane_tables_still_load(tmp_path, detectors):
    """The same calls on the unmodified table succeed (the hostile tests fail for a reason)."""
    root = tmp_path / 'cache'
    eid, dataset_id = _one_session(root)
    one = One(cache_dir=root)
    for name, call in _load_calls(one, UUID(eid), UUID(dataset_id), 'alf/obj.attr.npy').items():
        assert call() is not None, name
    assert one.eid2path(eid) == root / SESSION


def test_link_inside_cache_is_followed(tmp_path):
    root = tmp_path / 'cache'
    eid, dataset_id = _one_session(root)
    elsewhere = root / 'shared' / 'alf'
    elsewhere.parent.mkdir()
    (root / SESSION / 'alf').rename(elsewhere)
    (root / SESSION / 'alf').symlink_to(elsewhere, target_is_directory=True)
    one = One(cache_dir=root)
    np.testing.assert_array_equal(one.load_dataset(eid, 'obj.attr.npy'), np.arange(3))


# -------------------------------------------------------------------------- OneAlyx downloads

def test_download_through_a_link_pointing_out_is_refused(alyx_server, tmp_path):
    """A session folder of the cache linked outside it: nothing is downloaded there."""
    from alyx_server import PASSWORD, USERNAME

    from one.api import ONE

    eid = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'  # its files are served
    ONE.cache_clear()
    one = ONE(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
              cache_dir=tmp_path / 'data', silent=True)
    try:
        assert 'alf/_ibl_trials.choice.npy' in one.list_datasets(eid)
        outside = tmp_path / 'outside'
        outside.mkdir()
        session = tmp_path / 'data' / 'testlab/Subjects/ZFM-01935/2024-03-14/001'
        session.mkdir(parents=True)
        (session / 'alf').symlink_to(outside, target_is_directory=True)
        alyx_server.requests.clear()
        with pytest.raises(UnsafePath, match='symbolic link'):
            one.load_dataset(eid, '_ibl_trials.choice.npy', collection='alf')
        assert not [r for r in alyx_server.requests if r.path.endswith('.npy')]
        assert list(outside.iterdir()) == []
        # the HTTP download on its own refuses too (e.g. called by download_datasets)
        row = one.list_datasets(eid, details=True, keep_eid_index=True)
        row = row[row['rel_path'] == 'alf/_ibl_trials.choice.npy']
        assert one._download_datasets(row) == [None]
        assert list(outside.iterdir()) == []
        assert not [r for r in alyx_server.requests if r.path.endswith('.npy')]
    finally:
        ONE.cache_clear()


def test_aggregate_paths_are_confined(tmp_path):
    """Aggregates have no session folder (session_path ''): their rel_path alone is checked."""
    root = tmp_path / 'cache'
    _one_session(root)
    one = One(cache_dir=root)
    dataset_id = '6e1d8f6a-8d5b-4a4e-9d2f-3c1b2a0f9e8d'
    aggregate = root / 'aggregates/Subjects/lab/subj/_ibl_subjectTrials.table.npy'
    aggregate.parent.mkdir(parents=True)
    np.save(aggregate, np.arange(2))
    records = pd.DataFrame({'rel_path': ['aggregates/Subjects/lab/subj/'
                                         '_ibl_subjectTrials.table.npy'],
                            'session_path': ['']}, index=pd.Index([dataset_id], name='id'))
    assert one._check_filesystem(records, update_exists=False) == [aggregate]
    for hostile in ('aggregates/../../outside/x.y.npy', '/etc/x.y.npy'):
        with pytest.raises(UnsafePath, match=f'Refusing dataset {dataset_id}'):
            one._check_filesystem(records.assign(rel_path=hostile), update_exists=False)
    with pytest.raises(UnsafePath, match='session folder'):
        one._check_filesystem(records.assign(session_path='..'), update_exists=False)
