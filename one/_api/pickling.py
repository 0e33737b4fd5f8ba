"""How a `One` travels to another process: a small recipe, no secret, rebuilt once per process.

``pickle.dumps(one)`` (and so Dask, `concurrent.futures` or `multiprocessing`) sends, through
`One.__reduce__`, the function `rebuild` and a recipe of a few hundred bytes:

* every instance: its class, cache folder, tables folder, mode, `wildcards`,
  `uuid_filenames`, `record_loaded`, `cache_expiry` and lock file (its path; the lock itself
  when it has no file);
* `OneAlyx`: the database URL, the login name and the REST client's settings (REST cache mode
  and expiry, timeout, retries, deadline).  Never the password, the token or the data server's
  password: the receiving process reads its own from its parameter files (`one.params`, as
  ``ONE()`` does), and logs in only when it first queries the database;
* `OneRelease`: the release URL, the AWS profile and the timeout;
* the tables only when they hold changes the files of the tables folder do not hold (merged
  or modified since they were loaded or saved *into that folder*, or handed out through
  ``one._cache``, where a script may have edited them): then the rows that differ from the
  files on disk travel, and the rows on disk that the tables no longer hold are named
  (`one._tables.diff`).  The receiver loads the files and applies these changes, so its
  tables are those of the sender.  Saving the tables first (``one.save_cache()``, when the
  tables folder is the cache folder) keeps the pickle small; a save into a cache folder that
  is not the tables folder does not count, since the receiver loads the tables folder.
  Tables found equal to the files are then watched (`one._tables.tables_watch`): until they are
  touched, later pickles compare nothing.

The receiver checks that its tables folder holds the files the sender's held (a
`FileNotFoundError` naming the folder and files if not, as on a node that does not mount it; a
warning if they are other versions), then builds the instance without any request (in 'local'
mode, then given the sender's mode: an 'auto' instance does not download the database's tables
again in every process) and keeps it: unpickling the same recipe again in the same process
returns the same instance, as ``ONE()`` does for the same arguments, as long as the instance is
what the recipe describes.  If what ran with it changed its settings, or edited its tables
(handed out through ``one._cache``, then found different from the files), a new one is built.
Records the instance merged itself (in remote mode, those read from the database) do not count.
The recipe names the table files as they were when pickled (size and modification time), so a
recipe made after the tables changed on disk gives a new instance.  Folders travel as absolute
paths.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import threading
import warnings
import weakref
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path

__all__ = ['rebuild', 'reduce_one', 'recipe_of', 'MAX_INSTANCES', 'forget_instances']

RECIPE_VERSION = 1

MAX_INSTANCES = 4
"""Instances a process keeps for the recipes it unpickled (the least recently used goes)."""

_instances: OrderedDict[str, object] = OrderedDict()
_lock = threading.Lock()


def _table_files(folder) -> dict:
    """The table files of a folder as (size, modification time in ns) by name."""
    out = {}
    try:
        for path in sorted(Path(folder).glob('*.pqt')):
            stat = path.stat()
            out[path.name] = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        pass
    return out


def _saved_into_tables_dir(meta: dict, tables_dir) -> bool:
    """Whether the last `save_cache` wrote into the tables folder (the receiver loads that
    folder: a save into the cache folder, when it is another one, does not count)."""
    saved_dir = meta.get('saved_dir')
    if saved_dir is None or tables_dir is None:
        return False
    try:
        return Path(saved_dir).resolve() == Path(tables_dir).resolve()
    except OSError:
        return False


def _may_differ_from_files(one) -> bool:
    """Whether the tables may differ from the files of the tables folder (then compared)."""
    meta = one._tables.get('_meta') or {}
    if one._handed_out:  # scripts may edit the tables in place without saying so
        return True
    modified = meta.get('modified_time')
    if modified is None:
        return False
    update_times = [meta.get('loaded_time')]
    if _saved_into_tables_dir(meta, one._tables_dir):
        update_times.append(meta.get('saved_time'))
    update_times = [t for t in update_times if t]
    return not update_times or modified >= max(update_times)


_as_on_disk: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""For an instance whose tables were found equal to the files: a `TablesWatch` of them then
(until they are touched, no comparison is needed)."""


def unsaved_tables(one) -> dict | None:
    """The changes of the tables not saved in the tables folder, by table name (None: none).

    Returns
    -------
    dict or None
        ``{'changes': {name: TableChanges}, 'raw': {name: metadata}}``.
    """
    import pandas as pd

    from one._tables.diff import table_changes
    from one._tables.tables_watch import TablesWatch
    from one.alf.cache import _load_tables
    if not _may_differ_from_files(one):
        return None
    tables = one._tables
    watch = _as_on_disk.get(one)
    if watch is not None:
        if watch.unchanged(tables):
            return None
        del _as_on_disk[one]  # (it holds columns the tables may no longer hold)
    try:
        disk = _load_tables(one._tables_dir)
    except Exception:  # noqa: BLE001 - unreadable tables: send ours whole
        disk = {'_meta': {'raw': {}}}
    on_disk = set(disk['_meta'].get('raw') or {})
    changes = {}
    for name, table in tables.items():
        if str(name).startswith('_') or not isinstance(table, pd.DataFrame):
            continue
        found = disk.get(name) if name in on_disk else None
        if found is None and table.empty:
            continue
        change = table_changes(table, found)
        if change is not None:
            changes[name] = change
    if not changes:
        _as_on_disk[one] = TablesWatch(tables)
        return None
    meta = tables.get('_meta') or {}
    raw = meta.get('raw') or {}
    return {'changes': changes, 'raw': {k: dict(raw[k]) for k in changes if k in raw}}


def recipe_of(one) -> dict:
    """What `rebuild` needs to make the same instance in another process (see the module
    docstring): plain values, and the unsaved table changes."""
    from one._api.alyx import OneAlyx
    from one._api.release import OneRelease
    lock = getattr(one, 'lock', None)
    recipe = {
        'version': RECIPE_VERSION,
        'cache_dir': os.path.abspath(one.cache_dir),  # (a worker may run elsewhere)
        'tables_dir': os.path.abspath(one._tables_dir),
        'mode': one.mode,
        'wildcards': one.wildcards,
        'uuid_filenames': one.uuid_filenames,
        'record_loaded': one.record_loaded,
        'cache_expiry': one.cache_expiry,
        'lock': (os.path.abspath(lock.path) if getattr(lock, 'path', None) else lock)
        if lock is not None else None,
        'table_files': _table_files(one._tables_dir),
    }
    if isinstance(one, OneRelease):
        source = one._source
        recipe['release'] = {'base_url': one.base_url, 'profile': source.profile,
                             'timeout': source.timeout}
    elif isinstance(one, OneAlyx):
        client = one.alyx
        recipe['alyx'] = {
            'base_url': client.base_url,
            'username': client.user or getattr(client._par, 'ALYX_LOGIN', None),
            'cache_rest': client.cache_mode,
            'default_expiry': client.default_expiry,
            'timeout': client.timeout,
            'retries': getattr(client, '_retries', 2),
            'deadline': client.deadline,
        }
    recipe['tables'] = unsaved_tables(one)
    recipe['key'] = hashlib.sha1(
        pickle.dumps((type(one).__module__, type(one).__qualname__, recipe),
                     protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()
    return recipe


def reduce_one(one) -> tuple:
    """`One.__reduce__`: the function and arguments that rebuild `one` when unpickled."""
    return rebuild, (type(one), recipe_of(one))


def rebuild(cls, recipe: dict, reuse: bool = True):
    """Make the instance a recipe describes (see `recipe_of`), or give the one made before.

    Parameters
    ----------
    cls : type
        `One`, `OneAlyx`, `OneRelease` or a subclass of one of them.
    recipe : dict
        What `recipe_of` made.
    reuse : bool
        Return the instance made earlier in this process from the same recipe, if any (and
        keep the new one for later).

    Returns
    -------
    One
    """
    if not reuse:
        return _build(cls, recipe)
    key = recipe['key']
    with _lock:  # one build at a time: two threads unpickling the same recipe build it once
        instance = _instances.get(key)
        if instance is not None and not _as_built(instance, recipe):
            del _instances[key]  # changed by what ran with it since: not what was sent
            instance = None
        if instance is None:
            instance = _build(cls, recipe)
            _instances[key] = instance
            while len(_instances) > MAX_INSTANCES:
                _instances.popitem(last=False)
        _instances.move_to_end(key)
        return instance


def forget_instances() -> None:
    """Forget the instances this process rebuilt (the next unpickling builds anew)."""
    with _lock:
        _instances.clear()


def _settings(one) -> tuple:
    return (str(Path(one.cache_dir)), str(Path(one._tables_dir)), one.mode, one.wildcards,
            one.uuid_filenames, one.record_loaded, one.cache_expiry)


def _as_built(instance, recipe: dict) -> bool:
    """Whether an instance rebuilt from `recipe` is still what the recipe describes.

    The tasks given the instance may have changed it: its settings, or its tables once handed
    out (``one._cache``, which scripts edit in place).  Records the instance merged itself (in
    remote mode, those it read from the database) are what any instance would hold after the
    same queries: they do not count.  Tables handed out are compared with the files (once;
    then watched, see `unsaved_tables`), or, when the recipe carried changes, not reused.
    """
    expected = (str(Path(recipe['cache_dir'])), str(Path(recipe['tables_dir'])),
                recipe['mode'], recipe['wildcards'], recipe['uuid_filenames'],
                recipe['record_loaded'], recipe['cache_expiry'])
    if _settings(instance) != expected:
        return False
    if not instance._handed_out:
        return True
    return not recipe.get('tables') and unsaved_tables(instance) is None


def _check_table_files(recipe: dict) -> None:
    """The tables folder as this process sees it must hold the files the sender's held."""
    from one.alf.exceptions import ALFWarning
    expected = recipe.get('table_files') or {}
    if not expected:
        return
    folder = recipe['tables_dir']
    seen = _table_files(folder)
    missing = sorted(set(expected) - set(seen))
    if missing:
        raise FileNotFoundError(
            f'The tables folder of this One, {folder}, does not hold {", ".join(missing)} in '
            f'this process (pid {os.getpid()}), as it did where the One was pickled: put the '
            'tables (e.g. the snapshot) on a file system every worker sees')
    changed = sorted(name for name, stat in expected.items() if tuple(seen[name]) != tuple(stat))
    if changed:
        warnings.warn(f'The table files {", ".join(changed)} of {folder} are not those the '
                      'One was pickled with (written again since, or another copy): this '
                      'process uses them as they are here', ALFWarning, stacklevel=4)


def _build(cls, recipe: dict):
    if recipe.get('version') != RECIPE_VERSION:
        raise ValueError(f'This One was pickled by another version of one-next (recipe '
                         f'{recipe.get("version")}, expected {RECIPE_VERSION})')
    _check_table_files(recipe)
    instance = cls.__new__(cls)
    with warnings.catch_warnings():
        if recipe['mode'] != 'local':  # built in 'local' mode, it would warn of what the
            warnings.simplefilter('ignore')  # sender, in its own mode, did not warn of
        _construct(instance, cls, recipe)
    instance.mode = recipe['mode']
    instance.uuid_filenames = recipe['uuid_filenames']
    instance.record_loaded = recipe['record_loaded']
    instance.cache_expiry = recipe['cache_expiry']
    if recipe.get('tables'):
        _apply_tables(instance, recipe['tables'])
    return instance


def _construct(instance, cls, recipe: dict) -> None:
    """Run the constructor of the instance's kind on the recipe, in 'local' mode (no request)."""
    from one._api.alyx import OneAlyx
    from one._api.local import One
    from one._api.release import OneRelease
    common = {'cache_dir': recipe['cache_dir'], 'tables_dir': recipe['tables_dir'],
              'wildcards': recipe['wildcards'], 'lock': recipe['lock']}
    if 'release' in recipe and issubclass(cls, OneRelease):
        release = recipe['release']
        have_copy = (Path(recipe['tables_dir']) / 'datasets.pqt').exists()
        OneRelease.__init__(instance, base_url=release['base_url'],
                            mode='local' if have_copy else recipe['mode'],
                            profile=release['profile'], timeout=release['timeout'],
                            cache_expiry=recipe['cache_expiry'], **common)
    elif 'alyx' in recipe and issubclass(cls, OneAlyx):
        alyx = recipe['alyx']
        OneAlyx.__init__(instance, base_url=alyx['base_url'], mode='local', silent=True,
                         cache_rest=alyx['cache_rest'], timeout=alyx['timeout'],
                         retries=alyx['retries'], deadline=alyx['deadline'], **common)
        client = instance.alyx
        if alyx['username']:  # who logs in, when the first query needs it
            client._par = client._par.set('ALYX_LOGIN', alyx['username'])
        if isinstance(alyx['default_expiry'], timedelta):
            client.default_expiry = alyx['default_expiry']
    else:
        One.__init__(instance, mode='local', **common)


def _apply_tables(instance, unsaved: dict) -> None:
    """Give the loaded tables the sender's unsaved changes."""
    from one._tables.diff import apply_changes
    from one.alf.cache import _merge_tables
    tables = instance._tables
    meta = tables.setdefault('_meta', {})

    def upsert(name):
        def merge(table, rows):
            cache = {name: table, '_meta': {'raw': {}}}
            _merge_tables(cache, {name: rows}, as_uuid=False)
            return cache[name]
        return merge

    for name, change in unsaved['changes'].items():
        table = tables.get(name)
        if table is None and not change.replace:
            table = change.upsert.iloc[0:0]
        tables[name] = apply_changes(table, change, upsert(name))
    meta.setdefault('raw', {}).update(unsaved.get('raw') or {})
    meta['modified_time'] = datetime.now()  # unsaved here too: `save_cache` writes them
