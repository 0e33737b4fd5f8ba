"""Publish ALF data as a release that any static web server or S3 bucket can serve.

A release is a data folder plus three files: the cache tables ``sessions.pqt`` and
``datasets.pqt`` (with the md5 and size of every file) and ``cache_info.json``, which describes
them and says how the files are addressed (see `one._release.info`); optionally ``cache.zip``
of the tables.  Copy the folder as it is to the host; users open it with one line::

    one release /data/mylab --tag 2025_Q1            # the publisher (or make_release)
    aws s3 sync /data/mylab s3://mybucket/mylab --exclude '.*' --exclude '*/.*'

    from one.api import ONE
    one = ONE(base_url='https://data.example.org/mylab')   # a user: search, list, load

Re-publishing after adding or changing sessions hashes only the files whose size or
modification time changed (the folder's verified-files record, ``.one_verified.jsonl``), and
rewrites a table or ``cache_info.json`` only when its content changed, so users' copies are
revalidated cheaply.

Files can also be served in the layout of IBL's public bucket, with the dataset UUID in each
file name and the tables elsewhere (``caches/<name>/``): see `make_release` (``layout``,
``files_url``, ``out_dir``) and `export_files`.
"""
from __future__ import annotations

import datetime
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np

from one._lib import files as _files
from one._lib.locks import file_lock
from one._lib.verified import VerifiedFiles
from one._release.info import (
    ARCHIVE_NAME,
    INFO_NAME,
    LAYOUTS,
    NotARelease,
    ReleaseError,
    ReleaseInfo,
    ReleaseUnreachable,
    TableInfo,
    build_info,
    dump_info,
    parse_info,
    remote_file_path,
)
from one._release.sync import local_info
from one._tables import folder_index, parquet, uuids
from one.alf._validate import validate_tree
from one.alf.cache import ID_NAMESPACE, LOCK_NAME, QC_TYPE
from one.alf.exceptions import ALFInvalid, ALFWarning

__all__ = ['make_release', 'describe_release', 'export_files', 'read_release_info',
           'ReleaseInfo', 'ReleaseError', 'NotARelease', 'ReleaseUnreachable', 'LAYOUTS']

_MAX_LISTED = 50  # invalid names shown in an error message
_TABLES = ('sessions', 'datasets')


def read_release_info(folder) -> ReleaseInfo:
    """Read the ``cache_info.json`` of a release folder.

    Raises
    ------
    FileNotFoundError
        The folder has no ``cache_info.json``.
    NotARelease
        It is not a valid release description.
    """
    path = Path(folder) / INFO_NAME
    return parse_info(path.read_bytes(), str(path))


def _problems(folder: Path, out_dir: Path) -> list:
    """The ALF layout problems of a folder, except the release's own files."""
    own = {ARCHIVE_NAME, INFO_NAME}
    try:
        inside = out_dir.relative_to(folder).as_posix()
    except ValueError:
        inside = None
    problems = []
    for problem in validate_tree(folder).problems:
        if problem.path in own:
            continue
        if inside not in (None, '.') and (problem.path == inside or
                                          problem.path.startswith(inside + '/') or
                                          inside.startswith(problem.path + '/')):
            continue  # the tables folder of the release (e.g. caches/<name>)
        problems.append(problem)
    return problems


def _refuse(folder: Path, problems: list) -> ALFInvalid:
    lines = [f'  {p.path}: {p.reason}' for p in problems[:_MAX_LISTED]]
    if len(problems) > _MAX_LISTED:
        lines.append(f'  ... and {len(problems) - _MAX_LISTED} more (see "one validate")')
    return ALFInvalid(f'{len(problems)} file(s) or folder(s) of {folder} break the ALF layout; '
                      'rename them, or publish without them (skip_invalid=True, '
                      '--skip-invalid):\n' + '\n'.join(lines), terse=True)


def _skipped_mask(tree: folder_index.Tree, folder: Path, problems: list) -> np.ndarray:
    """Per dataset of `tree`: is it at or below an invalid path?"""
    if not problems:
        return np.zeros(len(tree.paths), dtype=bool)
    import pandas as pd

    bad = [str(folder / p.path) for p in problems]
    paths = pd.Series(tree.paths, dtype=object)
    return (paths.isin(bad) | paths.str.startswith(tuple(b + os.sep for b in bad))).to_numpy()


def _hashes(folder: Path, paths: list, sizes: list, mtimes: list, progress) -> list:
    """md5 of each file; files unchanged since recorded in the verified-files record are not
    read again."""
    record = VerifiedFiles(folder)
    hashes = [record.known(p, s, m) for p, s, m in zip(paths, sizes, mtimes)]
    todo = [i for i, h in enumerate(hashes) if h is None]
    if todo:
        new = _files.hash_files([paths[i] for i in todo], [sizes[i] for i in todo],
                                progress=progress)
        stale = []
        for i, digest in zip(todo, new):
            hashes[i] = digest
            st = os.stat(paths[i])
            if (st.st_size, st.st_mtime_ns) == (sizes[i], mtimes[i]):
                stale.append((paths[i], sizes[i], mtimes[i], digest))
            else:  # changed while being read: publish what was read, record nothing
                warnings.warn(f'{paths[i]} changed while it was being hashed', ALFWarning)
        record.add(stale)
    return hashes


def _write_table(path: Path, df, metadata: dict, known: TableInfo | None) -> TableInfo:
    """Write a table atomically unless the file already holds the same table (its date of
    creation is then kept too); return its entry in ``cache_info.json``.

    The old table is not read back: when the previous ``cache_info.json`` describes the file
    on disk (`known`: same size, same number of rows), the new table is written aside with
    the old file's metadata, and is the same table when its md5 is the one `known` gives.
    """
    nrecs = len(df)
    if known is not None and known.md5 and known.file == path.name and known.nrecs == nrecs \
            and path.is_file() and path.stat().st_size == known.size:
        trial = _files.temp_name(path)
        try:
            parquet.save(trial, df, parquet.read_metadata(path), fsync=False)
            if _files.md5(trial) == known.md5:
                return known
        except Exception:  # noqa: BLE001 - an unreadable old table is replaced
            pass
        finally:
            trial.unlink(missing_ok=True)
    parquet.save(path, df, metadata)
    return TableInfo.of_file(path, nrecs)


def _write_archive(out_dir: Path, tables: list[TableInfo], info_bytes: bytes,
                   date_created: str) -> dict:
    """Write cache.zip (the tables and cache_info.json) atomically; return its entry."""
    stamp = datetime.datetime.fromisoformat(date_created).timetuple()[:6]
    path = out_dir / ARCHIVE_NAME
    with _files.atomic_path(path) as tmp, zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED) as zf:
        for table in tables:
            member = zipfile.ZipInfo(table.file, date_time=stamp)
            member.external_attr = 0o644 << 16
            with open(out_dir / table.file, 'rb') as src, zf.open(member, 'w') as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        member = zipfile.ZipInfo(INFO_NAME, date_time=stamp)
        member.external_attr = 0o644 << 16
        zf.writestr(member, info_bytes)
    return {'file': ARCHIVE_NAME, 'md5': _files.md5(path), 'size': path.stat().st_size}


def make_release(folder, tag: str | None = None, archive: bool = False,
                 skip_invalid: bool = False, origin: str | None = None, *,
                 out_dir=None, layout: str = 'path', files_url: str | None = None,
                 progress: bool | None = None) -> ReleaseInfo:
    """Make a folder of ALF sessions a release that a static web server or S3 bucket can serve.

    The folder is checked against the ALF layout, every dataset file is indexed with its size
    and md5, and ``sessions.pqt``, ``datasets.pqt`` and ``cache_info.json`` (and with `zip`,
    ``cache.zip`` holding the three) are written atomically, ``cache_info.json`` last.
    Session and dataset ids are those ``one index`` gives (derived from the paths), so they
    stay the same from one release to the next.  A table or ``cache_info.json`` whose content
    did not change is not rewritten.  Files unchanged since they were last hashed (same size
    and modification time, in the folder's ``.one_verified.jsonl``) are not read again.

    Parameters
    ----------
    folder : str, os.PathLike
        The data folder (holding ``lab/Subjects/subject/date/NNN`` or ``subject/date/NNN``).
    tag : str, optional
        A name for this release (e.g. '2025_Q1'), written in ``cache_info.json``.
    archive : bool
        Also write ``cache.zip`` of the tables and ``cache_info.json`` (``--zip``).
    skip_invalid : bool
        Publish even if some files or folders break the ALF layout (they are left out, with a
        warning); by default they are refused with the list.
    origin : str, optional
        The name of the data's origin (e.g. the lab); default the folder's name.
    out_dir : str, os.PathLike, optional
        Where to write the tables and ``cache_info.json`` (default: `folder`), e.g.
        ``<site>/caches/<name>`` beside a ``<site>/data`` folder of files.
    layout : {'path', 'uuid'}
        How the files are addressed on the host: by relative path, or with the dataset UUID
        before the extension (write such a copy with `export_files`).
    files_url : str, optional
        Where the session folders are on the host: relative to `out_dir` (e.g.
        ``'../../data'``) or absolute (``https://...``, ``s3://bucket/prefix``).  Default:
        the relative path from `out_dir` to `folder` ('.' when they are the same), which
        suits the 'path' layout.
    progress : bool, optional
        Show a progress bar while hashing (default: when stderr is a terminal).

    Returns
    -------
    one.release.ReleaseInfo
        The release's description, as written in ``cache_info.json``.

    Raises
    ------
    NotADirectoryError
        `folder` is not a folder.
    one.alf.exceptions.ALFInvalid
        Files or folders break the ALF layout (listed in the message) and not `skip_invalid`.
    one.release.ReleaseError
        No session was found.
    ValueError
        An unknown layout or an invalid files URL.

    Examples
    --------
    >>> info = make_release('/data/mylab', tag='2025_Q1', archive=True)  # doctest: +SKIP
    >>> info.counts  # doctest: +SKIP
    {'sessions': 24, 'datasets': 1210, 'bytes': 3101554}
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f'Not a folder: {folder}')
    if layout not in LAYOUTS:
        raise ValueError(f'Unknown layout {layout!r}: expected one of {LAYOUTS}')
    out_dir = Path(out_dir).resolve() if out_dir else folder
    out_dir.mkdir(parents=True, exist_ok=True)
    if files_url is None:
        files_url = Path(os.path.relpath(folder, out_dir)).as_posix()
    origin = origin or folder.name
    problems = _problems(folder, out_dir)
    if problems and not skip_invalid:
        raise _refuse(folder, problems)
    tree = folder_index.Tree(folder)
    if not tree.sessions:
        raise ReleaseError(f'No ALF session folder found in {folder}')
    if problems:
        warnings.warn(f'{len(problems)} file(s) or folder(s) of {folder} break the ALF layout '
                      'and are left out of the release', ALFWarning)
    if tree.links_out:
        warnings.warn(f'{len(tree.links_out)} symbolic link(s) of {folder} lead outside it and '
                      f'are left out of the release, e.g. {tree.links_out[0]}', ALFWarning)
    tree.keep(~_skipped_mask(tree, folder, problems))

    keys = [folder_index.session_key(*s[1:]) for s in tree.sessions]
    session_ids = uuids.uuid3_strings(keys, ID_NAMESPACE)
    eids = np.asarray(session_ids, dtype=object)[np.asarray(tree.ses_index, dtype=np.intp)]
    eids = eids.tolist()
    dataset_ids = folder_index.dataset_ids(eids, tree.rel_paths, ID_NAMESPACE)
    hashes = _hashes(folder, tree.paths, tree.sizes, tree.mtimes, progress)
    sessions = folder_index.sessions_frame(tree, session_ids).set_index('id').sort_index()
    datasets = folder_index.datasets_frame(tree, eids, dataset_ids, hashes, QC_TYPE)
    datasets['default_revision'] = folder_index.latest_revisions(eids, tree.rel_paths)
    datasets = datasets.set_index(['eid', 'id']).sort_index()

    now = datetime.datetime.now().isoformat(sep=' ', timespec='minutes')
    metadata = {'date_created': now, 'origin': origin}
    with file_lock(out_dir / LOCK_NAME, timeout=600):
        previous = local_info(out_dir)
        tables = [_write_table(out_dir / f'{name}.pqt', df, metadata,
                               previous.tables.get(name) if previous else None)
                  for name, df in zip(_TABLES, (sessions, datasets))]
        counts = {'sessions': len(sessions), 'datasets': len(datasets),
                  'bytes': int(np.sum(np.asarray(tree.sizes, dtype=np.uint64)))}
        return _describe(out_dir, tag, archive, origin, layout, files_url, counts, now,
                         previous, tables)


def describe_release(out_dir, tag: str | None = None, archive: bool = False,
                     origin: str | None = None, layout: str = 'path',
                     files_url: str = '.') -> ReleaseInfo:
    """Write the ``cache_info.json`` (and ``cache.zip``) of cache tables that already exist.

    For tables made otherwise than by `make_release` (e.g. exported by Alyx, or generated),
    whose files are served as `layout` and `files_url` say.  The tables must hold the md5 and
    size of each file for downloads to be verified.

    Parameters
    ----------
    out_dir : str, os.PathLike
        The folder holding ``sessions.pqt`` and ``datasets.pqt``.
    tag, archive, origin, layout, files_url
        As for `make_release` (`origin` defaults to the previous one, or the folder's name).

    Returns
    -------
    one.release.ReleaseInfo
        The description written.

    Raises
    ------
    FileNotFoundError
        A table is missing.
    """
    out_dir = Path(out_dir).resolve()
    for name in _TABLES:
        if not (out_dir / f'{name}.pqt').is_file():
            raise FileNotFoundError(f'No {name}.pqt in {out_dir}')
    now = datetime.datetime.now().isoformat(sep=' ', timespec='minutes')
    with file_lock(out_dir / LOCK_NAME, timeout=600):
        return _describe(out_dir, tag, archive, origin, layout, files_url, None, now)


def _counts(out_dir: Path) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts = {name: pq.ParquetFile(out_dir / f'{name}.pqt').metadata.num_rows
              for name in _TABLES}
    datasets = pq.ParquetFile(out_dir / 'datasets.pqt')
    if 'file_size' in datasets.schema_arrow.names:
        sizes = datasets.read(columns=['file_size'])['file_size']
        counts['bytes'] = int(pc.sum(sizes).as_py() or 0)
    return counts


def _describe(out_dir: Path, tag, archive: bool, origin, layout: str, files_url: str,
              counts: dict | None, now: str, previous: ReleaseInfo | None = None,
              tables: list[TableInfo] | None = None) -> ReleaseInfo:
    """Write cache_info.json (and cache.zip) for the tables of `out_dir` (under its lock).

    `tables` are the entries of the tables when known (else the files are hashed), `previous`
    the ``cache_info.json`` read before they were written.
    """
    import pyarrow.parquet as pq

    info_path = out_dir / INFO_NAME
    if tables is None:
        previous = local_info(out_dir)
        tables = [TableInfo.of_file(path, pq.ParquetFile(path).metadata.num_rows)
                  for path in (out_dir / f'{n}.pqt' for n in _TABLES)]
    counts = counts or _counts(out_dir)
    same_tables = previous is not None and previous.date_created and \
        all(t.name in previous.tables and previous.tables[t.name].md5 == t.md5 for t in tables)
    date_created = previous.date_created if same_tables else now
    origin = origin or (previous.origin if previous else '') or out_dir.name
    info = build_info(tables, origin, date_created, tag, layout, files_url, counts)
    archive_path = out_dir / ARCHIVE_NAME
    if archive:
        old_archive = (previous.raw.get('archive') or {}) if previous else {}
        unchanged = previous is not None and archive_path.exists() and \
            {k: v for k, v in previous.raw.items() if k != 'archive'} == info and \
            old_archive.get('md5') == _files.md5(archive_path)
        info['archive'] = old_archive if unchanged else \
            _write_archive(out_dir, tables, dump_info(info), date_created)
    elif previous is not None and previous.raw.get('archive'):
        archive_path.unlink(missing_ok=True)  # it would hold outdated tables
    if previous is None or previous.raw != info:
        _files.write_bytes_atomic(info_path, dump_info(info))
    return parse_info(info, str(info_path))


def export_files(folder, destination, layout: str = 'uuid', tables_dir=None,
                 link: bool = True) -> int:
    """Write a copy of a release's dataset files in the layout its host serves them in.

    For the 'uuid' layout each file ``<session>/<collection>/obj.attr.ext`` becomes
    ``<destination>/<session>/<collection>/obj.attr.<dataset uuid>.ext``, as on IBL's public
    bucket; upload `destination` where the release's ``files.url`` points.

    Parameters
    ----------
    folder : str, os.PathLike
        The data folder the release was made from.
    destination : str, os.PathLike
        The folder to fill (created if needed).
    layout : {'path', 'uuid'}
        The file layout to write.
    tables_dir : str, os.PathLike, optional
        Where the release's tables are (default: `folder`).
    link : bool
        Hard-link the files where possible (no copy); copy otherwise.

    Returns
    -------
    int
        The number of files written (files already there with the same size and modification
        time, or links to the same file, are kept).
    """
    from one.alf.cache import read_tables  # ids as strings: no UUID objects
    from one.converters import session_record2path

    folder, destination = Path(folder), Path(destination)
    tables = read_tables(tables_dir or folder)
    sessions, datasets = tables['sessions'], tables['datasets']
    session_paths = {eid: session_record2path(row).as_posix()
                     for eid, row in zip(sessions.index, sessions.to_dict('records'))}
    written = 0
    eids = datasets.index.get_level_values('eid')
    ids = datasets.index.get_level_values('id')
    for eid, dataset_id, rel_path in zip(eids, ids, datasets['rel_path'].astype(object)):
        session_path = session_paths[eid]
        source = folder / remote_file_path(session_path, rel_path, dataset_id, 'path')
        target = destination / remote_file_path(session_path, rel_path, dataset_id, layout)
        if _same_file(source, target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            if not link:
                raise OSError
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        written += 1
    return written


def _same_file(source: Path, target: Path) -> bool:
    """Whether `target` is a link to `source`, or a copy of it made since its last change
    (same size and modification time: `shutil.copy2` keeps it)."""
    try:
        src, dst = source.stat(), target.stat()
    except FileNotFoundError:
        return False
    return (src.st_dev, src.st_ino) == (dst.st_dev, dst.st_ino) or \
        (src.st_size, src.st_mtime_ns) == (dst.st_size, dst.st_mtime_ns)
