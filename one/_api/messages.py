"""What the load methods say when they cannot load: what was asked for, where it was looked
for (session, collection, revision), what exists there instead, and what to do.

Pure functions of the datasets table of a session (the rows a load chose from); the error types
stay with the callers (`one._api.local`).
"""
from __future__ import annotations

import errno
import warnings
from pathlib import Path

import pandas as pd

from one import util
from one.alf.path import rel_path_parts

__all__ = ['not_found_message', 'matching_collections', 'several_collections_error',
           'missing_files_hint', 'check_data_folder']

_SHOWN = 20  # names listed at most
_PART_NAMES = ('namespace', 'object', 'attribute', 'timescale', 'extra', 'extension')


def _listing(names) -> str:
    names = sorted({n for n in names if n})
    shown = ', '.join(names[:_SHOWN])
    return shown + (f', ... ({len(names)} in all)' if len(names) > _SHOWN else '')


def _parts(rel_paths) -> list[tuple]:
    return [rel_path_parts(x, assert_valid=False) for x in rel_paths]


def _scope(datasets: pd.DataFrame, collection, revision, wildcards: bool) -> pd.DataFrame:
    """The datasets a load with this collection and revision chooses from."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the load itself warns about revisions
        return util.filter_datasets(datasets, None, collection, revision,
                                    revision_last_before=True, assert_unique=False,
                                    wildcards=wildcards)


def not_found_message(datasets: pd.DataFrame, what: str, eid, collection=None, revision=None,
                      wildcards: bool = True, parts: dict | None = None) -> str:
    """Why nothing matched, and what the session holds where it was looked for.

    Parameters
    ----------
    datasets : pandas.DataFrame
        The session's datasets the load chose from (``rel_path`` column).
    what : str
        What was asked for, e.g. ``'ALF object "trials"'``.
    eid : str, uuid.UUID
        The session.
    collection, revision : str, optional
        The collection and revision (last-before label) of the request.
    wildcards : bool
        Whether the request's patterns are shell wildcards (else regular expressions).
    parts : dict, optional
        The ALF parts of the request (object, attribute, namespace...), to tell an unknown
        attribute of a known object from an unknown object.

    Returns
    -------
    str
        E.g. ``'Attribute "choise" of ALF object "trials" not found in session <eid>,
        collection "alf"; attributes present: choice, intervals'``.
    """
    where = [f'session {eid}']
    if collection is not None:
        where.append(f'collection "{collection}"')
    if revision is not None:
        where.append(f'revision <= "{revision}"')
    where = ', '.join(where)
    rel_paths = datasets['rel_path'].astype(object)
    if collection is not None and len(_scope(datasets, collection, None, wildcards)) == 0:
        present = _listing(p[0] or '(session root)' for p in _parts(rel_paths))
        return (f'{what} not found: session {eid} has no collection "{collection}"'
                f'; collections present: {present or "none"}')
    scope = _scope(datasets, collection, revision, wildcards)
    if revision is not None and len(scope) == 0:
        present = _listing(p[1] for p in _parts(rel_paths))
        return (f'{what} not found in {where}: no dataset has a revision up to "{revision}"'
                f'; revisions present: {present or "none"}')
    scope_parts = _parts(scope['rel_path'].astype(object))
    requested = {k: v for k, v in (parts or {}).items() if k in _PART_NAMES and v is not None}
    obj = requested.get('object')
    if obj is not None and len(requested) > 1:
        of_object = util.filter_datasets(scope, {'object': obj}, revision_last_before=False,
                                         assert_unique=False, wildcards=wildcards)
        if len(of_object):
            return _part_not_found(of_object, obj, requested, where)
    message = f'{what} not found in {where}'
    objects = _listing(p[3] for p in scope_parts)
    if objects:
        message += f'; objects present: {objects}'
    return message


def _part_not_found(of_object: pd.DataFrame, obj, requested: dict, where: str) -> str:
    """The object exists: say which of its other requested parts does not."""
    others = {k: v for k, v in requested.items() if k != 'object'}
    object_parts = _parts(of_object['rel_path'].astype(object))
    if set(others) == {'attribute'}:
        attribute = others['attribute']
        shown = attribute if isinstance(attribute, str) else ', '.join(map(str, attribute))
        return (f'Attribute "{shown}" of ALF object "{obj}" not found in {where}; '
                f'attributes present: {_listing(p[4] for p in object_parts)}')
    asked = ', '.join(f'{k}="{v}"' for k, v in others.items())
    names = _listing(Path(str(x)).name for x in of_object['rel_path'])
    return (f'No dataset of ALF object "{obj}" has {asked} in {where}; '
            f'datasets of the object: {names}')


def matching_collections(datasets: pd.DataFrame, dataset, collection, revision,
                         wildcards: bool) -> list[str]:
    """The collections holding datasets that match a request (sorted)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        matching = util.filter_datasets(datasets, dataset, collection, revision,
                                        assert_unique=False, wildcards=wildcards)
    return sorted({p[0] or '' for p in _parts(matching['rel_path'].astype(object))})


def several_collections_message(what: str, eid, collections: list, cli: bool = False) -> str:
    """What is in several collections, which, and how to choose one: with the `collection`
    argument, or the command line's ``--collection`` option (`cli`)."""
    shown = ', '.join(c or '(session root)' for c in collections)
    first = collections[0]
    how = (f'with --collection, e.g. --collection {first or repr("")}' if cli
           else f'as the collection, e.g. collection="{first}"')
    return f'{what} of session {eid} is in several collections: {shown}; choose one {how}'


def several_collections_error(what: str, eid, collections: list):
    """ALFMultipleCollectionsFound listing the collections (also as its ``collections``) and
    saying how to choose."""
    from one.alf.exceptions import ALFMultipleCollectionsFound

    error = ALFMultipleCollectionsFound(several_collections_message(what, eid, collections))
    error.collections = list(collections)
    return error


def missing_files_hint(one) -> str:
    """What to do about files the tables list but the disk lacks."""
    if not getattr(one, 'offline', True):
        return 'it is not on disk and could not be downloaded (the log says why)'
    tables_dir = getattr(one, '_tables_dir', None) or one.cache_dir
    return (f'the cache tables list it but it is not in {one.cache_dir}; if files were deleted '
            f'or moved since the folder was indexed, re-index it: one index {tables_dir} '
            '(or one.alf.cache.make_parquet_db)')


def check_data_folder(one) -> None:
    """Refuse a missing data folder; warn, saying how to index it, about one without tables.

    Called when no cache tables were found.  A `One` of a local folder (no database) needs the
    folder: a missing one is an error naming it.  A database's cache folder may not exist yet
    (its tables and files are downloaded into it): only a warning.

    Raises
    ------
    FileNotFoundError
        A local `One`'s data folder or tables folder does not exist.
    """
    tables_dir = Path(getattr(one, '_tables_dir', None) or one.cache_dir)
    if getattr(one, '_web_client', None) is None:
        for name, folder in (('cache_dir', Path(one.cache_dir)), ('tables_dir', tables_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(errno.ENOENT, f'No such data folder ({name})',
                                        str(folder.absolute()))
        warnings.warn(f'No cache tables found in {tables_dir}: searches and loads find nothing '
                      f'until the folder is indexed; index it with "one index {tables_dir}" '
                      f'(or one.alf.cache.make_parquet_db)', stacklevel=4)
    else:
        warnings.warn(f'No cache tables found in {tables_dir}', stacklevel=3)
