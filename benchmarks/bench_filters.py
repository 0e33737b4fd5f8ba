"""Micro-benchmark of the dataset filters of `one.util` on a synthetic 1,000,000-row table.

The table mimics an IBL cache: 2,000 sessions of 500 datasets each (trials, wheel, camera and
per-probe spike sorting files in ~10 collections), 2 % of the datasets with a second revision
folder, a ``default_revision`` column and QC values.  Session and dataset ids are UUID strings,
as in the cache tables.

Run with ``python benchmarks/bench_filters.py [--rows N] [--repeat R] [--dtype D]`` where D is
str, object or category (the dtype of the rel_path column).  Figures are the best of R runs.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from one.alf.exceptions import ALFWarning
from one.util import filter_datasets, filter_revision_last_before

QC_TYPE = pd.CategoricalDtype(['NOT_SET', 'PASS', 'WARNING', 'FAIL', 'CRITICAL'], ordered=True)


def _rel_paths(n: int) -> list[str]:
    """`n` distinct, realistic relative paths."""
    alf = [f'alf/_ibl_trials.{a}.npy' for a in (
        'intervals', 'goCue_times', 'stimOn_times', 'response_times', 'feedback_times',
        'feedbackType', 'choice', 'contrastLeft', 'contrastRight', 'probabilityLeft',
        'rewardVolume', 'firstMovement_times', 'intervals_bpod')]
    alf += [f'alf/_ibl_wheel.{a}.npy' for a in ('position', 'timestamps')]
    alf += [f'alf/_ibl_{c}Camera.{a}.npy' for c in ('left', 'right', 'body')
            for a in ('times', 'dlc', 'ROIMotionEnergy')]
    alf += [f'raw_video_data/_iblrig_{c}Camera.raw.mp4' for c in ('left', 'right', 'body')]
    paths = list(alf)
    i = 0
    while len(paths) < n:
        probe = f'probe{i // 60:02d}'
        obj = ('spikes', 'clusters', 'channels', 'templates')[i % 4]
        attr = f'attr{i % 60:02d}'
        folder = 'alf' if i % 3 else 'raw_ephys_data'
        paths.append(f'{folder}/{probe}/{obj}.{attr}.npy')
        i += 1
    return paths[:n]


_HEX = np.frombuffer(b'0123456789abcdef', dtype='S1')


def uuid4_strings(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` random canonical UUID4 strings, generated without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = np.empty((n, 32), dtype='S1')
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), b'-', dtype='S1')
    for start, stop, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        out[:, at:at + stop - start] = digits[:, start:stop]
    return out.view('S36').ravel().astype(str).astype(object)


def make_table(n_rows: int = 1_000_000, per_session: int = 500, revised: float = 0.02,
               dtype: str = 'str', seed: int = 0) -> pd.DataFrame:
    """Build the synthetic datasets table (index ``(eid, id)`` of UUID strings)."""
    rng = np.random.default_rng(seed)
    n_sessions = n_rows // per_session
    base = _rel_paths(per_session)
    rel = np.tile(np.array(base, dtype=object), n_sessions)
    default = np.ones(n_rows, dtype=bool)
    # A second, newer revision of a few datasets: the old one stops being the default
    idx = np.flatnonzero(rng.random(n_rows) < revised)
    new_rel = np.array([p.rsplit('/', 1)[0] + '/#2024-06-01#/' + p.rsplit('/', 1)[1]
                        for p in rel[idx]], dtype=object)
    default[idx] = False
    rel = np.concatenate([rel, new_rel])
    default = np.concatenate([default, np.ones(len(idx), dtype=bool)])
    eid_strings = uuid4_strings(rng, n_sessions)
    eids = np.concatenate([np.repeat(eid_strings, per_session), eid_strings[idx // per_session]])
    n = len(rel)
    ids = uuid4_strings(rng, n)
    qc = rng.choice(np.array(QC_TYPE.categories), n, p=[.5, .3, .1, .07, .03])
    df = pd.DataFrame({
        'rel_path': pd.Series(rel).astype(dtype),
        'file_size': pd.array(rng.integers(1, 10**6, n), dtype='UInt64'),
        'hash': '',
        'exists': True,
        'qc': pd.Categorical(qc, dtype=QC_TYPE),
        'default_revision': default,
    })
    df.index = pd.MultiIndex.from_arrays([eids, ids], names=['eid', 'id'])
    return df.sort_index()


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=1_000_000)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--dtype', default='str', choices=('str', 'object', 'category'))
    args = parser.parse_args()

    t0 = time.perf_counter()
    df = make_table(args.rows, dtype=args.dtype)
    print(f'table: {len(df):,} rows, {df["rel_path"].nunique():,} distinct rel_paths, '
          f'{df.index.get_level_values(0).nunique():,} sessions, rel_path dtype '
          f'{df["rel_path"].dtype} (built in {time.perf_counter() - t0:.1f} s)\n')
    eid = df.index[len(df) // 2][0]
    session = df.loc[(eid,), :]

    cases = {
        'list: filename *spikes* (wildcards)': lambda: filter_datasets(
            df, '*spikes*', wildcards=True, assert_unique=False, revision_last_before=False),
        'list: collection alf/probe0* + 2 names': lambda: filter_datasets(
            df, ['spikes.times.npy', 'clusters.*'], 'alf/probe0*', wildcards=True,
            assert_unique=False, revision_last_before=False),
        'list: dict {object: [wheel, trials]}': lambda: filter_datasets(
            df, {'object': ['wheel', 'trials']}, assert_unique=False,
            revision_last_before=False),
        'list: everything, qc <= WARNING': lambda: filter_datasets(
            df, qc='WARNING', assert_unique=False, revision_last_before=False),
        'last-before: all, default revisions': lambda: filter_datasets(
            df, assert_unique=False, revision_last_before=True),
        'last-before: all, revision 2024-01-01': lambda: filter_datasets(
            df, revision='2024-01-01', assert_unique=False, revision_last_before=True),
        'filter_revision_last_before (1M rows)': lambda: filter_revision_last_before(
            df.copy(), assert_unique=False),
        'one session: load_dataset-style (unique)': lambda: filter_datasets(
            session, '_ibl_trials.intervals.npy', 'alf', wildcards=True),
        'one session: load_object-style {object: trials}': lambda: filter_datasets(
            session, {'object': 'trials'}, 'alf', assert_unique=False),
    }
    reference = {
        'reference: Series.str.match, same pattern as row 1': lambda: df['rel_path'].str.match(
            r'^(?:[\w./-]+/)?(?:#[\w.-]+#/)?[^/]*spikes.*$'),
    }
    width = max(map(len, [*cases, *reference])) + 2
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ALFWarning)
        for name, fn in {**cases, **reference}.items():
            seconds, out = best_of(fn, args.repeat)
            unit = f'{seconds * 1e3:8.1f} ms' if seconds >= 1e-3 else f'{seconds * 1e6:8.1f} us'
            size = f'{len(out):>9,} rows' if hasattr(out, '__len__') else ''
            print(f'{name:<{width}}{unit}  {size}')


if __name__ == '__main__':
    main()
