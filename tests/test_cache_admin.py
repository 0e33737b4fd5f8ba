"""one.cli._cache_admin: the entry points of the command line to a folder's tables."""
import uuid

import pytest

from one.alf.cache import make_parquet_db
from one.api import One
from one.cli._cache_admin import Inventory, folder_tables, tables_of
from one.synthetic import make_dataset_folder


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('admin')
    make_dataset_folder(root, n_subjects=1, n_sessions=2, seed=3)
    make_parquet_db(root)
    return root


def test_folder_tables_as_one_runs_on_them(data_root, tmp_path):
    tables = folder_tables(data_root)
    eid, did = tables['datasets'].index[0]
    assert isinstance(eid, str) and str(uuid.UUID(did)) == did  # no UUID objects built
    assert len(tables['sessions']) == 2
    with pytest.raises(FileNotFoundError, match='no cache tables'):
        folder_tables(tmp_path)


def test_tables_of_a_one_are_not_handed_out(data_root):
    one = One(cache_dir=data_root)
    tables = tables_of(one)
    assert isinstance(tables['sessions'].index[0], str)
    assert not one._handed_out  # reading them did not convert them
    inventory = Inventory.of(data_root, tables=tables)
    assert len(inventory.datasets) == len(tables['datasets']) == len(one.list_datasets(
        details=True, qc='CRITICAL'))
    assert tables_of(one) is one._tables


def test_dataset_files_finds_the_files_of_the_rows_given(data_root, tmp_path):
    from one.cli._cache_admin import dataset_files

    rows = Inventory.of(data_root).datasets
    root = tmp_path / 'copy'
    plain, named, gone = (rows.iloc[i] for i in range(3))
    path = root / named['path']
    for file in (root / plain['path'],  # and one with the UUID in its name:
                 path.with_name(f'{path.stem}.{named["id"]}{path.suffix}')):
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b'12345')
    found = dataset_files(root, rows.iloc[:3])
    assert set(found) == {plain['path'], named['path']}  # keyed by the listed path
    assert found[plain['path']].path == plain['path'] and found[plain['path']].size == 5
    assert named['id'] in found[named['path']].path
    assert gone['path'] not in found
    assert dataset_files(root, rows.iloc[:1]).keys() == {plain['path']}  # only the rows given
