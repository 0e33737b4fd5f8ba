"""Places where one-next answers as ONE-api 3.6.1 does (issue 9, item 4).

The expected values were observed by running ONE-api 3.6.1 as a black box (in its own virtual
environment) on the same inputs: the ``SAVE_ON_DELETE`` switch, `search_insertions` in local
mode, the layout of `spec.describe`, the order of the revisions in the "Multiple revisions"
warning, `aws.get_s3_virtual_host` and the accepted modes.  Where we differ on purpose, the test
says so.
"""
import gc
import io
import json
import warnings
from contextlib import redirect_stdout
from datetime import date
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
from alyx_server import PASSWORD, USERNAME

import one.api
import one.params
from one.alf import spec
from one.alf.cache import default_cache, make_parquet_db, save_tables
from one.alf.exceptions import ALFMultipleRevisionsFound, ALFWarning
from one.api import ONE, One, OneAlyx
from one.remote import aws
from one.synthetic import make_dataset_folder
from one.util import filter_revision_last_before

FIXTURES = Path(__file__).parent / 'fixtures' / 'alyx'
MODES = ('local', 'auto', 'refresh', 'remote')


# ---- one.api.SAVE_ON_DELETE ------------------------------------------------------------------
@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / 'data'
    make_dataset_folder(root, n_subjects=1, n_sessions=2, seed=3)
    make_parquet_db(root)
    return root


@pytest.mark.parametrize('switch', [False, True])
def test_save_on_delete_is_the_one_api_attribute(data_root, monkeypatch, switch):
    import one._api.local
    assert one.api.SAVE_ON_DELETE is False  # ONE_SAVE_ON_DELETE is not set
    monkeypatch.setattr(one.api, 'SAVE_ON_DELETE', switch)  # what a user writes
    assert one._api.local.SAVE_ON_DELETE is False
    local = One(cache_dir=data_root)
    eid = local.search()[0]
    session = local.eid2path(eid)
    (session / 'alf' / '_ibl_wheel.position.npy').unlink()
    with pytest.raises(Exception, match='not found on disk'):
        local.load_dataset(eid, '_ibl_wheel.position.npy')  # marks the dataset missing
    del local
    gc.collect()
    reloaded = One(cache_dir=data_root)
    holding = {str(e) for e in reloaded.search(datasets='_ibl_wheel.position.npy')}
    assert (str(eid) in holding) is not switch  # saved at deletion only when switched on


# ---- OneAlyx.search_insertions in local mode ----------------------------------------------------
PIDS = {'c1029cda': 'c1029cda-684f-4fbb-b859-a5ebbf85c324',  # SWC_038 2024-05-21 probe00
        '1660de06': '1660de06-d188-49e8-b35b-f625d81f460f',  # ZFM-01935 2024-03-14 probe00
        '74a17646': '74a17646-cc3e-4699-81d4-cd1220e9816c',  # ZFM-01935 2024-03-12 probe01
        '84d21e11': '84d21e11-1ee5-4b0a-9d1b-bcb879833ce6'}  # ZFM-01935 2024-03-12 probe00


def pids(*names):
    return [UUID(PIDS[n]) for n in names]


def write_insertions_cache(folder):
    """Cache tables of the recorded insertions (Alyx 3.6.1) and of their sessions."""
    records = json.loads((FIXTURES / 'insertions_list.json').read_text())['results']
    sessions = {}
    for rec in records:
        info = rec['session_info']
        sessions[info['id']] = {
            'lab': info['lab'], 'subject': info['subject'],
            'date': date.fromisoformat(info['start_time'][:10]), 'number': info['number'],
            'task_protocol': info['task_protocol'], 'projects': ','.join(info['projects'])}
    cache = default_cache()
    cache['sessions'] = pd.DataFrame.from_dict(sessions, orient='index').rename_axis('id')
    cache['insertions'] = pd.DataFrame(
        [{k: v for k, v in r.items() if k != 'session_info'} for r in records]
    ).rename(columns={'session': 'eid'}).set_index(['eid', 'id'])
    cache['_meta']['raw']['insertions'] = {'date_created': '2024-06-01 10:00', 'origin': {'x'}}
    save_tables(cache, folder, clobber=True)
    return records


@pytest.fixture
def local_alyx(alyx_server, tmp_path):
    write_insertions_cache(tmp_path / 'cache')
    return OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                   cache_dir=tmp_path / 'cache', silent=True, mode='local')


@pytest.mark.parametrize('query, expected', [
    ({}, pids('c1029cda', '1660de06', '74a17646', '84d21e11')),
    ({'name': 'probe00'}, pids('c1029cda', '1660de06', '84d21e11')),
    ({'subject': 'ZFM-01935'}, pids('1660de06', '74a17646', '84d21e11')),
    ({'number': 1}, pids('c1029cda', '1660de06', '74a17646', '84d21e11')),
    ({'name': 'probe0*'}, pids('c1029cda', '1660de06', '74a17646', '84d21e11')),
    ({'name': ['probe00', 'probe01']}, pids('c1029cda', '1660de06', '74a17646', '84d21e11')),
    ({'model': '3B'}, pids('c1029cda', '1660de06', '74a17646', '84d21e11')),
    ({'serial': '1894101'}, pids('74a17646')),
    ({'lab': 'mainenlab'}, []),
    ({'subject': 'nobody'}, []),
    ({'subject': 'ZFM', 'name': 'probe01'}, pids('74a17646')),
    # ONE-api raises NotImplementedError for an abbreviated session term (spec quirk Q13) and
    # TypeError for a number as serial; we answer them
    ({'subj': 'SWC'}, pids('c1029cda')),
    ({'serial': 1894101}, pids('74a17646')),
])
def test_search_insertions_local(local_alyx, alyx_server, query, expected):
    alyx_server.clear_log()
    assert local_alyx.search_insertions(**query) == expected
    assert alyx_server.count(path='/insertions') == 0  # answered from the cache tables


def test_search_insertions_local_details_and_errors(local_alyx):
    found, records = local_alyx.search_insertions(details=True)
    assert found == pids('c1029cda', '1660de06', '74a17646', '84d21e11')
    assert [r['name'] for r in records] == ['probe00', 'probe00', 'probe01', 'probe00']
    first = records[0]
    assert list(first) == ['model', 'name', 'json', 'serial', 'auto_datetime',
                           'chronic_insertion', 'datasets', 'date', 'subject', 'number']
    assert (first['date'], first['subject'], first['number']) == (date(2024, 5, 21), 'SWC_038', 1)
    assert first['json']['qc'] == 'PASS' and first.serial == '1894100'
    assert local_alyx.search_insertions(details=True, name='nothing') == ([], None)
    for term in ('json', 'chronic_insertion'):
        with pytest.raises(NotImplementedError, match=term):
            local_alyx.search_insertions(**{term: 'x'})
    with pytest.raises(ValueError, match='Invalid search term "bogus"'):
        local_alyx.search_insertions(bogus=1)


def test_search_insertions_local_without_wildcards(local_alyx):
    local_alyx.wildcards = False  # plain substrings
    assert local_alyx.search_insertions(name='probe0.') == []
    assert local_alyx.search_insertions(name='probe0*') == []
    assert local_alyx.search_insertions(name='robe01') == pids('74a17646')


def test_search_insertions_local_query_type_on_remote_instance(alyx_server, tmp_path):
    write_insertions_cache(tmp_path / 'cache')
    remote = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                     cache_dir=tmp_path / 'cache', silent=True, mode='remote')
    alyx_server.clear_log()
    assert remote.search_insertions(query_type='local', name='probe01') == pids('74a17646')
    assert alyx_server.count(path='/insertions') == 0


def test_search_insertions_local_without_table(alyx_server, tmp_path):
    with pytest.warns(UserWarning, match='No cache tables'):
        local = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                        cache_dir=tmp_path, silent=True, mode='local')
    with pytest.warns(UserWarning, match='No insertions data loaded.'):
        assert local.search_insertions() == []
    with pytest.warns(UserWarning, match='No insertions data loaded.'):
        assert local.search_insertions(details=True, name='probe00') == ([], None)


def test_one_search_insertions_from_the_tables(tmp_path):
    write_insertions_cache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the tables have no datasets
        local = One(cache_dir=tmp_path)
    assert local._search_insertions(subject='SWC_038') == pids('c1029cda')


# ---- spec.describe layout ---------------------------------------------------------------------
def described(part=None, width=99):
    out = io.StringIO()
    with redirect_stdout(out):
        spec.describe(part, width=width)
    return out.getvalue().split('\n')


@pytest.mark.parametrize('part', list(spec.SPEC_DESCRIPTION))
def test_describe_part_layout(part):
    lines = described(part)
    pattern = spec.path_pattern()
    assert lines[0] == pattern
    # ONE-api: carets under the part on a line exactly as wide as the pattern
    start = pattern.index(part)
    assert lines[1] == ' ' * start + '^' * len(part) + ' ' * (len(pattern) - start - len(part))
    assert len(lines[1]) == len(pattern)
    assert lines[2:4] == ['', part.upper()]
    assert all(line and len(line) <= 99 for line in lines[4:-1]) and lines[-1] == ''


def test_describe_all_layout():
    lines = described()
    assert lines[0] == spec.path_pattern()
    headers = [i for i, line in enumerate(lines) if line in
               {k.upper() for k in spec.SPEC_DESCRIPTION}]
    assert [lines[i] for i in headers] == [k.upper() for k in spec.SPEC_DESCRIPTION]
    assert all(lines[i - 1] == '' for i in headers)
    assert described('') == lines  # an empty part is no part, as in ONE-api


# ---- order of the revisions in the "Multiple revisions" warning ------------------------------
@pytest.mark.parametrize('rel_paths, revision, message', [
    # every dataset is one row: the revisions in input order
    (['alf/#2021-03-01#/a.b.npy', 'alf/#2020-01-01#/c.d.npy', 'alf/e.f.npy',
      'alf/#2022-05-05#/g.h.npy'], None, '"2021-03-01", "2020-01-01", "", "2022-05-05"'),
    (['alf/e.f.npy', 'alf/#2022-05-05#/g.h.npy', 'alf/#2020-01-01#/c.d.npy',
      'alf/#2021-03-01#/a.b.npy'], None, '"", "2022-05-05", "2020-01-01", "2021-03-01"'),
    (['alf/#b#/x.y.npy', 'alf/#a#/z.y.npy', 'alf/#c#/w.y.npy', 'alf/#a#/v.y.npy'], None,
     '"b", "a", "c"'),
    (['alf/#b#/x.y.npy', 'alf/#a#/z.y.npy', 'alf/#c#/w.y.npy', 'alf/#a#/v.y.npy'], 'z',
     '"b", "a", "c"'),
    # a dataset with several revisions, or rows left out: in the order of the datasets' paths
    (['alf/#b#/x.y.npy', 'alf/#a#/x.y.npy', 'alf/#c#/z.y.npy', 'alf/#a#/w.y.npy',
      'alf/q.r.npy'], None, '"", "a", "b", "c"'),
    (['alf/#b#/x.y.npy', 'alf/#a#/z.y.npy', 'alf/#c#/w.y.npy', 'alf/#a#/v.y.npy',
      'alf/#a#/x.y.npy'], None, '"a", "c", "b"'),
    (['alf/#b#/x.y.npy', 'alf/#a#/z.y.npy', 'alf/#c#/w.y.npy', 'alf/#a#/v.y.npy'], 'b',
     '"a", "b"'),
])
def test_multiple_revisions_order(rel_paths, revision, message):
    frame = pd.DataFrame({'rel_path': rel_paths},
                         index=pd.Index([f'd{i}' for i in range(len(rel_paths))], name='id'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        filter_revision_last_before(frame.copy(), revision=revision, assert_unique=False)
    assert [str(w.message) for w in caught if 'Multiple revisions' in str(w.message)] == \
        [f'Multiple revisions: {message}']
    assert all(issubclass(w.category, ALFWarning) for w in caught)
    with warnings.catch_warnings(), pytest.raises(ALFMultipleRevisionsFound, match=message):
        warnings.simplefilter('ignore')  # "No default revision ..."
        filter_revision_last_before(frame.copy(), revision=revision, assert_unique=False,
                                    assert_consistent=True)


# ---- aws.get_s3_virtual_host ------------------------------------------------------------------
@pytest.mark.parametrize('uri, url', [
    ('s3://bucket/path/to/file', 'https://bucket.s3.us-east-1.amazonaws.com/path/to/file'),
    ('s3://bucket', 'https://bucket.s3.us-east-1.amazonaws.com/'),
    ('s3://bucket/', 'https://bucket.s3.us-east-1.amazonaws.com/'),
    ('s3://bucket///', 'https://bucket.s3.us-east-1.amazonaws.com/'),
    ('s3://bucket/path/', 'https://bucket.s3.us-east-1.amazonaws.com/path'),
    ('s3://bucket//a//b', 'https://bucket.s3.us-east-1.amazonaws.com/a//b'),
    ('s3://bucket/a/b.npy?x=1', 'https://bucket.s3.us-east-1.amazonaws.com/a/b.npy'),
    ('bucket', 'https://bucket.s3.us-east-1.amazonaws.com'),
    ('bucket/', 'https://bucket.s3.us-east-1.amazonaws.com'),
    ('bucket//', 'https://bucket.s3.us-east-1.amazonaws.com'),
    ('bucket/path/', 'https://bucket.s3.us-east-1.amazonaws.com/path'),
    ('/bucket/path', 'https://bucket.s3.us-east-1.amazonaws.com/path'),
])
def test_get_s3_virtual_host(uri, url):
    assert aws.get_s3_virtual_host(uri, 'us-east-1') == url


# ---- modes -------------------------------------------------------------------------------------
@pytest.mark.parametrize('mode', MODES)
def test_the_four_modes_are_accepted(data_root, mode):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # 'remote' on a plain One warns that it is local
        assert One(cache_dir=data_root, mode=mode).mode == mode
    ONE.cache_clear()
    assert ONE(cache_dir=data_root, mode=mode).mode == 'local'  # a folder is always local
    ONE.cache_clear()


@pytest.mark.filterwarnings('ignore:Downloading cache tables from another origin')
@pytest.mark.parametrize('mode', MODES)
def test_the_four_modes_are_accepted_by_onealyx(alyx_server, tmp_path, mode):
    write_insertions_cache(tmp_path / 'cache')
    instance = OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                       cache_dir=tmp_path / 'cache', silent=True, mode=mode)
    assert instance.mode == mode


@pytest.mark.parametrize('mode', ['bogus', 'online', 'LOCAL', '', None, 1])
def test_other_modes_raise_naming_the_allowed_ones(data_root, alyx_server, tmp_path, mode):
    allowed = '"local", "auto", "refresh", "remote"'
    calls = [lambda: One(cache_dir=data_root, mode=mode),
             lambda: ONE(cache_dir=data_root, mode=mode),  # was accepted silently
             lambda: ONE(offline=True, cache_dir=data_root, mode=mode),
             lambda: ONE(base_url=alyx_server.url, silent=True, mode=mode),
             lambda: OneAlyx(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                             cache_dir=tmp_path, silent=True, mode=mode)]
    for call in calls:
        ONE.cache_clear()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # offline=True
            with pytest.raises(ValueError, match=f'Mode "{mode}" not recognized; '
                                                 f'expected one of {allowed}'):
                call()
    assert alyx_server.count() == 0  # refused before connecting
    assert one.params.get_default_client() is None  # and before any set-up
    ONE.cache_clear()
