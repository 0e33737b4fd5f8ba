"""Benchmark of ALF path parsing: `rel_path_parts`, `filename_parts` and `full_path_parts`.

Each case parses N paths (1,000,000 by default) and reports the rate (paths/s) and the time per
path (µs), the median of R runs.  The memo cache of the parsers is cleared before every run, so
each run pays for parsing every distinct string once.

Cases
-----
* ``repeated``: realistic relative paths of an IBL-like cache, a few hundred distinct
  collection/revision/file names (trials, wheel, cameras, per-probe spike sorting, raw data,
  some revision folders) repeated over many sessions, in cache-table order.
* ``distinct``: the same names, each with a different dataset UUID before the extension, so
  every path is new to the memo cache and the regular expressions run for every path.
* full paths: the ``repeated`` relative paths under session folders
  (``root/lab/Subjects/subject/date/number/``) for a short root (``/data``) and for the long
  root of a ONE cache directory (``/home/user/Downloads/ONE/openalyx.internationalbrainlab.org``);
  every full path is distinct, but their folders and file names repeat.  The ``distinct``
  variant gives every file name a UUID as well.

Run with ``python benchmarks/bench_parse.py [-n N] [--repeat R]``.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
import timeit
import uuid

from one.alf import path as alfpath
from one.alf.path import filename_parts, full_path_parts, rel_path_parts

LONG_ROOT = '/home/user/Downloads/ONE/openalyx.internationalbrainlab.org'
LABS = ('cortexlab', 'mainenlab', 'churchlandlab', 'hoferlab', 'wittenlab', 'angelakilab')


def distinct_rel_paths() -> list[str]:
    """A few hundred distinct, realistic relative paths (collection/#revision#/file)."""
    trials = ('intervals', 'goCue_times', 'stimOn_times', 'stimOff_times', 'response_times',
              'feedback_times', 'feedbackType', 'choice', 'contrastLeft', 'contrastRight',
              'probabilityLeft', 'rewardVolume', 'firstMovement_times', 'quiescencePeriod')
    paths = [f'alf/_ibl_trials.{a}.npy' for a in trials]
    paths += ['alf/_ibl_trials.intervals_bpod.npy', 'alf/_ibl_trials.table.pqt',
              'alf/_ibl_trials.goCueTrigger_times_bpod.npy']
    paths += [f'alf/_ibl_wheel.{a}.npy' for a in ('position', 'timestamps')]
    paths += [f'alf/_ibl_wheelMoves.{a}.npy' for a in ('intervals', 'peakAmplitude',
                                                       'peakVelocity_times')]
    for camera in ('left', 'right', 'body'):
        paths += [f'alf/_ibl_{camera}Camera.{a}.{e}' for a, e in (
            ('times', 'npy'), ('dlc', 'pqt'), ('ROIMotionEnergy', 'npy'), ('features', 'pqt'))]
        paths += [f'raw_video_data/_iblrig_{camera}Camera.{a}' for a in (
            'raw.mp4', 'timestamps.ssv', 'frameData.bin', 'GPIO.bin')]
    paths += [f'raw_behavior_data/_iblrig_{n}' for n in (
        'taskData.raw.jsonable', 'taskSettings.raw.json', 'encoderEvents.raw.ssv',
        'encoderPositions.raw.ssv', 'ambientSensorData.raw.jsonable')]
    paths += [f'raw_passive_data/_iblrig_{n}' for n in (
        'RFMapStim.raw.bin', 'stimDelays.raw.npy', 'taskSettings.raw.json')]
    paths += [f'alf/_ibl_passive{n}' for n in ('Gabor.table.csv', 'Periods.table.csv',
                                               'RFMap.times.npy', 'Stims.table.csv')]
    for probe in ('probe00', 'probe01'):
        for sorter in ('', '/pykilosort', '/iblsorter'):
            folder = f'alf/{probe}{sorter}'
            paths += [f'{folder}/spikes.{a}.npy' for a in (
                'times', 'clusters', 'amps', 'depths', 'templates', 'samples')]
            paths += [f'{folder}/clusters.{a}.{e}' for a, e in (
                ('channels', 'npy'), ('depths', 'npy'), ('metrics', 'pqt'), ('uuids', 'csv'),
                ('waveforms', 'npy'), ('amps', 'npy'), ('peakToTrough', 'npy'))]
            paths += [f'{folder}/channels.{a}.npy' for a in (
                'localCoordinates', 'rawInd', 'brainLocationIds_ccf_2017', 'mlapdv')]
            paths += [f'{folder}/templates.{a}.npy' for a in ('waveforms', 'waveformsChannels')]
            paths += [f'{folder}/_phy_spikes_subset.{a}.npy' for a in (
                'channels', 'spikes', 'waveforms')]
        raw = f'raw_ephys_data/{probe}'
        paths += [f'{raw}/_spikeglx_ephysData_g0_t0.imec{probe[-1]}.{b}' for b in (
            'ap.cbin', 'ap.meta', 'ap.ch', 'lf.cbin', 'lf.meta', 'lf.ch', 'sync.npy')]
        paths += [f'{raw}/_iblqc_ephys{a}.{b}.npy' for a in ('TimeRmsAP', 'TimeRmsLF')
                  for b in ('rms', 'timestamps')]
        paths += [f'{raw}/_iblqc_ephysSpectralDensity{a}.{b}.npy' for a in ('AP', 'LF')
                  for b in ('freqs', 'power')]
    paths += [f'raw_ephys_data/_spikeglx_sync.{a}.npy' for a in ('channels', 'polarities',
                                                                  'times')]
    # Revised datasets: a revision folder before the file
    revised = [p for p in paths if p.startswith(('alf/_ibl_trials', 'alf/probe00/spikes'))]
    for label in ('2024-06-01', '2025-01-15a'):
        paths += [p.replace('/', f'/#{label}#/', 1) if p.count('/') == 1 else
                  '/'.join([*p.split('/')[:-1], f'#{label}#', p.split('/')[-1]])
                  for p in revised]
    assert len(set(paths)) == len(paths)
    return paths


def session_paths(n: int, root: str, seed: int = 0) -> list[str]:
    """`n` distinct session folders under `root`."""
    rng = random.Random(seed)
    sessions = set()
    while len(sessions) < n:
        lab = rng.choice(LABS)
        subject = f'{rng.choice(("KS", "ZFM-", "SWC_", "NYU-", "CSHL_"))}{rng.randrange(1000):03d}'
        date = f'20{rng.randrange(18, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}'
        sessions.add(f'{root}/{lab}/Subjects/{subject}/{date}/{rng.randrange(1, 4):03d}')
    return sorted(sessions)


def make_inputs(n: int) -> dict:
    """The lists of strings to parse, n of each."""
    rel = distinct_rel_paths()
    per_session = len(rel)
    n_sessions = -(-n // per_session)
    repeated = (rel * n_sessions)[:n]
    rng = random.Random(1)
    uuids = (str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n))

    def with_uuid(p, u):
        stem, _, ext = p.rpartition('.')
        return f'{stem}.{u}.{ext}'

    distinct = [with_uuid(p, u) for p, u in zip(repeated, uuids)]
    full_short, full_long = [], []
    for out, root in ((full_short, '/data'), (full_long, LONG_ROOT)):
        for session in session_paths(n_sessions, root):
            out.extend(f'{session}/{p}' for p in rel)
        del out[n:]
    full_distinct = [f'{s.rsplit("/", 1)[0]}/{d.rsplit("/", 1)[-1]}'
                     for s, d in zip(full_short, distinct)]
    return {
        'rel_path_parts, repeated': (rel_path_parts, repeated, len(set(repeated))),
        'rel_path_parts, distinct (uuid)': (rel_path_parts, distinct, n),
        'filename_parts, repeated': (filename_parts, [p.rsplit('/', 1)[-1] for p in repeated],
                                     None),
        'filename_parts, distinct (uuid)': (filename_parts,
                                            [p.rsplit('/', 1)[-1] for p in distinct], n),
        'full_path_parts, root /data': (full_path_parts, full_short, len(full_short)),
        'full_path_parts, ONE cache root': (full_path_parts, full_long, len(full_long)),
        'full_path_parts, distinct (uuid)': (full_path_parts, full_distinct, n),
        'full_path_parts, as_dict=True': (lambda p: full_path_parts(p, as_dict=True),
                                          full_short, len(full_short)),
    }


def run(func, data) -> float:
    """Seconds to parse every string of `data`, starting from an empty memo cache."""
    alfpath._groups.cache_clear()
    start = time.perf_counter()
    for item in data:
        func(item)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('-n', type=int, default=1_000_000, help='paths per case')
    parser.add_argument('--repeat', type=int, default=5, help='runs per case (median)')
    args = parser.parse_args()
    inputs = make_inputs(args.n)
    print(f'{args.n:,} paths per case, median of {args.repeat} runs, memo cache cleared '
          f'before each run')
    reference = min(timeit.repeat('sum(range(1000))', number=1000, repeat=5)) * 1000
    print(f'(machine speed: sum(range(1000)) takes {reference:.1f} µs)')
    print(f'{"case":<36}{"distinct":>11}{"paths/s":>14}{"µs/path":>10}')
    for label, (func, data, n_distinct) in inputs.items():
        n_distinct = len(set(data)) if n_distinct is None else n_distinct
        seconds = statistics.median(run(func, data) for _ in range(args.repeat))
        print(f'{label:<36}{n_distinct:>11,}{len(data) / seconds:>14,.0f}'
              f'{seconds / len(data) * 1e6:>10.2f}')


if __name__ == '__main__':
    main()
