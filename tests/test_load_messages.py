"""Errors of the load methods name the cause and the fix (one/_api/messages.py), through the
API on a real generated data folder; the command line's side is in test_cli.py."""
import logging
import shutil
import warnings

import pandas as pd
import pytest
from data_folders import indexed_folder

from one._api.messages import not_found_message
from one.alf import exceptions as alferr
from one.api import ONE, One

SESSION = 'cortexlab/Subjects/KS001/2024-01-15/001'  # has probes 00 and 01


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return indexed_folder(tmp_path_factory.mktemp('messages_data'), n_subjects=2, n_sessions=2)


@pytest.fixture
def one(data_root):
    return One(cache_dir=data_root)


@pytest.fixture
def eid(one, data_root):
    return one.path2eid(data_root / SESSION)


def _no_stock_paragraph(error: Exception) -> str:
    text = str(error)
    assert '\n' not in text and type(error).explanation not in text
    assert 'may occur' not in text
    return text


def test_unknown_attribute_names_the_attribute_not_the_object(one, eid):
    with pytest.raises(alferr.ALFObjectNotFound) as info:
        one.load_object(eid, 'trials', attribute='choise')
    text = _no_stock_paragraph(info.value)
    assert text.startswith(f'Attribute "choise" of ALF object "trials" not found in session {eid}')
    attributes = text.split('attributes present: ')[1].split(', ')
    assert 'choice' in attributes and 'intervals' in attributes
    assert 'objects present' not in text and 'wheel' not in text
    # with a collection, said too; other parts than the attribute are listed as datasets
    with pytest.raises(alferr.ALFObjectNotFound, match='collection "alf"; attributes present'):
        one.load_object(eid, 'trials', collection='alf', attribute='choise')
    with pytest.raises(alferr.ALFObjectNotFound) as info:
        one.load_object(eid, 'trials', namespace='foo')
    text = _no_stock_paragraph(info.value)
    assert 'No dataset of ALF object "trials" has namespace="foo"' in text
    assert '_ibl_trials.choice.npy' in text.split('datasets of the object: ')[1]


def test_unknown_object_lists_only_what_is_in_the_collection(one, eid):
    with pytest.raises(alferr.ALFObjectNotFound) as info:
        one.load_object(eid, 'wheel', collection='alf/probe00')
    text = _no_stock_paragraph(info.value)
    assert text.startswith(f'ALF object "wheel" not found in session {eid}, collection '
                           '"alf/probe00"')
    assert text.endswith('; objects present: clusters, spikes')
    # the whole session, without a collection
    with pytest.raises(alferr.ALFObjectNotFound) as info:
        one.load_object(eid, 'nothing')
    present = str(info.value).split('objects present: ')[1].split(', ')
    assert {'trials', 'wheel', 'spikes', 'clusters'} <= set(present)
    # a collection that does not exist: say so, and list the collections
    with pytest.raises(alferr.ALFObjectNotFound) as info:
        one.load_object(eid, 'trials', collection='alf/probe99')
    text = _no_stock_paragraph(info.value)
    assert 'has no collection "alf/probe99"; collections present: alf, alf/probe00, ' \
           'alf/probe01' in text
    with pytest.raises(alferr.ALFObjectNotFound, match='objects present: clusters, spikes$'):
        one.load_dataset(eid, 'nothing.here.npy', collection='alf/probe01')
    with pytest.raises(alferr.ALFObjectNotFound, match='objects present: clusters, spikes$'):
        one.load_collection(eid, 'alf/probe01', object='nothing')


def test_not_found_message_scopes_to_the_revision():
    datasets = pd.DataFrame({'rel_path': [
        'alf/#2024-06-01#/new.thing.npy', 'alf/old.thing.npy', 'alf/probe00/spikes.times.npy']})
    text = not_found_message(datasets, 'ALF object "x"', 'E', 'alf', '2024-01-01')
    assert text == ('ALF object "x" not found in session E, collection "alf", revision <= '
                    '"2024-01-01"; objects present: old')
    text = not_found_message(datasets, 'ALF object "x"', 'E', 'alf', '2024-07-01')
    assert text.endswith('objects present: new, old')
    # no dataset at all up to the revision: say so, and list the revisions
    text = not_found_message(datasets.iloc[:1], 'ALF object "x"', 'E', None, '2020-01-01')
    assert text == ('ALF object "x" not found in session E, revision <= "2020-01-01": no '
                    'dataset has a revision up to "2020-01-01"; revisions present: 2024-06-01')


def test_several_collections_are_listed_with_how_to_choose(one, eid):
    with pytest.raises(alferr.ALFMultipleCollectionsFound) as info:
        one.load_object(eid, 'spikes')
    text = _no_stock_paragraph(info.value)
    assert text == (f'ALF object "spikes" of session {eid} is in several collections: '
                    'alf/probe00, alf/probe01; choose one as the collection, e.g. '
                    'collection="alf/probe00"')
    assert info.value.collections == ['alf/probe00', 'alf/probe01']
    with pytest.raises(alferr.ALFMultipleCollectionsFound) as info:
        one.load_dataset(eid, 'spikes.times.npy')
    assert 'Dataset "spikes.times.npy" of session' in str(info.value)
    assert info.value.collections == ['alf/probe00', 'alf/probe01']


def test_missing_cache_folder_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        One(cache_dir='missing/folder')
    assert info.value.filename == str(tmp_path / 'missing' / 'folder')
    assert 'No such data folder (cache_dir)' in str(info.value)
    ONE.cache_clear()
    with pytest.raises(FileNotFoundError, match='cache_dir'):
        ONE(cache_dir='missing/folder')
    ONE.cache_clear()
    (tmp_path / 'data').mkdir()
    with pytest.raises(FileNotFoundError) as info:
        One(cache_dir='data', tables_dir='no_tables_here')
    assert 'tables_dir' in str(info.value) and info.value.filename.endswith('no_tables_here')


def test_folder_without_tables_warns_how_to_index_it(tmp_path):
    with pytest.warns(UserWarning) as record:
        one = One(cache_dir=tmp_path)
    message = str(record[0].message)
    assert message.startswith(f'No cache tables found in {tmp_path}')
    assert f'one index {tmp_path}' in message and 'make_parquet_db' in message
    assert one.search() == []


@pytest.fixture
def deleted(tmp_path, data_root):
    """A copy of the data folder whose alf/_ibl_wheel.position.npy of SESSION was deleted."""
    root = tmp_path / 'data'
    shutil.copytree(data_root, root)
    (root / SESSION / 'alf' / '_ibl_wheel.position.npy').unlink()
    one = One(cache_dir=root)
    return one, one.path2eid(root / SESSION)


def test_indexed_file_deleted_since_hints_to_reindex(deleted):
    one, eid = deleted
    dataset_id = one.list_datasets(eid, filename='_ibl_wheel.position.npy', details=True).index[0]
    calls = {
        'load_dataset': lambda: one.load_dataset(eid, '_ibl_wheel.position.npy'),
        'load_object': lambda: one.load_object(eid, 'wheel', attribute='position'),
        'load_datasets': lambda: one.load_datasets(eid, ['_ibl_wheel.position.npy']),
        'load_dataset_from_id': lambda: one.load_dataset_from_id(dataset_id),
    }
    for name, call in calls.items():
        with pytest.raises(alferr.ALFObjectNotFound) as info, warnings.catch_warnings():
            warnings.simplefilter('ignore', alferr.ALFWarning)
            call()
        text = _no_stock_paragraph(info.value)
        assert 'not found on disk' in text or 'not downloaded' in text, name
        assert f'one index {one.cache_dir}' in text and 'deleted or moved' in text, name


def test_object_partly_missing_loads_with_a_warning(deleted, caplog):
    one, eid = deleted
    with caplog.at_level(logging.WARNING, logger='one.api'):
        wheel = one.load_object(eid, 'wheel')
    assert 'timestamps' in wheel and 'position' not in wheel
    assert 'loaded without alf/_ibl_wheel.position.npy' in caplog.text
    assert f'one index {one.cache_dir}' in caplog.text
