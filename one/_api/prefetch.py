"""Which datasets `One.prefetch` fetches: the rows of many sessions matching its filters.

A `datasets` item is an ALF object name ('trials': every attribute, as `load_object`), a file
name as `load_dataset` takes it ('_ibl_trials.choice' or '_ibl_trials.choice.npy'; shell
wildcards with `wildcards`), or a dict of ALF parts; a list means any of them.  Of each dataset
the revision a load would pick is kept: the default one, or the latest up to `revision`.

`resolve` is the first half of `One.prefetch` (which sessions, which of their datasets);
`plan_fetch` adds what the second half would download, without downloading (the file checks of
`One._check_filesystem`): ``one download --dry-run`` reports it, and ``one download`` names the
files that failed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from one import util
from one._lib.values import known
from one._tables.views import qc_code
from one.alf.exceptions import ALFWarning
from one.alf.spec import QC

__all__ = ['dataset_specs', 'select_datasets', 'resolve', 'file_problems', 'FetchPlan',
           'plan_fetch']


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


def resolve(one, eids, datasets=None, collection=None, revision=None
            ) -> tuple[list[str], pd.DataFrame]:
    """The sessions and the dataset rows `One.prefetch` fetches (see there for the arguments).

    In remote mode (`OneAlyx`) the datasets of the sessions are listed first, in batched
    queries, and merged into the instance's tables; nothing is downloaded.

    Returns
    -------
    list of str
        The session UUID strings, unique, in the order given.
    pandas.DataFrame
        The selected rows of the datasets table (QC up to FAIL, the revision a load picks), in
        table order, index (eid, id).

    Raises
    ------
    ValueError
        A session identifier is malformed, or names no known session.
    """
    eids = one._prefetch_eids(eids)
    one._prefetch_remote(eids)
    codes = one._dataset_codes()
    fail = qc_code(QC.FAIL)
    rows = [r[codes.qc[r] <= fail] for r in (codes.rows_of(e) for e in eids)]
    candidates = codes.table.iloc[np.concatenate(rows) if rows else []]
    return eids, select_datasets(candidates, datasets, collection, revision, one.wildcards)


def file_problems(one, datasets: pd.DataFrame, check_hash: bool = True
                  ) -> tuple[list, list]:
    """Where the files of some datasets are, and which must be fetched, downloading nothing.

    The checks `One._check_filesystem` makes before it downloads (`One._file_states`): a file
    is missing, or differs from its record in size or (with `check_hash`) md5; unknown sizes
    and hashes are not checked, and files verified before and unchanged since are not hashed
    again.

    Parameters
    ----------
    one : one.api.One
        The instance whose cache folder holds the files.
    datasets : pandas.DataFrame
        Dataset rows of its tables, index (eid, id).
    check_hash : bool
        Compare the md5 of present files with the records.

    Returns
    -------
    list of one.alf.path.ALFPath or None
        The file of each dataset, present or not (None when its session folder is unknown).
    list of str or None
        For each dataset: None when its file is present and good, else 'missing', 'size' or
        'md5'.

    Raises
    ------
    one._lib.confine.UnsafePath
        A record leads outside the cache folder.
    """
    if datasets.empty:
        return [], []
    ids = [str(x) for x in datasets.index.get_level_values('id')]
    session_paths = one._dataset_session_paths(datasets, ids)
    states = list(one._file_states(datasets, ids, session_paths, check_hash))
    return [file for file, _ in states], [problem for _, problem in states]


@dataclass
class FetchPlan:
    """What `One.prefetch` would download: the datasets chosen and the state of their files."""

    eids: list
    """The sessions (UUID strings, in the order given)."""
    datasets: pd.DataFrame
    """The datasets chosen (rows of the tables, index (eid, id))."""
    files: list
    """The local file of each dataset, present or not (None: unknown session folder)."""
    problems: list
    """Why each dataset must be fetched: None (present and good), 'missing', 'size', 'md5'."""

    @property
    def to_fetch(self) -> np.ndarray:
        """The positions (in `datasets`) of the datasets to fetch."""
        return np.array([i for i, p in enumerate(self.problems) if p is not None], dtype=int)

    @property
    def n_bytes(self) -> int:
        """The bytes to fetch, by the records' sizes (unknown sizes count 0)."""
        if 'file_size' not in self.datasets.columns:
            return 0
        sizes = self.datasets['file_size'].iloc[self.to_fetch].tolist()
        return int(sum(known(s) or 0 for s in sizes))


def plan_fetch(one, eids, datasets=None, collection=None, revision=None,
               check_hash: bool = True) -> FetchPlan:
    """What ``one.prefetch(eids, datasets, collection, revision)`` would download, without
    downloading: the datasets resolved as `prefetch` does (listed from Alyx in batched
    queries in remote mode), and which of their files are missing or bad.

    Parameters
    ----------
    one : one.api.One
        The instance (`OneAlyx`, `OneRelease` or `One`).
    eids, datasets, collection, revision
        As `One.prefetch`.
    check_hash : bool
        Compare the md5 of present files with the records (as loads do).

    Returns
    -------
    FetchPlan

    Examples
    --------
    >>> plan = plan_fetch(one, eids, 'trials')                        # doctest: +SKIP
    >>> len(plan.to_fetch), plan.n_bytes                               # doctest: +SKIP
    (24, 51200)
    """
    eids, chosen = resolve(one, eids, datasets, collection, revision)
    files, problems = file_problems(one, chosen, check_hash=check_hash)
    return FetchPlan(eids, chosen, files, problems)
