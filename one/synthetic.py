"""Generate small, realistic ALF session folders, for tests, benchmarks and demonstrations.

The folders mimic the layout of International Brain Laboratory sessions: trials, wheel, wheel
movements and camera objects in ``alf/``, spike sorting output per probe in ``alf/<probe>/``,
raw task settings in ``raw_behavior_data/``, the occasional revision folder and ``.pqt`` trials
table, and a few files in other formats (csv, tsv, json, jsonable, yaml, metadata json).  The
values look plausible (sorted event times, choices in {-1, 0, 1}, contrasts from the IBL set) but
mean nothing.

Everything is derived from the `seed` and the session's identity, so the same arguments always
produce byte-identical files (for given versions of numpy and pyarrow), and different sessions
hold different values.  Files are small (a few KB each by default): a folder of 20 sessions is
made in a fraction of a second.

Examples
--------
>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> session = make_session(root, 'KS001', '2024-01-15', 1, lab='cortexlab')
>>> session.relative_to(root).as_posix()
'cortexlab/Subjects/KS001/2024-01-15/001'
>>> sessions = make_dataset_folder(root, n_subjects=2, n_sessions=3)
>>> len(sessions)
6
"""
from __future__ import annotations

import datetime
import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from one.alf.path import ALFPath

__all__ = ['make_session', 'make_dataset_folder', 'TRIALS_ATTRIBUTES', 'REVISION']

#: The attributes of the ``_ibl_trials`` object written by `make_session` (besides
#: ``intervals_bpod``, which is always a separate file).
TRIALS_ATTRIBUTES = (
    'intervals', 'goCue_times', 'stimOn_times', 'response_times', 'firstMovement_times',
    'feedback_times', 'feedbackType', 'choice', 'contrastLeft', 'contrastRight',
    'probabilityLeft', 'rewardVolume',
)

#: The revision label used when a session is given a revision folder.
REVISION = '2024-06-01'

_CONTRASTS = np.array([0., 0.0625, 0.125, 0.25, 1.])
_SUBJECT_PREFIXES = ('KS', 'ZFM-', 'SWC_', 'NYU-', 'CSHL_')
_DEFAULT_LABS = ('cortexlab', 'mainenlab')
_YAML_DUMPER = getattr(yaml, 'CSafeDumper', yaml.SafeDumper)
_MP4_HEADER = b'\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom'


def _rng(seed: int, key: str) -> np.random.Generator:
    """A generator seeded by `seed` and a stable checksum of `key` (not Python's salted hash)."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, 'wb') as f:
        np.save(f, array, allow_pickle=False)


def _save_text(path: Path, text: str) -> None:
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(text)


def _save_pqt(path: Path, columns: dict) -> None:
    """Write a parquet table with pyarrow only (no pandas metadata, so loading gives a
    RangeIndex)."""
    pq.write_table(pa.table(columns), path)


def _uuid4_strings(rng: np.random.Generator, n: int) -> list[str]:
    """`n` random version-4 UUID strings drawn from `rng`."""
    b = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    out = []
    for row in b:
        h = row.tobytes().hex()
        out.append(f'{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}')
    return out


def _yaml(data: dict) -> str:
    return yaml.dump(data, Dumper=_YAML_DUMPER, sort_keys=True, default_flow_style=False)


def _fmt(x: float) -> str:
    """Format a float for csv/tsv: shortest round-trip repr, empty for NaN."""
    return '' if np.isnan(x) else repr(float(x))


def _make_trials(rng: np.random.Generator, n: int) -> dict:
    """Return plausible trial data for `n` trials (times in seconds, NaN where undefined)."""
    # Block structure of the IBL biased task: 90 unbiased trials then blocks of 0.2 / 0.8
    p_left = np.full(n, 0.5)
    start, bias = 90, rng.choice([0.2, 0.8])
    while start < n:
        length = int(rng.integers(20, 60))
        p_left[start:start + length] = bias
        start += length
        bias = 0.2 if bias == 0.8 else 0.8  # not 1 - bias: 1 - 0.8 != 0.2 in floats
    stim_left = rng.random(n) < p_left
    contrast = rng.choice(_CONTRASTS, n)
    contrast_left = np.where(stim_left, contrast, np.nan)
    contrast_right = np.where(stim_left, np.nan, contrast)

    # Choice: the direction of the wheel turn (+1 or -1), or 0 when the mouse did not respond
    correct_side = np.where(stim_left, 1, -1)
    p_correct = 0.55 + 0.4 * contrast
    correct = rng.random(n) < p_correct
    choice = np.where(correct, correct_side, -correct_side)
    nogo = rng.random(n) < 0.04
    choice[nogo] = 0
    feedback_type = np.where(correct & ~nogo, 1, -1)

    stim_delay = rng.uniform(0.05, 0.15, n)
    reaction = np.where(nogo, 60., rng.gamma(2., 0.25, n) + 0.1)
    feedback_delay = rng.uniform(0., 0.05, n)
    iti = np.where(feedback_type == 1, 1., 2.) + rng.uniform(0.5, 1., n)
    durations = stim_delay + reaction + feedback_delay + iti
    starts = rng.uniform(5., 10.) + np.concatenate([[0.], np.cumsum(durations + 0.05)[:-1]])

    stim_on = starts + stim_delay
    go_cue = stim_on + rng.uniform(0., 0.001, n)
    response = go_cue + reaction
    first_move = np.where(nogo, np.nan, go_cue + reaction * rng.uniform(0.3, 0.9, n))
    feedback = response + feedback_delay
    intervals = np.c_[starts, starts + durations]
    return {
        'intervals': intervals,
        'goCue_times': go_cue,
        'stimOn_times': stim_on,
        'response_times': response,
        'firstMovement_times': first_move,
        'feedback_times': feedback,
        'feedbackType': feedback_type.astype(np.float64),
        'choice': choice.astype(np.float64),
        'contrastLeft': contrast_left,
        'contrastRight': contrast_right,
        'probabilityLeft': p_left,
        'rewardVolume': np.where(feedback_type == 1, 1.5, 0.),
    }


def _write_trials(rng, alf: Path, n_trials: int, table: bool, revision: str | None) -> float:
    """Write the trials object; return the end time of the last trial."""
    trials = _make_trials(rng, n_trials)
    if table:
        columns = {}
        for key in TRIALS_ATTRIBUTES:
            if key == 'intervals':
                columns['intervals_0'] = trials[key][:, 0]
                columns['intervals_1'] = trials[key][:, 1]
            else:
                columns[key] = trials[key]
        _save_pqt(alf / '_ibl_trials.table.pqt', columns)
    else:
        for key in TRIALS_ATTRIBUTES:
            _save_npy(alf / f'_ibl_trials.{key}.npy', trials[key])
    # The behaviour computer's clock is offset and drifts slightly from the main clock
    offset = rng.uniform(-20., -10.)
    _save_npy(alf / '_ibl_trials.intervals_bpod.npy', trials['intervals'] * 1.00002 + offset)
    if revision:
        rev = alf / f'#{revision}#'
        rev.mkdir(exist_ok=True)
        fixed = trials['choice'].copy()
        flip = rng.choice(n_trials, max(1, n_trials // 20), replace=False)
        fixed[flip] = -fixed[flip]
        _save_npy(rev / '_ibl_trials.choice.npy', fixed)
    return float(trials['intervals'][-1, 1])


def _write_wheel(rng, alf: Path, duration: float, n_wheel: int, n_trials: int) -> None:
    # The wheel encoder only reports changes, so timestamps are irregular
    times = np.sort(rng.uniform(0., duration, n_wheel))
    position = np.cumsum(rng.normal(0., 0.02, n_wheel))
    _save_npy(alf / '_ibl_wheel.position.npy', position)
    _save_npy(alf / '_ibl_wheel.timestamps.npy', times)
    n_moves = max(1, n_trials)
    onsets = np.sort(rng.uniform(0., duration - 1., n_moves))
    moves = np.c_[onsets, onsets + rng.uniform(0.05, 0.8, n_moves)]
    _save_npy(alf / '_ibl_wheelMoves.intervals.npy', moves)
    _save_npy(alf / '_ibl_wheelMoves.peakAmplitude.npy', rng.normal(0., 0.5, n_moves))


def _write_camera(rng, alf: Path, duration: float, n_frames: int) -> None:
    times = np.linspace(0.5, duration - 0.5, n_frames) + rng.normal(0., 1e-4, n_frames)
    _save_npy(alf / '_ibl_leftCamera.times.npy', times)
    raw = np.abs(rng.normal(30., 3., n_frames))
    smooth = np.convolve(raw, np.ones(5) / 5, mode='same')
    _save_npy(alf / '_ibl_leftCamera.features.npy', np.c_[raw, smooth])
    # The metadata splits the (n, 2) array into two named columns when loaded
    meta = {'columns': ['pupilDiameter_raw', 'pupilDiameter_smooth'], 'unit': 'px'}
    _save_text(alf / '_ibl_leftCamera.features.metadata.json', json.dumps(meta, indent=1))


def _write_probe(rng, folder: Path, duration: float, n_spikes: int, n_clusters: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n_clusters = max(1, n_clusters)
    cluster_depths = np.sort(rng.uniform(20., 3820., n_clusters))
    cluster_channels = np.minimum((cluster_depths / 10.).astype(np.int64), 383)
    rates = rng.lognormal(0., 1., n_clusters)
    clusters = rng.choice(n_clusters, n_spikes, p=rates / rates.sum()).astype(np.uint32)
    _save_npy(folder / 'spikes.times.npy', np.sort(rng.uniform(0., duration, n_spikes)))
    _save_npy(folder / 'spikes.clusters.npy', clusters)
    _save_npy(folder / 'spikes.amps.npy', rng.lognormal(-9.5, 0.4, n_spikes))
    depths = cluster_depths[clusters] + rng.normal(0., 5., n_spikes)
    _save_npy(folder / 'spikes.depths.npy', depths.astype(np.float32))
    _save_npy(folder / 'clusters.depths.npy', cluster_depths)
    _save_npy(folder / 'clusters.channels.npy', cluster_channels)
    counts = np.bincount(clusters, minlength=n_clusters)
    _save_pqt(folder / 'clusters.metrics.pqt', {
        'cluster_id': np.arange(n_clusters, dtype=np.int64),
        'firing_rate': counts / duration,
        'amp_median': rng.lognormal(-9.5, 0.3, n_clusters),
        'presence_ratio': rng.uniform(0.5, 1., n_clusters),
        'label': rng.choice([0., 1 / 3, 2 / 3, 1.], n_clusters),
        'ks2_label': np.where(rng.random(n_clusters) < 0.3, 'good', 'mua').tolist(),
    })
    ids = _uuid4_strings(rng, n_clusters)
    _save_text(folder / 'clusters.uuids.csv', 'uuids\n' + '\n'.join(ids) + '\n')


def _write_misc(rng, session: Path, alf: Path, subject: str, date: str, number: int,
                n_trials: int, duration: float, probes: Sequence[str], raw: bool) -> None:
    # A multi-column csv table of the passive protocol periods
    bounds = np.sort(rng.uniform(duration, duration + 1200., 6))
    rows = [('spontaneousActivity', bounds[0], bounds[1]), ('RFM', bounds[2], bounds[3]),
            ('taskReplay', bounds[4], bounds[5])]
    _save_text(alf / '_ibl_passivePeriods.intervalsTable.csv',
               'period,start,stop\n' + ''.join(f'{a},{_fmt(b)},{_fmt(c)}\n' for a, b, c in rows))
    # A tab-separated table of session events
    n_events = 4
    events = np.sort(rng.uniform(0., duration, n_events))
    kinds = ('valveOpen', 'lightsOff', 'lightsOn', 'valveClose')
    _save_text(alf / '_ibl_sessionEvents.table.tsv',
               'times\tevent\n' + ''.join(f'{_fmt(t)}\t{k}\n' for t, k in zip(events, kinds)))
    # A yaml log of the extraction
    log = {'extractor': 'one.synthetic', 'n_trials': int(n_trials), 'probes': list(probes),
           'version': '1.0.0'}
    _save_text(alf / '_ibl_log.info.yaml', _yaml(log))
    # The experiment description is YAML in a file whose name is NOT a valid ALF dataset name:
    # listings of datasets must skip it.
    description = {
        'devices': {'cameras': {'left': {'collection': 'raw_video_data'}},
                    **({'neuropixel': {p: {'model': '3B2'} for p in probes}} if probes else {})},
        'procedures': ['Behavior training/tasks'] + (['Ephys recording'] if probes else []),
        'projects': ['ibl_neuropixel_brainwide_01'],
        'tasks': [{'ephysChoiceWorld': {'collection': 'raw_behavior_data'}}],
        'version': '1.0.0',
    }
    _save_text(session / '_ibl_experiment.description', _yaml(description))
    if not raw:
        return
    raw_behavior = session / 'raw_behavior_data'
    raw_behavior.mkdir(exist_ok=True)
    settings = {
        'SUBJECT_NAME': subject,
        'SESSION_DATE': date,
        'SESSION_NUMBER': f'{number:03d}',
        'SESSION_START_TIME': f'{date}T{10 + number % 8:02d}:{int(rng.integers(60)):02d}:00',
        'PYBPOD_PROTOCOL': '_iblrig_tasks_ephysChoiceWorld6.4.2',
        'IBLRIG_VERSION': '8.12.0',
        'NTRIALS': int(n_trials),
        'CONTRAST_SET': _CONTRASTS.tolist(),
        'REWARD_AMOUNT_UL': 1.5,
    }
    _save_text(raw_behavior / '_iblrig_taskSettings.raw.json', json.dumps(settings, indent=1))
    lines = []
    for _ in range(n_trials):
        reading = {'Temperature_C': round(float(rng.normal(22., 0.3)), 2),
                   'AirPressure_mb': round(float(rng.normal(1013., 2.)), 2),
                   'RelativeHumidity': round(float(rng.normal(40., 2.)), 2)}
        lines.append(json.dumps(reading))
    _save_text(raw_behavior / '_iblrig_ambientSensorData.raw.jsonable', '\n'.join(lines) + '\n')
    raw_video = session / 'raw_video_data'
    raw_video.mkdir(exist_ok=True)
    with open(raw_video / '_iblrig_leftCamera.raw.mp4', 'wb') as f:
        f.write(_MP4_HEADER + rng.bytes(64))


def _date_str(date) -> str:
    if isinstance(date, (datetime.date, datetime.datetime)):
        return date.isoformat()[:10]
    return str(date)


def make_session(root, subject: str = 'KS001', date='2024-01-15', number: int | str = 1,
                 lab: str | None = None, seed: int = 0,
                 probes: Sequence[str] = ('probe00', 'probe01'), n_trials: int = 60,
                 n_spikes: int = 1000, n_clusters: int = 25, n_wheel: int = 800,
                 n_frames: int = 300, trials_table: bool = False,
                 revision: str | bool | None = None, raw: bool = True) -> ALFPath:
    """Write one realistic ALF session folder and return its path.

    The folder is ``root/[lab/Subjects/]subject/date/NNN``.  It holds, in ``alf/``:
    ``_ibl_trials.*.npy`` (12 attributes, see `TRIALS_ATTRIBUTES`) or, with `trials_table`,
    a single ``_ibl_trials.table.pqt`` with those columns (``intervals`` split into
    ``intervals_0``/``intervals_1``); always ``_ibl_trials.intervals_bpod.npy`` (timescale
    ``bpod``); ``_ibl_wheel.{position,timestamps}.npy``;
    ``_ibl_wheelMoves.{intervals,peakAmplitude}.npy``; ``_ibl_leftCamera.{times,features}.npy``
    with ``_ibl_leftCamera.features.metadata.json`` naming the two feature columns;
    ``_ibl_passivePeriods.intervalsTable.csv``; ``_ibl_sessionEvents.table.tsv``;
    ``_ibl_log.info.yaml``.  Per probe, in ``alf/<probe>/``:
    ``spikes.{times,clusters,amps,depths}.npy``, ``clusters.{depths,channels}.npy``,
    ``clusters.metrics.pqt`` and ``clusters.uuids.csv``.  With `revision`,
    ``alf/#<revision>#/_ibl_trials.choice.npy``.  With `raw`,
    ``raw_behavior_data/_iblrig_taskSettings.raw.json``,
    ``raw_behavior_data/_iblrig_ambientSensorData.raw.jsonable`` and a dummy
    ``raw_video_data/_iblrig_leftCamera.raw.mp4``.  The session folder also holds
    ``_ibl_experiment.description`` (YAML), which is not a valid ALF dataset name.

    Parameters
    ----------
    root : str or os.PathLike
        The folder in which the session tree is made (created if needed).
    subject : str
        The subject nickname.
    date : str, datetime.date
        The session date (``YYYY-MM-DD``).
    number : int or str
        The session number, zero-padded to three digits in the path.
    lab : str, optional
        The lab name; when given the session is placed under ``lab/Subjects/``.
    seed : int
        Seed of the random values; combined with the session identity, so that two sessions
        made with the same seed still differ.
    probes : sequence of str
        Names of the probe collections under ``alf/`` (empty for a behaviour-only session).
    n_trials, n_spikes, n_clusters, n_wheel, n_frames : int
        Sizes of the trials, spikes, clusters, wheel and camera objects.
    trials_table : bool
        Write the trials as one parquet table instead of one ``.npy`` file per attribute.
    revision : str, bool, optional
        Add a revision folder holding a corrected ``_ibl_trials.choice.npy``; True uses the
        label `REVISION`.
    raw : bool
        Also write the raw behaviour and video folders.

    Returns
    -------
    ALFPath
        The session folder.
    """
    date = _date_str(date)
    number = int(number)
    session = Path(root)
    if lab:
        session = session / lab / 'Subjects'
    session = session / subject / date / f'{number:03d}'
    rng = _rng(seed, f'{lab or ""}/{subject}/{date}/{number:03d}')
    alf = session / 'alf'
    alf.mkdir(parents=True, exist_ok=True)
    if revision is True:
        revision = REVISION
    n_trials = max(1, int(n_trials))
    end = _write_trials(rng, alf, n_trials, trials_table, revision or None)
    duration = end + 10.
    _write_wheel(rng, alf, duration, max(2, int(n_wheel)), n_trials)
    _write_camera(rng, alf, duration, max(2, int(n_frames)))
    for probe in probes:
        _write_probe(rng, alf / probe, duration, int(n_spikes), int(n_clusters))
    _write_misc(rng, session, alf, subject, date, number, n_trials, duration, probes, raw)
    return ALFPath(session)


def make_dataset_folder(root, n_subjects: int = 3, n_sessions: int = 4, seed: int = 0,
                        labs: Sequence[str] | None = _DEFAULT_LABS,
                        start_date='2024-01-15', **kwargs) -> list[ALFPath]:
    """Write a folder of several subjects and sessions and return the session paths.

    Subject ``i`` belongs to ``labs[i % len(labs)]`` (no lab folders when `labs` is empty or
    None) and is named with a lab-style prefix (``KS001``, ``ZFM-002``, ``SWC_003``...).  Each
    subject gets `n_sessions` sessions on successive days, except that every third session is
    a second session (number 2) on the day of the previous one.  The sessions vary: every third
    session (counting across subjects) stores its trials as a parquet table, every fourth has
    a revision folder, every fifth has no probe.  Keyword arguments given explicitly (e.g.
    ``trials_table=False``) apply to every session and override this variation.

    Parameters
    ----------
    root : str or os.PathLike
        The folder in which the tree is made.
    n_subjects : int
        The number of subjects.
    n_sessions : int
        The number of sessions per subject.
    seed : int
        Seed of the random values.
    labs : sequence of str, optional
        The lab names to distribute subjects over.
    start_date : str, datetime.date
        The date of each subject's first session.
    **kwargs
        Passed to `make_session` (e.g. ``n_trials``, ``n_spikes``, ``probes``, ``raw``).

    Returns
    -------
    list of ALFPath
        The session folders, sorted.

    Examples
    --------
    >>> import tempfile
    >>> sessions = make_dataset_folder(tempfile.mkdtemp(), n_subjects=5, n_sessions=4)
    >>> len(sessions)
    20
    """
    start = datetime.date.fromisoformat(_date_str(start_date))
    probes = tuple(kwargs.pop('probes', ('probe00', 'probe01')))
    sessions = []
    index = 0
    for i in range(n_subjects):
        lab = labs[i % len(labs)] if labs else None
        subject = f'{_SUBJECT_PREFIXES[i % len(_SUBJECT_PREFIXES)]}{i + 1:03d}'
        day, number = start, 1
        for j in range(n_sessions):
            if j > 0:
                if j % 3 == 2:
                    number += 1
                else:
                    day, number = day + datetime.timedelta(days=1), 1
            options = {
                'trials_table': index % 3 == 1,
                'revision': REVISION if index % 4 == 3 else None,
                'probes': () if index % 5 == 4 else probes,
                **kwargs,
            }
            sessions.append(make_session(root, subject, day, number, lab=lab, seed=seed,
                                         **options))
            index += 1
    return sorted(sessions)


if __name__ == '__main__':  # pragma: no cover - convenience for demos
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.getcwd(), 'synthetic_one')
    for path in make_dataset_folder(target):
        print(path)
