"""Tests of `one.alf.io`: ALF objects, file loading, listing, filtering and writing."""
import json
import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from one.alf import io as alfio
from one.alf.exceptions import ALFInvalid, ALFObjectNotFound
from one.alf.path import ALFPath
from one.synthetic import REVISION, TRIALS_ATTRIBUTES, make_dataset_folder, make_session

LOGGER = 'one.alf.io'


def touch(path, content: bytes = b'x'):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(array))
    return path


@pytest.fixture
def session(tmp_path):
    return make_session(tmp_path, 'KS005', '2019-04-02', 1, lab='cortexlab', revision=True)


# ---------------------------------------------------------------------------------------------
# Module surface
# ---------------------------------------------------------------------------------------------

def test_public_names():
    names = ('AlfBunch', 'dataframe', 'read_ts', 'ts2vec', 'check_dimensions',
             'load_file_content', 'iter_sessions', 'iter_datasets', 'exists', 'load_object',
             'save_object_npy', 'save_metadata', 'next_num_folder', 'remove_empty_folders',
             'filter_by', 'find_variants', '_ls', '_find_metadata', '_ensure_flat')
    for name in names:
        assert callable(getattr(alfio, name)), name
    assert alfio._logger.name == LOGGER
    assert issubclass(alfio.CorruptFileError, ValueError)


# ---------------------------------------------------------------------------------------------
# AlfBunch
# ---------------------------------------------------------------------------------------------

def test_alfbunch_attributes():
    b = alfio.AlfBunch(a=np.arange(3))
    b.b = np.ones(3)
    assert b['b'] is b.b
    assert b.check_dimensions == 0
    b.c = np.ones(4)
    assert b.check_dimensions == 1
    with pytest.raises(AttributeError):
        _ = b.missing


def test_alfbunch_append():
    a = alfio.AlfBunch(x=np.arange(3), y=[1, 2, 3])
    b = alfio.AlfBunch(x=np.arange(3, 5), y=[4, 5])
    c = a.append(b)
    assert c is not a
    np.testing.assert_array_equal(c.x, np.arange(5))
    assert c.y == [1, 2, 3, 4, 5]
    # The original is untouched (deep copy)
    np.testing.assert_array_equal(a.x, np.arange(3))
    assert a.y == [1, 2, 3]
    # In place: modifies and returns self
    d = a.append(b, inplace=True)
    assert d is a
    np.testing.assert_array_equal(a.x, np.arange(5))
    assert a.y == [1, 2, 3, 4, 5]


def test_alfbunch_append_empty():
    a = alfio.AlfBunch(x=np.arange(3))
    out = a.append({})
    assert out is not a and out.keys() == a.keys()
    np.testing.assert_array_equal(out.x, a.x)
    assert a.append({}, inplace=True) is a
    empty = alfio.AlfBunch()
    out = empty.append(a)
    assert isinstance(out, alfio.AlfBunch)
    np.testing.assert_array_equal(out.x, a.x)
    assert out.x is not a.x  # not shared with the appended bunch
    assert empty.append(a, inplace=True) is empty and 'x' in empty


def test_alfbunch_append_errors(caplog):
    a = alfio.AlfBunch(x=np.arange(3), s='text')
    with pytest.raises(NotImplementedError):
        a.append({'x': np.arange(2)})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = a.append({'x': np.arange(2), 's': 'more'})
    assert out.s == 'text'
    assert "<class 'str'>" in caplog.text and '"s"' in caplog.text
    # Appending arrays of mismatched rows gives inconsistent dimensions: logged
    caplog.clear()
    a = alfio.AlfBunch(x=np.arange(3), y=np.arange(3))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = a.append({'x': np.arange(2), 'y': np.ones(1)})
    assert out.check_dimensions == 1
    assert 'inconsistent' in caplog.text.lower()


def test_alfbunch_to_df():
    b = alfio.AlfBunch(a=np.arange(4), iv=np.arange(8).reshape(4, 2), col=np.ones((4, 1)))
    df = b.to_df()
    assert df.columns.tolist() == ['a', 'iv_0', 'iv_1', 'col']
    np.testing.assert_array_equal(df['iv_1'], [1, 3, 5, 7])
    assert df.shape == (4, 4)


def test_dataframe_edge_cases(caplog):
    wide = alfio.AlfBunch(w=np.zeros((3, 12)), cube=np.zeros((3, 2, 2)), meta={'unit': 's'},
                          table=pd.DataFrame({'p': [1, 2, 3]}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        df = alfio.dataframe(wide)
    assert [c for c in df.columns if c.startswith('w_')] == [f'w_{i}' for i in range(10)]
    assert 'cube' not in ''.join(df.columns)
    assert 'table_p' in df.columns
    assert 'meta' not in df.columns
    assert '12 columns' in caplog.text and '3 dimensions' in caplog.text
    with pytest.raises(ValueError):
        alfio.dataframe({'a': np.zeros(3), 'b': np.zeros(4)})
    pd.testing.assert_frame_equal(alfio.dataframe({'a': np.arange(2.)}),
                                  pd.DataFrame({'a': np.arange(2.)}))


def test_alfbunch_from_df():
    df = pd.DataFrame({'intervals_0': [0., 2.], 'intervals_1': [1., 3.], 'n': [1, 2],
                       'lone_1': [5., 6.], 'label': ['a', 'b']})
    b = alfio.AlfBunch.from_df(df)
    assert isinstance(b, alfio.AlfBunch)
    assert set(b) == {'intervals', 'n', 'lone_1', 'label'}
    np.testing.assert_array_equal(b.intervals, [[0., 1.], [2., 3.]])
    assert b.n.dtype.kind == 'i'  # each column keeps its dtype
    assert list(b.label) == ['a', 'b']
    # Round trip
    c = alfio.AlfBunch(intervals=np.arange(6.).reshape(3, 2), x=np.arange(3.))
    back = alfio.AlfBunch.from_df(c.to_df())
    assert set(back) == {'intervals', 'x'}
    np.testing.assert_array_equal(back.intervals, c.intervals)


# ---------------------------------------------------------------------------------------------
# Dimensions and time series
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('dico, expected', [
    ({}, 0),
    ({'a': np.zeros(5), 'b': np.zeros((5, 3))}, 0),
    ({'a': np.zeros(5), 'b': np.zeros(1)}, 0),  # size 1 broadcasts
    ({'a': np.zeros(5), 'b': np.zeros(4)}, 1),
    ({'a': np.zeros(5), 'b': [1, 2]}, 0),  # lists are ignored
    ({'a': np.zeros(5), 'meta': {'x': 1}, 's': 'text'}, 0),
    ({'a': np.zeros(5), 'df': pd.DataFrame({'x': range(4)})}, 1),
    ({'a': np.zeros(5), 'df': pd.DataFrame({'x': range(5)})}, 0),
    ({'a': np.zeros(5), 'timestamps': np.zeros((2, 2))}, 0),  # sync points
    ({'a': np.zeros(5), 'timestamps': np.zeros((3, 2))}, 1),
    ({'a': np.zeros(5), 'timestamps': np.zeros((5, 1))}, 0),
    ({'a': np.zeros(5), 'timestamps': np.zeros(4)}, 1),
    ({'a': np.zeros(5), 'timestamps_bpod': np.zeros((2, 2))}, 0),
])
def test_check_dimensions(dico, expected):
    assert alfio.check_dimensions(dico) == expected


def test_ts2vec():
    n = 10
    np.testing.assert_array_equal(alfio.ts2vec(np.array([[0, 10], [n - 1, 100]]), n),
                                  np.linspace(10, 100, n))
    np.testing.assert_array_equal(alfio.ts2vec(np.ones((n, 1)), n), np.ones(n))
    vec = np.arange(n) * 0.5
    assert alfio.ts2vec(vec, n) is vec
    with pytest.raises(ValueError):
        alfio.ts2vec(np.empty((n, 2, 3)), n)
    with pytest.raises(ValueError):
        alfio.ts2vec(np.empty((n, 3)), n)
    # Several sync points, and samples beyond them extrapolated linearly
    ts = np.array([[2, 1.], [4, 2.], [6, 4.]])
    np.testing.assert_allclose(alfio.ts2vec(ts, 9),
                               [0., .5, 1., 1.5, 2., 3., 4., 5., 6.])


def test_read_ts(tmp_path):
    folder = tmp_path / 'alf'
    save(folder / 'spikes.times.npy', np.arange(5.))
    save(folder / 'spikes.clusters.npy', np.arange(5).reshape(5, 1))
    times, values = alfio.read_ts(folder / 'spikes.clusters.npy')
    np.testing.assert_array_equal(times, np.arange(5.))
    np.testing.assert_array_equal(values, np.arange(5))
    assert values.shape == (5,)
    # Sync points are interpolated
    save(folder / '_ibl_wheel.position.npy', np.zeros(11))
    save(folder / '_ibl_wheel.timestamps.npy', np.array([[0, 100.], [10, 101.]]))
    times, _ = alfio.read_ts(str(folder / '_ibl_wheel.position.npy'))
    np.testing.assert_allclose(times, np.linspace(100, 101, 11))
    # No times file
    save(folder / 'lonely.values.npy', np.zeros(3))
    with pytest.raises(FileNotFoundError, match='lonely.values.npy'):
        alfio.read_ts(folder / 'lonely.values.npy')
    # Two candidates: the one of the same timescale is used
    save(folder / 'spikes.times_ephysClock.npy', np.arange(5.) + 10)
    times, _ = alfio.read_ts(folder / 'spikes.clusters.npy')
    np.testing.assert_array_equal(times, np.arange(5.))
    save(folder / 'spikes.amps_ephysClock.npy', np.zeros(5))
    times, _ = alfio.read_ts(folder / 'spikes.amps_ephysClock.npy')
    np.testing.assert_array_equal(times, np.arange(5.) + 10)
    # ... then of the same namespace
    save(folder / 'wheel.timestamps.npy', np.arange(11.))
    times, _ = alfio.read_ts(folder / '_ibl_wheel.position.npy')
    np.testing.assert_allclose(times, np.linspace(100, 101, 11))
    save(folder / 'spikes.amps_other.npy', np.zeros(5))
    with pytest.raises(FileNotFoundError, match='No time-scale'):
        alfio.read_ts(folder / 'spikes.amps_other.npy')


def test_ensure_flat():
    assert alfio._ensure_flat(np.zeros((3, 1))).shape == (3,)
    assert alfio._ensure_flat(np.zeros((3, 2))).shape == (3, 2)
    assert alfio._ensure_flat(np.zeros((1, 3))).shape == (1, 3)
    assert alfio._ensure_flat([1]) == [1]


# ---------------------------------------------------------------------------------------------
# load_file_content
# ---------------------------------------------------------------------------------------------

def test_load_file_content_empty(tmp_path):
    assert alfio.load_file_content(None) is None
    assert alfio.load_file_content('') is None
    assert alfio.load_file_content(touch(tmp_path / 'obj.attr.npy', b'')) is None
    assert alfio.load_file_content(touch(tmp_path / 'obj.attr.json', b'')) is None
    with pytest.raises(FileNotFoundError):
        alfio.load_file_content(tmp_path / 'missing.attr.npy')


def test_load_npy(tmp_path):
    arr = np.arange(6.).reshape(6, 1)
    path = save(tmp_path / 'obj.attr.npy', arr)
    out = alfio.load_file_content(path)
    assert out.shape == (6,)
    np.testing.assert_array_equal(out, arr.ravel())
    # Object arrays need pickle
    obj = np.array([{'a': 1}, None], dtype=object)
    np.save(tmp_path / 'obj.objects.npy', obj, allow_pickle=True)
    assert alfio.load_file_content(tmp_path / 'obj.objects.npy')[0] == {'a': 1}


def test_load_npy_mmap(tmp_path):
    path = save(tmp_path / 'obj.big.npy', np.arange(100.))
    out = alfio.load_file_content(path, mmap=True)
    assert isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, np.arange(100.))
    out[0] = -1  # copy-on-write: the file is not changed
    np.testing.assert_array_equal(np.load(path), np.arange(100.))
    # (n, 1) still flattened
    col = save(tmp_path / 'obj.col.npy', np.arange(4.).reshape(4, 1))
    assert alfio.load_file_content(col, mmap=True).shape == (4,)
    # Object arrays cannot be mapped: read normally
    np.save(tmp_path / 'obj.objects.npy', np.array(['a', None], dtype=object))
    out = alfio.load_file_content(tmp_path / 'obj.objects.npy', mmap=True)
    assert not isinstance(out, np.memmap) and out[0] == 'a'


def test_load_npz(tmp_path):
    np.savez(tmp_path / 'obj.single.npz', np.arange(3))
    np.testing.assert_array_equal(alfio.load_file_content(tmp_path / 'obj.single.npz'),
                                  np.arange(3))
    np.savez(tmp_path / 'obj.multi.npz', a=np.arange(2), b=np.ones(2))
    out = alfio.load_file_content(tmp_path / 'obj.multi.npz')
    with out:
        assert sorted(out.files) == ['a', 'b']
        np.testing.assert_array_equal(out['b'], np.ones(2))


def test_load_pqt(tmp_path):
    table = pa.table({'a': [1, 2], 'b': ['x', 'y']}).replace_schema_metadata({'k': 'v'})
    pq.write_table(table, tmp_path / 'obj.table.pqt')
    out = alfio.load_file_content(tmp_path / 'obj.table.pqt')
    assert isinstance(out, pd.DataFrame)
    assert out['a'].tolist() == [1, 2] and out['b'].tolist() == ['x', 'y']
    assert not out.attrs  # metadata discarded
    # A pandas index is restored
    df = pd.DataFrame({'v': [1., 2.]}, index=pd.Index(['r1', 'r2'], name='id'))
    df.to_parquet(tmp_path / 'obj.indexed.pqt')
    out = alfio.load_file_content(tmp_path / 'obj.indexed.pqt')
    assert out.index.name == 'id' and out.index.tolist() == ['r1', 'r2']
    # .parquet is not special-cased
    df.to_parquet(tmp_path / 'obj.other.parquet')
    out = alfio.load_file_content(tmp_path / 'obj.other.parquet')
    assert isinstance(out, ALFPath) and out == tmp_path / 'obj.other.parquet'


@pytest.mark.parametrize('ext, sep', [('csv', ','), ('ssv', ' '), ('tsv', '\t'), ('htsv', '\t')])
def test_load_delimited(tmp_path, ext, sep):
    path = touch(tmp_path / f'obj.table.{ext}', f'a{sep}b\n1{sep}x\n2{sep}y\n'.encode())
    out = alfio.load_file_content(path)
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == ['a', 'b'] and out['a'].tolist() == [1, 2]
    single = touch(tmp_path / f'obj.single.{ext}', b'uuids\nu1\nu2\n')
    out = alfio.load_file_content(single)
    assert isinstance(out, pd.Series) and out.tolist() == ['u1', 'u2']


def test_load_json_family(tmp_path, caplog):
    path = touch(tmp_path / 'obj.settings.json', json.dumps({'a': [1, 2]}).encode())
    assert alfio.load_file_content(path) == {'a': [1, 2]}
    bad = touch(tmp_path / 'obj.bad.json', b'{"a": ')
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert alfio.load_file_content(bad) is None
    assert str(bad) in caplog.text
    lines = touch(tmp_path / 'obj.events.jsonable', b'{"a": 1}\n[2, 3]\n\n"s"\n')
    assert alfio.load_file_content(lines) == [{'a': 1}, [2, 3], 's']
    for ext in ('yaml', 'yml'):
        path = touch(tmp_path / f'obj.info.{ext}', b'a: 1\nb: [x, y]\n')
        assert alfio.load_file_content(path) == {'a': 1, 'b': ['x', 'y']}


def test_load_other_extensions(tmp_path):
    for name in ('obj.raw.bin', 'obj.raw.mp4', 'obj.attr.NPY', 'README.txt', 'noext'):
        path = touch(tmp_path / name, b'\x00\x01')
        out = alfio.load_file_content(str(path))
        assert isinstance(out, ALFPath) and out == path


def test_load_sparse_npz(tmp_path):
    path = touch(tmp_path / 'obj.matrix.sparse_npz', b'PK\x03\x04')
    try:
        import sparse  # noqa: F401
    except ImportError:
        with pytest.warns(UserWarning, match='sparse'):
            out = alfio.load_file_content(path)
        assert isinstance(out, ALFPath) and out == path
    else:  # pragma: no cover - sparse is not a dependency
        with pytest.raises(ValueError, match='obj.matrix.sparse_npz'):
            alfio.load_file_content(path)


def _corrupt_files(folder):
    """Real corrupt files of each loadable type."""
    np.save(folder / 'ok.values.npy', np.arange(1000.))
    full = (folder / 'ok.values.npy').read_bytes()
    files = {
        'truncated data': touch(folder / 'obj.data.npy', full[:500]),
        'truncated header': touch(folder / 'obj.header.npy', full[:40]),
        'not npy': touch(folder / 'obj.garbage.npy', b'this is not a numpy file'),
        'npz': touch(folder / 'obj.zip.npz', b'PK\x03\x04 truncated'),
        'csv': touch(folder / 'obj.table.csv', b'a,b\n1,2,3,4\n"unterminated'),
        'csv encoding': touch(folder / 'obj.latin.csv', b'a,b\n\xff\xfe,1\n'),
        'yaml': touch(folder / 'obj.info.yaml', b'a: [1, 2\nb: }'),
        'jsonable': touch(folder / 'obj.lines.jsonable', b'{"a": 1}\n{"a": \n'),
    }
    pq.write_table(pa.table({'a': list(range(100))}), folder / 'ok.table.pqt')
    data = (folder / 'ok.table.pqt').read_bytes()
    files['pqt'] = touch(folder / 'obj.frame.pqt', data[:len(data) // 2])
    return files


def test_corrupt_files_name_the_file(tmp_path):
    for what, path in _corrupt_files(tmp_path).items():
        with pytest.raises(alfio.CorruptFileError) as info:
            alfio.load_file_content(path)
        assert isinstance(info.value, ValueError), what
        assert str(path) in str(info.value), what
        assert info.value.path == str(path)
        assert info.value.__cause__ is not None, what
    with pytest.raises(alfio.CorruptFileError, match='line 2'):
        alfio.load_file_content(tmp_path / 'obj.lines.jsonable')


def test_corrupt_npy_mmap_names_the_file(tmp_path):
    np.save(tmp_path / 'ok.values.npy', np.arange(1000.))
    path = touch(tmp_path / 'obj.data.npy', (tmp_path / 'ok.values.npy').read_bytes()[:500])
    with pytest.raises(ValueError, match='obj.data.npy'):
        alfio.load_file_content(path, mmap=True)


def test_corrupt_file_in_object(tmp_path):
    save(tmp_path / 'obj.good.npy', np.arange(3))
    touch(tmp_path / 'obj.bad.npy', b'\x93NUMPY\x01\x00')
    with pytest.raises(alfio.CorruptFileError, match='obj.bad.npy'):
        alfio.load_object(tmp_path, 'obj')


@pytest.mark.skipif(os.name == 'nt' or os.geteuid() == 0,
                    reason='permissions are not enforced for root or on Windows')
def test_unreadable_file_raises_os_error(tmp_path):
    path = save(tmp_path / 'obj.attr.npy', np.arange(3))
    path.chmod(0)
    try:
        with pytest.raises(PermissionError) as info:
            alfio.load_file_content(path)
        assert str(path) in str(info.value)
    finally:
        path.chmod(0o644)


# ---------------------------------------------------------------------------------------------
# Listing and filtering
# ---------------------------------------------------------------------------------------------

FILTER_FILES = (
    '_ibl_trials.intervals.npy', '_ibl_trials.intervals_bpod.csv', 'wheel.position.npy',
    'wheel.timestamps.npy', 'wheel.timestamps_bpod.npy', 'wheelMoves.intervals.npy',
    '_ibl_wheel.timestamps_bpod.raw.v12.npy', 'obj.attr.foo.bar.ssv',
    # Not ALF datasets (Q1): never listed
    'a-b.c.d', 'spike_train.npy', 'README', 'foo bar.baz.qux',
)


@pytest.fixture
def filter_folder(tmp_path):
    for name in FILTER_FILES:
        touch(tmp_path / name)
    (tmp_path / 'dir.looks.alf').mkdir()  # a folder is not a dataset
    (tmp_path / 'sub').mkdir()
    touch(tmp_path / 'sub' / 'deep.attr.npy')  # not recursive
    return tmp_path


def names(result):
    files, parts = result
    assert len(files) == len(parts)
    assert all(isinstance(f, ALFPath) and not f.is_absolute() for f in files)
    return [f.name for f in files]


def test_filter_by_all(filter_folder):
    files, parts = alfio.filter_by(filter_folder)
    expected = sorted(n for n in FILTER_FILES[:8])
    assert [f.as_posix() for f in files] == expected
    assert parts[expected.index('wheel.timestamps_bpod.npy')] == \
        (None, 'wheel', 'timestamps', 'bpod', None, 'npy')
    assert parts[expected.index('_ibl_wheel.timestamps_bpod.raw.v12.npy')] == \
        ('ibl', 'wheel', 'timestamps', 'bpod', 'raw.v12', 'npy')


def test_filter_by_parts(filter_folder):
    f = filter_folder
    assert names(alfio.filter_by(f, object='wheel')) == [
        '_ibl_wheel.timestamps_bpod.raw.v12.npy', 'wheel.position.npy', 'wheel.timestamps.npy',
        'wheel.timestamps_bpod.npy']
    assert names(alfio.filter_by(f, object='wheel*', attribute='int*')) == \
        ['wheelMoves.intervals.npy']
    assert names(alfio.filter_by(f, namespace='ibl', extension='npy')) == [
        '_ibl_trials.intervals.npy', '_ibl_wheel.timestamps_bpod.raw.v12.npy']
    assert names(alfio.filter_by(f, extension=['csv', 'ssv'])) == [
        '_ibl_trials.intervals_bpod.csv', 'obj.attr.foo.bar.ssv']
    assert names(alfio.filter_by(f, object='wheel', timescale='bpod', extra=None)) == \
        ['wheel.timestamps_bpod.npy']
    assert names(alfio.filter_by(f, object='nope')) == []


def test_filter_by_none(filter_folder):
    f = filter_folder
    no_timescale = names(alfio.filter_by(f, timescale=None))
    assert no_timescale == ['_ibl_trials.intervals.npy', 'obj.attr.foo.bar.ssv',
                            'wheel.position.npy', 'wheel.timestamps.npy',
                            'wheelMoves.intervals.npy']
    assert alfio.filter_by(f, object=None) == ([], [])
    assert names(alfio.filter_by(f, namespace=None, object='wheel')) == [
        'wheel.position.npy', 'wheel.timestamps.npy', 'wheel.timestamps_bpod.npy']


def test_filter_by_extra(filter_folder):
    f = filter_folder
    raw = ['_ibl_wheel.timestamps_bpod.raw.v12.npy']
    assert names(alfio.filter_by(f, extra='v12')) == raw
    assert names(alfio.filter_by(f, extra=['v12', 'raw'])) == raw
    assert names(alfio.filter_by(f, extra='raw.v12')) == raw
    assert names(alfio.filter_by(f, extra=['foo', 'v12'])) == []
    assert names(alfio.filter_by(f, extra=['bar', 'foo'])) == ['obj.attr.foo.bar.ssv']
    assert names(alfio.filter_by(f, extra=[''])) == raw + ['obj.attr.foo.bar.ssv']
    assert names(alfio.filter_by(f, extra='v1')) == []  # whole parts only


def test_filter_by_regex(filter_folder):
    f = filter_folder
    assert names(alfio.filter_by(f, wildcards=False, object='wheel', namespace=None)) == [
        'wheel.position.npy', 'wheel.timestamps.npy', 'wheel.timestamps_bpod.npy',
        'wheelMoves.intervals.npy']  # re.match is a prefix match
    assert names(alfio.filter_by(f, wildcards=False, object='wheel$', namespace=None)) == [
        'wheel.position.npy', 'wheel.timestamps.npy', 'wheel.timestamps_bpod.npy']
    assert names(alfio.filter_by(f, wildcards=False, attribute=['pos', 'interv'])) == [
        '_ibl_trials.intervals.npy', '_ibl_trials.intervals_bpod.csv', 'wheel.position.npy',
        'wheelMoves.intervals.npy']
    # With wildcards the same string is a shell pattern, matching whole parts only
    assert names(alfio.filter_by(f, object='whee')) == []


def test_filter_by_bad_keyword(filter_folder):
    with pytest.raises(TypeError, match='"collection"'):
        alfio.filter_by(filter_folder, collection='alf')
    # Unknown keywords are refused even where nothing is listed
    with pytest.raises(TypeError):
        alfio.filter_by(filter_folder / 'missing', collection='alf')


def test_filter_by_missing_folder(filter_folder):
    assert alfio.filter_by(filter_folder / 'missing') == ([], [])
    assert alfio.filter_by(filter_folder / 'wheel.position.npy', object='wheel') == ([], [])


def test_ls(filter_folder):
    files, parts = alfio._ls(filter_folder, 'wheelMoves')
    assert files == [filter_folder / 'wheelMoves.intervals.npy']
    assert parts == [(None, 'wheelMoves', 'intervals', None, None, 'npy')]
    # From one file: all the files of its object
    files, _ = alfio._ls(filter_folder / 'wheel.position.npy')
    assert [f.name for f in files] == ['_ibl_wheel.timestamps_bpod.raw.v12.npy',
                                       'wheel.position.npy', 'wheel.timestamps.npy',
                                       'wheel.timestamps_bpod.npy']
    files, _ = alfio._ls(filter_folder / 'wheel.position.npy', namespace=None, timescale=None)
    assert [f.name for f in files] == ['wheel.position.npy', 'wheel.timestamps.npy']
    with pytest.raises(ALFObjectNotFound, match='No object "spikes"'):
        alfio._ls(filter_folder, 'spikes')
    with pytest.raises(ALFObjectNotFound):
        alfio._ls(filter_folder / 'missing', 'wheel')
    with pytest.raises(ALFObjectNotFound, match='No ALF files'):
        alfio._ls(filter_folder / 'dir.looks.alf')


def test_exists(session):
    alf = session / 'alf'
    assert alfio.exists(alf, 'trials')
    assert alfio.exists(alf, 'trials', attributes='choice')
    assert alfio.exists(alf, 'trials', attributes=['choice', 'intervals'])
    assert not alfio.exists(alf, 'trials', attributes=['choice', 'nope'])
    assert not alfio.exists(alf, 'spikes')
    assert alfio.exists(alf / 'probe00', 'spikes', ['times', 'clusters'])
    assert not alfio.exists(session / 'missing', 'trials')
    assert alfio.exists(alf, 'trials', namespace='ibl')
    assert not alfio.exists(alf, 'trials', namespace='other')
    assert alfio.exists(alf, 'trials', attributes='intervals', timescale='bpod')


def test_iter_sessions(tmp_path):
    sessions = make_dataset_folder(tmp_path, n_subjects=2, n_sessions=3, raw=False)
    (tmp_path / 'notes' / '2020-01-01').mkdir(parents=True)  # a date but no number
    (tmp_path / 'subj' / '2020-01-01' / 'x001').mkdir(parents=True)
    touch(tmp_path / 'subj' / '2020-01-01' / '001')  # a file, not a folder
    found = list(alfio.iter_sessions(tmp_path))
    assert found == sessions
    assert all(isinstance(s, ALFPath) for s in found)
    # Patterns
    assert list(alfio.iter_sessions(tmp_path, pattern='*/Subjects/*/????-??-??/*')) == sessions
    assert list(alfio.iter_sessions(tmp_path / 'cortexlab', pattern='*/????-??-??/*')) == \
        [s for s in sessions if s.lab == 'cortexlab']
    # The root itself first, then the sessions below it
    nested = make_session(sessions[0] / 'extra', 'sub', '2020-02-02', 3, raw=False)
    found = list(alfio.iter_sessions(sessions[0]))
    assert found == [sessions[0], nested]
    assert list(alfio.iter_sessions(tmp_path / 'notes')) == []


@pytest.mark.skipif(os.name == 'nt', reason='symbolic links need privileges on Windows')
def test_iter_sessions_links(tmp_path):
    real = make_session(tmp_path / 'real', raw=False)
    root = tmp_path / 'root'
    (root / 'subj' / '2020-01-01').mkdir(parents=True)
    (root / 'subj' / '2020-01-01' / '001').symlink_to(real, target_is_directory=True)
    (root / 'linked').symlink_to(tmp_path / 'real', target_is_directory=True)
    # A linked session folder is found; linked folders are not searched (as Path.rglob)
    assert list(alfio.iter_sessions(root)) == [root / 'subj' / '2020-01-01' / '001']


def test_iter_datasets(session):
    datasets = list(alfio.iter_datasets(session))
    assert datasets == sorted(datasets)
    assert all(isinstance(d, ALFPath) and not d.is_absolute() for d in datasets)
    posix = [d.as_posix() for d in datasets]
    assert f'alf/#{REVISION}#/_ibl_trials.choice.npy' in posix
    assert 'alf/probe01/spikes.times.npy' in posix
    assert '_ibl_experiment.description' not in posix  # not a valid ALF name
    assert posix[0] == f'alf/#{REVISION}#/_ibl_trials.choice.npy'
    touch(session / 'alf' / 'not-alf.attr.npy')
    assert len(list(alfio.iter_datasets(str(session)))) == len(datasets)


def test_find_variants(tmp_path):
    alf = tmp_path / 'subj' / '2020-01-01' / '001' / 'alf'
    names_ = ['obj.attr.npy', '#2020-06-01#/obj.attr.npy', '#2021-01-01#/obj.attr.npy',
              '_ns_obj.attr.npy', 'obj.attr_bpod.npy', 'obj.attr.raw.npy', 'obj.attr.csv',
              'obj.attr2.npy', 'probe00/obj.attr.npy', 'xobj.attr.npy']
    for name in names_:
        touch(alf / name)
    main = alf / 'obj.attr.npy'
    revision = alf / '#2020-06-01#' / 'obj.attr.npy'
    out = alfio.find_variants([main, str(revision)])
    assert list(out) == [main, revision]
    assert all(isinstance(k, ALFPath) for k in out)
    assert out[main] == [alf / '#2020-06-01#/obj.attr.npy', alf / '#2021-01-01#/obj.attr.npy']
    assert out[revision] == [alf / '#2021-01-01#/obj.attr.npy', main]
    out = alfio.find_variants([main], namespace=False, timescale=False, extra=False,
                              extension=False)
    assert sorted(p.relative_to(alf).as_posix() for p in out[main]) == sorted([
        '#2020-06-01#/obj.attr.npy', '#2021-01-01#/obj.attr.npy', '_ns_obj.attr.npy',
        'obj.attr_bpod.npy', 'obj.attr.raw.npy', 'obj.attr.csv'])
    out = alfio.find_variants([main], extension=False)
    assert alf / 'obj.attr.csv' in out[main] and alf / '_ns_obj.attr.npy' not in out[main]
    out = alfio.find_variants([alf / 'probe00' / 'obj.attr.npy'])
    assert out == {alf / 'probe00' / 'obj.attr.npy': []}


# ---------------------------------------------------------------------------------------------
# load_object
# ---------------------------------------------------------------------------------------------

def test_load_object_trials(session):
    trials = alfio.load_object(session / 'alf', 'trials')
    assert isinstance(trials, alfio.AlfBunch)
    assert set(trials) == {*TRIALS_ATTRIBUTES, 'intervals_bpod'}
    assert trials.intervals.shape == (60, 2)
    assert trials.check_dimensions == 0
    assert trials.to_df().shape == (60, len(TRIALS_ATTRIBUTES) + 3)  # 2 columns of intervals
    # Same with a str, and through one of the files
    again = alfio.load_object(str(session / 'alf' / '_ibl_trials.choice.npy'))
    assert again.keys() == trials.keys()
    np.testing.assert_array_equal(again.choice, trials.choice)


def test_load_object_filters(session):
    alf = session / 'alf'
    trials = alfio.load_object(alf, 'trials',
                               attribute=['intervals', 'rewardVolume', 'probabilityLeft'])
    assert set(trials) == {'intervals', 'intervals_bpod', 'rewardVolume', 'probabilityLeft'}
    trials = alfio.load_object(alf, 'trials', timescale=None, attribute='*_times')
    assert set(trials) == {'goCue_times', 'stimOn_times', 'response_times',
                           'firstMovement_times', 'feedback_times'}
    trials = alfio.load_object(alf, 'trials', wildcards=False, attribute='intervals|choice')
    assert set(trials) == {'intervals', 'intervals_bpod', 'choice'}
    spikes = alfio.load_object(alf / 'probe00', 'spikes', attribute=['times*', 'clusters'])
    assert set(spikes) == {'times', 'clusters'}
    with pytest.raises(ALFObjectNotFound):
        alfio.load_object(alf, 'trials', namespace='foo')
    with pytest.raises(ALFObjectNotFound):
        alfio.load_object(alf, 'spikes')


def test_load_object_directory_needs_object(session):
    with pytest.raises(ValueError, match='object name should be provided'):
        alfio.load_object(session / 'alf')


def test_load_object_list(session):
    alf = session / 'alf'
    files = [alf / f'#{REVISION}#' / '_ibl_trials.choice.npy', alf / '_ibl_trials.intervals.npy']
    trials = alfio.load_object(files, attribute='ignored', namespace='ignored')
    assert set(trials) == {'choice', 'intervals'}
    np.testing.assert_array_equal(trials.choice, np.load(files[0]))
    assert not np.array_equal(trials.choice, np.load(alf / '_ibl_trials.choice.npy'))
    with pytest.raises(AssertionError, match='same object'):
        alfio.load_object([alf / '_ibl_trials.choice.npy', alf / '_ibl_wheel.position.npy'])
    with pytest.raises(ALFInvalid):
        alfio.load_object([session / '_ibl_experiment.description'])
    # A generator works too
    trials = alfio.load_object(p for p in [str(alf / '_ibl_trials.choice.npy')])
    assert list(trials) == ['choice']


def test_load_object_table(tmp_path):
    session = make_session(tmp_path, trials_table=True, seed=2)
    alf = session / 'alf'
    trials = alfio.load_object(alf, 'trials')
    assert set(trials) == {*TRIALS_ATTRIBUTES, 'intervals_bpod'}
    table = pd.read_parquet(alf / '_ibl_trials.table.pqt')
    np.testing.assert_array_equal(trials.intervals, table[['intervals_0', 'intervals_1']])
    # Table columns replace attributes of the same name saved separately
    np.save(alf / '_ibl_trials.choice.npy', np.zeros(60) + 7)
    trials = alfio.load_object(alf, 'trials')
    np.testing.assert_array_equal(trials.choice, table['choice'])


def test_load_object_table_suffixes(tmp_path):
    df = pd.DataFrame({'foo_0': [0., 1.], 'foo_1': [2., 3.], 'bar_0': [4., 5.],
                       'bar_1': [6., 7.], 'baz': [8., 9.]})
    df.to_parquet(tmp_path / '_ns_obj.table_clock.extra.pqt')
    obj = alfio.load_object(tmp_path, 'obj')
    assert set(obj) == {'foo_clock.extra', 'bar_clock.extra', 'baz_clock.extra'}
    np.testing.assert_array_equal(obj['foo_clock.extra'], [[0., 2.], [1., 3.]])
    obj = alfio.load_object(tmp_path, 'obj', short_keys=True)
    assert set(obj) == {'foo_clock', 'bar_clock', 'baz_clock'}
    # csv tables are merged too
    (tmp_path / 'other.table.csv').write_text('x,y_0,y_1\n1,2,3\n4,5,6\n')
    obj = alfio.load_object(tmp_path, 'other')
    assert set(obj) == {'x', 'y'} and obj.y.shape == (2, 2)


def test_load_object_metadata(session, caplog):
    camera = alfio.load_object(session / 'alf', 'leftCamera')
    assert set(camera) == {'times', 'pupilDiameter_raw', 'pupilDiameter_smooth',
                           'featuresmetadata'}
    assert camera.featuresmetadata == {'unit': 'px'}
    features = np.load(session / 'alf' / '_ibl_leftCamera.features.npy')
    np.testing.assert_array_equal(camera.pupilDiameter_smooth, features[:, 1])
    assert camera.check_dimensions == 0
    # With short keys the metadata file does not clash with its data file
    assert alfio.load_object(session / 'alf', 'leftCamera', short_keys=True).keys() == \
        camera.keys()
    # Metadata naming more columns than the data has: warned, not split
    alfio.save_metadata(session / 'alf' / '_ibl_leftCamera.times.npy', {'columns': ['a', 'b']})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        camera = alfio.load_object(session / 'alf', 'leftCamera')
    assert 'times' in camera and 'timesmetadata' not in camera
    assert '_ibl_leftCamera.times.npy' in caplog.text


def test_load_object_metadata_prefix(tmp_path):
    save(tmp_path / 'obj.attr.npy', np.zeros(3))
    save(tmp_path / 'obj.attr2.npy', np.zeros(3))
    alfio.save_metadata(tmp_path / 'obj.attr2.npy', {'unit': 's'})
    obj = alfio.load_object(tmp_path, 'obj')
    assert obj.attr2metadata == {'unit': 's'}
    # The prefix glob of ONE also gives it to attr (kept quirk)
    assert obj.attrmetadata == {'unit': 's'}
    assert alfio._find_metadata(tmp_path / 'obj.attr2.npy') == \
        tmp_path / 'obj.attr2.metadata.json'
    assert alfio._find_metadata(str(tmp_path / 'obj.attr2.metadata.json')) == \
        tmp_path / 'obj.attr2.metadata.json'
    save(tmp_path / 'other.attr.npy', np.zeros(3))
    assert alfio._find_metadata(tmp_path / 'other.attr.npy') is None


def test_load_object_keys(tmp_path):
    for name in ('obj.riri.tutu.npy', 'obj.fifi_toto.tutu.npy', 'obj.lulu.npy',
                 'obj.attr_timescale.a.b.npy'):
        save(tmp_path / name, np.zeros(2))
    obj = alfio.load_object(tmp_path, 'obj')
    assert set(obj) == {'riri.tutu', 'fifi_toto.tutu', 'lulu', 'attr_timescale.a.b'}
    obj = alfio.load_object(tmp_path, 'obj', short_keys=True)
    assert set(obj) == {'riri', 'fifi_toto', 'lulu', 'attr_timescale'}
    # Keys that clash
    save(tmp_path / 'obj.riri.npy', np.zeros(2))
    with pytest.raises(AssertionError, match='riri'):
        alfio.load_object(tmp_path, 'obj', short_keys=True)
    save(tmp_path / '_ns_obj.lulu.npy', np.zeros(2))
    with pytest.raises(AssertionError, match='namespace'):
        alfio.load_object(tmp_path, 'obj')
    assert set(alfio.load_object(tmp_path, 'obj', namespace='ns')) == {'lulu'}


def test_load_object_timestamps(tmp_path, caplog):
    save(tmp_path / 'obj.values.npy', np.zeros(100))
    save(tmp_path / 'obj.timestamps.npy', np.array([[0, 10.], [99, 109.9]]))
    obj = alfio.load_object(tmp_path, 'obj')
    np.testing.assert_allclose(obj.timestamps, np.linspace(10, 109.9, 100))
    # With a timescale too, and per-sample timestamps left alone
    save(tmp_path / 'obj.timestamps_bpod.npy', np.arange(100.).reshape(100, 1))
    obj = alfio.load_object(tmp_path, 'obj')
    np.testing.assert_array_equal(obj.timestamps_bpod, np.arange(100.))
    assert obj.timestamps.shape == (100,)
    # Timestamps alone are not interpolated
    alone = tmp_path / 'alone'
    save(alone / 'obj.timestamps.npy', np.array([[0, 10.], [99, 109.9]]))
    assert alfio.load_object(alone, 'obj').timestamps.shape == (2, 2)
    # Inconsistent sync points: warning, not interpolated
    save(tmp_path / 'obj.timestamps.npy', np.zeros((3, 2)))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        obj = alfio.load_object(tmp_path, 'obj')
    assert obj.timestamps.shape == (3, 2)
    assert 'Inconsistent dimensions' in caplog.text and '(3, 2)' in caplog.text


def test_load_object_inconsistent_warns(tmp_path, caplog):
    save(tmp_path / 'obj.a.npy', np.zeros(3))
    save(tmp_path / 'obj.b.npy', np.zeros(4))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        obj = alfio.load_object(tmp_path, 'obj')
    assert set(obj) == {'a', 'b'}
    assert 'Inconsistent dimensions for object: obj' in caplog.text
    assert '(3,),    a' in caplog.text and '(4,),    b' in caplog.text


def test_load_object_other_types(session):
    clusters = alfio.load_object(session / 'alf' / 'probe00', 'clusters')
    assert set(clusters) == {'depths', 'channels', 'metrics', 'uuids'}
    assert isinstance(clusters.metrics, pd.DataFrame) and len(clusters.metrics) == 25
    assert isinstance(clusters.uuids, pd.Series)
    video = alfio.load_object(session / 'raw_video_data', 'leftCamera')
    assert isinstance(video.raw, ALFPath) and video.raw.suffix == '.mp4'
    settings = alfio.load_object(session / 'raw_behavior_data', 'taskSettings')
    assert settings.raw['SUBJECT_NAME'] == 'KS005'


def test_load_object_mmap(session):
    spikes = alfio.load_object(session / 'alf' / 'probe00', 'spikes', mmap=True)
    assert all(isinstance(v, np.memmap) for v in spikes.values())
    np.testing.assert_array_equal(spikes.times,
                                  np.load(session / 'alf' / 'probe00' / 'spikes.times.npy'))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def test_save_object_npy(tmp_path):
    dico = {'times': np.arange(3.), 'peak_to_trough': np.ones(3), 'intervals': np.zeros((3, 2))}
    folder = tmp_path / 'new' / 'alf'
    files = alfio.save_object_npy(folder, dico, 'spikes')
    assert all(isinstance(f, ALFPath) for f in files)
    assert sorted(f.name for f in files) == ['spikes.intervals.npy', 'spikes.peakToTrough.npy',
                                             'spikes.times.npy']
    loaded = alfio.load_object(folder, 'spikes')
    assert set(loaded) == {'times', 'peakToTrough', 'intervals'}
    np.testing.assert_array_equal(loaded.intervals, dico['intervals'])
    files = alfio.save_object_npy(folder, {'times': np.arange(2.)}, 'wheel', parts='raw',
                                  namespace='ibl', timescale='bpod')
    assert files == [folder / '_ibl_wheel.times_bpod.raw.npy']
    # Overwrite
    alfio.save_object_npy(folder, {'times': np.arange(5.)}, 'spikes')
    assert np.load(folder / 'spikes.times.npy').shape == (5,)
    assert not [p for p in folder.iterdir() if p.name.startswith('.')]  # no temporary files
    with pytest.raises(ValueError, match='not consistent'):
        alfio.save_object_npy(folder, {'a': np.zeros(3), 'b': np.zeros(4)}, 'bad')
    assert not list(folder.glob('bad.*'))


def test_save_object_npy_failure_keeps_old_file(tmp_path):
    alfio.save_object_npy(tmp_path, {'attr': np.arange(3)}, 'obj')
    unpicklable = np.array([lambda: 0], dtype=object)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises
        alfio.save_object_npy(tmp_path, {'attr': unpicklable}, 'obj')
    np.testing.assert_array_equal(np.load(tmp_path / 'obj.attr.npy'), np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['obj.attr.npy']


def test_save_metadata(tmp_path):
    data = save(tmp_path / '_ns_obj.attr.npy', np.zeros((4, 2)))
    meta = alfio.save_metadata(data, {'columns': ['left', 'right'], 'unit': 'mm',
                                      'scale': np.float32(2), 'row': np.arange(2)})
    assert isinstance(meta, ALFPath)
    assert meta == tmp_path / '_ns_obj.attr.metadata.json'
    text = meta.read_text()
    assert text.startswith('{\n "columns"')  # indent=1
    assert json.loads(text)['row'] == [0, 1]
    obj = alfio.load_object(tmp_path, 'obj')
    assert set(obj) == {'left', 'right', 'attrmetadata'}
    assert obj.attrmetadata == {'unit': 'mm', 'scale': 2.0, 'row': [0, 1]}
    assert alfio.save_metadata(str(data), {}) == meta
    assert json.loads(meta.read_text()) == {}


def test_next_num_folder(tmp_path):
    date_folder = tmp_path / 'subject' / '2020-01-01'
    assert alfio.next_num_folder(date_folder) == '001'
    date_folder.mkdir(parents=True)
    assert alfio.next_num_folder(date_folder) == '001'
    for name in ('001', '002'):
        (date_folder / name).mkdir()
    assert alfio.next_num_folder(date_folder) == '003'
    (date_folder / '005').mkdir()
    (date_folder / 'foo').mkdir()
    (date_folder / '.123').mkdir()
    touch(date_folder / '099')  # a file
    assert alfio.next_num_folder(str(date_folder)) == '006'
    (date_folder / '999').mkdir()
    with pytest.raises(AssertionError):
        alfio.next_num_folder(date_folder)


def test_remove_empty_folders(tmp_path):
    (tmp_path / 'a' / 'b' / 'c').mkdir(parents=True)
    (tmp_path / 'd' / 'e').mkdir(parents=True)
    touch(tmp_path / 'd' / 'keep.txt')
    (tmp_path / 'f').mkdir()
    alfio.remove_empty_folders(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*')) == \
        ['d', 'd/keep.txt']
    empty = tmp_path / 'empty'
    empty.mkdir()
    alfio.remove_empty_folders(str(empty))
    assert empty.is_dir()  # the root is kept
