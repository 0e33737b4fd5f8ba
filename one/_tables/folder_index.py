"""Finding the sessions and ALF datasets of a folder, and building table frames from them.

`Tree` walks a folder once (following symlinked folders that do not loop, and no link that
leads outside the folder: loads would refuse them, see `one._lib.confine`); `sessions_frame`
and `datasets_frame` turn what it found into the columns of the cache tables, and
`latest_revisions` marks each dataset's latest revision.  Ids are chosen by the caller
(`one.alf.cache.make_parquet_db`), e.g. with `dataset_ids`.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from one._tables.uuids import uuid3_strings
from one.alf import spec
from one.alf._validate import is_known_session_file, is_one_file
from one.alf.exceptions import ALFWarning

__all__ = ['Tree', 'session_regex', 'session_key', 'dataset_ids', 'sessions_frame',
           'datasets_frame', 'latest_revisions']

# the public module's logger name, which users' logging configuration refers to
_logger = logging.getLogger('one.alf.cache')


def session_regex() -> re.Pattern:
    """Matches a relative path ending in a session folder (anchored at a folder boundary)."""
    return re.compile(r'(?:^|/)' + spec.regex(spec.SESSION_SPEC).pattern + '$')


def _rel_path_regex() -> re.Pattern:
    """Matches a valid ALF dataset path relative to its session folder."""
    return re.compile(spec.regex(spec.REL_PATH_SPEC).pattern)


class Tree:
    """The sessions and dataset files of a folder, found in one walk.

    Attributes
    ----------
    sessions : list of tuple
        ``(rel_session_path, lab, subject, date_str, number_str)`` per session.
    ses_index : list of int
        For each dataset, the index of its session in `sessions`.
    rel_paths, paths, sizes, mtimes : list
        For each dataset, its path relative to the session, absolute path, size and
        modification time (ns).
    skipped : list of str
        The files in session folders that are not ALF datasets (paths below the root).
    links_out : list of str
        The symbolic links (to files or folders) not followed because they lead outside the
        root (paths below the root): ONE reads nothing outside its data folder.
    """

    def __init__(self, root: Path):
        self.root = root
        self._real_root = os.path.realpath(root)
        self.sessions: list[tuple] = []
        self.ses_index: list[int] = []
        self.rel_paths: list[str] = []
        self.paths: list[str] = []
        self.sizes: list[int] = []
        self.mtimes: list[int] = []
        self.skipped: list[str] = []
        self.links_out: list[str] = []
        self._keys: dict = {}
        self._valid: dict = {}
        self._walk()

    def keep(self, mask) -> None:
        """Keep only the datasets where the boolean array `mask` is True."""
        mask = np.asarray(mask, dtype=bool)
        if mask.all():
            return
        for name in ('ses_index', 'rel_paths', 'paths', 'sizes', 'mtimes'):
            values = np.asarray(getattr(self, name), dtype=object)[mask]
            setattr(self, name, values.tolist())

    @staticmethod
    def _follow_link(path: str, top: str, visited: set) -> bool:
        """Whether to walk a symlinked folder found while walking the folder `top` (real path).

        Links to a folder already entered through a link during this walk (`visited`), to
        `top` or one of its parents (a loop), or to a folder inside `top` (walked anyway) are
        not followed.
        """
        target = os.path.realpath(path)
        if target in visited or target == top or top.startswith(target + os.sep) \
                or target.startswith(top + os.sep):
            return False
        visited.add(target)
        return True

    def _leads_out(self, path: str) -> bool:
        """Whether the symbolic link `path` leads outside the root (or nowhere)."""
        real = os.path.realpath(path)
        root = self._real_root
        return not (real == root or real.startswith(root.rstrip(os.sep) + os.sep)) \
            or not os.path.exists(real)

    @staticmethod
    def _scandir(path: str) -> list:
        try:
            with os.scandir(path) as it:
                return list(it)
        except OSError as ex:
            _logger.warning(f'Could not list {path}: {ex}')
            return []

    def _walk(self) -> None:
        session_re = session_regex()
        root = str(self.root)
        whole = session_re.search(self.root.as_posix())
        if whole:  # the root is itself a session folder
            self._add_session(root, '', whole)
            return
        top = os.path.realpath(root)
        visited: set = set()
        stack = [(root, '')]
        while stack:
            folder, rel = stack.pop()
            for entry in sorted(self._scandir(folder), key=lambda e: e.name, reverse=True):
                try:
                    if not entry.is_dir():
                        continue
                    if entry.is_symlink():
                        if self._leads_out(entry.path):
                            self.links_out.append(rel + entry.name)
                            continue
                        if not self._follow_link(entry.path, top, visited):
                            continue
                except OSError:
                    continue
                rel_dir = rel + entry.name
                match = session_re.search(rel_dir)
                if match:
                    self._add_session(entry.path, rel_dir, match)
                else:
                    stack.append((entry.path, rel_dir + '/'))

    def _add_session(self, path: str, rel: str, match: re.Match) -> None:
        parts = match.groupdict()
        lab, subject, date, number = (parts['lab'] or '', parts['subject'], parts['date'],
                                      parts['number'])
        try:
            datetime.date.fromisoformat(date)
        except ValueError:
            warnings.warn(f'Skipping {path}: "{date}" is not a valid date', ALFWarning)
            return
        key = (lab, subject, date, int(number))
        if key in self._keys:
            warnings.warn(f'Skipping {path}: same session as {self._keys[key]}', ALFWarning)
            return
        self._keys[key] = path
        i = len(self.sessions)
        self.sessions.append((rel, lab, subject, date, number))
        rel_path_re = _rel_path_regex()
        valid_cache = self._valid  # sessions hold mostly the same relative paths
        ses_index, rel_paths, paths, sizes, mtimes = (
            self.ses_index, self.rel_paths, self.paths, self.sizes, self.mtimes)
        top = os.path.realpath(path)
        visited: set = set()  # per session: a folder linked into two sessions is in both
        stack = [(path, '')]
        while stack:
            folder, prefix = stack.pop()
            for entry in self._scandir(folder):
                try:
                    if entry.is_symlink() and self._leads_out(entry.path):
                        self.links_out.append(f'{rel}/{prefix}{entry.name}' if rel
                                              else prefix + entry.name)
                        continue
                    if entry.is_dir():
                        if not entry.is_symlink() or self._follow_link(entry.path, top,
                                                                        visited):
                            stack.append((entry.path, prefix + entry.name + '/'))
                        continue
                    if not entry.is_file():
                        continue
                    rel_path = prefix + entry.name
                    valid = valid_cache.get(rel_path)
                    if valid is None:
                        valid = valid_cache[rel_path] = rel_path_re.match(rel_path) is not None
                    if not valid:
                        if not (entry.name.startswith('.') or is_one_file(entry.name)
                                or (not prefix and is_known_session_file(entry.name))):
                            self.skipped.append(f'{rel}/{rel_path}' if rel else rel_path)
                        continue
                    st = entry.stat()
                except OSError:
                    continue
                ses_index.append(i)
                rel_paths.append(rel_path)
                paths.append(entry.path)
                sizes.append(st.st_size)
                mtimes.append(st.st_mtime_ns)


def session_key(lab: str, subject: str, date: str, number: str) -> str:
    """The string a session id is derived from: ``(lab/)subject/date/number``."""
    return '/'.join(filter(None, (lab, subject, date, number)))


def dataset_ids(session_ids: Sequence[str], rel_paths: Sequence[str], namespace: uuid.UUID
                ) -> list[str]:
    """Dataset ids: uuid3 of ``'<session uuid>/<rel_path>'`` (unique across sessions)."""
    return uuid3_strings((f'{e}/{r}' for e, r in zip(session_ids, rel_paths)), namespace)


def sessions_frame(tree: Tree, ids: Sequence[str]) -> pd.DataFrame:
    """The sessions table columns (``id`` included) of `tree`'s sessions."""
    n = len(tree.sessions)
    labs, subjects, dates, numbers = ([s[i] for s in tree.sessions] for i in range(1, 5))
    return pd.DataFrame({
        'id': pd.array(ids, dtype=object) if n else pd.array([], dtype=object),
        'lab': pd.array(labs, dtype=object),
        'subject': pd.array(subjects, dtype=object),
        'date': pd.array([datetime.date.fromisoformat(d) for d in dates], dtype=object),
        'number': np.array([int(x) for x in numbers], dtype=np.uint16),
        'task_protocol': pd.array([''] * n, dtype=object),
        'projects': pd.array([''] * n, dtype=object),
    })


def datasets_frame(tree: Tree, eids: Sequence[str], ids: Sequence[str],
                   hashes: Sequence[str], qc_dtype: pd.CategoricalDtype) -> pd.DataFrame:
    """The datasets table columns of `tree`'s files, all with the lowest ``qc`` of `qc_dtype`."""
    n = len(tree.rel_paths)
    return pd.DataFrame({
        'eid': pd.array(eids, dtype=object),
        'id': pd.array(ids, dtype=object),
        'rel_path': pd.array(tree.rel_paths, dtype=object),
        'file_size': pd.array(np.asarray(tree.sizes, dtype=np.uint64), dtype='UInt64'),
        'hash': pd.array(hashes, dtype=object),
        'exists': np.ones(n, dtype=bool),
        'qc': pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=qc_dtype),
    })


def latest_revisions(eids: Sequence[str], rel_paths: Sequence[str]) -> np.ndarray:
    """Per dataset: is it the latest revision of that dataset in its session?

    A dataset without revision folders is its own latest revision.  Written as the
    ``default_revision`` column, so that loading from an indexed folder picks the latest
    revision without warning that no default is marked.
    """
    n = len(rel_paths)
    if n == 0:
        return np.zeros(0, dtype=bool)
    codes, uniques = pd.factorize(pd.Series(rel_paths, dtype=object))
    stems, labels = [], []
    for rel_path in uniques:
        parts = rel_path.split('/')
        label = ''
        if len(parts) >= 2 and len(parts[-2]) > 2 and parts[-2][0] == parts[-2][-1] == '#':
            label = parts.pop(-2)[1:-1]
        stems.append('/'.join(parts))
        labels.append(label)
    stem_codes = pd.factorize(pd.Series(stems, dtype=object))[0][codes]
    label_rank = pd.Series(labels, dtype=object).rank(method='dense').to_numpy()[codes]
    eid_codes = pd.factorize(pd.Series(eids, dtype=object))[0]
    group = eid_codes.astype(np.int64) * (int(stem_codes.max()) + 1) + stem_codes
    order = np.lexsort((-label_rank, group))  # by group, latest revision first
    first = np.ones(n, dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    latest = np.zeros(n, dtype=bool)
    latest[order[first]] = True
    return latest
