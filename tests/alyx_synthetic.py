"""A generated Alyx database for tests and benchmarks: many sessions with real small files.

The recordings of ``tests/fixtures/alyx`` hold six sessions; tests and benchmarks of remote work
over many sessions need more.  `SyntheticAlyx.generate` writes realistic ALF session folders
(`one.synthetic.make_session`: trials, wheel, camera, spike sorting per probe...) and describes
them in the wire format of Alyx 3.6.1, as the recorded fixtures show it:

* session *read* records (``GET /sessions/<id>``) with ``data_dataset_session_related`` (id,
  name, dataset_type, data_url, url, file_size, hash, version, collection, revision,
  ``default_revision`` as the strings "True"/"False", qc) and ``probe_insertion``;
* session *list* records (id, subject, start_time, number, lab, projects, url, task_protocol);
* dataset *list* records (url, name, dataset_type, data_format, collection, session URL,
  file_size, hash, version, ``file_records`` with ``data_url`` and ``exists``, revision,
  ``default_dataset``, qc...);
* probe insertion records (the same in ``/insertions`` and in the session's
  ``probe_insertion``).

Hosts are the recorded ones (``http://127.0.0.1:8000`` for Alyx, ``http://127.0.0.1:8001`` for
the data files); `tests.alyx_server.AlyxTestServer` rewrites them to its own URL.  Give the
database to the server (``AlyxTestServer(database=db)``) and it answers the ``sessions``,
``datasets`` and ``insertions`` endpoints from it (filters, ``django`` lookups, pagination) and
serves the files at their ``data_url``; logins, the schema and the rest still come from the
recordings.  A filter the database does not implement is answered 501, naming it.

The sessions vary like `one.synthetic.make_dataset_folder`'s: every fifth has no probe (a
training session), every fourth has a revision of ``_ibl_trials.choice.npy`` (the revised one is
the default), every sixth has a dataset with CRITICAL QC (``_ibl_leftCamera.times.npy``) and
every seventh a dataset without any file (``raw_ephys_data/_spikeglx_sync.times.npy``: in
``/datasets`` with no file record, and, as ONE-api needs, left out of the session record).
Everything is derived from the seed: the same arguments give the same ids, records and files.

Examples
--------
>>> db = SyntheticAlyx.generate(tmp_path, n_sessions=12)          # doctest: +SKIP
>>> with AlyxTestServer(database=db) as server:                     # doctest: +SKIP
...     one = ONE(base_url=server.url, username=USERNAME, password=PASSWORD, silent=True)
"""
from __future__ import annotations

import ast
import datetime
import hashlib
import json
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from one.alf.path import rel_path_parts
from one.synthetic import make_session

ALYX_HOST = 'http://127.0.0.1:8000'
DATA_HOST = 'http://127.0.0.1:8001'
USER = 'test_user'
REVISION = '2024-06-01'
#: Bumped whenever the generated records or files change (benchmark data is regenerated).
GENERATOR_VERSION = 2

_LABS = ('synthlab', 'otherlab')
_PREFIXES = ('SYN-', 'SYN_')
_CRITICAL = 'alf/_ibl_leftCamera.times.npy'
_NO_FILE = 'raw_ephys_data/_spikeglx_sync.times.npy'
_MODELS = {'sessions': 'Session', 'datasets': 'Dataset', 'insertions': 'ProbeInsertion'}


def _uuid(seed: int, key: str) -> str:
    """A stable version-4 UUID string derived from the seed and a key."""
    digest = hashlib.sha1(f'{seed}:{key}'.encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _with_uuid(name: str, dataset_id: str) -> str:
    stem, _, ext = name.rpartition('.')
    return f'{stem}.{dataset_id}.{ext}'


def parse_django(value: str) -> list[tuple[str, object]]:
    """Parse a ``django`` query value, ``key,value,key,value...``, into (lookup, value) pairs.

    A value written as a Python list or tuple (``id__in,['a', 'b']``, as ONE clients send it)
    spans several comma-separated pieces and is evaluated as a literal.

    Raises
    ------
    ValueError
        An odd number of items, or an unclosed list.
    """
    pieces = value.split(',')
    items, i = [], 0
    while i < len(pieces):
        piece = pieces[i]
        if piece.lstrip()[:1] in '[(':
            j = i
            while (piece.count('[') + piece.count('(')) > (piece.count(']') + piece.count(')')):
                j += 1
                if j >= len(pieces):
                    raise ValueError(f'Unclosed list in django filter "{value}"')
                piece += ',' + pieces[j]
            items.append(ast.literal_eval(piece.strip()))
            i = j + 1
        else:
            items.append(piece)
            i += 1
    if len(items) % 2:
        raise ValueError(f'django filter "{value}" has an odd number of items')
    return [(str(items[k]), items[k + 1]) for k in range(0, len(items), 2)]


class UnsupportedFilter(ValueError):
    """A query uses a filter the synthetic database does not implement."""


@dataclass
class SyntheticAlyx:
    """Generated Alyx records and the files they describe (see the module docstring).

    Attributes
    ----------
    sessions : dict
        Session read records by session id, most recent first.
    datasets : list of dict
        Dataset list records, session after session.
    insertions : list of dict
        Probe insertion records.
    files : dict
        The local file of each data URL path (``/<lab>/Subjects/.../<name>.<uuid>.<ext>``).
    root : pathlib.Path
        The folder of the generated session folders.
    """

    sessions: dict = field(default_factory=dict)
    datasets: list = field(default_factory=list)
    insertions: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    root: Path | None = None

    # --- generation ------------------------------------------------------------------------
    @classmethod
    def generate(cls, root, n_sessions: int, seed: int = 0, sessions_per_subject: int = 10,
                 skip: tuple = (), start_date: str = '2024-01-15', **session_kwargs
                 ) -> SyntheticAlyx:
        """Write `n_sessions` session folders below `root` and describe them as Alyx would.

        Parameters
        ----------
        root : str, os.PathLike
            Where the session folders are written (``<lab>/Subjects/<subject>/<date>/<NNN>``).
        n_sessions : int
            The number of sessions.
        seed : int
            Seed of the ids and of the file contents.
        sessions_per_subject : int
            Sessions per subject (on successive days).
        skip : tuple of str
            Relative paths (within a session) of files that are not registered as datasets.
        start_date : str
            The date of each subject's first session.
        **session_kwargs
            Passed to `one.synthetic.make_session` (default ``raw=False``).

        Returns
        -------
        SyntheticAlyx
        """
        root = Path(root)
        session_kwargs.setdefault('raw', False)
        probes = tuple(session_kwargs.pop('probes', ('probe00', 'probe01')))
        start = datetime.date.fromisoformat(start_date)
        db = cls(root=root)
        records = []
        for index in range(n_sessions):
            subject_index, day = divmod(index, sessions_per_subject)
            lab = _LABS[subject_index % len(_LABS)]
            subject = f'{_PREFIXES[subject_index % len(_PREFIXES)]}{subject_index + 1:03d}'
            date = (start + datetime.timedelta(days=day)).isoformat()
            options = {'probes': () if index % 5 == 4 else probes,
                       'revision': REVISION if index % 4 == 3 else None,
                       'n_trials': 100 + (zlib.crc32(f'{seed}/{index}'.encode()) % 400),
                       **session_kwargs}
            session = make_session(root, subject, date, 1, lab=lab, seed=seed, **options)
            records.append(db._describe(session, index, seed, lab, subject, date,
                                        options['probes'], set(skip)))
        records.sort(key=lambda r: r['start_time'], reverse=True)
        db.sessions = {r['id']: r for r in records}
        return db

    def _describe(self, session: Path, index: int, seed: int, lab: str, subject: str,
                  date: str, probes, skip: set) -> dict:
        """The session read record of a generated folder (and its dataset list records)."""
        ref = f'{lab}/{subject}/{date}/001'
        eid = _uuid(seed, ref)
        session_url = f'{ALYX_HOST}/sessions/{eid}'
        start_time = f'{date}T10:13:00'
        ephys = bool(probes)
        protocol = ('_iblrig_tasks_ephysChoiceWorld6.6.2' if ephys
                    else '_iblrig_tasks_trainingChoiceWorld6.6.2')
        projects = ['ibl_neuropixel_brainwide_01']
        files = sorted(p for p in session.rglob('*') if p.is_file())
        rel_paths = [p.relative_to(session).as_posix() for p in files]
        revised = {r.replace(f'#{REVISION}#/', '') for r in rel_paths if f'#{REVISION}#' in r}
        entries, dataset_ids = [], {}
        for file, rel_path in zip(files, rel_paths):
            parts = rel_path_parts(rel_path, as_dict=True, assert_valid=False)
            if parts['object'] is None or rel_path in skip:
                continue
            entries.append((rel_path, parts, file))
        if index % 7 == 6:
            entries.append((_NO_FILE, rel_path_parts(_NO_FILE, as_dict=True), None))
        n_trials = 0
        datasets = []
        for rel_path, parts, file in entries:
            dataset_id = _uuid(seed, f'{ref}/{rel_path}')
            dataset_ids[rel_path] = dataset_id
            name = rel_path.rsplit('/', 1)[-1]
            collection = parts['collection'] or ''
            revision = parts['revision'] or ''
            default = rel_path not in revised
            qc = 'CRITICAL' if (index % 6 == 5 and rel_path == _CRITICAL) else (
                'PASS' if parts['object'] == 'trials' else 'NOT_SET')
            dataset_type = f"{parts['object']}.{parts['attribute']}"
            size = file.stat().st_size if file else None
            md5 = _md5(file) if file else None
            data_url = None
            if file is not None:
                folder = '/'.join(filter(None, [collection, f'#{revision}#' if revision else '']))
                url_path = '/'.join(filter(None, [f'/{lab}/Subjects/{subject}/{date}/001', folder,
                                                  _with_uuid(name, dataset_id)]))
                data_url = f'{DATA_HOST}{url_path}'
                self.files[url_path] = file
                if rel_path == 'alf/_ibl_trials.choice.npy':
                    n_trials = int(np.load(file).size)
            created = f'{date}T18:{index % 60:02d}:00.000000'
            if data_url is not None:  # (ONE-api fails on session datasets without a URL)
                datasets.append({
                    'id': dataset_id, 'name': name, 'dataset_type': dataset_type,
                    'data_url': data_url, 'url': f'{ALYX_HOST}/datasets/{dataset_id}',
                    'file_size': size, 'hash': md5, 'version': '1.0.0',
                    'collection': collection, 'revision': revision,
                    'default_revision': str(default), 'qc': qc,
                })
            server_path = '/'.join(filter(None, [
                f'{subject}/{date}/001', collection, f'#{revision}#' if revision else '', name]))
            file_records = [] if file is None else [{
                'id': _uuid(seed, f'file/{ref}/{rel_path}'),
                'data_repository': f'flatiron_{lab}', 'data_repository_path': '',
                'relative_path': server_path, 'data_url': data_url, 'exists': True}]
            self.datasets.append({
                'url': f'{ALYX_HOST}/datasets/{dataset_id}', 'name': name, 'created_by': USER,
                'created_datetime': created, 'dataset_type': dataset_type,
                'data_format': parts['extension'], 'collection': collection,
                'session': session_url, 'file_size': size, 'hash': md5, 'version': '1.0.0',
                'experiment_number': 1, 'file_records': file_records,
                'auto_datetime': created, 'revision': revision, 'default_dataset': default,
                'protected': 0, 'public': 0, 'tags': [], 'qc': qc, 'json': None,
            })
        session_info = {'subject': subject, 'start_time': start_time, 'number': 1, 'lab': lab,
                        'id': eid, 'projects': projects, 'task_protocol': protocol}
        insertions = []
        for i, probe in enumerate(probes):
            pid = _uuid(seed, f'{ref}/{probe}')
            insertions.append({
                'id': pid, 'session': eid, 'model': '3B2', 'session_info': dict(session_info),
                'name': probe, 'json': {'qc': 'PASS', 'n_units': 25},
                'serial': f'{19000000 + index * 10 + i}',
                'auto_datetime': f'{date}T18:00:00.000000', 'chronic_insertion': None,
                'datasets': [v for k, v in dataset_ids.items() if f'/{probe}/' in f'/{k}'],
            })
        self.insertions += insertions
        return {
            'subject': subject, 'users': [USER], 'location': None, 'procedures': [],
            'lab': lab, 'projects': projects, 'type': 'Experiment', 'task_protocol': protocol,
            'number': 1, 'start_time': start_time, 'end_time': f'{date}T11:08:00',
            'narrative': f'Synthetic session {ref}', 'parent_session': None,
            'n_correct_trials': n_trials // 2, 'n_trials': n_trials, 'url': session_url,
            'extended_qc': {'behavior': 1}, 'qc': ('PASS', 'WARNING', 'FAIL')[index % 3],
            'wateradmin_session_related': [], 'data_dataset_session_related': datasets,
            'auto_datetime': f'{date}T18:00:00.000000', 'id': eid, 'json': None,
            'probe_insertion': insertions, 'field_of_view': [], 'notes': [],
        }

    # --- queries ---------------------------------------------------------------------------
    @property
    def eids(self) -> list[str]:
        """The session ids, most recent first (the order of ``/sessions`` lists)."""
        return list(self.sessions)

    @staticmethod
    def session_list_record(record: dict) -> dict:
        """The ``/sessions`` list form of a session read record."""
        keys = ('id', 'subject', 'start_time', 'number', 'lab', 'projects', 'url',
                'task_protocol')
        return {k: record[k] for k in keys}

    def file(self, path: str) -> Path | None:
        """The local file served at a data URL path, or None."""
        return self.files.get(path)

    def answer(self, path: str, query: dict) -> tuple[int, object] | None:
        """Answer a GET of the sessions, datasets or insertions endpoints.

        Parameters
        ----------
        path : str
            The request path, e.g. ``/datasets`` or ``/sessions/<id>``.
        query : dict
            The query parameters (lists of values), without ``limit`` and ``offset``.

        Returns
        -------
        (int, object) or None
            The status and the JSON answer (a list for list queries, to be paginated); None
            for the other endpoints.
        """
        parts = [p for p in path.split('/') if p]
        if not parts or parts[0] not in _MODELS or len(parts) > 2:
            return None
        endpoint = parts[0]
        if len(parts) == 2:
            record = self._read(endpoint, parts[1])
            if record is None:
                return 404, {'detail': f'No {_MODELS[endpoint]} matches the given query.',
                             'status_code': 404}
            return 200, record
        try:
            return 200, self._list(endpoint, {k: v[0] for k, v in query.items()})
        except UnsupportedFilter as ex:
            return 501, str(ex)

    def _read(self, endpoint: str, key: str) -> dict | None:
        if endpoint == 'sessions':
            return self.sessions.get(key)
        if endpoint == 'datasets':
            return next((d for d in self.datasets if d['url'].endswith(key)), None)
        return next((p for p in self.insertions if p['id'] == key), None)

    def _list(self, endpoint: str, query: dict) -> list:
        lookups = []
        for key, value in query.items():
            if key == 'django':
                try:
                    lookups += parse_django(value)
                except (ValueError, SyntaxError) as ex:
                    raise UnsupportedFilter(f'synthetic database: {ex}') from None
            else:
                lookups.append((key, value))
        if endpoint == 'sessions':
            records = [self.session_list_record(r) for r in self.sessions.values()]
            test = self._session_test
        elif endpoint == 'datasets':
            records, test = self.datasets, self._dataset_test
        else:
            records, test = self.insertions, self._insertion_test
        for key, value in lookups:
            keep = test(key, value)
            records = [r for r in records if keep(r)]
        return records

    @staticmethod
    def _ids(value) -> set:
        if isinstance(value, (list, tuple, set)):
            return {str(v) for v in value}
        return {v for v in str(value).split(',') if v}

    def _session_test(self, key: str, value):
        ids = self._ids
        full = self.sessions

        def names(r):
            return {d['name'] for d in full[r['id']]['data_dataset_session_related']}

        tests = {
            'subject': lambda r: str(value).lower() in r['subject'].lower(),
            'lab': lambda r: str(value).lower() in r['lab'].lower(),
            'task_protocol': lambda r: str(value).lower() in r['task_protocol'].lower(),
            'projects': lambda r: any(str(value).lower() in p.lower() for p in r['projects']),
            'project': lambda r: any(str(value).lower() in p.lower() for p in r['projects']),
            'number': lambda r: int(r['number']) == int(value),
            'id': lambda r: r['id'] in ids(value),
            'pk': lambda r: r['id'] in ids(value),
            'pk__in': lambda r: r['id'] in ids(value),
            'id__in': lambda r: r['id'] in ids(value),
            'datasets': lambda r: set(str(value).split(',')) <= names(r),
            'data_dataset_session_related__name__icontains':
                lambda r: any(str(value).lower() in n.lower() for n in names(r)),
        }
        if key == 'date_range':
            start, end = str(value).split(',')
            return lambda r: start <= r['start_time'][:10] <= end
        if key not in tests:
            raise UnsupportedFilter(f'synthetic database: unsupported sessions filter "{key}"')
        return tests[key]

    def _dataset_test(self, key: str, value):
        ids = self._ids

        def session_id(r):
            return r['session'].rstrip('/')[-36:]

        def dataset_id(r):
            return r['url'].rstrip('/')[-36:]

        tests = {
            'session': lambda r: session_id(r) in ids(value),
            'session__id': lambda r: session_id(r) in ids(value),
            'session__in': lambda r: session_id(r) in ids(value),
            'session__id__in': lambda r: session_id(r) in ids(value),
            'id__in': lambda r: dataset_id(r) in ids(value),
            'pk__in': lambda r: dataset_id(r) in ids(value),
            'id': lambda r: dataset_id(r) in ids(value),
            'name': lambda r: r['name'] == str(value),
            'name__icontains': lambda r: str(value).lower() in r['name'].lower(),
            'collection': lambda r: r['collection'] == str(value),
            'dataset_type': lambda r: r['dataset_type'] == str(value),
            'dataset_type__name': lambda r: r['dataset_type'] == str(value),
            'dataset_type__name__in': lambda r: r['dataset_type'] in ids(value),
            'exists': lambda r: any(f['exists'] for f in r['file_records']) == (
                str(value).lower() == 'true'),
            'session__isnull': lambda r: (not r['session']) == (str(value).lower() == 'true'),
            'revision': lambda r: r['revision'] == str(value),
        }
        if key not in tests:
            raise UnsupportedFilter(f'synthetic database: unsupported datasets filter "{key}"')
        return tests[key]

    def _insertion_test(self, key: str, value):
        tests = {
            'session': lambda r: r['session'] in self._ids(value),
            'session__in': lambda r: r['session'] in self._ids(value),
            'name': lambda r: r['name'] == str(value),
            'id': lambda r: r['id'] in self._ids(value),
        }
        if key not in tests:
            raise UnsupportedFilter(
                f'synthetic database: unsupported insertions filter "{key}"')
        return tests[key]

    # --- persistence (benchmarks keep generated data between runs) -------------------------
    def save(self, path) -> None:
        """Write the records and file map to a JSON file (the files stay where they are)."""
        data = {'version': GENERATOR_VERSION, 'root': str(self.root),
                'sessions': list(self.sessions.values()), 'datasets': self.datasets,
                'insertions': self.insertions,
                'files': {k: str(v) for k, v in self.files.items()}}
        Path(path).write_text(json.dumps(data))

    @classmethod
    def load(cls, path) -> SyntheticAlyx | None:
        """Read a database saved by `save`; None if missing or of another generator version."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        if data.get('version') != GENERATOR_VERSION:
            return None
        return cls(sessions={r['id']: r for r in data['sessions']}, datasets=data['datasets'],
                   insertions=data['insertions'],
                   files={k: Path(v) for k, v in data['files'].items()},
                   root=Path(data['root']))

