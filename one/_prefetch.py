"""Which datasets `One.prefetch` fetches: the rows of many sessions matching its filters.

A `datasets` item is an ALF object name ('trials': every attribute, as `load_object`), a file
name as `load_dataset` takes it ('_ibl_trials.choice' or '_ibl_trials.choice.npy'; shell
wildcards with `wildcards`), or a dict of ALF parts; a list means any of them.  Of each dataset
the revision a load would pick is kept: the default one, or the latest up to `revision`.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from one import util
from one.alf.exceptions import ALFWarning

__all__ = ['dataset_specs', 'select_datasets']


def dataset_specs(datasets, wildcards: bool) -> list:
    """The file-name filters (as `util.filter_datasets` takes them) of a `datasets` argument.

    Examples
    --------
    >>> dataset_specs(['trials', '_ibl_wheel.position'], wildcards=True)
    [{'object': 'trials'}, '_ibl_wheel.position.*']
    >>> dataset_specs(None, wildcards=True)
    [None]
    """
    if datasets is None:
        return [None]
    items = [datasets] if isinstance(datasets, (str, dict)) else list(datasets)
    specs = []
    for item in items:
        if isinstance(item, dict):
            specs.append(item)
        elif isinstance(item, str):
            if '.' not in item:
                specs.append({'object': item})
            elif wildcards and len(item.split('.')) == 2:
                specs.append(item + '.*')
            else:
                specs.append(item)
        else:
            raise TypeError(f'datasets must be names, dicts of ALF parts or a list of them, '
                            f'not {type(item).__name__}')
    if not specs:
        raise ValueError('datasets is empty: give None for all the datasets of the sessions')
    return specs


def select_datasets(candidates: pd.DataFrame, datasets=None, collection=None, revision=None,
                    wildcards: bool = True) -> pd.DataFrame:
    """The rows of `candidates` (several sessions, (eid, id) index) that loads would use.

    Parameters
    ----------
    candidates : pandas.DataFrame
        Datasets rows of the sessions (``rel_path``, ``qc``, ``default_revision``...).
    datasets : str, dict, list, optional
        See the module docstring; None: all.
    collection : str, list, optional
        Collection pattern(s).
    revision : str, optional
        The latest revision up to this one; the default revision when None.
    wildcards : bool
        Patterns are shell wildcards (else regular expressions).

    Returns
    -------
    pandas.DataFrame
        The selected rows, in the order of `candidates`.
    """
    if candidates.empty:
        return candidates
    keep = np.zeros(len(candidates), dtype=bool)
    for spec in dataset_specs(datasets, wildcards):
        match = util.filter_datasets(candidates, spec, collection, None,
                                     revision_last_before=False, assert_unique=False,
                                     wildcards=wildcards)
        keep |= candidates.index.isin(match.index)
    chosen = candidates.iloc[np.flatnonzero(keep)]
    if chosen.empty:
        return chosen
    with warnings.catch_warnings():  # the loads warn, per session, about revisions
        warnings.simplefilter('ignore', ALFWarning)
        last = util.filter_revision_last_before(chosen.copy(), revision, assert_unique=False)
    return chosen[chosen.index.isin(last.index)]
