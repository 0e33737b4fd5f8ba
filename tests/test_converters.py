"""one.converters: identifier conversions on real cache tables built from recorded Alyx replies.

The sessions table is built from a recorded ``GET /sessions`` reply and the datasets table from
two recorded ``GET /sessions/<eid>`` replies of a real Alyx 3.6.1 (tests/fixtures/alyx), plus a
few hand-made sessions for the cases those lack (no lab, duplicates, look-alike subjects).
"""
import copy
import datetime
import json
import pathlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from uuid import UUID

import numpy as np
import pandas as pd
import pytest

from one._tables.uuid_index import key_for, with_string_levels
from one.alf.path import ALFPath, PurePosixALFPath, PureWindowsALFPath
from one.alf.spec import QC
from one.converters import (
    ConversionMixin,
    datasets2records,
    one_path_from_dataset,
    parse_values,
    path_from_dataset,
    path_from_filerecord,
    recurse,
    ses2records,
    session_record2path,
)
from one.util import Bunch, LazyId, filter_datasets, validate_date_range

FIXTURES = Path(__file__).parent / 'fixtures' / 'alyx'

# Sessions of the recorded database
EID = 'c25ba874-0eb1-4921-b6e3-976877429206'  # testlab ZFM-01935 2024-03-12 001, 33 datasets
EID_FAIL = '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'  # testlab ZFM-01935 2024-03-14 001
EID_SWC = '6bae27ed-da06-4ac4-915d-39ae53966935'  # otherlab SWC_038 2024-05-21 001
# Hand-made sessions
EID_NOLAB = 'aaf101c3-2581-450a-8abd-ddb8f557a5ad'  # '' flowers 2018-07-13 002
EID_KS = '3473f9d2-aa5d-41a6-9048-c65d0b7ab97c'  # cortexlab KS005 2019-04-04 004
EID_KS1 = 'dfe99506-b873-45db-bd95-1d6ae3f4f9e1'  # cortexlab KS0051 2019-04-04 004
EID_DUP = '5a5d2a2b-6e55-4b27-9d5e-2a3c2a3e4f51'  # lab1 dup 2020-01-01 001
EID_DUP2 = '7b7d2a2b-6e55-4b27-9d5e-2a3c2a3e4f52'  # lab2 dup 2020-01-01 001

DATASET = 'da55980e-64cc-42f0-8d47-7d8269eb95f8'  # alf/#2024-06-01#/_ibl_trials.choice.npy
DATASET_OLD = '9772712a-b91b-44fa-b9e4-4adbb8fd7c2d'  # alf/_ibl_trials.choice.npy (not default)
SPIKES = 'alf/probe00/spikes.times.npy'
DATA_SERVER = 'http://127.0.0.1:8001'


def _load(name: str):
    return json.loads((FIXTURES / f'{name}.json').read_text())


def _sessions_table() -> pd.DataFrame:
    listed = [ses2records(s)[0] for s in _load('sessions_list_all')['results']]
    extra = [
        pd.Series({'lab': '', 'subject': 'flowers', 'date': datetime.date(2018, 7, 13),
                   'number': 2, 'task_protocol': '', 'projects': ''}, name=UUID(EID_NOLAB)),
        pd.Series({'lab': 'cortexlab', 'subject': 'KS005', 'date': datetime.date(2019, 4, 4),
                   'number': 4, 'task_protocol': '', 'projects': ''}, name=UUID(EID_KS)),
        pd.Series({'lab': 'cortexlab', 'subject': 'KS0051', 'date': datetime.date(2019, 4, 4),
                   'number': 4, 'task_protocol': '', 'projects': ''}, name=UUID(EID_KS1)),
        pd.Series({'lab': 'lab1', 'subject': 'dup', 'date': datetime.date(2020, 1, 1),
                   'number': 1, 'task_protocol': '', 'projects': ''}, name=UUID(EID_DUP)),
        pd.Series({'lab': 'lab2', 'subject': 'dup', 'date': datetime.date(2020, 1, 1),
                   'number': 1, 'task_protocol': '', 'projects': ''}, name=UUID(EID_DUP2)),
    ]
    sessions = pd.DataFrame(listed + extra)
    sessions.index.name = 'id'
    sessions['number'] = sessions['number'].astype(np.uint16)
    return sessions


def _datasets_table() -> pd.DataFrame:
    tables = [ses2records(_load(name))[1]
              for name in ('sessions_read_with_revision_2probes', 'sessions_read')]
    datasets = pd.concat(tables).sort_index()
    # One dataset of critical quality, to check that paths still resolve to it
    crit = datasets.index[datasets['rel_path'] == 'alf/probe01/clusters.depths.npy'][0]
    datasets.loc[crit, 'qc'] = 'CRITICAL'
    return datasets


class WebClient:
    """The part of the Alyx client the converters use: data-server URLs."""

    def __init__(self, base=DATA_SERVER):
        self.base = base

    def rel_path2url(self, path: str) -> str:
        assert not path.startswith('http'), 'already a URL'
        return f'{self.base}/{path.strip("/")}'


class Converter(ConversionMixin):
    """A minimal One: cache tables plus search / get_details / list_datasets on them.

    The tables hold ids as `uuid.UUID` objects (as `ses2records` builds them, and as ONE-api's
    tables and ``One._cache`` hold them), or as canonical strings with ``string_ids`` (as a
    `One` holds them until ``_cache`` is first read): the conversions must work on both.
    """

    def __init__(self, cache_dir, sessions=None, datasets=None, web_client=None,
                 uuid_filenames=False, string_ids=False):
        self.cache_dir = cache_dir
        self.uuid_filenames = uuid_filenames
        self._web_client = web_client
        self._tables = Bunch(sessions=_sessions_table() if sessions is None else sessions,
                             datasets=_datasets_table() if datasets is None else datasets)
        if string_ids:
            for table in self._tables.values():
                table.index = with_string_levels(table.index)
        self.searches = []

    @property
    def _cache(self):
        return self._tables

    def _key(self, table: str, *ids):
        """Ids in the form of a table's index."""
        index = self._tables[table].index
        levels = index.levels if isinstance(index, pd.MultiIndex) else [index]
        keys = tuple(key_for(level, x) for level, x in zip(levels, ids))
        return keys if len(keys) > 1 else keys[0]

    def session_row(self, eid) -> pd.Series:
        return self._tables['sessions'].loc[self._key('sessions', eid)]

    def dataset_row(self, eid, did) -> pd.Series:
        return self._tables['datasets'].loc[self._key('datasets', eid, did)]

    def dataset_rows(self, pairs) -> pd.DataFrame:
        return self._tables['datasets'].loc[[self._key('datasets', *p) for p in pairs]]

    def search(self, subject=None, date_range=None, number=None):
        """Like One.search: subject is a substring, date_range a day, number an int."""
        self.searches.append((subject, date_range, number))
        sessions = self._tables['sessions']
        mask = sessions['subject'].str.contains(subject, regex=False).to_numpy()
        start, end = validate_date_range(date_range)
        dates = pd.to_datetime(sessions['date'].astype(str))
        mask = mask & ((dates >= start) & (dates <= end)).to_numpy()
        mask = mask & (sessions['number'].astype(int) == int(number)).to_numpy()
        return [UUID(str(x)) for x in sessions.index[mask]]

    def get_details(self, eid):
        record = self.session_row(eid).copy()
        record.name = UUID(str(eid))
        return record

    def list_datasets(self, eid, details=False, qc=QC.FAIL):
        datasets = self._tables['datasets']
        eids = datasets.index.get_level_values('eid')
        datasets = datasets[eids == self._key('sessions', eid)].droplevel('eid')
        datasets = filter_datasets(datasets, qc=qc, assert_unique=False,
                                   revision_last_before=False)
        datasets.index = pd.Index([UUID(str(x)) for x in datasets.index], name='id')
        return datasets if details else sorted(datasets['rel_path'])


@pytest.fixture(params=['uuid ids', 'string ids'])
def conv(tmp_path, request):
    return Converter(tmp_path, web_client=WebClient(), string_ids=request.param == 'string ids')


# ---------------------------------------------------------------------------------------------
# to_eid
# ---------------------------------------------------------------------------------------------

def test_to_eid_uuid_forms(conv):
    eid = UUID(EID)
    assert conv.to_eid(eid) is eid
    assert conv.to_eid(EID) == eid
    assert conv.to_eid(f'http://127.0.0.1:8000/sessions/{EID}') == eid
    assert conv.to_eid(f'http://127.0.0.1:8000/sessions/{EID}/') == eid
    # A well-formed UUID of a session that is not in the cache still converts
    unknown = '00000000-0000-4000-8000-000000000000'
    assert conv.to_eid(unknown) == UUID(unknown)
    assert conv.to_eid(None) is None


def test_to_eid_paths(conv, tmp_path):
    eid = UUID(EID)
    assert conv.to_eid('ZFM-01935/2024-03-12/001') == eid
    assert conv.to_eid('testlab/Subjects/ZFM-01935/2024-03-12/001') == eid
    assert conv.to_eid(tmp_path / 'testlab/Subjects/ZFM-01935/2024-03-12/001/alf') == eid
    assert conv.to_eid(ALFPath(tmp_path, 'ZFM-01935/2024-03-12/001', SPIKES)) == eid
    assert conv.to_eid(PureWindowsPath(r'C:\data\ZFM-01935\2024-03-12\001')) == eid
    assert conv.to_eid(str(tmp_path / 'ZFM-01935/2024-03-12/1')) == eid  # unpadded number
    url = f'{DATA_SERVER}/testlab/Subjects/ZFM-01935/2024-03-12/001/alf/x.y.npy'
    assert conv.to_eid(url) == eid
    # Paths of sessions that are not in the cache
    assert conv.to_eid('ZFM-01935/2024-03-12/003') is None
    assert conv.to_eid(Path('nobody/2024-03-12/001')) is None


def test_to_eid_references(conv):
    eid = UUID(EID)
    assert conv.to_eid('2024-03-12_001_ZFM-01935') == eid
    assert conv.to_eid('2024-03-12_1_ZFM-01935') == eid
    assert conv.to_eid({'subject': 'ZFM-01935', 'date': datetime.date(2024, 3, 12),
                        'sequence': 1}) == eid
    assert conv.to_eid({'subject': 'ZFM-01935', 'date': '2024-03-12', 'sequence': '001'}) == eid
    assert conv.to_eid('2024-03-13_001_ZFM-01935') is None  # no such session


def test_to_eid_session_records(conv, tmp_path):
    records = _load('sessions_list_all')['results']
    expected = [UUID(r['id']) for r in records]
    assert conv.to_eid(records[0]) == expected[0]
    assert conv.to_eid(records) == expected
    record = {'subject': 'flowers', 'lab': '', 'number': 2, 'date': datetime.date(2018, 7, 13)}
    assert conv.to_eid(record, cache_dir=tmp_path / 'elsewhere') == UUID(EID_NOLAB)
    with pytest.raises(AssertionError):
        conv.to_eid({'subject': 'ZFM-01935', 'number': 1, 'start_time': '2024-03-12'})


def test_to_eid_lists(conv):
    eid = UUID(EID)
    forms = [EID, 'ZFM-01935/2024-03-12/001', '2024-03-12_1_ZFM-01935', eid, None]
    assert conv.to_eid(forms) == [eid, eid, eid, eid, None]
    assert conv.to_eid(tuple(forms[:2])) == [eid, eid]
    assert conv.to_eid(LazyId([{'id': EID}, {'id': EID_SWC}])) == [eid, UUID(EID_SWC)]
    assert conv.to_eid([]) == []


@pytest.mark.parametrize('bad', ['fakeid', EID.upper(), EID.replace('-', ''), EID[:-1] + 'x'])
def test_to_eid_invalid_strings(conv, bad):
    with pytest.raises(ValueError, match='Invalid experiment ID'):
        conv.to_eid(bad)


@pytest.mark.parametrize('bad', [pathlib, 42, 1.5, b'bytes'])
def test_to_eid_unrecognized(conv, bad):
    with pytest.raises(ValueError, match='Unrecognized experiment ID'):
        conv.to_eid(bad)


# ---------------------------------------------------------------------------------------------
# eid2path / path2eid
# ---------------------------------------------------------------------------------------------

def test_eid2path(conv, tmp_path):
    expected = ALFPath(tmp_path, 'testlab/Subjects/ZFM-01935/2024-03-12/001')
    path = conv.eid2path(EID)
    assert path == expected and isinstance(path, ALFPath)
    assert conv.eid2path(UUID(EID)) == expected
    assert conv.eid2path(EID.upper()) == expected  # any form UUID() accepts
    assert conv.eid2path([EID, EID_NOLAB]) == [expected,
                                               ALFPath(tmp_path, 'flowers/2018-07-13/002')]
    assert conv.eid2path('00000000-0000-4000-8000-000000000000') is None


def test_eid2path_str_cache_dir(tmp_path):
    conv = Converter(str(tmp_path))
    assert conv.eid2path(EID_KS) == ALFPath(tmp_path, 'cortexlab/Subjects/KS005/2019-04-04/004')


def test_eid2path_errors(conv):
    with pytest.raises(ValueError, match='fakeid is not a valid eID/UUID string'):
        conv.eid2path('fakeid')
    sessions = conv._cache['sessions']
    conv._cache['sessions'] = pd.concat([sessions, sessions.loc[[conv._key('sessions', EID)]]])
    with pytest.raises(AssertionError, match='Duplicate'):
        conv.eid2path(EID)
    conv._cache['sessions'] = sessions.iloc[0:0]
    assert conv.eid2path(EID) is None


def test_path2eid(conv, tmp_path):
    assert conv.path2eid(tmp_path / 'testlab/Subjects/ZFM-01935/2024-03-12/001') == UUID(EID)
    assert conv.path2eid('ZFM-01935/2024-03-14/001/alf/probe00/spikes.times.npy') == \
        UUID(EID_FAIL)
    assert conv.path2eid('otherlab/Subjects/ZFM-01935/2024-03-12/001') == UUID(EID)  # lab unused
    assert conv.path2eid(['flowers/2018-07-13/002', 'KS005/2019-04-04/004']) == \
        [UUID(EID_NOLAB), UUID(EID_KS)]
    assert conv.path2eid('flowers/2018-07-13/001') is None
    assert conv.path2eid('not/a/session') is None
    assert conv.path2eid('flowers/2018-13-45/002') is None  # not a real date


def test_path2eid_duplicates(conv):
    # Same subject, date and number in two labs: the lab decides when given
    assert conv.path2eid('lab2/Subjects/dup/2020-01-01/001') == UUID(EID_DUP2)
    with pytest.raises(AssertionError, match='Multiple sessions'):
        conv.path2eid('dup/2020-01-01/001')


def test_path2eid_empty_table(tmp_path):
    conv = Converter(tmp_path, sessions=_sessions_table().iloc[0:0])
    assert conv.path2eid('ZFM-01935/2024-03-12/001') is None
    assert conv.to_eid('ZFM-01935/2024-03-12/001') is None


# ---------------------------------------------------------------------------------------------
# path2record / record2path / record2url / path2url
# ---------------------------------------------------------------------------------------------

def test_path2record_session(conv, tmp_path):
    record = conv.path2record(tmp_path / 'testlab/Subjects/ZFM-01935/2024-03-12/001')
    assert isinstance(record, pd.Series) and record.name == UUID(EID)
    assert record['subject'] == 'ZFM-01935' and record['lab'] == 'testlab'
    assert record['date'] == datetime.date(2024, 3, 12) and record['number'] == 1
    assert conv.path2record('flowers/2018-07-13/002').name == UUID(EID_NOLAB)
    assert conv.path2record('ZFM-01935/2024-03-12/001').name == UUID(EID)  # lab optional
    assert conv.path2record('otherlab/Subjects/ZFM-01935/2024-03-12/001') is None  # wrong lab
    assert conv.path2record('ZFM-01935/2024-03-12/009') is None


def test_path2record_dataset(conv, tmp_path):
    session = tmp_path / 'testlab/Subjects/ZFM-01935/2024-03-12/001'
    record = conv.path2record(session / 'alf/#2024-06-01#/_ibl_trials.choice.npy')
    assert record.name == (UUID(EID), UUID(DATASET))
    assert record['rel_path'] == 'alf/#2024-06-01#/_ibl_trials.choice.npy'
    assert record['hash'] == '8f72bbfb802430997d9404c304aef144'
    assert conv.path2record(session / 'alf/_ibl_trials.choice.npy').name == \
        (UUID(EID), UUID(DATASET_OLD))
    # A CRITICAL dataset is still found from its path
    record = conv.path2record(session / 'alf/probe01/clusters.depths.npy')
    assert record is not None and record['qc'] == 'CRITICAL'
    # Not in the cache
    assert conv.path2record(session / 'alf/nothing.here.npy') is None
    assert conv.path2record(tmp_path / 'nobody/2024-03-12/001/alf/x.y.npy') is None
    assert conv.path2record([session / SPIKES, 'ZFM-01935/2024-03-14/001/' + SPIKES])[1] \
        .name[0] == UUID(EID_FAIL)


def test_path2record_uuid_in_file_name(conv, tmp_path):
    path = tmp_path / 'anywhere' / f'_ibl_trials.choice.{DATASET}.npy'
    record = conv.path2record(path)
    assert record.name == (UUID(EID), UUID(DATASET))
    assert record['rel_path'] == 'alf/#2024-06-01#/_ibl_trials.choice.npy'
    url = (f'{DATA_SERVER}/testlab/Subjects/ZFM-01935/2024-03-12/001/alf/#2024-06-01#/'
           f'_ibl_trials.choice.{DATASET}.npy')
    assert conv.path2record(url).name == (UUID(EID), UUID(DATASET))
    assert conv.path2record(path.with_name('x.y.00000000-0000-4000-8000-000000000000.npy')) \
        is None


def test_path2record_empty_tables(tmp_path):
    conv = Converter(tmp_path, datasets=_datasets_table().iloc[0:0])
    assert conv.path2record('ZFM-01935/2024-03-12/001/' + SPIKES) is None
    assert conv.path2record('ZFM-01935/2024-03-12/001').name == UUID(EID)


def test_record2path(conv, tmp_path):
    datasets = conv._cache['datasets']
    row = conv.dataset_row(EID, DATASET)
    session = ALFPath(tmp_path, 'testlab/Subjects/ZFM-01935/2024-03-12/001')
    assert conv.record2path(row) == session / 'alf/#2024-06-01#/_ibl_trials.choice.npy'
    # The record of path2record goes back to the same path
    path = session / SPIKES
    assert conv.record2path(conv.path2record(path)) == path
    conv.uuid_filenames = True
    assert conv.record2path(row) == session / f'alf/#2024-06-01#/_ibl_trials.choice.{DATASET}.npy'
    conv.uuid_filenames = False
    frame = datasets.loc[[conv._key('sessions', EID_FAIL)]].head(3)
    paths = conv.record2path(frame)
    base = ALFPath(tmp_path, 'testlab/Subjects/ZFM-01935/2024-03-14/001')
    assert paths == [base / p for p in frame['rel_path']]


def test_record2path_errors(conv):
    row = conv.dataset_row(EID, DATASET)
    with pytest.raises(TypeError):
        conv.record2path(row.to_dict())
    single = row.copy()
    single.name = DATASET
    with pytest.raises(AssertionError):
        conv.record2path(single)
    orphan = row.copy()
    orphan.name = ('00000000-0000-4000-8000-000000000000', DATASET)
    with pytest.raises(ValueError, match='Failed to determine session path for eid'):
        conv.record2path(orphan)


def test_record2url_dataset(conv):
    row = conv.dataset_row(EID, DATASET)
    expected = (f'{DATA_SERVER}/testlab/Subjects/ZFM-01935/2024-03-12/001/alf/#2024-06-01#/'
                f'_ibl_trials.choice.{DATASET}.npy')
    assert conv.record2url(row) == expected
    # This is the data_url Alyx recorded for that dataset
    recorded = next(d['data_url'] for d in
                    _load('sessions_read_with_revision_2probes')['data_dataset_session_related']
                    if d['id'] == DATASET)
    assert conv.record2url(row) == recorded
    # A record with a session_path field (as in aggregate tables)
    row2 = row.copy()
    row2['session_path'] = 'lab/Subjects/subj/2020-01-01/001'
    row2.name = DATASET
    assert conv.record2url(row2) == \
        f'{DATA_SERVER}/lab/Subjects/subj/2020-01-01/001/alf/#2024-06-01#/' \
        f'_ibl_trials.choice.{DATASET}.npy'


def test_record2url_session_and_frames(conv):
    session = conv.session_row(EID)
    assert conv.record2url(session) == f'{DATA_SERVER}/testlab/Subjects/ZFM-01935/2024-03-12/001'
    frame = conv.dataset_rows([(EID, DATASET), (EID, DATASET_OLD)])
    urls = conv.record2url(frame)
    assert len(urls) == 2 and urls[1].endswith(f'alf/_ibl_trials.choice.{DATASET_OLD}.npy')


def test_record2url_errors(conv, tmp_path):
    with pytest.raises(TypeError):
        conv.record2url({'rel_path': 'a.b.c'})
    row = conv.dataset_row(EID, DATASET).copy()
    row.name = DATASET
    with pytest.raises(AssertionError):
        conv.record2url(row)
    offline = Converter(tmp_path)
    with pytest.raises(AssertionError, match='No Web client found for instance'):
        offline.record2url(conv.session_row(EID))


def test_path2url(conv, tmp_path):
    path = tmp_path / 'testlab/Subjects/ZFM-01935/2024-03-14/001' / SPIKES
    url = conv.path2url(path)
    did = conv.path2record(path).name[1]
    assert url == f'{DATA_SERVER}/testlab/Subjects/ZFM-01935/2024-03-14/001/alf/probe00/' \
                  f'spikes.times.{did}.npy'
    assert conv.path2url([path, tmp_path / 'nobody/2020-01-01/001/a.b.npy']) == [url, None]
    assert conv.path2url(path.parents[2]) == \
        f'{DATA_SERVER}/testlab/Subjects/ZFM-01935/2024-03-14/001'


# ---------------------------------------------------------------------------------------------
# Experiment references
# ---------------------------------------------------------------------------------------------

def test_eid2ref(conv):
    assert conv.eid2ref(EID) == {'subject': 'ZFM-01935', 'date': datetime.date(2024, 3, 12),
                                 'sequence': 1}
    assert isinstance(conv.eid2ref(EID), Bunch)
    assert conv.eid2ref(EID, as_dict=False) == '2024-03-12_1_ZFM-01935'
    assert conv.eid2ref(EID, parse=False) == {'subject': 'ZFM-01935', 'date': '2024-03-12',
                                              'sequence': '001'}
    assert conv.eid2ref(EID, as_dict=False, parse=False) == '2024-03-12_001_ZFM-01935'
    assert conv.eid2ref([EID, EID_NOLAB], as_dict=False) == ['2024-03-12_1_ZFM-01935',
                                                            '2018-07-13_2_flowers']


def test_ref2eid(conv):
    assert conv.ref2eid('2024-03-12_001_ZFM-01935') == UUID(EID)
    assert conv.ref2eid({'subject': 'flowers', 'date': '2018-07-13', 'sequence': 2}) == \
        UUID(EID_NOLAB)
    assert conv.ref2eid(['2024-05-21_1_SWC_038', '2018-07-13_002_flowers']) == \
        [UUID(EID_SWC), UUID(EID_NOLAB)]
    assert conv.searches[0] == ('ZFM-01935', '2024-03-12', 1)
    with pytest.raises(AssertionError, match='session not found'):
        conv.ref2eid('2024-03-13_001_ZFM-01935')


def test_ref2eid_subject_substring_is_disambiguated(conv):
    # A substring search for KS005 also finds KS0051 on the same day
    assert len(conv.search(subject='KS005', date_range='2019-04-04', number=4)) == 2
    assert conv.ref2eid('2019-04-04_004_KS005') == UUID(EID_KS)
    assert conv.ref2eid('2019-04-04_004_KS0051') == UUID(EID_KS1)


def test_ref2path(conv, tmp_path):
    assert conv.ref2path('2018-07-13_2_flowers') == ALFPath(tmp_path, 'flowers/2018-07-13/002')
    assert conv.ref2path(['2019-04-04_4_KS005']) == \
        [ALFPath(tmp_path, 'cortexlab/Subjects/KS005/2019-04-04/004')]


def test_path2ref():
    path = 'E:/FlatIron/Subjects/zadorlab/flowers/2018-07-13/001'
    assert ConversionMixin.path2ref(path, as_dict=False) == '2018-07-13_001_flowers'
    assert ConversionMixin.path2ref(path) == {'subject': 'flowers',
                                              'date': datetime.date(2018, 7, 13), 'sequence': 1}
    assert ConversionMixin.path2ref(path, parse=False) == {'subject': 'flowers',
                                                           'date': '2018-07-13',
                                                           'sequence': '001'}
    assert ConversionMixin.path2ref('flowers/2018-07-13/1', as_dict=False) == \
        '2018-07-13_1_flowers'
    assert ConversionMixin.path2ref(Path('/data/NYU-14.1/2021-01-01/010/alf')) == \
        {'subject': 'NYU-14.1', 'date': datetime.date(2021, 1, 1), 'sequence': 10}
    assert ConversionMixin.path2ref(r'C:\data\ZM_335\2019-06-07\002', as_dict=False) == \
        '2019-06-07_002_ZM_335'
    assert ConversionMixin.path2ref('E:/FlatIron/Subjects/zadorlab/flowers/2018-07-13/01') is None
    assert ConversionMixin.path2ref('flowers/2018-07-13/0001') is None
    assert ConversionMixin.path2ref('flowers/2018-07-13\\001') is None  # mixed separators
    assert ConversionMixin.path2ref('no/session/here') is None
    refs = ConversionMixin.path2ref([path, 'no/session', Path('a/2020-01-01/003')])
    assert refs == [{'subject': 'flowers', 'date': datetime.date(2018, 7, 13), 'sequence': 1},
                    None, {'subject': 'a', 'date': datetime.date(2020, 1, 1), 'sequence': 3}]
    assert ConversionMixin.path2ref([path], as_dict=False) == ['2018-07-13_001_flowers']


def test_is_exp_ref():
    assert ConversionMixin.is_exp_ref('2018-07-13_001_flowers')
    assert ConversionMixin.is_exp_ref('2018-07-13_1_flowers')
    assert ConversionMixin.is_exp_ref({'subject': 'flowers', 'date': datetime.date(2018, 7, 13),
                                       'sequence': 1})
    assert not ConversionMixin.is_exp_ref({'subject': 'flowers', 'date': '2018-07-13'})
    assert not ConversionMixin.is_exp_ref('flowers/2018-07-13/001')
    assert not ConversionMixin.is_exp_ref('2018-07-13_0001_flowers')
    assert not ConversionMixin.is_exp_ref(EID)
    assert not ConversionMixin.is_exp_ref(UUID(EID))
    assert not ConversionMixin.is_exp_ref(None)
    assert ConversionMixin.is_exp_ref(['2018-07-13_001_flowers', 'x', 3]) == [True, False, False]


def test_ref2dict():
    assert ConversionMixin.ref2dict('2020-01-23_002_ibl_witten_01') == {
        'subject': 'ibl_witten_01', 'date': datetime.date(2020, 1, 23), 'sequence': 2}
    raw = ConversionMixin.ref2dict('2020-01-23_002_ibl_witten_01', parse=False)
    assert raw == {'subject': 'ibl_witten_01', 'date': '2020-01-23', 'sequence': '002'}
    assert isinstance(raw, Bunch)
    ref = {'subject': 'flowers', 'date': '2018-07-13T10:00:00', 'sequence': '001'}
    parsed = ConversionMixin.ref2dict(ref)
    assert isinstance(parsed, Bunch) and parsed.date == datetime.date(2018, 7, 13)
    assert ref['date'] == '2018-07-13T10:00:00'  # the input is not modified
    assert ConversionMixin.ref2dict(['2020-01-23_2_a', '2021-01-01_1_b']) == [
        {'subject': 'a', 'date': datetime.date(2020, 1, 23), 'sequence': 2},
        {'subject': 'b', 'date': datetime.date(2021, 1, 1), 'sequence': 1}]


def test_dict2ref():
    d = datetime.date(2018, 7, 13)
    assert ConversionMixin.dict2ref({'subject': 'flowers', 'date': d, 'sequence': 1}) == \
        '2018-07-13_1_flowers'
    assert ConversionMixin.dict2ref({'subject': 'flowers', 'date': '2018-07-13',
                                     'sequence': '001'}) == '2018-07-13_001_flowers'
    assert ConversionMixin.dict2ref({'subject': 'flowers', 'date': d, 'number': 3}) == \
        '2018-07-13_3_flowers'
    assert ConversionMixin.dict2ref({'subject': 'flowers', 'number': 1,
                                     'start_time': '2018-07-13T12:00:00'}) == \
        '2018-07-13_1_flowers'
    assert ConversionMixin.dict2ref({'subject': 'flowers', 'number': np.uint16(1),
                                     'start_time': datetime.datetime(2018, 7, 13, 12)}) == \
        '2018-07-13_1_flowers'
    # An Alyx session record (extra fields of any type)
    record = _load('sessions_list_all')['results'][0]
    assert ConversionMixin.dict2ref(record) == '2024-05-21_1_SWC_038'
    assert ConversionMixin.dict2ref(None) is None and ConversionMixin.dict2ref({}) is None
    assert ConversionMixin.dict2ref([{'subject': 'a', 'date': d, 'sequence': 2}, None]) == \
        ['2018-07-13_2_a', None]


def test_references_round_trip(conv):
    ref = conv.eid2ref(EID_SWC)
    assert conv.ref2eid(ConversionMixin.dict2ref(ref)) == UUID(EID_SWC)
    path = conv.eid2path(EID_SWC)
    assert ConversionMixin.path2ref(path) == ref
    assert conv.to_eid(ConversionMixin.path2ref(path)) == UUID(EID_SWC)


# ---------------------------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------------------------

class _Doubler:
    @recurse
    def double(self, x, factor=2):
        """Double x."""
        return (x, factor)


@pytest.mark.parametrize('value, expected', [
    ([1, 2], [(1, 2), (2, 2)]),
    ((1, 2), [(1, 2), (2, 2)]),
    (np.array([1, 2]), [(1, 2), (2, 2)]),
    ([[1], 2], [[(1, 2)], (2, 2)]),
    ('ab', ('ab', 2)),
    ({'a': 1}, ({'a': 1}, 2)),
    (3, (3, 2)),
])
def test_recurse(value, expected):
    out = _Doubler().double(value)
    if isinstance(value, np.ndarray):
        out = [(int(a), b) for a, b in out]
    assert out == expected


def test_recurse_special_types():
    obj = _Doubler()
    series = pd.Series([1, 2])
    assert obj.double(series)[0] is series
    frame = pd.DataFrame({'a': [1]})
    assert obj.double(frame)[0] is frame
    assert obj.double(LazyId([{'id': EID}]), 3) == [(UUID(EID), 3)]
    assert obj.double(x=[1, 2]) == ([1, 2], 2)  # keyword argument: no recursion
    assert obj.double([1], factor=5) == [(1, 5)]
    assert _Doubler.double.__doc__ == 'Double x.'


def test_parse_values():
    @parse_values
    def make(value):
        return value

    assert make({'date': '2020-01-02', 'sequence': '003'}) == {
        'date': datetime.date(2020, 1, 2), 'sequence': 3}
    assert make({'date': '2020-01-02T10:11:12.5', 'sequence': 1})['date'] == \
        datetime.date(2020, 1, 2)
    assert make({'date': datetime.datetime(2020, 1, 2, 3)})['date'] == datetime.date(2020, 1, 2)
    assert make([{'sequence': '002'}, None, 'x']) == [{'sequence': 2}, None, 'x']
    assert make('2020-01-02_1_a') == '2020-01-02_1_a'
    assert make({'date': '2020-01-02'}, parse=False) == {'date': '2020-01-02'}
    assert make(None) is None


# ---------------------------------------------------------------------------------------------
# Module functions
# ---------------------------------------------------------------------------------------------

def test_session_record2path(tmp_path):
    record = {'subject': 'ALK01', 'date': '2020-01-01', 'number': 1}
    path = session_record2path(record)
    assert path == PurePosixALFPath('ALK01/2020-01-01/001')
    assert isinstance(path, PurePosixALFPath)
    record = {'lab': 'lab', 'subject': 'ALK01', 'date': datetime.date(2020, 1, 1),
              'number': np.uint16(12)}
    assert session_record2path(record).as_posix() == 'lab/Subjects/ALK01/2020-01-01/012'
    path = session_record2path(record, str(tmp_path))
    assert isinstance(path, ALFPath) and path == ALFPath(tmp_path,
                                                         'lab/Subjects/ALK01/2020-01-01/012')
    path = session_record2path(record, PureWindowsPath('C:/data'))
    assert isinstance(path, PureWindowsALFPath)
    assert str(path) == r'C:\data\lab\Subjects\ALK01\2020-01-01\012'
    assert session_record2path(pd.Series(record), PurePosixPath('/d')).as_posix() == \
        '/d/lab/Subjects/ALK01/2020-01-01/012'
    rest = _load('sessions_list_all')['results'][2]  # start_time instead of date
    assert session_record2path(rest).as_posix() == 'testlab/Subjects/ZFM-01935/2024-03-14/001'
    assert session_record2path({'subject': 's', 'date': pd.Timestamp('2020-01-01'),
                                'number': '7'}).as_posix() == 's/2020-01-01/007'


def test_ses2records_read_record():
    ses = _load('sessions_read_with_revision_2probes')
    session, datasets = ses2records(ses)
    assert session.name == UUID(EID) and isinstance(session.name, UUID)  # as ONE-api
    assert session.to_dict() == {
        'lab': 'testlab', 'subject': 'ZFM-01935', 'date': datetime.date(2024, 3, 12),
        'number': 1, 'task_protocol': '_iblrig_tasks_ephysChoiceWorld6.6.2',
        'projects': 'ibl_neuropixel_brainwide_01'}
    assert len(datasets) == 33 == len(ses['data_dataset_session_related'])
    assert datasets.index.names == ['eid', 'id'] and datasets.index.is_monotonic_increasing
    assert set(datasets.index.get_level_values('eid')) == {UUID(EID)}
    assert all(isinstance(x, UUID) for x in datasets.index.get_level_values('id'))
    assert list(datasets.columns) == ['rel_path', 'file_size', 'hash', 'exists', 'qc',
                                      'default_revision']
    assert str(datasets['file_size'].dtype) == 'UInt64' and datasets['exists'].all()
    assert datasets['qc'].dtype == pd.CategoricalDtype(
        ['NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL'], ordered=True)
    new = datasets.loc[(UUID(EID), UUID(DATASET))]
    assert new['rel_path'] == 'alf/#2024-06-01#/_ibl_trials.choice.npy'
    assert new['default_revision'] is np.True_ and new['file_size'] == 4512
    assert new['hash'] == '8f72bbfb802430997d9404c304aef144'
    old = datasets.loc[(UUID(EID), UUID(DATASET_OLD))]
    assert old['rel_path'] == 'alf/_ibl_trials.choice.npy' and not old['default_revision']
    assert set(datasets['rel_path']) >= {'alf/probe01/clusters.channels.npy',
                                         'alf/_ibl_trials.contrastRight.npy'}
    # The table works with the filters: the default revision of trials.choice is the new one
    chosen = filter_datasets(datasets, '_ibl_trials.choice.npy', 'alf')
    assert chosen.index.get_level_values('id').tolist() == [UUID(DATASET)]


def test_ses2records_list_record():
    ses = _load('sessions_list_all')['results'][1]
    session, datasets = ses2records(ses)
    assert session.name == UUID(ses['id']) and session['date'] == datetime.date(2024, 5, 20)
    assert session['projects'] == 'test_behaviour'
    assert datasets.empty and datasets.index.names == ['eid', 'id']
    assert list(datasets.columns) == ['rel_path', 'file_size', 'hash', 'exists', 'qc']
    # Session id from the URL when there is no id field
    ses = {k: v for k, v in ses.items() if k != 'id'}
    assert ses2records(ses)[0].name == UUID('db74744d-cff4-4ca3-a8ac-6a249585a1d0')


def test_ses2records_dataset_without_file():
    ses = copy.deepcopy(_load('sessions_read'))
    datasets = ses['data_dataset_session_related']
    datasets[0]['data_url'] = None  # registered but not on any server
    revised = copy.deepcopy(datasets[1])
    revised.update(id='0c4e1e5d-6a1e-4b8e-9a2e-1c3e5d7f9b0a', data_url=None,
                   revision='3f00b253-f8a4-42e4-876c-380771836755')
    datasets.append(revised)
    _, table = ses2records(ses)
    assert len(table) == 25
    row = table.loc[(UUID(EID_FAIL), UUID(datasets[0]['id']))]
    assert not row['exists']
    assert row['rel_path'] == f'{datasets[0]["collection"]}/{datasets[0]["name"]}'


def test_datasets2records():
    results = _load('datasets_list_revision_session')['results']
    table = datasets2records(results)
    # as ONE-api: UUID objects
    assert table.index.tolist() == [(UUID(EID), UUID(DATASET_OLD)), (UUID(EID), UUID(DATASET))]
    assert table.loc[(UUID(EID), UUID(DATASET)), 'rel_path'] == \
        'alf/#2024-06-01#/_ibl_trials.choice.npy'
    assert table['default_revision'].tolist() == [False, True]
    assert table['exists'].all() and table['qc'].astype(str).tolist() == ['NOT_SET'] * 2
    assert str(table['file_size'].dtype) == 'UInt64'
    # A single record, a paginated page and extra fields
    one = datasets2records(_load('datasets_read'), additional=['tags', 'version'])
    assert one.index.tolist() == [(UUID(EID_FAIL), UUID('901e18bb-99bf-48f4-a5a4-5d9f695a8581'))]
    assert one.iloc[0]['rel_path'] == 'alf/_ibl_trials.choice.npy'
    assert one.iloc[0]['tags'] == [] and one.iloc[0]['version'] == '1.0.0'
    assert len(datasets2records(_load('datasets_list_tag_paginated')['results'])) == 3
    assert len(datasets2records(_load('datasets_list_session')['results'])) == 25


def test_datasets2records_skips_and_empty():
    results = copy.deepcopy(_load('datasets_list_revision_session')['results'])
    results[0]['file_records'][0]['exists'] = False
    table = datasets2records(results)
    assert table.index.get_level_values('id').tolist() == [UUID(DATASET)]
    results[1]['file_records'] = []
    empty = datasets2records(results)
    assert empty.empty and list(empty.columns) == ['rel_path', 'file_size', 'hash', 'exists',
                                                   'qc']
    empty['x'] = 1  # a copy: the shared empty frame is untouched (Q15)
    assert 'x' not in datasets2records([]).columns


def test_datasets2records_aggregate():
    record = copy.deepcopy(_load('datasets_read'))
    record['session'] = None
    record['file_records'][0]['data_url'] = (
        'https://ibl.flatironinstitute.org/public/aggregates/Subjects/testlab/ZFM-01935/'
        '_ibl_subjectTrials.table.901e18bb-99bf-48f4-a5a4-5d9f695a8581.pqt')
    table = datasets2records([record])
    assert table.iloc[0]['rel_path'] == \
        'public/aggregates/Subjects/testlab/ZFM-01935/_ibl_subjectTrials.table.pqt'
    assert pd.isna(table.index[0][0])
    assert table.index[0][1] == UUID('901e18bb-99bf-48f4-a5a4-5d9f695a8581')


def test_path_from_filerecord(tmp_path):
    fr = {'data_repository_path': '/hoferlab/Subjects/',
          'relative_path': 'SWC_014/2019-12-11/001/alf/probe00/channels.localCoordinates.npy'}
    path = path_from_filerecord(fr, root_path=PurePosixALFPath('/one_root'))
    assert path.as_posix() == ('/one_root/hoferlab/Subjects/SWC_014/2019-12-11/001/alf/probe00/'
                               'channels.localCoordinates.npy')
    assert isinstance(path, PurePosixALFPath)
    default = path_from_filerecord(fr)
    assert default.as_posix().startswith('/hoferlab/Subjects/SWC_014')
    concrete = path_from_filerecord(fr, root_path=str(tmp_path))
    assert isinstance(concrete, ALFPath) and concrete.is_relative_to(tmp_path)
    windows = path_from_filerecord(fr, root_path=PureWindowsPath('C:/one'))
    assert isinstance(windows, PureWindowsALFPath)
    assert str(windows).startswith(r'C:\one\hoferlab\Subjects')
    relative = path_from_filerecord(fr, root_path=None)
    assert relative.as_posix().startswith('hoferlab/')
    with_id = path_from_filerecord(fr, uuid=DATASET)
    assert with_id.name == f'channels.localCoordinates.{DATASET}.npy'
    # A recorded file record (empty repository path) and a list
    recorded = _load('datasets_read')['file_records'][0]
    assert path_from_filerecord([recorded, fr], root_path=PurePosixALFPath('/r'))[0] \
        .as_posix() == '/r/ZFM-01935/2024-03-14/001/alf/_ibl_trials.choice.npy'


def test_path_from_dataset(tmp_path):
    dset = _load('datasets_read')
    assert path_from_dataset(dset).as_posix() == \
        '/ZFM-01935/2024-03-14/001/alf/_ibl_trials.choice.npy'
    path = path_from_dataset(dset, root_path=PurePosixALFPath('/r'),
                             repository='flatiron_testlab', uuid=True)
    assert path.as_posix() == ('/r/ZFM-01935/2024-03-14/001/alf/'
                               '_ibl_trials.choice.901e18bb-99bf-48f4-a5a4-5d9f695a8581.npy')
    # Lists forward every argument (Q14)
    both = path_from_dataset([dset, dset], root_path=PurePosixALFPath('/r'), uuid=True)
    assert both == [path, path]
    with pytest.raises(ValueError, match='no file record in repository "elsewhere"'):
        path_from_dataset(dset, repository='elsewhere')
    local = one_path_from_dataset(dset, tmp_path)
    assert local == ALFPath(tmp_path, 'ZFM-01935/2024-03-14/001/alf/_ibl_trials.choice.npy')
    assert one_path_from_dataset([dset], str(tmp_path)) == [local]
