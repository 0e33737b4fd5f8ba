"""What a REST server offers: endpoints, their actions, URLs and fields, read from its schema.

Alyx publishes an OpenAPI 3 document at ``/api/schema`` (`RestSchemeOpenApi`); older servers
publish a coreapi document at ``/docs`` (`RestSchemeCoreApi`).  Both are turned into the same
index, ``{endpoint: {action: {'url', 'method', 'description', 'fields'}}}``, so the public
methods behave identically.  A scheme is also a read-only mapping of that index, which supports
the idiom ``alyx.rest_schemes['sessions']['list']['fields']``.

Actions follow Django REST framework's names: ``list`` and ``read`` (GET without and with an id),
``create`` (POST), ``update`` (PUT), ``partial_update`` (PATCH) and ``delete`` (DELETE).
"""
from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ['RestScheme', 'RestSchemeOpenApi', 'RestSchemeCoreApi', 'validate_endpoint_action',
           'ACTIONS']

ACTIONS = ('list', 'read', 'create', 'update', 'partial_update', 'delete')
"""The REST actions, in display order."""

_EXCLUDED_ENDPOINTS = frozenset({'_type', '_meta', '', 'auth-token', 'api'})
_OPENAPI_VERBS = {'post': 'create', 'put': 'update', 'patch': 'partial_update',
                  'delete': 'delete'}
_HTTP_METHOD = {'list': 'GET', 'read': 'GET', 'create': 'POST', 'update': 'PUT',
                'partial_update': 'PATCH', 'delete': 'DELETE'}


def validate_endpoint_action(func: Callable) -> Callable:
    """Decorate a `RestScheme` method ``f(self, endpoint, action=None, ...)``.

    When the endpoint does not exist, or the action (if given) does not exist for it, the
    method is not called: a message saying so (with the valid choices) is printed and None is
    returned.

    Parameters
    ----------
    func : callable
        The method to guard.

    Returns
    -------
    callable
        The guarded method.
    """
    @functools.wraps(func)
    def wrapper(self, endpoint, *args, **kwargs):
        if endpoint not in self._index:
            print(f'Endpoint "{endpoint}" does not exist')
            return None
        action = args[0] if args else kwargs.get('action')
        if action is not None and action not in self._index[endpoint]:
            available = ', '.join(self._index[endpoint])
            print(f'Endpoint "{endpoint}" does not have action "{action}": '
                  f'available actions: {available}')
            return None
        return func(self, endpoint, *args, **kwargs)
    return wrapper


class RestScheme(Mapping):
    """The endpoints, actions and fields of a REST API (base class).

    Subclasses fill ``self._index`` from their document format.

    Parameters
    ----------
    rest_scheme : dict
        The schema document as returned by the server.
    """

    def __init__(self, rest_scheme: dict):
        self._rest_scheme = rest_scheme
        self._index: dict[str, dict[str, dict]] = {}
        self._build()
        # actions in a stable, conventional order
        for endpoint, actions in self._index.items():
            self._index[endpoint] = {a: actions[a] for a in sorted(actions, key=_action_order)}

    def _build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- Mapping ------------------------------------------------------------------------
    def __getitem__(self, endpoint: str) -> dict:
        return self._index[endpoint]

    def __iter__(self) -> Iterator[str]:
        return iter(self.endpoints)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f'<{type(self).__name__}: {len(self)} endpoints>'

    # --- queries ------------------------------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        """The endpoint names, sorted."""
        return sorted(self._index)

    @validate_endpoint_action
    def actions(self, endpoint: str) -> list[str]:
        """The actions of an endpoint (e.g. ``['list', 'read', 'create']``), or None."""
        return list(self._index[endpoint])

    @validate_endpoint_action
    def url(self, endpoint: str, action: str) -> str:
        """The URL template of an action, e.g. ``'/sessions/{id}'``, or None."""
        return self._index[endpoint][action]['url']

    @validate_endpoint_action
    def fields(self, endpoint: str, action: str) -> list[dict]:
        """The fields of an action: query parameters, then request-body properties.

        Each field is a dict with at least ``name``, plus ``required``, ``location``
        ('query', 'path' or 'body'), ``type`` and ``description``.
        """
        return self._index[endpoint][action]['fields']

    @validate_endpoint_action
    def field_names(self, endpoint: str, action: str) -> list[str]:
        """The names of the fields of an action, or None."""
        return [f['name'] for f in self._index[endpoint][action]['fields']]

    @validate_endpoint_action
    def print_endpoint_info(self, endpoint: str, action: str | None = None) -> None:
        """Print the URL, description and fields of an endpoint's actions (or of one)."""
        actions = [action] if action else list(self._index[endpoint])
        for name in actions:
            info = self._index[endpoint][name]
            print(f'{endpoint} / {name}: {info["method"]} {info["url"]}')
            description = (info.get('description') or '').strip()
            if description:
                print(textwrap.indent(description, '    '))
            for field in info['fields']:
                flags = ', '.join(filter(None, (
                    field.get('location'), field.get('type'),
                    'required' if field.get('required') else '')))
                line = f'    {field["name"]} ({flags})'
                if field.get('description'):
                    line += f': {field["description"]}'
                print(line)


def _action_order(action: str) -> int:
    return ACTIONS.index(action) if action in ACTIONS else len(ACTIONS)


def _endpoint_of(path: str) -> str:
    """The endpoint of a URL path: its first segment."""
    return path.strip('/').split('/', 1)[0].split('?', 1)[0]


class RestSchemeOpenApi(RestScheme):
    """A REST scheme read from an OpenAPI 3 document (Alyx's ``/api/schema``)."""

    def _resolve(self, obj: Any, depth: int = 0) -> Any:
        """Follow a local ``$ref`` (``#/components/...``)."""
        while isinstance(obj, dict) and '$ref' in obj and depth < 20:
            ref = obj['$ref']
            if not ref.startswith('#/'):
                return {}
            target: Any = self._rest_scheme
            for part in ref[2:].split('/'):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            obj = target
            depth += 1
        return obj

    def _schema_properties(self, schema: dict) -> tuple[dict, set]:
        """The properties and required names of a (possibly composed) object schema."""
        schema = self._resolve(schema)
        props: dict = {}
        required = set(schema.get('required', []))
        for part in schema.get('allOf', []):
            sub_props, sub_req = self._schema_properties(part)
            props.update(sub_props)
            required |= sub_req
        props.update(schema.get('properties', {}))
        return props, required

    def _parameter_fields(self, parameters: list) -> list[dict]:
        fields = []
        for param in parameters:
            param = self._resolve(param)
            if not isinstance(param, dict) or 'name' not in param:
                continue
            schema = self._resolve(param.get('schema', {}))
            fields.append({
                'name': param['name'],
                'required': bool(param.get('required', False)),
                'location': param.get('in', 'query'),
                'type': schema.get('type', ''),
                'description': param.get('description', '') or schema.get('description', ''),
                'schema': schema,
            })
        return fields

    def _body_fields(self, operation: dict) -> list[dict]:
        content = self._resolve(operation.get('requestBody', {})).get('content', {})
        media = content.get('application/json') or next(iter(content.values()), None)
        if not media:
            return []
        props, required = self._schema_properties(media.get('schema', {}))
        fields = []
        for name, prop in props.items():
            prop = self._resolve(prop)
            fields.append({
                'name': name,
                'required': name in required,
                'location': 'body',
                'type': prop.get('type', ''),
                'description': prop.get('description', ''),
                'read_only': bool(prop.get('readOnly', False)),
                'schema': prop,
            })
        return fields

    def _build(self) -> None:
        for path, item in self._rest_scheme.get('paths', {}).items():
            endpoint = _endpoint_of(path)
            if endpoint in _EXCLUDED_ENDPOINTS or not isinstance(item, dict):
                continue
            common = item.get('parameters', [])
            for verb, operation in item.items():
                verb = verb.lower()
                if verb == 'get':
                    action = 'read' if '{' in path else 'list'
                elif verb in _OPENAPI_VERBS:
                    action = _OPENAPI_VERBS[verb]
                else:
                    continue
                actions = self._index.setdefault(endpoint, {})
                if action in actions:  # keep the first path that offers this action
                    continue
                params = {**{p.get('name'): p for p in map(self._resolve, common)},
                          **{p.get('name'): p for p in
                             map(self._resolve, operation.get('parameters', []))}}
                actions[action] = {
                    'url': path,
                    'method': verb.upper(),
                    'description': operation.get('description', '') or
                    operation.get('summary', ''),
                    'fields': self._parameter_fields(list(params.values())) +
                    self._body_fields(operation),
                }


class RestSchemeCoreApi(RestScheme):
    """A REST scheme read from a coreapi document (the ``/docs`` page of older Alyx)."""

    def _build(self) -> None:
        for endpoint, links in self._rest_scheme.items():
            if endpoint in _EXCLUDED_ENDPOINTS or not isinstance(links, dict):
                continue
            for action, link in links.items():
                if not isinstance(link, dict) or 'url' not in link:
                    continue
                action = action.replace('-', '_')
                fields = []
                for field in link.get('fields', []):
                    schema = field.get('schema', {}) or {}
                    fields.append({
                        'name': field['name'],
                        'required': bool(field.get('required', False)),
                        'location': field.get('location', 'query'),
                        'type': str(schema.get('_type', '')),
                        'description': schema.get('description', ''),
                        'schema': schema,
                    })
                self._index.setdefault(endpoint, {})[action] = {
                    'url': link['url'],
                    'method': str(link.get('action', _HTTP_METHOD.get(action, 'get'))).upper(),
                    'description': link.get('description', ''),
                    'fields': fields,
                }
