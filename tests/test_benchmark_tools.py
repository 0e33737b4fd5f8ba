"""Tests of the benchmark tools: the cache generator (benchmarks/make_cache.py) and bench_one.

No timing assertions: these only check that the generated tables are right.
"""
import datetime
import hashlib
import importlib.util
import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from one._tables import parquet
from one.alf.cache import QC_TYPE, read_tables

BENCHMARKS = Path(__file__).resolve().parents[1] / 'benchmarks'


def _module(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


make_cache = _module('make_cache')

N_SESSIONS = 120


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cache')
    make_cache.make_cache(folder, n_sessions=N_SESSIONS, seed=3)
    return folder


@pytest.fixture(scope='module')
def tables(cache_dir):
    return read_tables(cache_dir)  # ids as the file holds them (strings)


def test_deterministic(tmp_path):
    a = make_cache.build_tables(200, seed=1)
    b = make_cache.build_tables(200, seed=1)
    c = make_cache.build_tables(200, seed=2)
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    assert not a[1]['id'].equals(c[1]['id'])
    # files written by two runs hold the same tables (metadata aside)
    make_cache.make_cache(tmp_path / 'x', 50, seed=4)
    make_cache.make_cache(tmp_path / 'y', 50, seed=4)
    for name in ('sessions.pqt', 'datasets.pqt'):
        assert pq.read_table(tmp_path / 'x' / name).equals(pq.read_table(tmp_path / 'y' / name))


@pytest.mark.parametrize('n', [1, 2, 7])
def test_tiny_sizes(n):
    for seed in range(3):
        sessions, datasets, _ = make_cache.build_tables(n, seed=seed)
        assert sessions.num_rows == n and datasets.num_rows > 0
    with pytest.raises(ValueError):
        make_cache.build_tables(0)


def test_cli(tmp_path):
    assert make_cache.main([str(tmp_path), '--sessions', '30', '--seed', '5', '--no-files']) \
        == 0
    info = json.loads((tmp_path / make_cache.INFO_NAME).read_text())
    assert info['n_sessions'] == 30 and info['real_files'] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'bench_info.json', 'datasets.pqt', 'sessions.pqt']


def test_schema(tables):
    sessions, datasets = tables['sessions'], tables['datasets']
    assert sessions.index.name == 'id'
    assert list(sessions.columns) == ['lab', 'subject', 'date', 'number', 'task_protocol',
                                      'projects']
    assert sessions['number'].dtype == np.uint16
    assert all(type(d) is datetime.date for d in sessions['date'])
    assert list(datasets.index.names) == ['eid', 'id']
    assert list(datasets.columns) == ['rel_path', 'file_size', 'hash', 'exists', 'qc',
                                      'default_revision']
    assert str(datasets['file_size'].dtype) == 'UInt64'
    assert datasets['qc'].dtype == QC_TYPE
    assert datasets['exists'].dtype == bool and datasets['default_revision'].dtype == bool
    # canonical lower-case UUID strings, sorted, unique
    for ids in (sessions.index, datasets.index.get_level_values('id')):
        assert all(isinstance(x, str) and str(uuid.UUID(x)) == x for x in ids[:50])
    assert sessions.index.is_monotonic_increasing and sessions.index.is_unique
    assert datasets.index.is_monotonic_increasing and datasets.index.is_unique
    assert set(datasets.index.get_level_values('eid')) <= set(sessions.index)
    meta = tables['_meta']['raw']['datasets']
    assert meta['date_created'] and meta['origin'] == {'benchmarks.make_cache'}


def test_same_format_as_parquet_save(cache_dir, tmp_path):
    """Loading with one._tables.parquet and saving again gives the same schema and data."""
    for name in ('sessions.pqt', 'datasets.pqt'):
        df, meta = parquet.load(cache_dir / name)
        parquet.save(tmp_path / name, df, meta)
        ours, theirs = pq.read_schema(cache_dir / name), pq.read_schema(tmp_path / name)
        assert ours.equals(theirs, check_metadata=False)
        # pandas metadata: same index, columns and dtypes ('attributes' holds DataFrame.attrs,
        # which depend on what the loader put there, not on the file format)
        ours_pd, theirs_pd = (json.loads(s.metadata[b'pandas']) for s in (ours, theirs))
        ours_pd.pop('attributes', None)
        theirs_pd.pop('attributes', None)
        assert ours_pd == theirs_pd
        assert pq.read_table(cache_dir / name).equals(pq.read_table(tmp_path / name))


def test_contents(tables):
    sessions, datasets = tables['sessions'], tables['datasets']
    assert len(sessions) == N_SESSIONS
    per_session = datasets.groupby(level='eid').size()
    assert len(per_session) == N_SESSIONS and per_session.min() > 5
    assert 40 < per_session.mean() < 200
    assert not sessions.duplicated(['subject', 'date', 'number']).any()
    rel = datasets['rel_path'].astype(object)
    assert rel.str.startswith('alf/_ibl_trials.').any()
    assert rel.str.contains(r'^alf/probe0\d/pykilosort/spikes\.times\.npy$').any()
    assert rel.str.contains('imec0.ap.cbin').any()
    assert rel.str.contains('#2024-05-06#').any()
    assert set(datasets['qc'].astype(object)) >= {'NOT_SET', 'PASS', 'WARNING', 'FAIL'}
    assert 0.85 < datasets['exists'].mean() < 1
    hashes = datasets['hash'].dropna().astype(object)
    assert hashes.str.fullmatch('[0-9a-f]{32}').all()
    assert (datasets['file_size'] > 0).all()


def test_one_default_revision_per_dataset(tables):
    datasets = tables['datasets']
    rel = datasets['rel_path'].astype(object)
    key = pd.Series(rel.str.replace(r'#[^#]+#/', '', regex=True).to_numpy())
    eids = datasets.index.get_level_values('eid').to_numpy()
    defaults = pd.Series(datasets['default_revision'].to_numpy()).groupby(
        [eids, key.to_numpy()]).sum()
    assert (defaults == 1).all()
    assert rel.str.contains('#').any()
    assert not datasets['default_revision'].all()  # superseded originals


def test_real_files(cache_dir, tables):
    info = json.loads((cache_dir / make_cache.INFO_NAME).read_text())
    real = info['real_files']
    datasets = tables['datasets'].xs(real['eid'], level='eid')
    rows = datasets[datasets['rel_path'].astype(object).isin(real['files'])]
    assert len(rows) == len(make_cache.TRIALS_ATTRIBUTES) == len(real['files'])
    for _, row in rows.iterrows():
        file = cache_dir / real['session_path'] / row['rel_path']
        data = file.read_bytes()
        assert len(data) == row['file_size'] and hashlib.md5(data).hexdigest() == row['hash']
        assert row['exists']
    session = tables['sessions'].loc[real['eid']]
    assert real['session_path'] == (f"{session['lab']}/Subjects/{session['subject']}/"
                                    f"{session['date']}/{session['number']:03d}")


def test_one_on_generated_cache(cache_dir):
    try:
        from one.api import One
    except ImportError as ex:
        pytest.skip(f'one.api does not import yet: {ex}')
    info = json.loads((cache_dir / make_cache.INFO_NAME).read_text())
    eid = info['real_files']['eid']
    subject = info['real_files']['session_path'].split('/')[2]
    one = One(cache_dir=cache_dir, mode='local')
    eids = one.search(subject=subject)
    assert uuid.UUID(eid) in eids
    found = one.search(dataset=['_ibl_trials.goCue_times', 'spikes.times'])
    assert found and all(isinstance(e, uuid.UUID) for e in found)
    assert len(one.list_datasets(eid)) > 15
    trials = one.load_object(eid, 'trials', check_hash=True)
    assert set(trials) == set(make_cache.TRIALS_ATTRIBUTES)
    assert trials['intervals'].shape == (600, 2)


def test_bench_table_formatting():
    bench_one = _module('bench_one')
    fake = {'ops': {'startup': {'first': .5, 'median': .4, 'min': .4, 'n': 3},
                    'search_dataset': {'error': 'ValueError: nope'}},
            'memory': {'peak_mb': 100., 'kept_mb': 90.}, 'n_datasets': 1000}
    text = bench_one.format_table({10_000: fake})
    assert 'start-up' in text and 'ValueError' in text and '600.0' in text


def test_round_trip_counting():
    proxy = _module('latency_proxy')
    assert proxy.sequential_round_trips([]) == 0
    # three in flight together, then two in a row
    intervals = [(0, 1), (0.1, 1.1), (0.2, 0.9), (1.2, 2), (2.5, 3)]
    assert proxy.sequential_round_trips(intervals) == 3
    assert proxy.max_in_flight(intervals) == 3
    assert proxy.max_in_flight([(0, 1), (1, 2)]) == 1


def test_latency_proxy(alyx_server):
    import requests
    proxy_module = _module('latency_proxy')
    with proxy_module.LatencyProxy(alyx_server.url, delay=0.01) as proxy:
        session = requests.Session()
        token = session.post(f'{proxy.url}/auth-token', data={
            'username': alyx_server.username, 'password': alyx_server.password}).json()['token']
        session.headers['Authorization'] = f'Token {token}'
        record = session.get(f'{proxy.url}/sessions/1fd389ac-a2f2-4f4c-a047-7a3b59c50f33').json()
        # Links in answers point at the proxy, so later requests go through it too
        assert record['url'].startswith(proxy.url)
        data_url = record['data_dataset_session_related'][0]['data_url']
        assert data_url.startswith(proxy.url)
        r = session.get(data_url)
        assert r.status_code == 200 and len(r.content) == \
            record['data_dataset_session_related'][0]['file_size']
        stats = proxy.stats()
        assert (stats['rest'], stats['data']) == (2, 1)
        assert stats['sequential'] == 3 and stats['connections'] == 1  # kept alive
        assert [r.path.split('?')[0] for r in proxy.requests()][:1] == ['/auth-token']
        # Another process reads and resets the counts over HTTP
        assert requests.get(f'{proxy.url}/_proxy/stats').json()['rest'] == 2
        requests.post(f'{proxy.url}/_proxy/reset')
        assert proxy.stats()['rest'] == 0
    # The server saw each proxied request once
    assert alyx_server.count('GET') == 2
