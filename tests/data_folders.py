"""Data folders for tests, made by the synthetic generator (`one.synthetic`): indexed as
``one index --hash`` would, or published as a release."""
from __future__ import annotations

import warnings
from pathlib import Path

from one.alf.cache import make_parquet_db
from one.release import make_release
from one.synthetic import make_dataset_folder


def indexed_folder(root: Path, n_subjects: int, n_sessions: int, seed: int = 0) -> Path:
    """A synthetic data folder with its cache tables (md5 of every file)."""
    make_dataset_folder(root, n_subjects=n_subjects, n_sessions=n_sessions, seed=seed)
    make_parquet_db(root, hash_files=True)
    return root


def publish(folder: Path, strict: bool = False, **kwargs):
    """`make_release` on a folder; with `strict`, any warning is an error (a valid folder
    publishes silently), else warnings are ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter('error' if strict else 'ignore')
        return make_release(folder, **kwargs)
