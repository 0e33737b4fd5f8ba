"""Check that a folder tree follows the ALF layout, and say why each bad entry is bad."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from one.alf import spec
from one.alf.path import _isdatetime

__all__ = ['Problem', 'ValidationReport', 'validate_tree', 'is_one_file', 'is_known_session_file']

# Files that ONE writes in a tables folder (the data folder, a tag's folder, a session folder
# indexed on its own).  Hidden files (.ONE.lock, .one_verified.jsonl, partial downloads,
# temporary files, the demo's marker) are ignored anyway.
_CACHE_FILES = {'sessions.pqt', 'datasets.pqt', 'insertions.pqt', 'cache_info.json'}
_ONE_FILE = re.compile(  # One.save_loaded_ids
    r'^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}_loaded_(dataset|session)_uuids\.csv$')
_LOCK_SUFFIXES = ('.lock.json', '.lock')  # One.save_lock('analysis.lock.json'), file locks
# Known session files that are not ALF datasets: the experiment description (YAML)
_SESSION_FILES = re.compile(r'^(_[a-zA-Z0-9]+_)?experiment\.description$')
_AGGREGATES = 'aggregates'  # datasets without a session: aggregates/<relation>/.../<dataset>
_COLLECTION_FOLDER = re.compile(r'^[\w.-]+$')
_REVISION_FOLDER = re.compile(r'^#[\w.-]+#$')


@dataclass(frozen=True)
class Problem:
    """One invalid file or folder."""

    kind: str  # 'file' or 'folder'
    path: str  # relative to the validated root, POSIX separators
    reason: str


@dataclass
class ValidationReport:
    """What `validate_tree` found."""

    root: Path
    sessions: int = 0
    datasets: int = 0
    problems: list = None

    @property
    def ok(self) -> bool:
        """True when nothing is invalid."""
        return not self.problems


def _session_folder_reason(parts: tuple) -> str | None:
    """Why a folder whose name looks like a session number is not a session, or None."""
    name = parts[-1]
    if not name.isdigit() or len(parts) < 2:
        return None
    date = parts[-2]
    if re.fullmatch(r'\d{4}-\d{2}-\d{2}', date):
        if not _isdatetime(date):
            return f'"{date}" is not a real date, so this is not a session folder'
        if len(name) > 3:
            return f'session number "{name}" has more than 3 digits'
    return None


def _folder_reason(relative_to_session: tuple) -> str | None:
    """Why a folder inside a session is not a valid collection or revision folder, or None."""
    for i, name in enumerate(relative_to_session):
        if name.startswith('#') or name.endswith('#'):
            if not _REVISION_FOLDER.match(name):
                return f'"{name}" is not a valid revision folder (expected #label#)'
            if i != len(relative_to_session) - 1:
                return f'revision folder "{name}" must be the last folder before the files'
        elif not _COLLECTION_FOLDER.match(name):
            return (f'"{name}" is not a valid collection folder name (letters, digits, '
                    '"_", "-" and "." only)')
    return None


def is_one_file(name: str) -> bool:
    """Whether a file name is one that ONE writes beside the data: cache tables, their
    metadata, the lists of loaded ids, lock files (hidden files aside)."""
    return name in _CACHE_FILES or _ONE_FILE.match(name) is not None \
        or name.endswith(_LOCK_SUFFIXES)


def is_known_session_file(name: str) -> bool:
    """Whether a file at the top of a session folder is a known session file that is not an
    ALF dataset: the experiment description (``_ibl_experiment.description``)."""
    return _SESSION_FILES.match(name) is not None


def _file_reason(name: str) -> str:
    if name.count('.') < 2:
        return 'not an ALF dataset name: expected object.attribute.extension'
    return ('not an ALF dataset name: expected (_namespace_)object.attribute(_timescale)'
            '(.extra).extension with word characters only')


def validate_tree(root: str | os.PathLike) -> ValidationReport:
    """Walk a folder and report every file and folder that breaks the ALF layout.

    A valid tree holds session folders ``(lab/Subjects/)subject/yyyy-mm-dd/NNN``; inside a
    session every folder is a collection (optionally ending with a ``#revision#`` folder) and
    every file is an ALF dataset (or the session's experiment description).  Datasets below a
    top ``aggregates`` folder need no session.  Hidden entries (starting with '.') and the files
    ONE writes beside the data (cache tables, ``cache_info.json``, lists of loaded ids, in any
    folder) are accepted; so is a folder holding only such files (e.g. a release tag's tables).

    Parameters
    ----------
    root : str or os.PathLike
        The folder to check.

    Returns
    -------
    ValidationReport
        Counts of sessions and datasets, and the list of problems.

    Raises
    ------
    NotADirectoryError
        `root` is not an existing folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f'Not a folder: {root}')
    report = ValidationReport(root=root, problems=[])
    root_name_parts = root.resolve().parts
    session_roots: set[tuple] = set()  # relative parts of the session folders found
    outside: list[tuple] = []  # relative parts of folders outside any session
    outside_files: list[tuple] = []  # (folder parts, name) of files outside any session
    tables_folders: set[tuple] = set()  # folders outside sessions holding ONE's tables

    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        relative = Path(dirpath).relative_to(root).parts
        session = next((relative[:k] for k in range(len(relative) + 1)
                        if relative[:k] in session_roots), None)
        if session is None and _is_session(root_name_parts + relative):
            session_roots.add(relative)
            session = relative
            report.sessions += 1
        if session is None and relative[:1] == (_AGGREGATES,):
            _check_files(report, relative, filenames, session_root=False)
            continue
        if session is None:
            if any(is_one_file(name) for name in filenames):
                tables_folders.add(relative)
            outside.append(relative)
            outside_files.extend((relative, name) for name in sorted(filenames)
                                 if not name.startswith('.') and not is_one_file(name))
            continue
        below = relative[len(session):]
        reason = _folder_reason(below)
        if reason:
            report.problems.append(Problem('folder', '/'.join(relative), reason))
            dirnames[:] = []  # everything below is invalid for the same reason
            continue
        _check_files(report, relative, filenames, session_root=not below)

    above_sessions = {s[:k] for s in session_roots for k in range(len(s))}
    above_sessions |= {t[:k] for t in tables_folders for k in range(len(t) + 1)}
    bad_folders = {r for r in outside if r and r not in above_sessions}
    children: dict[tuple, list] = {}
    for relative in sorted(bad_folders):
        children.setdefault(relative[:-1], []).append(relative)
    for relative in sorted(bad_folders):
        if relative[:-1] in bad_folders:
            continue  # reported with its parent
        # A child that looks like a session number says best what went wrong.
        specific = [(child, _session_folder_reason(child))
                    for child in children.get(relative, []) if _session_folder_reason(child)]
        for child, reason in specific or [(relative, None)]:
            reason = reason or _session_folder_reason(child) or 'folder holds no session folder'
            report.problems.append(Problem('folder', '/'.join(child), reason))
    for relative, name in outside_files:
        if relative not in bad_folders:
            report.problems.append(Problem(
                'file', '/'.join((*relative, name)), 'file outside any session folder'))
    report.problems.sort(key=lambda p: p.path)
    return report


def _check_files(report: ValidationReport, relative: tuple, filenames: list,
                 session_root: bool) -> None:
    """Count the ALF datasets among the files of a folder; report the others (hidden files,
    ONE's own files and, at the top of a session, known session files aside)."""
    for name in sorted(filenames):
        if name.startswith('.') or is_one_file(name) or \
                (session_root and is_known_session_file(name)):
            continue
        if spec.is_valid(name):
            report.datasets += 1
        else:
            report.problems.append(Problem('file', '/'.join((*relative, name)),
                                           _file_reason(name)))


def _is_session(parts: tuple) -> bool:
    if len(parts) < 3 or not spec.is_session_path('/'.join(parts[-3:])):
        return False
    return _isdatetime(parts[-2])
