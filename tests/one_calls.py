"""The answers of every public call of `One` on a data folder, in a comparable form.

Used to check that two instances (e.g. one on today's tables, one on tables written in an older
layout; or one before and one after an edit of ``one._cache``) answer alike: `answers` runs the
searches, listings, loads and conversions of the public API and returns plain Python values
(lists, dicts, strings, bytes of arrays, records of frames) that compare with ``==``.
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

SEARCHES = [
    {}, {'subject': 'KS'}, {'subject': ['ZFM', 'SWC']}, {'laboratory': 'cortex'},
    {'date_range': ['2024-01-16', '2024-01-17']}, {'date_range': '2024-01-15'}, {'number': 2},
    {'dataset': 'trials'}, {'dataset': ['_ibl_wheel.position', 'spikes.times']},
    {'datasets': '_ibl_trials.table.pqt'}, {'dataset_qc_lte': 'PASS'},
    {'dataset': 'choice', 'dataset_qc_lte': 'WARNING'}, {'projects': ''},
    {'task_protocol': ''},
]


def plain(value, ignore=()):
    """A value in a form that compares with ``==`` (arrays as dtype + bytes, frames as records).

    Columns named in `ignore` are left out of frames, records and dicts.
    """
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return ('array', value.shape, [plain(x, ignore) for x in value.ravel()])
        return ('array', value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, pd.DataFrame):
        frame = value.reset_index().drop(columns=list(ignore), errors='ignore')
        frame.columns = [str(c) for c in frame.columns]
        return ('frame', list(frame.columns),
                [tuple(plain(x, ignore) for x in row) for row in frame.itertuples(index=False)])
    if isinstance(value, pd.Series):
        return ('series', plain(value.name, ignore),
                {str(k): plain(v, ignore) for k, v in value.items() if k not in ignore})
    if isinstance(value, dict):
        return {str(k): plain(v, ignore) for k, v in value.items() if k not in ignore}
    if isinstance(value, (list, tuple)):
        return [plain(x, ignore) for x in value]
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def _call_ignoring(func, *args, _ignore=(), **kwargs):
    """The answer of a call, or the type and text of the error it raised."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            return plain(func(*args, **kwargs), _ignore)
        except Exception as ex:  # the error is part of the answer
            return ('error', type(ex).__name__, str(ex))


def answers(one, data_root, ignore=()) -> dict:
    """Answers of the public calls of `one` (a One on the synthetic folder `data_root`).

    Columns named in `ignore` are left out of the frames and records answered.
    """
    out = {}
    _call = functools.partial(_call_ignoring, _ignore=tuple(ignore))
    for i, query in enumerate(SEARCHES):
        out[f'search{i}'] = _call(one.search, **query)
    out['search_details'] = _call(one.search, subject='KS', details=True)
    eids = one.search()
    out['list_subjects'] = _call(one.list_subjects)
    out['list_datasets'] = _call(one.list_datasets)
    out['list_datasets_trials'] = _call(one.list_datasets, filename='*trials*')
    out['list_datasets_probe'] = _call(one.list_datasets, collection='alf/probe00')
    out['list_datasets_details'] = _call(one.list_datasets, details=True)
    out['list_collections'] = _call(one.list_collections)
    out['list_revisions'] = _call(one.list_revisions)
    out['list_datasets_default'] = _call(one.list_datasets, default_revisions_only=True)
    for eid in eids[:4] + eids[-2:]:
        key = str(eid)
        out[f'details {key}'] = _call(one.get_details, eid)
        out[f'full details {key}'] = _call(one.get_details, eid, full=True)
        out[f'list {key}'] = _call(one.list_datasets, eid)
        out[f'list details {key}'] = _call(one.list_datasets, eid, details=True)
        out[f'list eid index {key}'] = _call(one.list_datasets, eid, details=True,
                                             keep_eid_index=True)
        out[f'list alf {key}'] = _call(one.list_datasets, eid, collection='alf',
                                       revision='')
        out[f'collections {key}'] = _call(one.list_collections, eid)
        out[f'collections details {key}'] = _call(one.list_collections, eid, details=True)
        out[f'revisions {key}'] = _call(one.list_revisions, eid)
        out[f'trials {key}'] = _call(one.load_object, eid, 'trials')
        out[f'trials files {key}'] = _call(one.load_object, eid, 'trials', download_only=True)
        out[f'choice {key}'] = _call(one.load_dataset, eid, '_ibl_trials.choice.npy')
        out[f'choice rev {key}'] = _call(one.load_dataset, eid, '_ibl_trials.choice.npy',
                                         revision='2024-01-01')
        out[f'datasets {key}'] = _call(one.load_datasets, eid, ['_ibl_wheel.position.npy',
                                                                '_ibl_wheel.timestamps.npy'])
        out[f'probe {key}'] = _call(one.load_collection, eid, 'alf/probe00',
                                    download_only=True)
        out[f'path {key}'] = _call(one.eid2path, eid)
        out[f'ref {key}'] = _call(one.eid2ref, eid)
        path = one.eid2path(eid)
        out[f'path2eid {key}'] = _call(one.path2eid, path)
        out[f'path2record {key}'] = _call(one.path2record, path)
        out[f'to_eid {key}'] = _call(one.to_eid, path.relative_to(data_root).as_posix())
        files = one.list_datasets(eid, details=True)
        if len(files):
            file_id = files.index[0]
            out[f'from id {key}'] = _call(one.load_dataset_from_id, file_id,
                                          download_only=True)
            out[f'from id details {key}'] = _call(one.load_dataset_from_id, str(file_id),
                                                  details=True)
            file = path / files['rel_path'].iloc[0]
            out[f'file record {key}'] = _call(one.path2record, file)
    return out


def differences(a: dict, b: dict) -> list[str]:
    """The keys whose answers differ (with both answers, shortened), for assertion messages."""
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f'{key}: {str(a.get(key))[:300]} != {str(b.get(key))[:300]}')
    return out
