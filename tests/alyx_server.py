"""An Alyx-compatible HTTP server for tests, answering with responses recorded from Alyx 3.6.1.

The recordings (``tests/fixtures/alyx/index.json`` and the files it names) were made against a
real Alyx server at ``http://127.0.0.1:8000`` with its data files served from
``http://127.0.0.1:8001``; both hosts are rewritten to this server's URL when served.  The
server behaves like the real one where tests need it:

* ``POST /auth-token`` with the recorded credentials (``test_user`` / ``TapetesBloc18``) gives a
  token; wrong credentials give the recorded 400.  Every other request needs
  ``Authorization: Token <token>``: none gives the recorded 403 "Authentication credentials
  were not provided.", a wrong or expired one the recorded 403 "Invalid token.";
* list answers are paginated like Django REST framework's LimitOffsetPagination (``limit``,
  ``offset``, absolute ``next``/``previous`` links, 250 per page unless `page_size` says
  otherwise), computed from the recorded complete lists, so any page can be asked for;
* ``/api/schema`` (OpenAPI 3) or, with ``legacy_schema=True``, a 404 there and a coreapi
  document at ``/docs`` (made from the OpenAPI one);
* ``/cache/info`` answers 301 to ``/cache/info/`` (any path whose '/'-terminated form is
  recorded does); ``/cache.zip`` is the recorded archive;
* detail records can be changed with PATCH/PUT, deleted with DELETE (then 404) and created with
  POST; unknown records give a 404 like Django's, unknown endpoints an HTML 404 page, and a
  request that was not recorded a 501 naming it;
* data files (``/<lab>/Subjects/...``, the recorded ``data_url``s) are served from
  `files_dir` (by default ``tests/fixtures/alyx/files``), with byte ranges and no login;
* with a generated `database` (``tests/alyx_synthetic.py``: many sessions with real files),
  the sessions, datasets and insertions endpoints and the data files come from it instead.

Faults for tests: `fail` (answer some requests with an error status, e.g. 500 then success),
`delay` (slow answers), `expire_tokens` (the next request with the old token gets 403 "Invalid
token."), `reorder_pages` (the pages of a list disagree, as PostgreSQL's unordered pages do),
`throttle` (429 with ``Retry-After`` beyond a number of requests per second, like Django REST
framework's throttling), `max_limit` (a cap on the page size).  Every request is logged in
`requests`.  (Werkzeug closes the connection after each answer: keep-alive cannot be observed
here.)

Examples
--------
>>> with AlyxTestServer() as server:            # doctest: +SKIP
...     url = server.url                         # e.g. 'http://127.0.0.1:40123'
...     server.fail('/sessions', status=500)     # the next GET /sessions fails once
"""
from __future__ import annotations

import copy
import functools
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

FIXTURES = Path(__file__).parent / 'fixtures' / 'alyx'
RECORDED_HOSTS = ('http://127.0.0.1:8000', 'http://127.0.0.1:8001')
USERNAME = 'test_user'
PASSWORD = 'TapetesBloc18'
_TEXT_TYPES = ('json', 'text', 'html', 'xml', 'javascript')
_HTML_404 = ('<!DOCTYPE html><html><head><title>Page not found at {path}</title></head>'
             '<body><h1>Page not found <span>(404)</span></h1><p>Request URL: {path}</p>'
             '</body></html>')
_MODELS = {'sessions': 'Session', 'subjects': 'Subject', 'datasets': 'Dataset',
           'insertions': 'ProbeInsertion', 'files': 'FileRecord', 'users': 'User',
           'dataset-types': 'DatasetType', 'labs': 'Lab', 'projects': 'Project',
           'tags': 'Tag', 'revisions': 'Revision', 'data-repository': 'DataRepository'}


@dataclass
class Recorded:
    """One recorded exchange."""

    name: str
    method: str
    path: str
    query: dict
    status: int
    content_type: str
    body: bytes
    location: str | None
    authenticated: bool


@dataclass
class LoggedRequest:
    """A request received by the server."""

    method: str
    path: str
    query: str
    headers: dict
    body: bytes

    @property
    def token(self) -> str | None:
        """The token sent in the Authorization header, if any."""
        auth = self.headers.get('Authorization', '')
        return auth[6:] if auth.startswith('Token ') else None


@dataclass
class _Fault:
    method: str | None
    path: str
    times: int | None
    status: int | None = None
    body: bytes = b''
    content_type: str = 'text/html; charset=utf-8'
    delay: float = 0.0
    headers: dict = field(default_factory=dict)

    def matches(self, method: str, path: str, query: str) -> bool:
        if self.method and self.method != method:
            return False
        if '?' in self.path:
            return self.path == f'{path}?{query}'
        return self.path == path


def _norm_query(query: str) -> dict:
    return {k: sorted(v) for k, v in parse_qs(query, keep_blank_values=True).items()}


@functools.lru_cache(maxsize=4)
def load_recordings(fixtures_dir: str = str(FIXTURES)) -> tuple[Recorded, ...]:
    """Read the recorded exchanges (bodies as recorded, hosts not yet rewritten)."""
    folder = Path(fixtures_dir)
    index = json.loads((folder / 'index.json').read_text())
    out = []
    for name, entry in index.items():
        if not entry.get('file'):
            continue
        path, _, query = entry['path'].partition('?')
        out.append(Recorded(
            name=name, method=entry['method'], path=path, query=_norm_query(query),
            status=entry['status'], content_type=entry['content_type'],
            body=(folder / entry['file']).read_bytes(), location=entry.get('location'),
            authenticated=entry.get('authenticated', True)))
    return tuple(out)


def recorded_token(fixtures_dir: str = str(FIXTURES)) -> str:
    """The token the real server gave to the test user."""
    rec = next(r for r in load_recordings(fixtures_dir) if r.name == 'auth_token_ok')
    return json.loads(rec.body)['token']


def openapi_to_coreapi(schema: dict, url: str = '') -> dict:
    """Make a coreapi document (the legacy ``/docs`` form) from an OpenAPI 3 document."""
    verbs = {'post': 'create', 'put': 'update', 'patch': 'partial_update', 'delete': 'delete'}
    doc: dict = {'_type': 'document', '_meta': {'url': f'{url}/docs', 'title': 'Alyx'}}
    for path, item in schema.get('paths', {}).items():
        endpoint = path.strip('/').split('/', 1)[0]
        for verb, op in item.items():
            if verb == 'get':
                action = 'read' if '{' in path else 'list'
            elif verb in verbs:
                action = verbs[verb]
            else:
                continue
            fields = [{'name': p['name'], 'required': p.get('required', False),
                       'location': p.get('in', 'query'),
                       'schema': {'_type': p.get('schema', {}).get('type', 'string'),
                                  'title': '', 'description': p.get('description', '')}}
                      for p in op.get('parameters', [])]
            doc.setdefault(endpoint, {}).setdefault(action, {
                '_type': 'link', 'url': path, 'action': verb, 'fields': fields,
                'description': op.get('description', '')})
    return doc


class _QuietHandler(WSGIRequestHandler):
    def log(self, type, message, *args):  # noqa: A002 - werkzeug's signature
        pass


class AlyxTestServer:
    """An Alyx-like HTTP server on 127.0.0.1 answering from recorded responses.

    Parameters
    ----------
    fixtures_dir : str, os.PathLike
        The folder with ``index.json`` and the recorded bodies.
    files_dir : str, os.PathLike, optional
        A folder served as the data file server (``/<lab>/Subjects/...``); by default the
        recorded data files in ``tests/fixtures/alyx/files`` (if present).  False: none.
    page_size : int
        Records per page of list answers when the query has no ``limit`` (Alyx: 250).
    legacy_schema : bool
        Answer 404 at ``/api/schema`` and serve a coreapi document at ``/docs`` instead.
    database : alyx_synthetic.SyntheticAlyx, optional
        Generated records answering the sessions, datasets and insertions endpoints (instead
        of the recorded ones), and their data files.
    """

    username = USERNAME
    password = PASSWORD

    def __init__(self, fixtures_dir=FIXTURES, files_dir=None, page_size: int = 250,
                 legacy_schema: bool = False, database=None):
        self.fixtures_dir = str(fixtures_dir)
        if files_dir is None and (Path(fixtures_dir) / 'files').is_dir():
            files_dir = Path(fixtures_dir) / 'files'
        self.files_dir = Path(files_dir) if files_dir else None
        self.page_size = page_size
        self.legacy_schema = legacy_schema
        self.database = database
        self.requests: list[LoggedRequest] = []
        self.max_limit: int | None = None  # largest page size granted (None: any)
        self.throttled = 0  # requests answered 429 by `throttle`
        self._reorder: dict[str, str] = {}
        self._page_requests = 0
        self._throttle: tuple[float, float] | None = None
        self._recent: list[float] = []
        self._recorded = load_recordings(self.fixtures_dir)
        self._faults: list[_Fault] = []
        self._extra: dict[tuple, tuple[int, bytes, str, dict]] = {}
        self._records: dict[str, dict] = {}
        self._deleted: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server = None
        self._thread = None
        self.url = ''
        self._user_tokens = {USERNAME: recorded_token(self.fixtures_dir)}
        self._valid_tokens = {self._user_tokens[USERNAME]: USERNAME}
        schema = self._find('GET', '/api/schema', {})
        self._endpoints = {p.strip('/').split('/', 1)[0]
                           for p in json.loads(schema.body).get('paths', {})} if schema else set()

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> str:
        """Start serving in a background thread; return the server URL."""
        self._server = make_server('127.0.0.1', 0, self._app, threaded=True,
                                   request_handler=_QuietHandler)
        self.url = f'http://127.0.0.1:{self._server.server_port}'
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name='alyx-test-server')
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving (slow answers in progress are cut short)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> AlyxTestServer:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- test controls ---------------------------------------------------------------------
    @property
    def token(self) -> str:
        """The token currently given to the test user at login."""
        return self._user_tokens[USERNAME]

    def expire_tokens(self) -> None:
        """Invalidate every token; the next login gives the users new ones."""
        with self._lock:
            self._valid_tokens.clear()
            for user in self._user_tokens:
                self._user_tokens[user] = secrets.token_hex(20)

    def fail(self, path: str, status: int = 500, body: str | bytes | dict | None = None,
             content_type: str | None = None, times: int | None = 1,
             method: str | None = 'GET', headers: dict | None = None) -> None:
        """Answer the next `times` matching requests with an error (None: always).

        Parameters
        ----------
        path : str
            The path (with the query, to match only that exact query).
        status : int
            The status to answer.
        body : str, bytes or dict
            The body; a dict is sent as JSON.  Default: Django's HTML error page text.
        content_type : str, optional
            Default: JSON for a dict body, else HTML.
        times : int, optional
            How many requests fail.
        method : str, optional
            The verb to match (None: any).
        headers : dict, optional
            Extra response headers.
        """
        if isinstance(body, dict):
            body, content_type = json.dumps(body), content_type or 'application/json'
        if body is None:
            body = f'<h1>Server Error ({status})</h1>' if status >= 500 else f'<h1>{status}</h1>'
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._faults.append(_Fault(method, path, times, status=status, body=body,
                                       content_type=content_type or 'text/html; charset=utf-8',
                                       headers=headers or {}))

    def reorder_pages(self, path: str, mode: str = 'shuffle') -> None:
        """Make the pages of the list answers of `path` disagree with each other.

        Parameters
        ----------
        path : str
            The list path, e.g. '/sessions'.
        mode : {'shuffle', 'overlap', None}
            'shuffle': every page request sees the records in another order (seeded by the
            number of page requests made, so a test is repeatable), as an unordered PostgreSQL
            query read page by page: pages repeat some records and miss others.  'overlap':
            each page after the first starts one record early, so the last record is never
            sent.  None: pages agree again.
        """
        with self._lock:
            if mode is None:
                self._reorder.pop(path, None)
            else:
                self._reorder[path] = mode

    def throttle(self, per_second: float | None, retry_after: float = 1) -> None:
        """Answer 429 to requests beyond `per_second` in the last second (None: no limit).

        Like Django REST framework's throttling: the body says when to come back, and the
        ``Retry-After`` header gives `retry_after` seconds.  ``throttled`` counts them.
        """
        with self._lock:
            self._throttle = None if per_second is None else (per_second, retry_after)
            self._recent = []

    def delay(self, path: str, seconds: float, times: int | None = 1,
              method: str | None = 'GET') -> None:
        """Wait `seconds` before answering the next `times` matching requests."""
        with self._lock:
            self._faults.append(_Fault(method, path, times, delay=seconds))

    def add_response(self, method: str, path: str, body, status: int = 200,
                     content_type: str | None = None, headers: dict | None = None) -> None:
        """Answer every `method` request for `path` with `body` (no login needed).

        A query in `path` restricts the answer to that query (in any order or encoding);
        without one, every query of the path gets it.  A dict or list body is sent as JSON.
        """
        if isinstance(body, (dict, list)):
            body, content_type = json.dumps(body), content_type or 'application/json'
        if isinstance(body, str):
            body = body.encode()
        route, _, query = path.partition('?')
        key = (method.upper(), route, json.dumps(_norm_query(query), sort_keys=True)
               if query else None)
        self._extra[key] = (status, body, content_type or 'application/octet-stream',
                            headers or {})

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """The number of requests received, optionally only those with this verb and path."""
        return sum(1 for r in self.requests
                   if (method is None or r.method == method) and (path is None or r.path == path))

    def clear_log(self) -> None:
        """Forget the requests received so far."""
        self.requests.clear()

    # --- recorded data ---------------------------------------------------------------------
    def _rewrite(self, body: bytes, content_type: str) -> bytes:
        if not any(t in content_type for t in _TEXT_TYPES):
            return body
        for host in RECORDED_HOSTS:
            body = body.replace(host.encode(), self.url.encode())
        return body

    def _find(self, method: str, path: str, query: dict) -> Recorded | None:
        for rec in self._recorded:
            if rec.method == method and rec.path == path and rec.query == query:
                return rec
        return None

    def _json(self, rec: Recorded):
        return json.loads(self._rewrite(rec.body, rec.content_type))

    # --- WSGI ------------------------------------------------------------------------------
    def _app(self, environ, start_response):
        request = Request(environ)
        body = request.get_data(cache=True)
        query = request.query_string.decode()
        self.requests.append(LoggedRequest(request.method, request.path, query,
                                           dict(request.headers), body))
        response = self._handle(request, query)
        return response(environ, start_response)

    def _respond_json(self, data, status: int = 200) -> Response:
        return Response(json.dumps(data), status=status, content_type='application/json')

    def _throttled(self) -> Response | None:
        """A 429 answer when more than the allowed requests came in the last second."""
        import time

        with self._lock:
            if self._throttle is None:
                return None
            per_second, wait = self._throttle
            now = time.monotonic()
            self._recent = [t for t in self._recent if now - t < 1.0]
            if len(self._recent) < per_second:
                self._recent.append(now)
                return None
            self.throttled += 1
        seconds = max(1, round(wait))
        return Response(json.dumps({'detail': 'Request was throttled. Expected available in '
                                              f'{seconds} second{"s" * (seconds > 1)}.'}),
                        status=429, content_type='application/json',
                        headers={'Retry-After': f'{wait:g}'})

    def _handle(self, request: Request, query: str) -> Response:
        method, path = request.method, request.path
        throttled = self._throttled()
        if throttled is not None:
            return throttled
        with self._lock:
            fault = next((f for f in self._faults if f.matches(method, path, query)), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
        if fault is not None:
            if fault.delay:
                self._stop.wait(fault.delay)
            if fault.status is not None:
                return Response(fault.body, status=fault.status,
                                content_type=fault.content_type, headers=fault.headers)
        qdict = _norm_query(query)
        base = {k: v for k, v in qdict.items() if k not in ('limit', 'offset')}
        for key in ((method, path, json.dumps(qdict, sort_keys=True)),
                    (method, path, json.dumps(base, sort_keys=True) if base != qdict else None),
                    (method, path, None)):
            if key in self._extra:
                status, body, ctype, headers = self._extra[key]
                body = self._rewrite(body, ctype)
                if status == 200 and 'json' in ctype and key[2] != json.dumps(qdict,
                                                                              sort_keys=True):
                    page = self._paginate(path, qdict, json.loads(body))  # a complete list
                    if page is not None:
                        return page
                return Response(body, status=status, content_type=ctype, headers=headers)
        if self.database is not None and method in ('GET', 'HEAD'):
            file = self.database.file(path)
            if file is not None:
                return self._serve_file(request, file)
        if self.files_dir is not None and method in ('GET', 'HEAD'):
            file = self._data_file(path)
            if file is not None:
                return self._serve_file(request, file)
        if path == '/auth-token':
            return self._login(request)
        auth = request.headers.get('Authorization', '')
        if not auth.startswith('Token '):
            body = next(r for r in self._recorded if r.name == 'unauthenticated_sessions').body
            return Response(body, status=403, content_type='application/json')
        with self._lock:
            user = self._valid_tokens.get(auth[6:])
        if user is None:
            body = next(r for r in self._recorded if r.name == 'bad_token_sessions').body
            return Response(body, status=403, content_type='application/json')
        return self._rest(request, method, path, query)

    def _login(self, request: Request) -> Response:
        if request.method != 'POST':
            return self._respond_json({'detail': f'Method "{request.method}" not allowed.'},
                                      405)
        data = request.form.to_dict() or (request.get_json(silent=True) or {})
        missing = {k: ['This field is required.'] for k in ('username', 'password')
                   if not data.get(k)}
        if missing:
            return self._respond_json({**missing, 'status_code': 400}, 400)
        if data['username'] != USERNAME or data['password'] != PASSWORD:
            rec = next(r for r in self._recorded if r.name == 'auth_token_wrong_password')
            return Response(rec.body, status=400, content_type=rec.content_type)
        with self._lock:
            token = self._user_tokens[USERNAME]
            self._valid_tokens[token] = USERNAME
        return self._respond_json({'token': token})

    def _rest(self, request: Request, method: str, path: str, query: str) -> Response:
        qdict = _norm_query(query)
        if path == '/api/schema' and self.legacy_schema:
            return self._not_found_html(path)
        if path.rstrip('/') == '/docs':
            if not self.legacy_schema:
                return Response('<html><body>Alyx REST API</body></html>',
                                content_type='text/html; charset=utf-8')
            schema = self._json(self._find('GET', '/api/schema', {}))
            return Response(json.dumps(openapi_to_coreapi(schema, self.url)),
                            content_type='application/coreapi+json')
        if method == 'GET' and not path.endswith('/') and (
                any(r.path == path + '/' for r in self._recorded)):
            location = path + '/' + (f'?{query}' if query else '')
            return Response(b'', status=301, headers={'Location': location},
                            content_type='text/html; charset=utf-8')
        parts = [p for p in path.split('/') if p]
        if method == 'GET':
            if path in self._deleted:
                return self._not_found_record(parts)
            if path in self._records and not query:
                return self._respond_json(self._records[path])
            if self.database is not None:
                answer = self._database_answer(path, qdict)
                if answer is not None:
                    return answer
            page = self._page(path, qdict)
            if page is not None:
                return page
            rec = self._find('GET', path, qdict) or self._find(
                'GET', path, {k: v for k, v in qdict.items() if k not in ('limit', 'offset')})
            if rec is not None:
                return Response(self._rewrite(rec.body, rec.content_type), status=rec.status,
                                content_type=rec.content_type,
                                headers={'Location': rec.location} if rec.location else None)
            if parts and parts[0] in self._endpoints:
                if len(parts) == 2:
                    return self._not_found_record(parts)
                return Response(f'Not recorded: GET {path}?{query}', status=501,
                                content_type='text/plain')
            return self._not_found_html(path)
        if method in ('PATCH', 'PUT', 'DELETE') and len(parts) == 2:
            record = self._record(path)
            if record is None:
                return self._not_found_record(parts)
            if method == 'DELETE':
                with self._lock:
                    self._records.pop(path, None)
                    self._deleted.add(path)
                return Response(b'', status=204)
            data = self._request_data(request)
            if data is None:
                return self._respond_json({'detail': 'JSON parse error', 'status_code': 400},
                                          400)
            with self._lock:
                record = copy.deepcopy(record)
                record.update(data)
                self._records[path] = record
            return self._respond_json(record)
        if method == 'POST' and len(parts) == 1 and parts[0] in self._endpoints:
            rec = self._find('POST', path, {})
            if rec is not None and rec.status >= 400:
                return Response(self._rewrite(rec.body, rec.content_type), status=rec.status,
                                content_type=rec.content_type)
            data = self._request_data(request)
            if data is None:
                return self._respond_json({'detail': 'JSON parse error', 'status_code': 400},
                                          400)
            record_id = str(uuid.uuid4())
            record = {'id': record_id, 'url': f'{self.url}/{parts[0]}/{record_id}', **data}
            with self._lock:
                self._records[f'/{parts[0]}/{record_id}'] = record
            return self._respond_json(record, 201)
        if parts and parts[0] in self._endpoints:
            return Response(f'Not recorded: {method} {path}?{query}', status=501,
                            content_type='text/plain')
        return self._not_found_html(path)

    @staticmethod
    def _request_data(request: Request):
        if request.mimetype == 'application/json':
            return request.get_json(silent=True)
        form = request.form.to_dict()
        for name, file in request.files.items():
            form[name] = file.filename
        return form

    def _record(self, path: str) -> dict | None:
        """The current detail record at `path` (from the recordings or changed by tests)."""
        with self._lock:
            if path in self._deleted:
                return None
            if path not in self._records:
                rec = self._find('GET', path, {})
                if rec is None or rec.status != 200:
                    return None
                self._records[path] = self._json(rec)
            return self._records[path]

    def _page(self, path: str, query: dict) -> Response | None:
        """A page of a list answer computed from a recorded complete list, or None."""
        base = {k: v for k, v in query.items() if k not in ('limit', 'offset')}
        rec = self._find('GET', path, base)
        if rec is None or rec.status != 200 or 'json' not in rec.content_type:
            return None
        return self._paginate(path, query, self._json(rec))

    def _database_answer(self, path: str, query: dict) -> Response | None:
        """The answer of the generated database (`database`), or None if not its endpoint."""
        base = {k: v for k, v in query.items() if k not in ('limit', 'offset')}
        answer = self.database.answer(path, base)
        if answer is None:
            return None
        status, data = answer
        if status == 200 and isinstance(data, list):
            full = {'count': len(data), 'next': None, 'previous': None, 'results': data}
            return self._paginate(path, query, full, rewrite=True)
        if isinstance(data, str):
            return Response(data, status=status, content_type='text/plain')
        return Response(self._rewrite(json.dumps(data).encode(), 'json'), status=status,
                        content_type='application/json')

    def _paginate(self, path: str, query: dict, full, rewrite: bool = False) -> Response | None:
        """The page asked for by `query` (limit, offset) of a complete list answer, or None
        when `full` is not one (with `rewrite`, the recorded hosts in the records are replaced
        by this server's URL)."""
        base = {k: v for k, v in query.items() if k not in ('limit', 'offset')}
        if not (isinstance(full, dict) and set(full) == {'count', 'next', 'previous', 'results'}
                and full['count'] == len(full['results'])):
            return None
        try:
            limit = int(query['limit'][0]) if 'limit' in query else self.page_size
            offset = int(query['offset'][0]) if 'offset' in query else 0
        except ValueError:
            return None
        if limit <= 0:
            return None
        if self.max_limit:
            limit = min(limit, self.max_limit)
        count = full['count']
        records = full['results']
        with self._lock:
            mode = self._reorder.get(path)
            self._page_requests += 1
            seed = self._page_requests
        start = offset
        if mode == 'shuffle':
            import random

            records = list(records)
            random.Random(seed).shuffle(records)
        elif mode == 'overlap' and offset > 0:
            start = offset - 1
        paged = dict(base, limit=[str(limit)])

        def link(new_offset):
            q = dict(paged)
            if new_offset:
                q['offset'] = [str(new_offset)]
            return f'{self.url}{path}?{urlencode(sorted(q.items()), doseq=True)}'

        page = {
            'count': count,
            'next': link(offset + limit) if offset + limit < count else None,
            'previous': None if offset <= 0 else link(max(offset - limit, 0)),
            'results': records[start:start + limit],
        }
        if not rewrite:
            return self._respond_json(page)
        return Response(self._rewrite(json.dumps(page).encode(), 'json'),
                        content_type='application/json')

    def _not_found_record(self, parts: list) -> Response:
        if parts[0] in ('sessions', 'datasets', 'insertions', 'files') and not re.fullmatch(
                r'[0-9a-fA-F-]{36}', parts[1]):
            return self._not_found_html('/' + '/'.join(parts))
        model = _MODELS.get(parts[0], parts[0].rstrip('s').title().replace('-', ''))
        return self._respond_json(
            {'detail': f'No {model} matches the given query.', 'status_code': 404}, 404)

    @staticmethod
    def _not_found_html(path: str) -> Response:
        return Response(_HTML_404.format(path=path), status=404,
                        content_type='text/html; charset=utf-8')

    # --- data files ------------------------------------------------------------------------
    def _data_file(self, path: str) -> Path | None:
        parts = [p for p in path.split('/') if p]
        if '..' in parts or not parts:
            return None
        file = self.files_dir.joinpath(*parts)
        return file if file.is_file() else None

    @staticmethod
    def _serve_file(request: Request, file: Path) -> Response:
        data = file.read_bytes()
        size = len(data)
        match = re.fullmatch(r'bytes=(\d*)-(\d*)', request.headers.get('Range', ''))
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else size - 1
            else:
                start, end = max(size - int(match.group(2)), 0), size - 1
            if start >= size:
                return Response(b'', status=416, headers={'Content-Range': f'bytes */{size}'})
            end = min(end, size - 1)
            chunk = data[start:end + 1]
            return Response(chunk, status=206,
                            content_type='application/octet-stream',
                            headers={'Content-Range': f'bytes {start}-{end}/{size}',
                                     'Accept-Ranges': 'bytes'})
        return Response(data, content_type='application/octet-stream',
                        headers={'Accept-Ranges': 'bytes'})


def start_alyx_server(**kwargs) -> AlyxTestServer:
    """Start an `AlyxTestServer` (see its parameters); call ``stop()`` when done."""
    server = AlyxTestServer(**kwargs)
    server.start()
    return server
