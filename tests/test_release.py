"""Publishing releases (`one.release.make_release`, `export_files`) and the release description
(`one._release.info`): real folders made by the synthetic generator, real files."""
import hashlib
import json
import os
import time
import zipfile

import pandas as pd
import pytest
from data_folders import publish

import one.release as release
from one._lib import files as lib_files
from one._lib.confine import UnsafePath
from one._release.info import (
    FORMAT,
    FORMAT_VERSION,
    NotARelease,
    parse_info,
    release_path,
    remote_file_path,
)
from one._release.remote import normalise_url, resolve_url
from one.alf.cache import load_tables, make_parquet_db
from one.alf.exceptions import ALFInvalid, ALFWarning
from one.synthetic import make_dataset_folder, make_session


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def folder(tmp_path):
    """A synthetic data folder of 4 sessions."""
    root = tmp_path / 'data'
    make_dataset_folder(root, n_subjects=2, n_sessions=2)
    return root


def _publish(folder, **kwargs):
    return publish(folder, strict=True, **kwargs)  # no warning for a valid folder


def test_make_release_writes_tables_and_description(folder):
    info = _publish(folder, tag='2025_Q1', origin='mylab')
    raw = json.loads((folder / 'cache_info.json').read_text())
    assert raw['format'] == FORMAT and raw['format_version'] == FORMAT_VERSION
    assert raw['origin'] == 'mylab' and raw['tag'] == '2025_Q1'
    assert raw['files'] == {'layout': 'path', 'url': '.'}
    time.strptime(raw['date_created'], '%Y-%m-%d %H:%M')
    tables = load_tables(folder)
    datasets = tables['datasets']
    assert raw['counts'] == {'sessions': 4, 'datasets': len(datasets),
                             'bytes': int(datasets['file_size'].sum())}
    for name in ('sessions', 'datasets'):
        entry = raw['tables'][name]
        path = folder / entry['file']
        assert entry == {'file': f'{name}.pqt', 'md5': _md5(path), 'size': path.stat().st_size,
                         'nrecs': len(tables[name])}
    assert info.tables['datasets'].md5 == raw['tables']['datasets']['md5']
    # every file is indexed with its true size and md5
    sessions = tables['sessions']
    for (eid, _), row in datasets.iterrows():
        ses = sessions.loc[eid]
        file = folder / ses['lab'] / 'Subjects' / ses['subject'] / str(ses['date']) / \
            f'{ses["number"]:03d}' / row['rel_path']
        assert row['file_size'] == file.stat().st_size
        assert row['hash'] == _md5(file)
    assert datasets['exists'].all()


def test_ids_are_those_of_one_index(folder, tmp_path):
    _publish(folder)
    index_dir = tmp_path / 'index'
    index_dir.mkdir()
    make_parquet_db(folder, out_dir=index_dir, hash_ids=True)
    ours, theirs = load_tables(folder), load_tables(index_dir)
    assert ours['sessions'].index.equals(theirs['sessions'].index)
    assert ours['datasets'].index.equals(theirs['datasets'].index)
    assert ours['datasets']['rel_path'].astype(str).tolist() == \
        theirs['datasets']['rel_path'].astype(str).tolist()


def test_invalid_names_refused_with_the_list(tmp_path):
    root = tmp_path / 'data'
    make_dataset_folder(root, n_subjects=1, n_sessions=2)
    (root / 'notes.txt').write_text('hello')
    for description in root.rglob('_ibl_experiment.description'):  # one per session folder
        (description.parent / 'not_alf.txt').write_text('not an ALF name')
    with pytest.raises(ALFInvalid) as info:
        release.make_release(root)
    message = str(info.value)
    assert '3 file(s) or folder(s)' in message and 'notes.txt' in message
    assert message.count('not_alf.txt') == 2 and '--skip-invalid' in message
    assert not (root / 'cache_info.json').exists() and not (root / 'datasets.pqt').exists()
    with pytest.warns(ALFWarning, match='3 file'):
        info = release.make_release(root, skip_invalid=True)
    rel_paths = load_tables(root)['datasets']['rel_path'].astype(str)
    assert not rel_paths.str.contains('not_alf|notes').any()
    assert info.counts['datasets'] == len(rel_paths) > 0


def test_no_session(tmp_path):
    with pytest.raises(release.ReleaseError, match='No ALF session'):
        release.make_release(tmp_path)
    with pytest.raises(NotADirectoryError):
        release.make_release(tmp_path / 'missing')


def test_republishing_rehashes_only_changed_files(folder, monkeypatch):
    hashed = []
    real = lib_files.hash_files

    def spy(paths, *args, **kwargs):  # counts the files read; hashes them for real
        hashed.extend(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(release._files, 'hash_files', spy)
    _publish(folder)
    n_files = len(hashed)
    assert n_files == release.read_release_info(folder).counts['datasets']
    before = {p: (p.stat().st_mtime_ns, p.read_bytes())
              for p in (folder / 'cache_info.json', folder / 'datasets.pqt')}

    hashed.clear()  # nothing changed: nothing hashed nor rewritten
    _publish(folder)
    assert hashed == []
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before

    # one file changed (same size, later mtime), one session added
    session = next(folder.rglob('_ibl_trials.choice.npy')).parent.parent
    changed = session / 'alf' / '_ibl_wheel.position.npy'
    data = bytearray(changed.read_bytes())
    data[-1] ^= 0xFF
    changed.write_bytes(bytes(data))
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    new = make_session(folder, 'KS001', '2024-03-01', 1, lab='cortexlab', probes=())
    hashed.clear()
    info = _publish(folder)
    new_files = [p for p in new.rglob('*') if p.is_file() and p.suffix != '.description']
    assert sorted(map(str, hashed)) == sorted(map(str, [changed, *new_files]))
    assert info.counts['sessions'] == 5
    datasets = load_tables(folder)['datasets']
    assert _md5(changed) in set(datasets['hash'])
    assert (folder / 'cache_info.json').read_bytes() != before[folder / 'cache_info.json'][1]


def test_changed_file_rewrites_only_the_datasets_table(folder):
    """Same number of rows, other content (a file's md5): the datasets table is rewritten,
    the sessions table kept as it is (its date of creation too)."""
    _publish(folder)
    sessions = (folder / 'sessions.pqt').stat().st_mtime_ns, (folder / 'sessions.pqt').read_bytes()
    datasets = (folder / 'datasets.pqt').read_bytes()
    changed = next(folder.rglob('_ibl_wheel.position.npy'))
    data = bytearray(changed.read_bytes())
    data[-1] ^= 0xFF
    changed.write_bytes(bytes(data))
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    info = _publish(folder)
    assert ((folder / 'sessions.pqt').stat().st_mtime_ns,
            (folder / 'sessions.pqt').read_bytes()) == sessions
    assert (folder / 'datasets.pqt').read_bytes() != datasets
    assert _md5(changed) in set(load_tables(folder)['datasets']['hash'])
    assert info.tables['datasets'].md5 == _md5(folder / 'datasets.pqt')
    assert info.tables['sessions'].md5 == _md5(folder / 'sessions.pqt')


def test_tag_change_rewrites_only_the_description(folder):
    _publish(folder, tag='v1')
    datasets = (folder / 'datasets.pqt').read_bytes()
    info = _publish(folder, tag='v2')
    assert info.tag == 'v2' and (folder / 'datasets.pqt').read_bytes() == datasets


def test_archive(folder):
    info = _publish(folder, archive=True, tag='v1')
    archive = folder / 'cache.zip'
    assert info.raw['archive'] == {'file': 'cache.zip', 'md5': _md5(archive),
                                   'size': archive.stat().st_size}
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ['cache_info.json', 'datasets.pqt', 'sessions.pqt']
        assert zf.read('datasets.pqt') == (folder / 'datasets.pqt').read_bytes()
        inner = json.loads(zf.read('cache_info.json'))
    assert inner == {k: v for k, v in info.raw.items() if k != 'archive'}
    mtime = archive.stat().st_mtime_ns
    _publish(folder, archive=True, tag='v1')  # unchanged: kept (and not an invalid name)
    assert archive.stat().st_mtime_ns == mtime
    info = _publish(folder, tag='v1')  # no archive asked: the outdated one is removed
    assert not archive.exists() and 'archive' not in info.raw


def test_uuid_layout_export(folder, tmp_path):
    site = tmp_path / 'site'
    info = _publish(folder, out_dir=site / 'caches' / 'v1', layout='uuid',
                    files_url='../../data')
    assert info.layout == 'uuid' and info.files_url == '../../data'
    assert not (folder / 'cache_info.json').exists()
    n = release.export_files(folder, site / 'data', tables_dir=site / 'caches' / 'v1')
    assert n == info.counts['datasets']
    tables = load_tables(site / 'caches' / 'v1')
    (eid, dataset_id), row = next(iter(tables['datasets'].iterrows()))
    session = tables['sessions'].loc[eid]
    session_path = f'{session["lab"]}/Subjects/{session["subject"]}/{session["date"]}/' \
                   f'{session["number"]:03d}'
    stem, ext = row['rel_path'].rsplit('.', 1)
    exported = site / 'data' / session_path / f'{stem}.{dataset_id}.{ext}'
    assert _md5(exported) == row['hash']
    assert release.export_files(folder, site / 'data', tables_dir=site / 'caches' / 'v1') == 0
    # a copy (not a link) of a file changed since, with the same size, is written again
    source = folder / session_path / row['rel_path']
    assert release.export_files(folder, site / 'copy', tables_dir=site / 'caches' / 'v1',
                                link=False) == n
    copied = site / 'copy' / session_path / f'{stem}.{dataset_id}.{ext}'
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF
    source.write_bytes(bytes(data))
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert release.export_files(folder, site / 'copy', tables_dir=site / 'caches' / 'v1',
                                link=False) == 1
    assert copied.read_bytes() == bytes(data)


def test_describe_existing_tables(folder, tmp_path):
    """Tables made elsewhere (here by `one index --hash`) get their description."""
    make_parquet_db(folder, hash_files=True)
    with pytest.raises(FileNotFoundError, match='sessions.pqt'):
        release.describe_release(tmp_path)
    info = release.describe_release(folder, tag='t', archive=True)
    tables = load_tables(folder)
    assert info.counts == {'sessions': 4, 'datasets': len(tables['datasets']),
                           'bytes': int(tables['datasets']['file_size'].sum())}
    assert info.origin == 'data' and info.tables['sessions'].md5 == \
        _md5(folder / 'sessions.pqt')
    before = (folder / 'cache_info.json').read_bytes()
    assert release.describe_release(folder, tag='t', archive=True).raw == info.raw
    assert (folder / 'cache_info.json').read_bytes() == before


def test_unknown_layout(folder):
    with pytest.raises(ValueError, match='layout'):
        release.make_release(folder, layout='flat')
    with pytest.raises(ValueError, match='files.url'):
        release.make_release(folder, files_url='ftp://host/data')


# ---- the description ---------------------------------------------------------------------

def _info(**changes):
    raw = {'format': FORMAT, 'format_version': 1, 'origin': 'lab', 'date_created':
           '2025-01-01 10:00', 'tables': {'sessions': {'file': 'sessions.pqt'},
                                          'datasets': {'file': 'datasets.pqt'}}}
    raw.update(changes)
    return raw


def test_parse_info_reads_alyx_cache_info():
    """The cache_info.json of Alyx's cache.zip (recorded) reads as a release in 'path' layout."""
    from pathlib import Path
    text = (Path(__file__).parent / 'fixtures' / 'alyx' / 'cache_info.json').read_text()
    info = parse_info(text)
    assert info.layout == 'path' and info.files_url == '.' and info.origin == 'alyx'
    assert info.tables['datasets'].file == 'datasets.pqt' and info.tables['datasets'].md5 is None
    assert info.tables['datasets'].nrecs == 137


@pytest.mark.parametrize('raw, problem', [
    (b'<html>not json</html>', 'not JSON'),
    (b'[1, 2]', 'not a JSON object'),
    (_info(format='other'), 'format "other"'),
    (_info(format_version=99), 'please upgrade'),
    (_info(tables={'sessions': {}}), 'no datasets table'),
    (_info(tables={'sessions': {}, 'datasets': {'file': '../../etc/passwd'}}), 'climbs out'),
    (_info(tables={'sessions': {}, 'datasets': {'file': '/etc/passwd'}}), 'absolute'),
    (_info(tables={'sessions': {}, 'datasets': {}, '../x': {}}), 'invalid table name'),
    (_info(tables={'sessions': {}, 'datasets': {'md5': 'abc'}}), 'not an md5'),
    (_info(tables={'sessions': {}, 'datasets': {'size': -1}}), 'non-negative'),
    (_info(files={'layout': 'flat'}), 'unknown files layout'),
    (_info(files={'url': 'file:///etc'}), 'files.url'),
    (_info(files={'url': '/etc'}), 'files.url'),
])
def test_parse_info_refuses(raw, problem):
    if isinstance(raw, dict):
        raw = json.dumps(raw)
    with pytest.raises(NotARelease, match=problem):
        parse_info(raw, 'http://host/cache_info.json')


@pytest.mark.parametrize('path, refused_for_datasets', [
    ('', True), ('/abs/x.npy', True), ('a/../../x.npy', True), ('C:/x.npy', True),
    ('a/C:x/b.npy', True), ('a/\x00.npy', True), ('..', True),
    # not plain: refused as file names of cache_info.json; as a dataset's rel_path, read as a
    # local One reads it
    ('a/./b.npy', False), ('a//b.npy', False), ('a\\b.npy', False), ('a/../b.npy', False),
])
def test_release_path_refuses(path, refused_for_datasets):
    with pytest.raises(UnsafePath):
        release_path(path)
    session = 'lab/Subjects/s/2024-01-01/001'
    if refused_for_datasets:
        with pytest.raises(UnsafePath, match='Refusing dataset x'):
            remote_file_path(session, path, 'x', 'path')
    else:
        assert remote_file_path(session, path, 'x', 'path') == f'{session}/' + \
            ('b.npy' if path == 'a/../b.npy' else 'a/b.npy')


def test_remote_file_path_layouts():
    dataset_id = '0a1b2c3d-0000-4000-8000-000000000001'
    session = 'lab/Subjects/KS001/2024-01-15/001'
    assert remote_file_path(session, 'alf/#2024-06-01#/_ibl_trials.choice.npy', dataset_id,
                            'path') == f'{session}/alf/#2024-06-01#/_ibl_trials.choice.npy'
    assert remote_file_path(session, 'alf/_ibl_trials.choice.npy', dataset_id, 'uuid') == \
        f'{session}/alf/_ibl_trials.choice.{dataset_id}.npy'
    with pytest.raises(UnsafePath):
        remote_file_path('lab/../../x/2024-01-15/001', 'alf/a.b.npy', dataset_id, 'path')


def test_urls():
    assert normalise_url('HTTPS://h.org/rel/') == 'https://h.org/rel'
    assert normalise_url('s3://bucket/caches/v1/cache_info.json') == 's3://bucket/caches/v1'
    for bad in ('ftp://h/x', '/local/folder', 's3://', 'http://h/x?sig=1'):
        with pytest.raises(ValueError):
            normalise_url(bad)
    assert resolve_url('s3://b/caches/v1', '../../data') == 's3://b/data'
    assert resolve_url('http://h/r', '.') == 'http://h/r'
    assert resolve_url('http://h/r', 'https://cdn/x/') == 'https://cdn/x'
    with pytest.raises(NotARelease, match='above'):
        resolve_url('http://h/r', '../../x')


def test_tables_sorted_and_typed(folder):
    _publish(folder)
    tables = load_tables(folder)
    assert tables['datasets'].index.is_monotonic_increasing
    assert str(tables['datasets']['file_size'].dtype) == 'UInt64'
    assert isinstance(tables['sessions']['date'].iloc[0], type(pd.Timestamp('2024').date()))


def test_docstring_examples():
    import doctest

    import one._release.info
    import one._release.remote
    import one._release.sync
    for module in (one._release.info, one._release.remote, one._release.sync):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
