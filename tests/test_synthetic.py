"""Tests of the synthetic ALF session generator `one.synthetic`."""
import datetime
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from one.alf import io as alfio
from one.alf import spec
from one.alf.path import ALFPath
from one.synthetic import REVISION, TRIALS_ATTRIBUTES, make_dataset_folder, make_session


def _tree(root) -> dict:
    """Map of relative posix path -> bytes of every file below root."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_session_layout(tmp_path):
    session = make_session(tmp_path, 'KS001', '2024-01-15', 1, lab='cortexlab')
    assert isinstance(session, ALFPath)
    assert session == tmp_path / 'cortexlab' / 'Subjects' / 'KS001' / '2024-01-15' / '001'
    assert session.is_session_path()
    files = set(_tree(session))
    expected = {f'alf/_ibl_trials.{a}.npy' for a in TRIALS_ATTRIBUTES} | {
        'alf/_ibl_trials.intervals_bpod.npy',
        'alf/_ibl_wheel.position.npy', 'alf/_ibl_wheel.timestamps.npy',
        'alf/_ibl_wheelMoves.intervals.npy', 'alf/_ibl_wheelMoves.peakAmplitude.npy',
        'alf/_ibl_leftCamera.times.npy', 'alf/_ibl_leftCamera.features.npy',
        'alf/_ibl_leftCamera.features.metadata.json',
        'alf/_ibl_passivePeriods.intervalsTable.csv', 'alf/_ibl_sessionEvents.table.tsv',
        'alf/_ibl_log.info.yaml', '_ibl_experiment.description',
        'raw_behavior_data/_iblrig_taskSettings.raw.json',
        'raw_behavior_data/_iblrig_ambientSensorData.raw.jsonable',
        'raw_video_data/_iblrig_leftCamera.raw.mp4',
    }
    for probe in ('probe00', 'probe01'):
        expected |= {f'alf/{probe}/spikes.{a}.npy' for a in ('times', 'clusters', 'amps',
                                                             'depths')}
        expected |= {f'alf/{probe}/clusters.{a}' for a in ('depths.npy', 'channels.npy',
                                                          'metrics.pqt', 'uuids.csv')}
    assert files == expected
    # Every file is a valid ALF dataset except the experiment description
    invalid = {f for f in files if not spec.is_valid(f.rsplit('/', 1)[-1])}
    assert invalid == {'_ibl_experiment.description'}
    # Small files
    assert max(len(b) for b in _tree(session).values()) < 16_000


def test_session_without_lab_and_options(tmp_path):
    session = make_session(tmp_path, 'ZFM-01935', datetime.date(2021, 2, 5), '2', probes=(),
                           trials_table=True, revision=True, raw=False)
    assert session == tmp_path / 'ZFM-01935' / '2021-02-05' / '002'
    files = set(_tree(session))
    assert 'alf/_ibl_trials.table.pqt' in files
    assert 'alf/_ibl_trials.choice.npy' not in files
    assert f'alf/#{REVISION}#/_ibl_trials.choice.npy' in files
    assert not any('probe' in f for f in files)
    assert not any(f.startswith('raw_') for f in files)
    custom = make_session(tmp_path, 'ZFM-01935', '2021-02-06', revision='2022-01-01a')
    assert (custom / 'alf' / '#2022-01-01a#' / '_ibl_trials.choice.npy').is_file()


def test_determinism(tmp_path):
    a = make_session(tmp_path / 'a', seed=3, trials_table=True, revision=True)
    b = make_session(tmp_path / 'b', seed=3, trials_table=True, revision=True)
    c = make_session(tmp_path / 'c', seed=4, trials_table=True, revision=True)
    tree_a, tree_b, tree_c = _tree(a), _tree(b), _tree(c)
    assert tree_a == tree_b  # byte-identical
    assert tree_a.keys() == tree_c.keys()
    assert tree_a['alf/probe00/spikes.times.npy'] != tree_c['alf/probe00/spikes.times.npy']
    # Two sessions made with the same seed still differ
    d = make_session(tmp_path / 'a', subject='KS002', seed=3)
    assert _tree(d)['alf/_ibl_trials.choice.npy'] != tree_a.get('alf/_ibl_trials.choice.npy',
                                                                b'')
    assert np.any(np.load(d / 'alf/_ibl_wheel.position.npy') !=
                  np.load(a / 'alf/_ibl_wheel.position.npy'))


def test_folder_determinism(tmp_path):
    first = make_dataset_folder(tmp_path / 'x', n_subjects=2, n_sessions=3, seed=1)
    second = make_dataset_folder(tmp_path / 'y', n_subjects=2, n_sessions=3, seed=1)
    assert [p.relative_to(tmp_path / 'x') for p in first] == \
        [p.relative_to(tmp_path / 'y') for p in second]
    assert _tree(tmp_path / 'x') == _tree(tmp_path / 'y')


def test_sizes(tmp_path):
    session = make_session(tmp_path, n_trials=17, n_spikes=333, n_clusters=7, n_wheel=50,
                           n_frames=20)
    trials = alfio.load_object(session / 'alf', 'trials')
    assert trials.intervals.shape == (17, 2)
    assert all(len(v) == 17 for v in trials.values())
    spikes = alfio.load_object(session / 'alf' / 'probe00', 'spikes')
    assert {k: v.shape for k, v in spikes.items()} == {k: (333,) for k in
                                                       ('amps', 'clusters', 'depths', 'times')}
    clusters = alfio.load_object(session / 'alf' / 'probe00', 'clusters')
    assert clusters.depths.shape == (7,) and len(clusters.metrics) == 7
    assert len(clusters.uuids) == 7
    assert alfio.load_object(session / 'alf', 'wheel').position.shape == (50,)
    assert alfio.load_object(session / 'alf', 'leftCamera').times.shape == (20,)


def test_values_are_plausible(tmp_path):
    session = make_session(tmp_path, n_trials=200)
    trials = alfio.load_object(session / 'alf', 'trials', timescale=None)
    assert set(np.unique(trials.choice)) <= {-1., 0., 1.}
    assert set(np.unique(trials.feedbackType)) <= {-1., 1.}
    assert np.all(np.diff(trials.intervals[:, 0]) > 0)
    assert np.all(trials.intervals[:, 1] > trials.intervals[:, 0])
    assert np.all(trials.goCue_times >= trials.stimOn_times)
    assert np.all(trials.feedback_times >= trials.response_times)
    # Exactly one side has a contrast
    assert np.all(np.isnan(trials.contrastLeft) ^ np.isnan(trials.contrastRight))
    contrast = np.where(np.isnan(trials.contrastLeft), trials.contrastRight, trials.contrastLeft)
    assert set(np.unique(contrast)) <= {0., 0.0625, 0.125, 0.25, 1.}
    assert np.all(trials.probabilityLeft[:90] == 0.5)
    assert set(np.unique(trials.probabilityLeft)) <= {0.2, 0.5, 0.8}
    assert np.all((trials.rewardVolume > 0) == (trials.feedbackType == 1))
    spikes = alfio.load_object(session / 'alf' / 'probe00', 'spikes')
    assert np.all(np.diff(spikes.times) >= 0)
    assert spikes.clusters.max() < 25
    wheel = alfio.load_object(session / 'alf', 'wheel')
    assert np.all(np.diff(wheel.timestamps) >= 0)
    settings = json.loads((session / 'raw_behavior_data' /
                           '_iblrig_taskSettings.raw.json').read_text())
    assert settings['SUBJECT_NAME'] == 'KS001' and settings['SESSION_DATE'] == '2024-01-15'
    description = yaml.safe_load((session / '_ibl_experiment.description').read_text())
    assert set(description['devices']['neuropixel']) == {'probe00', 'probe01'}


def test_every_object_loads_consistently(tmp_path):
    for session in make_dataset_folder(tmp_path, n_subjects=2, n_sessions=4):
        folders = {session / p.parent for p in alfio.iter_datasets(session)}
        for folder in folders:
            _, parts = alfio.filter_by(folder)
            for obj in {p[1] for p in parts}:
                bunch = alfio.load_object(folder, obj)
                assert bunch.check_dimensions == 0, (folder, obj)


def test_trials_table_equals_npy_files(tmp_path):
    npy = make_session(tmp_path / 'npy', seed=5, trials_table=False)
    table = make_session(tmp_path / 'pqt', seed=5, trials_table=True)
    a = alfio.load_object(npy / 'alf', 'trials')
    b = alfio.load_object(table / 'alf', 'trials')
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    df = pd.read_parquet(table / 'alf' / '_ibl_trials.table.pqt')
    assert {'intervals_0', 'intervals_1', 'choice'} <= set(df.columns)


def test_dataset_folder(tmp_path):
    sessions = make_dataset_folder(tmp_path, n_subjects=5, n_sessions=4)
    assert len(sessions) == 20
    assert sessions == sorted(sessions)
    assert all(isinstance(s, ALFPath) and s.is_dir() for s in sessions)
    assert {s.lab for s in sessions} == {'cortexlab', 'mainenlab'}
    assert len({s.subject for s in sessions}) == 5
    assert any('-' in s.subject for s in sessions)
    # Second sessions of a day
    assert any(s.sequence == '002' for s in sessions)
    assert len({s.session_path_short() for s in sessions}) == 20
    # Variation between sessions
    tables = [s for s in sessions if (s / 'alf' / '_ibl_trials.table.pqt').exists()]
    revisions = [s for s in sessions if (s / 'alf' / f'#{REVISION}#').exists()]
    no_probe = [s for s in sessions if not (s / 'alf' / 'probe00').exists()]
    assert 0 < len(tables) < 20 and 0 < len(revisions) < 20 and 0 < len(no_probe) < 20
    assert list(alfio.iter_sessions(tmp_path)) == sessions


def test_dataset_folder_options(tmp_path):
    sessions = make_dataset_folder(tmp_path, n_subjects=2, n_sessions=2, labs=None,
                                   trials_table=False, revision=None, probes=('probe00',),
                                   n_trials=10, start_date=datetime.date(2020, 1, 1))
    assert all(not s.lab for s in sessions)
    assert not any((s / 'alf' / '_ibl_trials.table.pqt').exists() for s in sessions)
    assert not list(tmp_path.rglob('#*#'))
    assert {s.date for s in sessions} == {'2020-01-01', '2020-01-02'}
    assert all(not (s / 'alf' / 'probe01').exists() for s in sessions)
    assert all(np.load(s / 'alf' / '_ibl_trials.choice.npy').size == 10 for s in sessions)


@pytest.mark.parametrize('n_sessions', [0, 1])
def test_dataset_folder_small(tmp_path, n_sessions):
    sessions = make_dataset_folder(tmp_path, n_subjects=1, n_sessions=n_sessions)
    assert len(sessions) == n_sessions
