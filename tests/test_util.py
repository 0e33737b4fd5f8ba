"""one.util: dataset filters, revision selection, argument checks, LazyId and decorators."""
import datetime
import re
import uuid
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

import one.util as util
from one.alf.exceptions import (
    ALFMultipleCollectionsFound,
    ALFMultipleObjectsFound,
    ALFMultipleRevisionsFound,
    ALFWarning,
)
from one.alf.spec import QC
from one.util import (
    Bunch,
    LazyId,
    autocomplete,
    ensure_list,
    filter_datasets,
    filter_revision_last_before,
    flatten,
    index_last_before,
    parse_id,
    refresh,
    validate_date_range,
)

# The §5.1 schema, built here so that these tests depend on one.util only
QC_TYPE = pd.CategoricalDtype(['NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL'], ordered=True)
EID = 'd3372b15-f696-4279-9be5-98f15783b5bb'
EID2 = 'aaf101c3-2581-450a-8abd-ddb8f557a5ad'

REL_PATHS = [
    'alf/_ibl_trials.intervals.npy',
    'alf/_ibl_trials.goCue_times.npy',
    'alf/_ibl_trials.intervals_bpod.npy',
    'alf/_ibl_wheel.position.npy',
    'alf/_ibl_wheel.timestamps.npy',
    'alf/probe00/spikes.times.npy',
    'alf/probe00/spikes.clusters.npy',
    'alf/probe00/clusters.depths.npy',
    'alf/probe01/spikes.times.npy',
    'alf/probe01/clusters.depths.npy',
    'raw_ephys_data/probe00/_spikeglx_ephysData_g0_t0.imec0.ap.meta',
    'raw_ephys_data/_spikeglx_ephysData_g0_t0.nidq.meta',
    'raw_video_data/_iblrig_leftCamera.raw.mp4',
    '_ibl_experiment.description.yaml',
    'spikes.times.npy',
]


def _frame(rel_paths, eid=EID, qc=None, default_revision=None, ids=None) -> pd.DataFrame:
    """A datasets table of the cache schema, index (eid, id) of UUID strings."""
    n = len(rel_paths)
    ids = ids or [str(uuid.uuid5(uuid.NAMESPACE_URL, f'{eid}/{p}/{i}'))
                  for i, p in enumerate(rel_paths)]
    df = pd.DataFrame({
        'rel_path': list(rel_paths),
        'file_size': pd.array([100] * n, dtype='UInt64'),
        'hash': ['0' * 32] * n,
        'exists': [True] * n,
        'qc': pd.Categorical(qc or ['NOT_SET'] * n, dtype=QC_TYPE),
    }, index=pd.MultiIndex.from_arrays([[eid] * n, ids], names=['eid', 'id']))
    if default_revision is not None:
        df['default_revision'] = default_revision
    return df


@pytest.fixture
def datasets():
    return _frame(REL_PATHS)


def _paths(df) -> list:
    return sorted(df['rel_path'])


# ---------------------------------------------------------------------------------------------
# Regular-expression building
# ---------------------------------------------------------------------------------------------

def test_collection_spec():
    assert util._collection_spec() == '({collection}/)?(#{revision}#/)?'
    assert util._collection_spec('', '-') == '#{revision}#/'
    assert util._collection_spec('alf', None) == '{collection}/(#{revision}#/)?'
    assert util._collection_spec(None, '') == '({collection}/)?'
    assert util._collection_spec('', '') == ''
    assert util._collection_spec('alf', '2020-01-01') == '{collection}/#{revision}#/'


def test_file_spec():
    base = r'_?{namespace}?_?{object}\.{attribute}(?:_{timescale})?(?:\.{extra})*\.{extension}$'
    assert util._file_spec() == base
    assert util._file_spec(object='trials', namespace=None) == base
    assert util._file_spec(namespace='ibl') == base.replace('{namespace}?', '{namespace}')
    assert util._file_spec(timescale='bpod') == base.replace('{timescale})?', '{timescale})')
    assert util._file_spec(extra='raw') == base.replace('{extra})*', '{extra})')
    required = util._file_spec(namespace='ibl', timescale='bpod', extra='raw')
    assert required == (r'_?{namespace}_?{object}\.{attribute}(?:_{timescale})'
                        r'(?:\.{extra})\.{extension}$')


@pytest.mark.parametrize('pattern, name, expected', [
    ('*.meta', 'x.ap.meta', True),
    ('*.meta', 'probe00/x.ap.meta', False),  # a leading star stays within the file name
    ('spikes.*', 'spikes.times.npy', True),
    ('*spikes*', 'probe00/spikes.times.npy', False),
    ('trial?.x.npy', 'trials.x.npy', True),
    ('[st]pikes.x.npy', 'spikes.x.npy', True),
    ('[!s]pikes.x.npy', 'spikes.x.npy', False),
    ('a+b(c).npy', 'a+b(c).npy', True),  # regex characters are literal
    ('a+b(c).npy', 'aab(c).npy', False),
    ('[unclosed.npy', '[unclosed.npy', True),
])
def test_wildcard_translation(pattern, name, expected):
    regex = util._wildcard_to_regex(pattern)
    assert (re.fullmatch(regex, name) is not None) is expected


def test_wildcard_translation_by_kind():
    # A star in a collection spans folders, but never a revision folder
    assert re.fullmatch(util._wildcard_to_regex('alf*', 'collection'), 'alf/probe00')
    assert re.fullmatch(util._wildcard_to_regex('*probe*', 'collection'), 'alf/probe00/ks')
    assert not re.fullmatch(util._wildcard_to_regex('alf/*', 'collection'), 'alf/#2020-01-01#')
    # A star in a file-name part or a revision stays within one folder name
    assert not re.fullmatch(util._wildcard_to_regex('*', 'part'), 'probe00/spikes')
    assert re.fullmatch(util._wildcard_to_regex('trial?', 'part'), 'trials')
    assert not re.fullmatch(util._wildcard_to_regex('2020*', 'revision'), '2020-01-01#/x')
    # A non-leading star in a file name matches anything (documented ONE behaviour)
    assert re.fullmatch(util._wildcard_to_regex('spikes*'), 'spikes.times.npy')


# ---------------------------------------------------------------------------------------------
# filter_datasets: file names
# ---------------------------------------------------------------------------------------------

def test_filename_wildcards_vs_regex(datasets):
    kw = dict(assert_unique=False, revision_last_before=False)
    # With wildcards the dots are literal and the name must match completely
    out = filter_datasets(datasets, '_ibl_trials.intervals.npy', wildcards=True, **kw)
    assert _paths(out) == ['alf/_ibl_trials.intervals.npy']
    assert _paths(filter_datasets(datasets, '_ibl_trials.intervals', wildcards=True, **kw)) == []
    out = filter_datasets(datasets, '_ibl_trials.intervals*', wildcards=True, **kw)
    assert _paths(out) == ['alf/_ibl_trials.intervals.npy', 'alf/_ibl_trials.intervals_bpod.npy']
    # As regular expressions, '.' is any character and '*' a repeat
    out = filter_datasets(datasets, r'_ibl_trials\.intervals.*', **kw)
    assert len(out) == 2
    assert _paths(filter_datasets(datasets, '_ibl_trials.intervals*', **kw)) == []
    out = filter_datasets(datasets, r'.*trials.(intervals|goCue_times)\.npy', **kw)
    assert _paths(out) == ['alf/_ibl_trials.goCue_times.npy', 'alf/_ibl_trials.intervals.npy']


def test_filename_none_matches_valid_alf_names_only(datasets):
    extra = _frame(['alf/README', 'alf/spike_sorting.log'], ids=None)
    table = pd.concat([datasets, extra])
    out = filter_datasets(table, None, assert_unique=False, revision_last_before=False)
    assert _paths(out) == sorted(REL_PATHS)
    out = filter_datasets(table, '', assert_unique=False, revision_last_before=False)
    assert len(out) == len(REL_PATHS)


def test_leading_star_does_not_swallow_collections(datasets):
    kw = dict(wildcards=True, assert_unique=False, revision_last_before=False)
    out = filter_datasets(datasets, '*.meta', 'raw_ephys_data', **kw)
    assert _paths(out) == ['raw_ephys_data/_spikeglx_ephysData_g0_t0.nidq.meta']
    out = filter_datasets(datasets, '*.meta', 'raw_ephys_data*', **kw)
    assert len(out) == 2
    out = filter_datasets(datasets, '*.meta', **kw)  # any collection
    assert len(out) == 2


def test_filename_list_shares_collection_prefix(datasets):
    """Q8: every alternative is preceded by the collection (the original only did the first)."""
    kw = dict(wildcards=True, assert_unique=False, revision_last_before=False)
    out = filter_datasets(datasets, ['*spikes*', '*clusters*'], 'alf/probe00', **kw)
    assert _paths(out) == ['alf/probe00/clusters.depths.npy', 'alf/probe00/spikes.clusters.npy',
                           'alf/probe00/spikes.times.npy']
    # Without a collection: spikes and clusters from every collection (as documented)
    out = filter_datasets(datasets, ['*spikes*', '*clusters*'], **kw)
    assert len(out) == 6
    assert set(out['rel_path']) >= {'spikes.times.npy', 'alf/probe01/clusters.depths.npy'}
    # Regex mode too
    out = filter_datasets(datasets, ['spikes.times.npy', 'clusters.*'], 'alf/probe01',
                          assert_unique=False, revision_last_before=False)
    assert _paths(out) == ['alf/probe01/clusters.depths.npy', 'alf/probe01/spikes.times.npy']


def test_filename_dict_of_parts(datasets):
    kw = dict(assert_unique=False, revision_last_before=False)
    out = filter_datasets(datasets, {'object': ['wheel', 'trial.']}, **kw)
    assert len(out) == 5
    assert _paths(filter_datasets(datasets, {'object': 'spikes', 'attribute': 'times'}, **kw)) \
        == ['alf/probe00/spikes.times.npy', 'alf/probe01/spikes.times.npy', 'spikes.times.npy']
    # Wildcards inside parts
    out = filter_datasets(datasets, {'object': ['wheel', 'trial?']}, wildcards=True, **kw)
    assert len(out) == 5
    # A part given a value becomes required: only namespaced trials match
    out = filter_datasets(datasets, {'namespace': 'ibl', 'object': 'trials'}, **kw)
    assert len(out) == 3
    out = filter_datasets(datasets, {'timescale': 'bpod'}, **kw)
    assert _paths(out) == ['alf/_ibl_trials.intervals_bpod.npy']
    out = filter_datasets(datasets, {'extra': 'ap'}, **kw)
    assert _paths(out) == ['raw_ephys_data/probe00/_spikeglx_ephysData_g0_t0.imec0.ap.meta']
    out = filter_datasets(datasets, {'attribute': 'raw', 'extension': 'mp4'}, **kw)
    assert _paths(out) == ['raw_video_data/_iblrig_leftCamera.raw.mp4']
    out = filter_datasets(datasets, {'extension': 'yaml'}, **kw)
    assert _paths(out) == ['_ibl_experiment.description.yaml']
    # A part set to None keeps its default pattern and stays optional
    assert len(filter_datasets(datasets, {'namespace': None, 'object': 'spikes'}, **kw)) == 4


def test_filename_dict_unknown_part_raises(datasets):
    with pytest.raises(KeyError, match='Unknown field "foo"'):
        filter_datasets(datasets, {'foo': 'bar'}, assert_unique=False)


# ---------------------------------------------------------------------------------------------
# filter_datasets: collections
# ---------------------------------------------------------------------------------------------

def test_collection_is_anchored(datasets):
    kw = dict(assert_unique=False, revision_last_before=False)
    out = filter_datasets(datasets, collection='alf', **kw)
    assert len(out) == 5 and all(p.count('/') == 1 for p in out['rel_path'])
    # Wildcard / regex extensions reach sub-collections
    assert len(filter_datasets(datasets, collection='alf*', wildcards=True, **kw)) == 10
    assert len(filter_datasets(datasets, collection='alf.*', **kw)) == 10
    assert len(filter_datasets(datasets, collection='*probe00', wildcards=True, **kw)) == 4
    # A list of collections
    out = filter_datasets(datasets, collection=['alf/probe00', 'alf/probe01'], **kw)
    assert len(out) == 5
    # '' means "no collection"
    out = filter_datasets(datasets, collection='', **kw)
    assert _paths(out) == ['_ibl_experiment.description.yaml', 'spikes.times.npy']
    # A collection that does not exist
    assert filter_datasets(datasets, collection='foo', **kw).empty


def test_collection_wildcard_does_not_swallow_revision_folder():
    df = _frame(['alf/#2024-06-01#/_ibl_trials.choice.npy', 'alf/probe00/spikes.times.npy',
                 'alf/probe00/#2024-06-01#/spikes.depths.npy'])
    out = filter_datasets(df, collection='alf/*', wildcards=True, assert_unique=False,
                          revision_last_before=False)
    assert _paths(out) == ['alf/probe00/#2024-06-01#/spikes.depths.npy',
                           'alf/probe00/spikes.times.npy']
    out = filter_datasets(df, collection='alf*', wildcards=True, assert_unique=False,
                          revision_last_before=False)
    assert len(out) == 3


def test_file_part_wildcard_keeps_collection_anchored(datasets):
    kw = dict(wildcards=True, assert_unique=False, revision_last_before=False)
    out = filter_datasets(datasets, {'object': '*'}, 'alf', **kw)
    assert len(out) == 5 and all(p.count('/') == 1 for p in out['rel_path'])
    out = filter_datasets(datasets, {'object': 'sp*', 'extension': 'np?'}, **kw)
    assert len(out) == 4


def test_collection_and_filename(datasets):
    datasets['default_revision'] = True
    out = filter_datasets(datasets, 'spikes.times.npy', 'alf/probe01')
    assert _paths(out) == ['alf/probe01/spikes.times.npy']
    assert 'revision' in out.columns and out['revision'].tolist() == ['']
    out = filter_datasets(datasets, 'spikes.times.npy', '')
    assert _paths(out) == ['spikes.times.npy']


# ---------------------------------------------------------------------------------------------
# filter_datasets: assert_unique
# ---------------------------------------------------------------------------------------------

def test_assert_unique_multiple_collections(datasets):
    with pytest.raises(ALFMultipleCollectionsFound) as err:
        filter_datasets(datasets, 'spikes.times.npy', collection='alf.*')
    assert err.value.message == '"alf/probe00", "alf/probe01"'
    # Also when some match has no collection
    with pytest.raises(ALFMultipleCollectionsFound) as err:
        filter_datasets(datasets, 'spikes.times.npy')
    assert err.value.message == '"", "alf/probe00", "alf/probe01"'


def test_assert_unique_multiple_objects(datasets):
    with pytest.raises(ALFMultipleObjectsFound) as err:
        filter_datasets(datasets, '_ibl_trials.*', 'alf', wildcards=True,
                        revision_last_before=False)
    assert 'alf/_ibl_trials.intervals.npy' in err.value.message
    with pytest.raises(ALFMultipleObjectsFound):
        filter_datasets(datasets, '_ibl_wheel.*', 'alf', wildcards=True, revision_last_before=True,
                        revision='')


def test_assert_unique_multiple_revisions():
    df = _frame(['alf/#2020-01-01#/obj.attr.npy', 'alf/#2021-01-01#/obj.attr.npy'])
    with pytest.raises(ALFMultipleRevisionsFound) as err:
        filter_datasets(df, 'obj.attr.npy', revision_last_before=False)
    assert err.value.message == '"2020-01-01", "2021-01-01"'
    out = filter_datasets(df, 'obj.attr.npy', revision='2021-01-01', revision_last_before=False)
    assert out['rel_path'].tolist() == ['alf/#2021-01-01#/obj.attr.npy']


def test_no_revision_column_when_not_needed(datasets):
    out = filter_datasets(datasets, 'spikes.times.npy', assert_unique=False,
                          revision_last_before=False)
    assert 'revision' not in out.columns and len(out) == 3
    assert 'revision' not in datasets.columns  # the input is never modified


def test_empty_match_keeps_columns(datasets):
    out = filter_datasets(datasets, 'nothing.here.npy')
    assert out.empty and list(out.columns) == list(datasets.columns)
    assert out.index.names == ['eid', 'id']


# ---------------------------------------------------------------------------------------------
# filter_datasets: revisions
# ---------------------------------------------------------------------------------------------

REVISED = [
    'alf/obj.attr.npy',
    'alf/#2020-08-01#/obj.attr.npy',
    'alf/#2020-09-30#/obj.attr.npy',
    'alf/#2021-01-01#/obj.attr.npy',
]


def test_revision_pattern_without_last_before():
    df = _frame(REVISED)
    kw = dict(assert_unique=False, revision_last_before=False)
    assert len(filter_datasets(df, 'obj.attr.npy', **kw)) == 4
    out = filter_datasets(df, 'obj.attr.npy', revision='2020-08-01', **kw)
    assert out['rel_path'].tolist() == ['alf/#2020-08-01#/obj.attr.npy']
    out = filter_datasets(df, 'obj.attr.npy', revision='2020.*', **kw)
    assert len(out) == 2
    out = filter_datasets(df, 'obj.attr.npy', revision='2020*', wildcards=True, **kw)
    assert len(out) == 2
    out = filter_datasets(df, 'obj.attr.npy', revision='', **kw)
    assert out['rel_path'].tolist() == ['alf/obj.attr.npy']


def test_last_before_without_default_column_warns_and_picks_latest():
    df = _frame(REVISED)
    with pytest.warns(ALFWarning, match='No default revision for dataset alf/obj.attr.npy; '
                                        'using most recent'):
        out = filter_datasets(df, 'obj.attr.npy', 'alf')
    assert out['rel_path'].tolist() == ['alf/#2021-01-01#/obj.attr.npy']
    assert out['revision'].tolist() == ['2021-01-01']


def test_revision_warnings_point_at_the_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        filter_datasets(_frame(REVISED), 'obj.attr.npy')
    assert caught and caught[0].filename == __file__


@pytest.mark.parametrize('revision, expected', [
    ('2021-01-01', 'alf/#2021-01-01#/obj.attr.npy'),
    ('2020-09-15', 'alf/#2020-08-01#/obj.attr.npy'),
    ('2020-09-30', 'alf/#2020-09-30#/obj.attr.npy'),
    ('2020-01-01', 'alf/obj.attr.npy'),  # '' sorts before every label
    ('', 'alf/obj.attr.npy'),
    ('2099', 'alf/#2021-01-01#/obj.attr.npy'),
])
def test_last_before_given_revision(revision, expected):
    df = _frame(REVISED)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no warning when a revision is given
        out = filter_datasets(df, 'obj.attr.npy', revision=revision)
    assert out['rel_path'].tolist() == [expected]


def test_last_before_drops_datasets_with_only_later_revisions():
    df = _frame(['alf/#2021-01-01#/obj.attr.npy', 'alf/#2020-01-01#/other.attr.npy'])
    out = filter_datasets(df, revision='2020-06-01', assert_unique=False)
    assert out['rel_path'].tolist() == ['alf/#2020-01-01#/other.attr.npy']
    assert filter_datasets(df, 'obj.attr.npy', revision='2020-06-01').empty


def test_last_before_uses_default_revision():
    df = _frame(REVISED, default_revision=[False, True, False, False])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = filter_datasets(df, 'obj.attr.npy', 'alf')
    assert out['rel_path'].tolist() == ['alf/#2020-08-01#/obj.attr.npy']
    # A given revision overrides the default
    out = filter_datasets(df, 'obj.attr.npy', 'alf', revision='2020-12-31')
    assert out['rel_path'].tolist() == ['alf/#2020-09-30#/obj.attr.npy']


def test_last_before_single_row_not_default_is_kept_silently():
    df = _frame(['alf/#2020-08-01#/obj.attr.npy'], default_revision=[False])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = filter_datasets(df, 'obj.attr.npy')
    assert len(out) == 1


def test_last_before_no_default_among_several_warns():
    df = _frame(REVISED, default_revision=[False] * 4)
    with pytest.warns(ALFWarning, match='No default revision'):
        out = filter_datasets(df, 'obj.attr.npy')
    assert out['revision'].tolist() == ['2021-01-01']


def test_last_before_several_defaults():
    df = _frame(REVISED, default_revision=[True, False, True, False])
    with pytest.raises(ALFMultipleRevisionsFound) as err:
        filter_datasets(df, 'obj.attr.npy')
    assert err.value.message == '"", "2020-09-30"'
    with pytest.warns(ALFWarning, match='No default revision'):
        out = filter_datasets(df, 'obj.attr.npy', assert_unique=False)
    assert out['revision'].tolist() == ['2021-01-01']


def test_last_before_keeps_one_row_per_dataset_and_session():
    rel = ['alf/obj.attr.npy', 'alf/#2021-01-01#/obj.attr.npy', 'alf/other.attr.npy']
    df = pd.concat([_frame(rel, eid=EID, default_revision=[False, True, True]),
                    _frame(rel, eid=EID2, default_revision=[True, False, True])])
    with pytest.warns(ALFWarning, match='Multiple revisions'):
        out = filter_datasets(df, assert_unique=False)
    assert len(out) == 4
    got = {(e, p) for (e, _), p in out['rel_path'].items()}
    assert got == {(EID, 'alf/#2021-01-01#/obj.attr.npy'), (EID, 'alf/other.attr.npy'),
                   (EID2, 'alf/obj.attr.npy'), (EID2, 'alf/other.attr.npy')}


def test_multiple_revisions_warning_and_assert_consistent():
    rel = ['alf/#2021-01-01#/obj.attr.npy', 'alf/other.attr.npy']
    df = _frame(rel, default_revision=[True, True])
    # named in ONE-api's order: here the input order (every dataset is a single row)
    with pytest.warns(ALFWarning, match='Multiple revisions: "2021-01-01", ""'):
        out = filter_revision_last_before(df.copy(), assert_unique=False)
    assert len(out) == 2
    with pytest.raises(ALFMultipleRevisionsFound):
        filter_revision_last_before(df.copy(), assert_consistent=True)


def test_filter_revision_last_before_adds_revision_column_in_place():
    df = _frame(REVISED, default_revision=[False, False, False, True])
    out = filter_revision_last_before(df)
    assert df['revision'].tolist() == ['', '2020-08-01', '2020-09-30', '2021-01-01']
    assert out['rel_path'].tolist() == ['alf/#2021-01-01#/obj.attr.npy']


def test_filter_revision_last_before_order_and_ties():
    # Output is ordered by revision-less path; a repeated label keeps its first row
    rel = ['b/x.y.npy', 'a/#2020#/x.y.npy', 'a/#2020#/x.y.npy', 'a/x.y.npy']
    df = _frame(rel, ids=[f'{i}' * 8 for i in range(4)])
    with pytest.warns(ALFWarning):
        out = filter_revision_last_before(df, assert_unique=False)
    assert out.index.get_level_values('id').tolist() == ['11111111', '00000000']


def test_filter_revision_last_before_caps_warnings():
    rel = [f'alf/obj{i}.attr.npy' for i in range(15)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        out = filter_revision_last_before(_frame(rel))
    assert len(out) == 15
    messages = [str(w.message) for w in caught if issubclass(w.category, ALFWarning)]
    assert len(messages) == util._MAX_REVISION_WARNINGS + 1
    assert messages[-1] == 'No default revision for 5 more datasets; using most recent'


def test_filter_revision_last_before_empty():
    out = filter_revision_last_before(_frame([]))
    assert out.empty and 'revision' in out.columns


def test_filter_revision_last_before_single_index():
    df = _frame(REVISED, default_revision=[False, False, True, False]).droplevel('eid')
    out = filter_revision_last_before(df)
    assert out['revision'].tolist() == ['2020-09-30']


# ---------------------------------------------------------------------------------------------
# filter_datasets: QC
# ---------------------------------------------------------------------------------------------

def _qc_frame():
    qc = ['NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL']
    return _frame([f'alf/obj.a{q.lower()}.npy' for q in qc], qc=qc)


@pytest.mark.parametrize('qc, expected', [
    (QC.FAIL, ['NOT_SET', 'PASS', 'WARNING', 'FAIL']),
    ('FAIL', ['NOT_SET', 'PASS', 'WARNING', 'FAIL']),
    ('warning', ['NOT_SET', 'PASS', 'WARNING']),
    (30, ['NOT_SET', 'PASS', 'WARNING']),
    ('10', ['NOT_SET', 'PASS']),
    (QC.NOT_SET, ['NOT_SET']),
    (QC.CRITICAL, ['NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL']),
])
def test_qc_filter(qc, expected):
    out = filter_datasets(_qc_frame(), qc=qc, assert_unique=False, revision_last_before=False)
    assert out['qc'].astype(str).tolist() == expected


def test_qc_default_hides_critical():
    out = filter_datasets(_qc_frame(), assert_unique=False, revision_last_before=False)
    assert 'CRITICAL' not in set(out['qc'].astype(str))
    assert filter_datasets(_qc_frame(), 'obj.acritical.npy').empty


def test_qc_ignore_not_set():
    out = filter_datasets(_qc_frame(), qc='WARNING', ignore_qc_not_set=True,
                          assert_unique=False, revision_last_before=False)
    assert out['qc'].astype(str).tolist() == ['PASS', 'WARNING']


def test_qc_invalid_value_raises():
    with pytest.raises(ValueError, match='not a valid QC'):
        filter_datasets(_qc_frame(), qc='TERRIBLE')


def test_qc_column_of_strings_or_missing():
    df = _qc_frame()
    df['qc'] = df['qc'].astype(object)
    df.iloc[0, df.columns.get_loc('qc')] = None  # missing QC counts as NOT_SET
    kw = dict(assert_unique=False, revision_last_before=False)
    assert len(filter_datasets(df, **kw)) == 4
    assert len(filter_datasets(df, ignore_qc_not_set=True, **kw)) == 3
    assert len(filter_datasets(df.drop(columns='qc'), **kw)) == 5  # no column: no QC filter


# ---------------------------------------------------------------------------------------------
# filter_datasets: table variants
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [object, 'str', 'category'])
def test_rel_path_dtypes(datasets, dtype):
    df = datasets.copy()
    df['rel_path'] = df['rel_path'].astype(dtype)
    out = filter_datasets(df, '*spikes*', wildcards=True, assert_unique=False,
                          revision_last_before=False)
    assert len(out) == 4


def test_missing_rel_path_never_matches(datasets):
    df = datasets.copy()
    df['rel_path'] = df['rel_path'].astype(object)
    df.iloc[0, df.columns.get_loc('rel_path')] = None
    out = filter_datasets(df, '*', wildcards=True, assert_unique=False,
                          revision_last_before=False)
    assert len(out) == len(REL_PATHS) - 1


def test_single_level_index(datasets):
    df = datasets.droplevel('eid')
    with pytest.warns(ALFWarning, match='No default revision'):
        out = filter_datasets(df, 'spikes.times.npy', 'alf/probe00')
    assert out.index.names == ['id'] and len(out) == 1


def test_large_table_matches_per_distinct_path():
    """Many rows sharing few paths: results identical to a per-row evaluation."""
    rng = np.random.default_rng(0)
    base = REL_PATHS + REVISED
    rel = [base[i] for i in rng.integers(0, len(base), 5000)]
    df = _frame(rel)
    out = filter_datasets(df, '*.npy', 'alf*', wildcards=True, assert_unique=False,
                          revision_last_before=False)
    expected = [p for p in rel if p.startswith('alf') and p.endswith('.npy')]
    assert out['rel_path'].tolist() == expected


# ---------------------------------------------------------------------------------------------
# index_last_before, validate_date_range, autocomplete
# ---------------------------------------------------------------------------------------------

def test_index_last_before():
    revisions = ['2021-01-01', '2020-08-01', '', '2020-09-30']
    assert index_last_before(revisions, '2021-01-01') == 0
    assert index_last_before(revisions, '2020-09-15') == 1
    assert index_last_before(revisions, '') == 2
    assert index_last_before(revisions, None) == 0
    assert index_last_before([], None) is None
    assert index_last_before([], '2020') is None
    assert index_last_before(['2021-01-01'], '2020-12-31') is None
    assert index_last_before(['b', 'a', 'b'], 'c') == 0  # first of equal labels
    assert index_last_before(np.array(['a', 'c']), 'b') == 0


def test_validate_date_range_single_day():
    day = (pd.Timestamp('2020-01-01'), pd.Timestamp('2020-01-01 23:59:59.999'))
    assert validate_date_range('2020-01-01') == day
    assert validate_date_range(datetime.date(2020, 1, 1)) == day
    assert validate_date_range(datetime.datetime(2020, 1, 1)) == day
    assert validate_date_range(pd.Timestamp('2020-01-01')) == day
    assert validate_date_range(np.datetime64('2020-01-01')) == day
    assert validate_date_range(None) is None


def test_validate_date_range_sequences():
    start, end = validate_date_range(['2020-01-01', '2020-01-05'])
    assert (start, end) == (pd.Timestamp('2020-01-01'), pd.Timestamp('2020-01-05'))
    assert all(isinstance(x, pd.Timestamp) for x in (start, end))
    assert validate_date_range(('2020-01-01',)) == (pd.Timestamp('2020-01-01'), pd.Timestamp.max)
    assert validate_date_range([None, '2020-01-01']) == (pd.Timestamp.min,
                                                         pd.Timestamp('2020-01-01'))
    assert validate_date_range(['2020-01-01', None])[1] == pd.Timestamp.max
    assert validate_date_range([datetime.date(2020, 1, 1), datetime.datetime(2020, 2, 1)]) == (
        pd.Timestamp('2020-01-01'), pd.Timestamp('2020-02-01'))
    arr = np.array(['2022-01-30', '2022-01-30'], dtype='datetime64[D]')
    assert validate_date_range(arr) == (pd.Timestamp('2022-01-30'), pd.Timestamp('2022-01-30'))
    # The epoch is a valid date, not an open end
    epoch = np.datetime64('1970-01-01')
    assert validate_date_range([epoch, epoch])[0] == pd.Timestamp('1970-01-01')


def test_validate_date_range_errors():
    with pytest.raises(ValueError, match='got 3 values'):
        validate_date_range(['2020-01-01', '2020-01-02', '2020-01-03'])
    with pytest.raises(ValueError):
        validate_date_range([])
    with pytest.raises(ValueError):
        validate_date_range('not a date')


LOCAL_TERMS = ('dataset', 'datasets', 'date_range', 'laboratory', 'number', 'projects',
               'subject', 'task_protocol', 'dataset_qc_lte')


@pytest.mark.parametrize('term, expected', [
    ('date', 'date_range'), ('lab', 'laboratory'), ('task', 'task_protocol'),
    ('proj', 'projects'), ('num', 'number'), ('subj', 'subject'), ('Subj', 'subject'),
    ('dataset_qc', 'dataset_qc_lte'), ('dataset', 'dataset'), ('datasets', 'datasets'),
    ('DATASET', 'dataset'), ('subject', 'subject'),
])
def test_autocomplete(term, expected):
    assert autocomplete(term, LOCAL_TERMS) == expected


@pytest.mark.parametrize('term', ['dat', 'data', 'd'])
def test_autocomplete_ambiguous(term):
    with pytest.raises(ValueError, match=f'Ambiguous search term "{term}"'):
        autocomplete(term, LOCAL_TERMS)


@pytest.mark.parametrize('term', ['qc', 'user', 'subjects'])
def test_autocomplete_invalid(term):
    with pytest.raises(ValueError, match=f'Invalid search term "{term}", see '
                                         r'`one.search_terms\(\)`'):
        autocomplete(term, LOCAL_TERMS)


def test_autocomplete_accepts_any_iterable():
    assert autocomplete('lab', iter(['laboratory', 'subject'])) == 'laboratory'


# ---------------------------------------------------------------------------------------------
# LazyId
# ---------------------------------------------------------------------------------------------

RECORDS = [{'id': EID, 'subject': 'a'},
           {'url': f'https://alyx.org/sessions/{EID2}', 'subject': 'b'},
           {'id': uuid.UUID(int=3, version=4), 'subject': 'c'}]


class _Pages:
    """A minimal paginated response: a sequence whose pages are fetched on first access."""

    def __init__(self, records, page_size=2):
        self._records = records
        self.page_size = page_size
        self.fetched = set()

    def __len__(self):
        return len(self._records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            raise TypeError('slices are not supported by this response')
        self.fetched.add(i // self.page_size)
        return self._records[i]


def test_lazy_id_is_a_sequence():
    ids = LazyId(RECORDS)
    expected = [uuid.UUID(EID), uuid.UUID(EID2), uuid.UUID(int=3, version=4)]
    assert isinstance(ids, Sequence) and isinstance(ids, LazyId)
    assert len(ids) == 3
    assert ids[0] == expected[0] and ids[1] == expected[1] and ids[-1] == expected[2]
    assert ids[np.int64(1)] == expected[1]
    assert ids[1:] == expected[1:] and ids[:] == expected
    assert list(ids) == expected
    assert ids == expected and ids == tuple(expected) and ids == LazyId(RECORDS)
    assert ids != expected[:2]
    assert expected[1] in ids and uuid.uuid4() not in ids
    assert ids.index(expected[2]) == 2 and ids.count(expected[0]) == 1
    assert list(reversed(ids)) == expected[::-1]
    with pytest.raises(IndexError):
        ids[3]
    with pytest.raises(IndexError):
        ids[-4]
    with pytest.raises(TypeError):
        ids['a']
    assert repr(ids) == '<LazyId of 3 items>'


def test_lazy_id_fetches_pages_on_demand():
    pages = _Pages(RECORDS * 3, page_size=2)  # 9 records, 5 pages
    ids = LazyId(pages)
    assert ids[0] == uuid.UUID(EID)
    assert pages.fetched == {0}
    assert ids[-1] == uuid.UUID(int=3, version=4)
    assert pages.fetched == {0, 4}
    assert ids[2:4] == [uuid.UUID(int=3, version=4), uuid.UUID(EID)]  # slices of a response
    assert pages.fetched == {0, 1, 4}
    assert ids[::4] == [uuid.UUID(EID), uuid.UUID(EID2), uuid.UUID(int=3, version=4)]
    assert len(list(ids)) == 9


def test_lazy_id_custom_func():
    subjects = LazyId(RECORDS, func=lambda r: [x['subject'] for x in r]
                      if isinstance(r, list) else r['subject'])
    assert subjects[1] == 'b' and subjects[:2] == ['a', 'b'] and list(subjects) == ['a', 'b', 'c']


def test_ses2eid():
    assert LazyId.ses2eid(RECORDS[0]) == uuid.UUID(EID)
    assert LazyId.ses2eid(RECORDS[1]) == uuid.UUID(EID2)
    assert LazyId.ses2eid({'url': f'https://alyx.org/sessions/{EID}/'}) == uuid.UUID(EID)
    assert LazyId.ses2eid(RECORDS[:2]) == [uuid.UUID(EID), uuid.UUID(EID2)]


# ---------------------------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------------------------

class _Resolver:
    """Resolves 'ref-<n>' strings and UUIDs; anything else is unknown (None)."""

    known = {'ref-1': uuid.UUID(EID)}

    def to_eid(self, id):
        if isinstance(id, uuid.UUID):
            return id
        return self.known.get(id)

    @parse_id
    def details(self, eid, full=False):
        """Return what was received."""
        return eid, full


def test_parse_id_converts_and_passes_arguments():
    obj = _Resolver()
    assert obj.details('ref-1') == (uuid.UUID(EID), False)
    assert obj.details('ref-1', True) == (uuid.UUID(EID), True)
    assert obj.details(eid='ref-1', full=True) == (uuid.UUID(EID), True)
    assert obj.details(uuid.UUID(EID2)) == (uuid.UUID(EID2), False)
    assert _Resolver.details.__doc__ == 'Return what was received.'
    assert _Resolver.details.__wrapped__.__name__ == 'details'


def test_parse_id_unknown_raises():
    with pytest.raises(ValueError, match='Cannot parse session ID "nope" '
                                         r'\(session may not exist\)'):
        _Resolver().details('nope')
    with pytest.raises(TypeError, match='missing 1 required positional argument'):
        _Resolver().details()


class _Cached:
    """Records cache refreshes, as One.refresh_cache would reload the tables."""

    def __init__(self, mode='auto'):
        self.mode = mode
        self.refreshed = []

    def refresh_cache(self, mode='auto'):
        if mode not in ('local', 'remote', 'auto', 'refresh'):
            raise ValueError(f'Unknown refresh type "{mode}"')
        self.refreshed.append(mode)

    @refresh
    def search(self, details=False, query_type=None, **kwargs):
        return query_type

    @refresh
    def list_subjects(self):
        return self.search()  # nested call: must not refresh again

    @refresh
    def get_details(self, eid, full=False):
        return eid


def test_refresh_uses_instance_mode_by_default():
    obj = _Cached('refresh')
    assert obj.search() is None
    assert obj.refreshed == ['refresh']
    obj.search(query_type='auto')
    assert obj.refreshed == ['refresh', 'refresh']


def test_refresh_uses_query_type():
    obj = _Cached('auto')
    obj.search(query_type='remote')
    obj.search(False, 'local')  # positional query_type
    obj.search(query_type='refresh')
    assert obj.refreshed == ['remote', 'local', 'refresh']
    obj.get_details('x')
    assert obj.refreshed[-1] == 'auto'


def test_refresh_once_per_outer_call():
    obj = _Cached('refresh')
    assert obj.list_subjects() is None
    assert obj.refreshed == ['refresh']
    obj.list_subjects()
    assert obj.refreshed == ['refresh', 'refresh']


def test_refresh_errors_propagate_and_state_resets():
    obj = _Cached('bogus')
    with pytest.raises(ValueError, match='Unknown refresh type "bogus"'):
        obj.search()
    obj.mode = 'local'
    obj.search()
    assert obj.refreshed == ['local']


def test_refresh_without_refresh_cache():
    class Plain:
        @refresh
        def f(self, x):
            return x * 2
    assert Plain().f(2) == 4


def test_reexported_helpers():
    assert ensure_list('a') == ['a'] and ensure_list({'a': 1}) == [{'a': 1}]
    assert ensure_list(3) == [3] and ensure_list(x := [1, 2]) is x
    assert flatten([1, [2, (3, [4])], 'ab', {'k': 1}]) == [1, 2, 3, 4, 'ab', {'k': 1}]
    b = Bunch(a=1)
    b.c = 2
    assert b['c'] == 2 and b.a == 1
