"""Generate realistic ONE cache tables of any size, seeded and fast.

Writes ``sessions.pqt`` and ``datasets.pqt`` into a folder in exactly the on-disk format that
`one.alf.cache.save_tables` (i.e. `one._tables.parquet.save`) writes: the same columns, arrow
types, pandas metadata (index levels, ``UInt64`` file sizes, the ordered ``qc`` categorical)
and the JSON ``one_metadata`` dict (``date_created``, ``origin``).  Both one-next's
``One(cache_dir=...)`` and ONE-api 3.x load them.

What the tables look like
-------------------------
* ~10 labs with IBL-like subject names (``KS023``, ``CSHL045``, ``SWC_043``...), ~120
  sessions per subject (several per week, some days with a second session numbered 002)
  spread over 2018-2025; each subject goes through habituation, training, biased and (for
  most) ephys protocols, with iblrig versions changing over the years; projects per subject.
* ~100 datasets per session on average: trials (15 npy attributes), wheel, wheelMoves,
  cameras (times, dlc and features pqt, motion energy), licks, passive, a description yaml at
  the session root, raw behaviour / video data and, for ephys sessions, 1-3 probes each with
  ``alf/probe0N`` and ``alf/probe0N/pykilosort`` spike sorting (some with an extra
  ``iblsorter`` run) and ``raw_ephys_data/probe0N`` (``.ap.cbin`` ...).
* ~5 % of sessions have revised trials (``alf/#2024-05-06#/...``, some also
  ``alf/#2025-01-15#/...``); ``default_revision`` is True on exactly one row per dataset
  (usually the latest revision, sometimes still the original).
* QC: raw data mostly NOT_SET, extracted data mostly PASS/NOT_SET, some WARNING/FAIL, a few
  CRITICAL; ~1-8 % ``exists=False`` (more for raw ephys and video); realistic file sizes
  (a few KB for trials to tens of GB for ``.ap.cbin``); md5-looking hashes (a few raw files
  have none).
* Session and dataset ids are random version-4 UUIDs drawn from the seed, so the same seed
  gives byte-identical tables.

Everything is built with numpy and pyarrow on whole columns (per-row Python only where rows
are few: labs, subjects, the templates of the dataset lists).  10,000 sessions (~1M datasets)
take a few seconds, 40,000 (~4M) well under a minute.

Optionally (on by default) one session gets real files: its 15 trials attributes are written
as ``.npy`` files under ``<out>/<lab>/Subjects/<subject>/<date>/<number>/alf/`` and their
true sizes and md5s are put in the table, so ``one.load_object(eid, 'trials',
check_hash=True)`` works (see ``bench_info.json`` for the eid).

Usage::

    python benchmarks/make_cache.py OUT_DIR --sessions 10000 --seed 0
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ['build_tables', 'make_cache', 'INFO_NAME', 'TRIALS_ATTRIBUTES']

INFO_NAME = 'bench_info.json'
"""File written beside the tables, describing what was generated (sizes, eid with files...)."""

QC_NAMES = ('NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL')

# (lab name, subject name prefix, digits)
LABS = [
    ('cortexlab', 'KS', 3), ('churchlandlab', 'CSHL', 3), ('hoferlab', 'SWC_', 3),
    ('mainenlab', 'ZFM-', 5), ('angelakilab', 'NYU-', 2), ('danlab', 'DY_', 3),
    ('wittenlab', 'ibl_witten_', 2), ('zadorlab', 'CSH_ZAD_', 3), ('steinmetzlab', 'NR_', 4),
    ('mrsicflogellab', 'SWC_M', 3), ('churchlandlab_ucla', 'UCLA', 3),
]
PROJECTS = np.array([
    'ibl_neuropixel_brainwide_01', 'ibl_neuropixel_brainwide_01,ibl_training',
    'ibl_training', 'ibl_behaviour_pilot_01', 'practice', 'ibl_mainenlab', '',
], dtype=object)
PROJECTS_P = np.array([.45, .15, .2, .08, .04, .03, .05])

KINDS = ('habituation', 'training', 'biased', 'ephys', 'passive')
PROTOCOL_NAMES = ('habituationChoiceWorld', 'trainingChoiceWorld', 'biasedChoiceWorld',
                  'ephysChoiceWorld', 'passiveChoiceWorld')
RIG_VERSIONS = ((2020, '6.4.2'), (2022, '7.2.3'), (2024, '8.12.10'), (9999, '8.27.1'))

TRIALS_ATTRIBUTES = (
    'intervals', 'goCue_times', 'stimOn_times', 'stimOff_times', 'response_times',
    'feedback_times', 'firstMovement_times', 'goCueTrigger_times', 'feedbackType', 'choice',
    'contrastLeft', 'contrastRight', 'probabilityLeft', 'rewardVolume', 'quiescencePeriod')
"""The attributes of the ``alf/_ibl_trials.*.npy`` datasets of every session with trials."""

REVISIONS = ('2024-05-06', '2025-01-15')
KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
EPOCH = datetime.date(1970, 1, 1)
FIRST_DAY = (datetime.date(2018, 6, 1) - EPOCH).days
LAST_DAY = (datetime.date(2025, 12, 31) - EPOCH).days


# --------------------------------------------------------------------------------------------
# Dataset templates: (rel_path, typical size in bytes, probability the file is missing)
# --------------------------------------------------------------------------------------------

def _trials(revision: str | None = None) -> list[tuple]:
    folder = f'alf/#{revision}#' if revision else 'alf'
    return [(f'{folder}/_ibl_trials.{a}.npy', 10 * KB if a.startswith('intervals') else 5 * KB,
             .005) for a in TRIALS_ATTRIBUTES]


def _camera(label: str, alf: bool = True) -> list[tuple]:
    out = [(f'raw_video_data/_iblrig_{label}Camera.raw.mp4',
            {'left': 6 * GB, 'right': 9 * GB, 'body': 2 * GB}[label], .05),
           (f'raw_video_data/_iblrig_{label}Camera.frameData.bin', 30 * MB, .02)]
    if alf:
        out += [(f'alf/_ibl_{label}Camera.times.npy', 2 * MB, .01),
                (f'alf/_ibl_{label}Camera.dlc.pqt', 40 * MB, .02),
                (f'alf/_ibl_{label}Camera.features.pqt', 5 * MB, .02),
                (f'alf/{label}Camera.ROIMotionEnergy.npy', 2 * MB, .02),
                (f'alf/{label}ROIMotionEnergy.position.npy', 1 * KB, .02)]
    return out


_DESCRIPTION = [('_ibl_experiment.description.yaml', 2 * KB, .0)]
_WHEEL = [('alf/_ibl_wheel.position.npy', 4 * MB, .01),
          ('alf/_ibl_wheel.timestamps.npy', 4 * MB, .01),
          ('alf/_ibl_wheelMoves.intervals.npy', 40 * KB, .01),
          ('alf/_ibl_wheelMoves.peakAmplitude.npy', 20 * KB, .01),
          ('alf/_ibl_wheelMoves.peakVelocity_times.npy', 20 * KB, .01)]
_RAW_BEHAVIOUR = [(f'raw_behavior_data/_iblrig_{n}', s, .01) for n, s in (
    ('taskData.raw.jsonable', 20 * MB), ('taskSettings.raw.json', 8 * KB),
    ('encoderEvents.raw.ssv', 1 * MB), ('encoderPositions.raw.ssv', 10 * MB),
    ('encoderTrialInfo.raw.ssv', 100 * KB), ('ambientSensorData.raw.jsonable', 200 * KB),
    ('stimPositionScreen.raw.csv', 50 * KB), ('syncSquareUpdate.raw.csv', 50 * KB))]
_EPHYS_SESSION = [
    ('alf/_ibl_licks.times.npy', 50 * KB, .01),
    ('raw_ephys_data/_spikeglx_ephysData_g0_t0.nidq.cbin', 300 * MB, .03),
    ('raw_ephys_data/_spikeglx_ephysData_g0_t0.nidq.ch', 5 * KB, .03),
    ('raw_ephys_data/_spikeglx_ephysData_g0_t0.nidq.meta', 10 * KB, .03),
    ('raw_ephys_data/_spikeglx_sync.channels.npy', 1 * MB, .01),
    ('raw_ephys_data/_spikeglx_sync.polarities.npy', 1 * MB, .01),
    ('raw_ephys_data/_spikeglx_sync.times.npy', 2 * MB, .01),
]
_PASSIVE = [('alf/_ibl_passivePeriods.intervalsTable.csv', 1 * KB, .01),
            ('alf/_ibl_passiveGabor.table.csv', 20 * KB, .01),
            ('alf/_ibl_passiveStims.table.csv', 5 * KB, .01),
            ('alf/_ibl_passiveRFM.times.npy', 50 * KB, .01),
            ('raw_passive_data/_iblrig_RFMapStim.raw.bin', 50 * MB, .02),
            ('raw_passive_data/_iblrig_taskSettings.raw.json', 8 * KB, .01)]
_SORTING = [(f'{o}.{a}', s) for o, a, s in (
    ('spikes', 'amps.npy', 40 * MB), ('spikes', 'clusters.npy', 40 * MB),
    ('spikes', 'depths.npy', 40 * MB), ('spikes', 'samples.npy', 80 * MB),
    ('spikes', 'times.npy', 80 * MB), ('spikes', 'templates.npy', 40 * MB),
    ('clusters', 'amps.npy', 10 * KB), ('clusters', 'channels.npy', 10 * KB),
    ('clusters', 'depths.npy', 10 * KB), ('clusters', 'metrics.pqt', 500 * KB),
    ('clusters', 'peakToTrough.npy', 10 * KB), ('clusters', 'uuids.csv', 40 * KB),
    ('clusters', 'waveforms.npy', 30 * MB), ('clusters', 'waveformsChannels.npy', 500 * KB),
    ('channels', 'brainLocationIds_ccf_2017.npy', 3 * KB), ('channels', 'mlapdv.npy', 9 * KB),
    ('channels', 'localCoordinates.npy', 6 * KB), ('channels', 'rawInd.npy', 3 * KB),
    ('templates', 'amps.npy', 10 * KB), ('templates', 'waveforms.npy', 30 * MB),
    ('templates', 'waveformsChannels.npy', 500 * KB), ('drift', 'times.npy', 5 * KB),
    ('drift', 'um.npy', 100 * KB), ('drift_depths', 'um.npy', 1 * KB),
    ('_kilosort_whitening', 'matrix.npy', 600 * KB), ('_phy_spikes_subset', 'channels.npy',
                                                      1 * MB),
    ('_phy_spikes_subset', 'spikes.npy', 1 * MB), ('_phy_spikes_subset', 'waveforms.npy',
                                                   100 * MB),
    ('electrodeSites', 'brainLocationIds_ccf_2017.npy', 3 * KB),
    ('electrodeSites', 'localCoordinates.npy', 6 * KB), ('electrodeSites', 'mlapdv.npy',
                                                         9 * KB))]


def _probe(i: int, iblsorter: bool) -> list[tuple]:
    probe = f'probe{i:02d}'
    out = [(f'alf/{probe}/{name}', size, .01) for name, size in _SORTING]
    out += [(f'alf/{probe}/pykilosort/{name}', size, .01) for name, size in _SORTING]
    if iblsorter:
        out += [(f'alf/{probe}/iblsorter/{name}', size, .01) for name, size in _SORTING]
    raw = f'raw_ephys_data/{probe}'
    stem = '_spikeglx_ephysData_g0_t0.imec0'
    out += [(f'{raw}/{stem}.ap.cbin', 60 * GB, .08), (f'{raw}/{stem}.ap.ch', 500 * KB, .05),
            (f'{raw}/{stem}.ap.meta', 10 * KB, .05), (f'{raw}/{stem}.lf.cbin', 3 * GB, .06),
            (f'{raw}/{stem}.lf.ch', 50 * KB, .05), (f'{raw}/{stem}.lf.meta', 10 * KB, .05),
            (f'{raw}/_spikeglx_sync.channels.{probe}.npy', 1 * MB, .02),
            (f'{raw}/_spikeglx_sync.polarities.{probe}.npy', 1 * MB, .02),
            (f'{raw}/_spikeglx_sync.times.{probe}.npy', 2 * MB, .02),
            (f'{raw}/_iblqc_ephysChannels.rawRMS.npy', 3 * KB, .02),
            (f'{raw}/_iblqc_ephysTimeRmsAP.rms.npy', 5 * MB, .02),
            (f'{raw}/_iblqc_ephysSpectralDensityLF.power.npy', 2 * MB, .02)]
    return out


def _template(kind: int, n_probes: int, n_revisions: int, default_original: bool,
              iblsorter: bool) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Relative paths, sizes, missing probabilities and default_revision of a session kind."""
    name = KINDS[kind]
    rows = list(_DESCRIPTION)
    if name != 'passive':
        rows += _trials() + _RAW_BEHAVIOUR + _camera('left', alf=name != 'habituation')
        for r in range(n_revisions):
            rows += _trials(REVISIONS[r])
    if name in ('training', 'biased', 'ephys'):
        rows += _WHEEL
    if name in ('ephys', 'passive'):
        rows += _PASSIVE
    if name == 'ephys':
        rows += _camera('right') + _camera('body') + _EPHYS_SESSION
        for i in range(n_probes):
            rows += _probe(i, iblsorter)
    rel_paths = [r[0] for r in rows]
    default = np.ones(len(rows), dtype=bool)
    if n_revisions:  # exactly one default per dataset: the latest revision or the original
        default_folder = 'alf/' if default_original else f'alf/#{REVISIONS[n_revisions - 1]}#/'
        for i, p in enumerate(rel_paths):
            if '_ibl_trials.' in p:
                default[i] = p.startswith(default_folder) and p.count('/') == \
                    default_folder.count('/')
    return (rel_paths, np.array([r[1] for r in rows], dtype=np.float64),
            np.array([r[2] for r in rows], dtype=np.float64), default)


# --------------------------------------------------------------------------------------------
# Vectorised helpers
# --------------------------------------------------------------------------------------------

_HEX = np.frombuffer(b'0123456789abcdef', dtype=np.uint8)
_UUID_HEX_POS = np.r_[0:8, 9:13, 14:18, 19:23, 24:36]


def _hex(raw: np.ndarray) -> np.ndarray:
    """(n, k) uint8 -> (n, 2k) uint8 ASCII lower-case hex."""
    out = np.empty((raw.shape[0], raw.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 0x0F]
    return out


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """(n, w) uint8 ASCII -> pyarrow string array of n strings of width w (no Python objects)."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(np.ascontiguousarray(chars))])


def _uuid4_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw


def _uuid_strings(raw: np.ndarray) -> pa.Array:
    """(n, 16) uint8 UUID bytes -> canonical lower-case UUID strings."""
    chars = np.full((raw.shape[0], 36), ord('-'), dtype=np.uint8)
    chars[:, _UUID_HEX_POS] = _hex(raw)
    return _fixed_width_strings(chars)


def _sort_key(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) big-endian uint64 halves: sorting them sorts the UUID strings."""
    halves = np.ascontiguousarray(raw).view('>u8')
    return halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)


def _choice(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(np.cumsum(p) / np.sum(p), rng.random(n), side='right') \
        .clip(0, len(p) - 1)


def _rng(seed: int, part: str) -> np.random.Generator:
    """An independent generator per part, so changing one part does not shift the others."""
    return np.random.default_rng([seed, int.from_bytes(part.encode()[:8].ljust(8), 'little')])


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def _sessions(n_sessions: int, n_labs: int, seed: int) -> dict:
    """Per-session columns (numpy), in table (sorted eid) order."""
    rng = _rng(seed, 'sessions')
    labs = [LABS[i] if i < len(LABS) else (f'lab{i:02d}', f'L{i:02d}_', 3)
            for i in range(n_labs)]
    n_subjects = max(n_labs, round(n_sessions / 120))
    subject_lab = np.arange(n_subjects) % n_labs
    rng.shuffle(subject_lab)
    counters = [0] * n_labs
    subjects = []
    for lab in subject_lab:  # one per subject: few
        counters[lab] += 1
        _, prefix, digits = labs[lab]
        subjects.append(f'{prefix}{counters[lab] + 10:0{digits}d}')
    subject_project = _choice(rng, PROJECTS_P, n_subjects)
    goes_ephys = rng.random(n_subjects) < .75

    weights = rng.gamma(2.0, size=n_subjects)
    counts = rng.multinomial(n_sessions, weights / weights.sum())
    subj = np.repeat(np.arange(n_subjects), counts)  # grouped by subject
    first = np.r_[0, np.cumsum(counts)[:-1]]
    k = np.arange(n_sessions) - np.repeat(first, counts)  # position within the subject
    frac = k / np.repeat(np.maximum(counts, 1), counts)

    # days: a start per subject, then gaps of 0 (a second session the same day) to 4 days
    gaps = _choice(rng, np.array([.04, .62, .18, .12, .04]), n_sessions)
    gaps[k == 0] = 0
    cum = np.r_[np.cumsum(gaps), 0]  # padded: subjects without sessions index past the end
    span = np.where(counts > 0, cum[first + counts - 1] - cum[first], 0)
    latest_start = np.maximum(LAST_DAY - span, FIRST_DAY + 1)
    start = FIRST_DAY + (rng.random(n_subjects) * (latest_start - FIRST_DAY)).astype(np.int64)
    day = start[subj] + cum[:-1] - np.repeat(cum[first], counts)
    run_start = np.r_[True, (subj[1:] != subj[:-1]) | (day[1:] != day[:-1])]
    idx = np.arange(n_sessions)
    number = idx - np.maximum.accumulate(np.where(run_start, idx, 0)) + 1

    # protocol from the subject's progress; some never get to ephys
    kind = np.select([frac < .05, frac < .3, frac < .45], [0, 1, 2], default=3)
    no_ephys = ~goes_ephys[subj] & (kind == 3)
    kind[no_ephys] = 2
    kind[(kind == 3) & (rng.random(n_sessions) < .06)] = 4  # passive-only recordings
    year = (day.astype('datetime64[D]').astype('datetime64[Y]').astype(int) + 1970)
    era = np.searchsorted([y for y, _ in RIG_VERSIONS], year, side='left')
    protocols = np.array([f'_iblrig_tasks_{p}{v}' for p in PROTOCOL_NAMES
                          for _, v in RIG_VERSIONS], dtype=object)
    protocol = kind * len(RIG_VERSIONS) + era
    protocols = np.append(protocols, '')  # a few sessions without protocol
    protocol[rng.random(n_sessions) < .005] = len(protocols) - 1

    n_probes = np.where(kind == 3, _choice(rng, np.array([.25, .65, .10]), n_sessions) + 1, 0)
    has_trials = kind != 4
    n_revisions = np.where(has_trials & (rng.random(n_sessions) < .05),
                           1 + (rng.random(n_sessions) < .2), 0)
    default_original = (n_revisions > 0) & (rng.random(n_sessions) < .1)
    iblsorter = (kind == 3) & (rng.random(n_sessions) < .1)

    raw = _uuid4_bytes(rng, n_sessions)
    hi, lo = _sort_key(raw)
    order = np.lexsort((lo, hi))
    return dict(
        raw_id=raw[order], lab=np.array([labs[i][0] for i in subject_lab], dtype=object),
        subjects=np.array(subjects, dtype=object), subject_lab=subject_lab,
        projects=PROJECTS[subject_project], subj=subj[order], day=day[order],
        number=number[order].astype(np.uint16), kind=kind[order], protocols=protocols,
        protocol=protocol[order], n_probes=n_probes[order], n_revisions=n_revisions[order],
        default_original=default_original[order], iblsorter=iblsorter[order])


def _datasets(ses: dict, seed: int) -> dict:
    """Per-dataset columns (numpy; rel_path as codes into `rel_paths`), sorted by (eid, id)."""
    rng = _rng(seed, 'datasets')
    combo = np.stack([ses['kind'], ses['n_probes'], ses['n_revisions'],
                      ses['default_original'], ses['iblsorter']], axis=1).astype(np.int64)
    combos, which = np.unique(combo, axis=0, return_inverse=True)
    which = which.ravel()
    rel_index: dict[str, int] = {}
    parts = []
    for c, (kind, n_probes, n_rev, default_original, iblsorter) in enumerate(combos):
        sessions = np.flatnonzero(which == c)
        rel, size, p_missing, default = _template(int(kind), int(n_probes), int(n_rev),
                                                  bool(default_original), bool(iblsorter))
        codes = np.array([rel_index.setdefault(p, len(rel_index)) for p in rel], dtype=np.int32)
        n_rows = len(sessions) * len(rel)
        parts.append((np.repeat(sessions, len(rel)), np.tile(codes, len(sessions)),
                      np.tile(size, len(sessions)), np.tile(p_missing, len(sessions)),
                      np.tile(default, len(sessions))))
        assert n_rows == len(parts[-1][0])
    session, rel_code, size, p_missing, default = (
        np.concatenate([p[i] for p in parts]) if parts else np.zeros(0)
        for i in range(5))
    n = len(session)
    rel_paths = np.array(list(rel_index), dtype=object)
    is_raw = np.array([p.startswith('raw_') for p in rel_paths], dtype=bool)[rel_code] \
        if n else np.zeros(0, dtype=bool)

    file_size = np.maximum(size * np.exp(rng.normal(0, .35, n)), 128).astype(np.uint64)
    exists = rng.random(n) >= p_missing
    qc = np.where(is_raw, _choice(rng, np.array([.9, .1, 0, 0, 0]), n),
                  _choice(rng, np.array([.35, .48, .09, .06, .02]), n)).astype(np.int8)
    hashes = _hex(rng.integers(0, 256, size=(n, 16), dtype=np.uint8))
    no_hash = is_raw & (rng.random(n) < .01)
    raw_id = _uuid4_bytes(rng, n)

    hi, lo = _sort_key(raw_id)
    order = np.lexsort((lo, hi, session))  # sessions are already in eid order
    return dict(session=session[order], raw_id=raw_id[order], rel_code=rel_code[order],
                rel_paths=rel_paths, file_size=file_size[order], exists=exists[order],
                qc=qc[order], hashes=hashes[order], no_hash=no_hash[order],
                default_revision=default[order].astype(bool))


def _session_paths(ses: dict, rows: np.ndarray) -> list[str]:
    out = []
    for i in rows:
        s = ses['subj'][i]
        date = (EPOCH + datetime.timedelta(days=int(ses['day'][i]))).isoformat()
        out.append(f"{ses['lab'][s]}/Subjects/{ses['subjects'][s]}/{date}/"
                   f"{int(ses['number'][i]):03d}")
    return out


def _real_trials(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Plausible trials attributes of `n` trials."""
    start = np.cumsum(rng.uniform(4, 9, n))
    stim_on = start + rng.uniform(.5, 1, n)
    response = stim_on + rng.gamma(2, .3, n)
    feedback = response + .01
    contrasts = rng.choice([0, .0625, .125, .25, 1.], n)
    left = rng.random(n) < .5
    correct = rng.random(n) < .8
    return {
        'intervals': np.c_[start, feedback + 1.5],
        'goCue_times': stim_on + .01, 'stimOn_times': stim_on, 'stimOff_times': feedback + 1,
        'response_times': response, 'feedback_times': feedback,
        'firstMovement_times': response - rng.uniform(.05, .2, n),
        'goCueTrigger_times': stim_on + .005,
        'feedbackType': np.where(correct, 1., -1.), 'choice': np.where(left, 1., -1.),
        'contrastLeft': np.where(left, contrasts, np.nan),
        'contrastRight': np.where(left, np.nan, contrasts),
        'probabilityLeft': np.full(n, .5), 'rewardVolume': np.where(correct, 1.5, 0.),
        'quiescencePeriod': rng.uniform(.4, .7, n),
    }


def _write_real_files(out_dir: Path, ses: dict, dst: dict, seed: int) -> dict | None:
    """Write the trials files of one session; put their true size and md5 in the columns."""
    candidates = np.flatnonzero((ses['kind'] == 3) & (ses['n_revisions'] == 0))
    if not len(candidates):
        candidates = np.flatnonzero((ses['kind'] != 4) & (ses['n_revisions'] == 0))
    if not len(candidates):
        return None
    i = int(candidates[0])
    session_path = _session_paths(ses, [i])[0]
    rows = np.flatnonzero(dst['session'] == i)
    rel = dst['rel_paths'][dst['rel_code'][rows]]
    arrays = _real_trials(_rng(seed, 'trials'), 600)
    written = []
    for row, rel_path in zip(rows, rel):
        if not rel_path.startswith('alf/_ibl_trials.'):
            continue
        attribute = rel_path.split('.')[1]
        file = out_dir / session_path / rel_path
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, arrays[attribute])
        data = file.read_bytes()
        dst['file_size'][row] = len(data)
        dst['hashes'][row] = np.frombuffer(hashlib.md5(data).hexdigest().encode(), np.uint8)
        dst['no_hash'][row] = False
        dst['exists'][row] = True
        dst['qc'][row] = 1  # PASS
        written.append(rel_path)
    return {'eid': _uuid_strings(ses['raw_id'][i:i + 1])[0].as_py(),
            'session_path': session_path, 'files': sorted(written)}


def build_tables(n_sessions: int = 10_000, seed: int = 0, n_labs: int = 10,
                 out_dir: Path | None = None) -> tuple[pa.Table, pa.Table, dict]:
    """Build the sessions and datasets tables as pyarrow tables (ids as str columns).

    Parameters
    ----------
    n_sessions : int
        Number of sessions.
    seed : int
        Seed of everything random; the same seed gives the same tables.
    n_labs : int
        Number of labs.
    out_dir : pathlib.Path, optional
        If given, one session's trials files are written there (and their real size and md5
        used in the table).

    Returns
    -------
    (pyarrow.Table, pyarrow.Table, dict)
        Sessions (id, lab, subject, date, number, task_protocol, projects), datasets (eid, id,
        rel_path, file_size, hash, exists, qc, default_revision), both sorted by id, and a dict
        describing them (``real_files`` when files were written).
    """
    if n_sessions < 1 or n_labs < 1:
        raise ValueError('n_sessions and n_labs must be at least 1')
    ses = _sessions(n_sessions, n_labs, seed)
    dst = _datasets(ses, seed)
    info: dict = {}
    if out_dir is not None:
        info['real_files'] = _write_real_files(Path(out_dir), ses, dst, seed)

    eids = _uuid_strings(ses['raw_id'])
    sessions = pa.table({
        'id': eids,
        'lab': pa.array(ses['lab'][ses['subj']], pa.string()),
        'subject': pa.array(ses['subjects'][ses['subj']], pa.string()),
        'date': pa.array(ses['day'].astype(np.int32), pa.int32()).cast(pa.date32()),
        'number': pa.array(ses['number'], pa.uint16()),
        'task_protocol': pa.array(ses['protocols'][ses['protocol']], pa.string()),
        'projects': pa.array(ses['projects'][ses['subj']], pa.string()),
    })
    hashes = _fixed_width_strings(dst['hashes'])
    if dst['no_hash'].any():
        hashes = pc.if_else(pa.array(dst['no_hash']), pa.scalar(None, pa.string()),
                                    hashes)
    qc = pa.DictionaryArray.from_arrays(pa.array(dst['qc'], pa.int8()),
                                        pa.array(QC_NAMES, pa.string()), ordered=True)
    datasets = pa.table({
        'eid': eids.take(pa.array(dst['session'].astype(np.int64))),
        'id': _uuid_strings(dst['raw_id']),
        'rel_path': pa.array(dst['rel_paths'], pa.string()).take(
            pa.array(dst['rel_code'].astype(np.int32))),
        'file_size': pa.array(dst['file_size'], pa.uint64()),
        'hash': hashes,
        'exists': pa.array(dst['exists'], pa.bool_()),
        'qc': qc,
        'default_revision': pa.array(dst['default_revision'], pa.bool_()),
    })
    info.update(n_sessions=sessions.num_rows, n_datasets=datasets.num_rows,
                subjects=sorted(set(ses['subjects'][np.unique(ses['subj'])].tolist())))
    return sessions, datasets, info


# --------------------------------------------------------------------------------------------
# Writing, in the format of one._tables.parquet.save
# --------------------------------------------------------------------------------------------

def _pandas_schema(table: pa.Table, index: list[str]) -> pa.Schema:
    """The schema `one._tables.parquet.save` gives `table` held by pandas with `index` set.

    Builds the pandas frame ONE holds in memory from the first rows (schema dtypes: UInt64
    file sizes, the ordered QC categorical, datetime.date objects, str ids in the index),
    converts it back as `parquet.save` does and returns that schema (pandas metadata
    included), with large_string stored as string like `parquet.save`.
    """
    import pandas as pd

    df = table.slice(0, 8).to_pandas()
    if 'file_size' in df.columns:
        df['file_size'] = df['file_size'].astype('UInt64')
    if 'qc' in df.columns:
        df['qc'] = df['qc'].astype(pd.CategoricalDtype(QC_NAMES, ordered=True))
    schema = pa.Table.from_pandas(df.set_index(index), preserve_index=None).schema
    fields = [f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f
              for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def _write(table: pa.Table, index: list[str], filename: Path, metadata: dict) -> Path:
    from one._lib.files import atomic_path
    from one._tables.parquet import METADATA_KEY

    schema = _pandas_schema(table, index)
    table = table.select(schema.names).cast(pa.schema(list(schema)))
    meta = dict(schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(metadata).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(filename, fsync=False) as tmp:
        pq.write_table(table, tmp)
    return filename


def make_cache(out_dir, n_sessions: int = 10_000, seed: int = 0, n_labs: int = 10,
               real_files: bool = True) -> dict:
    """Write ``sessions.pqt``, ``datasets.pqt`` and ``bench_info.json`` into `out_dir`.

    Parameters
    ----------
    out_dir : str, os.PathLike
        The folder (created if needed); it becomes a ONE cache dir.
    n_sessions, seed, n_labs :
        See `build_tables`.
    real_files : bool
        Write the trials files of one session (see ``real_files`` in the returned dict).

    Returns
    -------
    dict
        What was generated: ``n_sessions``, ``n_datasets``, ``subjects``, ``real_files``
        (``eid``, ``session_path``, ``files``, or None), ``seed``, ``seconds``.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sessions, datasets, info = build_tables(n_sessions, seed, n_labs,
                                            out_dir if real_files else None)
    info.setdefault('real_files', None)
    metadata = {'date_created': datetime.datetime.now().isoformat(sep=' ', timespec='minutes'),
                'origin': 'benchmarks.make_cache'}
    _write(sessions, ['id'], out_dir / 'sessions.pqt', metadata)
    _write(datasets, ['eid', 'id'], out_dir / 'datasets.pqt', metadata)
    info.update(seed=seed, n_labs=n_labs, seconds=round(time.perf_counter() - t0, 2))
    (out_dir / INFO_NAME).write_text(json.dumps(info, indent=1))
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out_dir', help='folder to write the tables to (a ONE cache dir)')
    parser.add_argument('--sessions', type=int, default=10_000, help='number of sessions')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--labs', type=int, default=10, help='number of labs')
    parser.add_argument('--no-files', action='store_true',
                        help="don't write the real trials files of one session")
    args = parser.parse_args(argv)
    info = make_cache(args.out_dir, args.sessions, args.seed, args.labs,
                      real_files=not args.no_files)
    real = info['real_files']
    print(f"{info['n_sessions']:,} sessions, {info['n_datasets']:,} datasets, "
          f"{len(info['subjects'])} subjects in {args.out_dir} ({info['seconds']} s)")
    if real:
        print(f"real trials files for {real['eid']} ({real['session_path']})")
    return 0


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
