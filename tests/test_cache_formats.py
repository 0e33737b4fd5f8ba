"""Cache tables in every layout ONE-api reads answer every public call as today's tables do.

The data folder is made by the synthetic generator and indexed by `make_parquet_db` (today's
layout).  Each test writes the same tables in an older layout, with pyarrow directly as the
older writers did (int64-pair ids as index levels or columns, string ids as columns, a
``session_path`` column, ``project`` instead of ``projects``, float sizes, no ``qc`` or
``default_revision``), opens a `One` on them and compares the answers of every public call
with those on today's tables (`one_calls.answers`).  Tables that cannot be understood raise an
error naming the file.
"""
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from one_calls import answers, differences

from one._tables import formats as table_formats
from one.alf.cache import (
    TableFormatError,
    load_tables,
    make_parquet_db,
    merge_tables,
    patch_tables,
    read_tables,
)
from one.api import One
from one.synthetic import make_dataset_folder

META = {'date_created': '2021-05-13 20:38', 'origin': 'ibl_test'}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('formats')
    make_dataset_folder(root, n_subjects=3, n_sessions=4, seed=1)
    make_parquet_db(root, hash_files=True)
    return root


@pytest.fixture(scope='module')
def modern(data_root):
    """The answers on today's tables."""
    return answers(One(cache_dir=data_root), data_root)


@pytest.fixture(scope='module')
def modern_without_defaults(data_root):
    """The answers on today's tables, default_revision left out."""
    return answers(One(cache_dir=data_root), data_root, ignore=['default_revision'])


@pytest.fixture(scope='module')
def tables(data_root):
    """Today's tables as plain frames (str ids as columns, plain dtypes)."""
    sessions = pd.read_parquet(data_root / 'sessions.pqt').reset_index()
    datasets = pd.read_parquet(data_root / 'datasets.pqt').reset_index()
    datasets['rel_path'] = datasets['rel_path'].astype(object)
    datasets['qc'] = datasets['qc'].astype(object)
    return sessions, datasets


def _pairs(ids) -> tuple[np.ndarray, np.ndarray]:
    """The legacy int64 pair of each UUID string."""
    raw = np.frombuffer(b''.join(uuid.UUID(x).bytes for x in ids), dtype='<i8').reshape(-1, 2)
    return raw[:, 0].copy(), raw[:, 1].copy()


def _as_pairs(frame: pd.DataFrame, *names) -> pd.DataFrame:
    frame = frame.copy()
    for name in names:
        low, high = _pairs(frame[name])
        position = frame.columns.get_loc(name)
        frame = frame.drop(columns=name)
        frame.insert(position, f'{name}_1', high)
        frame.insert(position, f'{name}_0', low)
    return frame


def _write(folder: Path, name: str, frame: pd.DataFrame, index=None, meta=None) -> Path:
    """Write a table as an older writer would: pandas metadata only when it has an index."""
    folder.mkdir(parents=True, exist_ok=True)
    if index:
        table = pa.Table.from_pandas(frame.set_index(index), preserve_index=True)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[b'one_metadata'] = json.dumps(META if meta is None else meta).encode()
    pq.write_table(table.replace_schema_metadata(schema_meta), folder / f'{name}.pqt')
    return folder / f'{name}.pqt'


def _session_paths(sessions: pd.DataFrame, datasets: pd.DataFrame) -> list[str]:
    by_id = sessions.set_index('id')
    return [f'{by_id.at[e, "lab"]}/Subjects/{by_id.at[e, "subject"]}/{by_id.at[e, "date"]}/'
            f'{int(by_id.at[e, "number"]):03d}' for e in datasets['eid']]


def _one1(sessions, datasets):
    """ONE 1.x: int64-pair ids, datasets indexed by id with the eid pair as columns,
    'session_path', 'project', float sizes, no qc nor default_revision."""
    ses = _as_pairs(sessions.rename(columns={'projects': 'project'}), 'id')
    ses['number'] = ses['number'].astype(np.int64)
    dsets = datasets.drop(columns=['qc', 'default_revision'])
    dsets.insert(2, 'session_path', _session_paths(sessions, datasets))
    dsets['file_size'] = dsets['file_size'].astype(float)
    dsets = _as_pairs(dsets, 'eid', 'id')
    return (ses, ['id_0', 'id_1']), (dsets, ['id_0', 'id_1'])


def _pair_columns(sessions, datasets):
    """int64-pair ids as plain columns of both tables (no index saved)."""
    return (_as_pairs(sessions, 'id'), None), (_as_pairs(datasets, 'eid', 'id'), None)


def _pair_levels(sessions, datasets):
    """int64-pair ids as index levels of both tables (datasets: four levels)."""
    dsets = _as_pairs(datasets, 'eid', 'id')
    return (_as_pairs(sessions, 'id'), ['id_0', 'id_1']), \
        (dsets, ['eid_0', 'eid_1', 'id_0', 'id_1'])


def _string_columns(sessions, datasets):
    """String ids as plain columns (no index saved), rows in another order."""
    return (sessions.iloc[::-1], None), (datasets.sample(frac=1, random_state=0), None)


def _id_index_eid_column(sessions, datasets):
    """Datasets indexed by id alone, the eid a string column, and a session_path column."""
    dsets = datasets.copy()
    dsets['session_path'] = _session_paths(sessions, datasets)
    return (sessions, ['id']), (dsets, ['id'])


def _no_qc_nor_default(sessions, datasets):
    """Today's layout without qc and default_revision, float sizes, int64 numbers."""
    ses = sessions.assign(number=sessions['number'].astype(np.int64))
    dsets = datasets.drop(columns=['qc', 'default_revision'])
    dsets['file_size'] = dsets['file_size'].astype(float)
    return (ses, ['id']), (dsets, ['eid', 'id'])


def _upper_case_ids(sessions, datasets):
    """Ids written in upper case (ONE-api casts them with uuid.UUID, which ignores case)."""
    upper = {'id': lambda x: x['id'].str.upper()}
    return (sessions.assign(**upper), ['id']), \
        (datasets.assign(eid=datasets['eid'].str.upper(), **upper), ['eid', 'id'])


LAYOUTS = [_one1, _pair_columns, _pair_levels, _string_columns, _id_index_eid_column,
           _no_qc_nor_default, _upper_case_ids]


@pytest.mark.parametrize('layout', LAYOUTS, ids=lambda f: f.__name__.strip('_'))
def test_older_layouts_answer_as_todays_tables(layout, data_root, tables, modern,
                                               modern_without_defaults, tmp_path):
    (ses, ses_index), (dsets, dsets_index) = layout(*tables)
    _write(tmp_path, 'sessions', ses, ses_index)
    _write(tmp_path, 'datasets', dsets, dsets_index)

    loaded = load_tables(tmp_path)
    assert loaded['sessions'].index.name == 'id'
    assert loaded['datasets'].index.names == ['eid', 'id']
    assert 'session_path' not in loaded['datasets'].columns
    assert str(loaded['datasets']['file_size'].dtype) == 'UInt64'
    assert 'projects' in loaded['sessions'].columns
    assert len(loaded['datasets']) == len(tables[1])
    assert isinstance(loaded['datasets'].index[0][0], uuid.UUID)  # ONE-api's shape
    assert isinstance(loaded['sessions'].index[0], uuid.UUID)

    one = One(cache_dir=data_root, tables_dir=tmp_path)
    assert len(one.list_datasets(one.search()[0])) > 0  # not the silent empty listing
    if layout in (_one1, _no_qc_nor_default):
        # Without default_revision the latest revision is loaded, as the default is on today's
        # tables: the same answers, but for the column itself and default_revisions_only,
        # which cannot be met (ONE-api's answer)
        got = answers(one, data_root, ignore=['default_revision'])
        assert got.pop('list_datasets_default')[:2] == ('error', 'ALFError')
        expected = {k: v for k, v in modern_without_defaults.items()
                    if k != 'list_datasets_default'}
    else:
        got, expected = answers(one, data_root), modern
    assert not differences(expected, got)


def test_upper_case_ids_answer_alike_before_and_after_the_first_read(data_root, tables,
                                                                     modern, tmp_path):
    (ses, ses_index), (dsets, dsets_index) = _upper_case_ids(*tables)
    _write(tmp_path, 'sessions', ses, ses_index)
    _write(tmp_path, 'datasets', dsets, dsets_index)
    one = One(cache_dir=data_root, tables_dir=tmp_path)
    index = one._tables['datasets'].index  # canonical strings, sorted
    assert set(index) == set(zip(tables[1]['eid'], tables[1]['id']))
    assert index.is_monotonic_increasing
    eid = one.search()[0]
    one._cache  # noqa: B018
    assert not differences(modern, answers(one, data_root))
    assert len(one._cache.datasets.loc[eid]) == int((tables[1]['eid'] == str(eid)).sum())
    assert one._cache.sessions.loc[eid, 'subject'] == one.get_details(eid)['subject']


def test_merged_records_with_upper_case_ids_update_rows(data_root):
    """Records naming a row with upper-case ids update that row, in either form of table."""
    for cache in (read_tables(data_root), load_tables(data_root)):
        datasets = cache['datasets']
        n, (eid, did) = len(datasets), datasets.index[3]
        record = datasets.iloc[[3]].assign(qc='CRITICAL')
        record.index = pd.MultiIndex.from_tuples([(str(eid).upper(), str(did).upper())],
                                                 names=['eid', 'id'])
        merge_tables(cache, datasets=record)
        assert len(cache['datasets']) == n
        assert cache['datasets'].loc[(eid, did), 'qc'] == 'CRITICAL'


def test_one1_fixture_facts(data_root, tables, tmp_path):
    """The facts ONE-api's own tests assert on its legacy fixture hold on such tables."""
    sessions, datasets = tables
    (ses, ses_index), (dsets, dsets_index) = _one1(sessions, datasets)
    _write(tmp_path, 'sessions', ses, ses_index)
    _write(tmp_path, 'datasets', dsets, dsets_index)
    one = One(cache_dir=data_root, tables_dir=tmp_path)
    eid = uuid.UUID(sessions['id'].iloc[0])
    n = int((datasets['eid'] == str(eid)).sum())
    assert len(one.list_datasets(eid, details=True)) == n
    assert one.list_datasets(eid, details=True).index.nlevels == 1
    assert one.list_datasets(eid, details=True, keep_eid_index=True).index.nlevels == 2
    holding = set(datasets.loc[datasets['rel_path'] == 'alf/_ibl_wheel.position.npy', 'eid'])
    assert set(map(str, one.search(datasets='_ibl_wheel.position.npy'))) == holding
    assert len(holding) > 0
    # a dataset id given as ONE's legacy int64 pair
    low, high = _pairs([datasets['id'].iloc[0]])
    path = one.load_dataset_from_id(np.array([[low[0], high[0]]]), download_only=True)
    assert path.as_posix().endswith(datasets['rel_path'].iloc[0])


# ---- tables that cannot be understood -------------------------------------------------------

def _bad_tables(tables, tmp_path, change):
    sessions, datasets = tables
    (ses, ses_index), (dsets, dsets_index) = change(sessions.copy(), datasets.copy())
    _write(tmp_path, 'sessions', ses, ses_index)
    return _write(tmp_path, 'datasets', dsets, dsets_index)


@pytest.mark.parametrize('change, message', [
    (lambda s, d: ((s, ['id']), (d.drop(columns='eid'), ['id'])),
     'the session of each dataset is unknown'),
    (lambda s, d: ((s, ['id']),
                   (d.drop(columns='eid').assign(session_path='lab/Subjects/a/2020-01-01/001'),
                    None)),
     'the session of each dataset is unknown'),
    (lambda s, d: ((s, ['id']), (_as_pairs(d, 'eid', 'id').drop(columns='eid_1'), None)),
     '"eid_0" has no other half'),
    (lambda s, d: ((s, ['id']), (d.drop(columns='rel_path'), ['eid', 'id'])),
     'no "rel_path" column'),
    (lambda s, d: ((s, ['id']), (_as_pairs(d, 'eid', 'id').assign(
        eid_0=lambda x: x['eid_0'].astype(float)), None)),
     '"eid_0" holds float64'),
    (lambda s, d: ((s, ['id']), (d.rename(columns={'eid': 'session', 'id': 'dataset'}),
                                 None)),
     "Failed to set index of .*: no 'eid' or 'id' id column"),
], ids=['no eid', 'session_path only', 'half a pair', 'no rel_path', 'float pair',
        'no id columns'])
def test_tables_not_understood_raise_naming_the_file(change, message, tables, tmp_path,
                                                       data_root):
    path = _bad_tables(tables, tmp_path, change)
    with pytest.raises(TableFormatError, match=message) as info:
        load_tables(tmp_path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(TableFormatError, match=message):
        One(cache_dir=data_root, tables_dir=tmp_path)


@pytest.mark.parametrize('content', [b'PAR1garbage', b'', b'not a table'])
def test_a_damaged_file_raises_naming_it(content, data_root, tmp_path):
    shutil.copy(data_root / 'sessions.pqt', tmp_path / 'sessions.pqt')
    (tmp_path / 'datasets.pqt').write_bytes(content)
    for call in (lambda: load_tables(tmp_path),
                 lambda: One(cache_dir=data_root, tables_dir=tmp_path)):
        with pytest.raises(TableFormatError, match='datasets.pqt cannot be read') as info:
            call()
        assert str(tmp_path / 'datasets.pqt') in str(info.value)


def test_sessions_without_id_raise(tables, tmp_path):
    sessions, datasets = tables
    _write(tmp_path, 'sessions', sessions.rename(columns={'id': 'session'}), ['session'])
    with pytest.raises(TableFormatError, match=r'sessions\.pqt.*no .id. id column'):
        load_tables(tmp_path)


def test_standard_index_other_tables_and_pair_levels():
    """Other tables keep their index (pairs become strings) or get ONE's .?id columns."""
    u = [str(uuid.uuid4()) for _ in range(3)]
    low, high = _pairs(u)
    frame = pd.DataFrame({'pid_0': low, 'pid_1': high, 'name': ['a', 'b', 'c'],
                          'eid': u[::-1]})
    out = table_formats.standard_index(frame, 'insertions')
    assert list(out.index.names) == ['eid', 'pid']
    assert list(out.index.get_level_values('pid')) == u
    kept = table_formats.standard_index(frame.set_index(['pid_0', 'pid_1']), 'insertions')
    assert list(kept.index.names) == ['pid'] and list(kept.index) == u
    assert list(kept.columns) == ['name', 'eid']
    # an unnamed index (a row number) is dropped
    plain = pd.DataFrame({'id': u, 'x': 1}).set_index(pd.Index([5, 6, 7]))
    assert list(table_formats.standard_index(plain, 'sessions').index) == u


def test_patch_tables_moves_the_eid_column_into_the_index():
    u = [str(uuid.uuid4()) for _ in range(2)]
    table = pd.DataFrame({'eid': u, 'rel_path': ['a/b.c', 'd/e.f']},
                         index=pd.Index(u[::-1], name='id'))
    out = patch_tables(table, '3.0', 'datasets')
    assert out.index.names == ['eid', 'id'] and list(out.columns) == ['rel_path']
    assert out.index[0] == (u[0], u[1])


def test_copy_of_todays_tables_in_a_subfolder(data_root, modern, tmp_path):
    """Sanity check of the comparison: today's tables, copied, answer alike."""
    for name in ('sessions.pqt', 'datasets.pqt'):
        shutil.copy(data_root / name, tmp_path / name)
    assert not differences(modern, answers(One(cache_dir=data_root, tables_dir=tmp_path),
                                           data_root))
