"""What each download thread owns: a read buffer and HTTP connections kept between batches."""
from __future__ import annotations

import os
import threading
from typing import Any

import requests
import urllib3

from one._download.defaults import CHUNK_SIZE


class Connections:
    """The HTTP connections of one download thread, kept between files and between batches.

    Plain HTTP(S) requests go straight through urllib3: one connection pool per origin (and
    certificate setting), of one connection since the thread makes one request at a time.  A
    `requests.Session` (created when first needed) serves the requests that need what only
    requests does: proxies, client certificates, authentication objects, credentials in the URL.
    """

    def __init__(self):
        self._pools: dict[tuple[str, Any], urllib3.HTTPConnectionPool] = {}
        self._session: requests.Session | None = None

    def pool(self, origin: str, verify) -> urllib3.HTTPConnectionPool:
        """The urllib3 pool of `origin` (``scheme://host[:port]``)."""
        key = (origin, verify)
        pool = self._pools.get(key)
        if pool is None:
            kwargs: dict[str, Any] = {'maxsize': 1, 'block': False, 'retries': False}
            if origin[:6].lower() == 'https:':
                if verify is False:
                    kwargs['cert_reqs'] = 'CERT_NONE'
                else:  # True: requests' own bundle (certifi), else a file or folder
                    ca = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify in (True, None) \
                        else os.fspath(verify)
                    kwargs['cert_reqs'] = 'CERT_REQUIRED'
                    kwargs['ca_cert_dir' if os.path.isdir(ca) else 'ca_certs'] = ca
            pool = self._pools[key] = urllib3.connection_from_url(origin, **kwargs)
        return pool

    @property
    def session(self) -> requests.Session:
        """A requests session (for the requests the urllib3 pools don't serve)."""
        if self._session is None:
            session = requests.Session()
            # The environment (proxies, CA bundle, .netrc) is read once per host by the engine:
            # requests would otherwise scan os.environ on every request
            session.trust_env = False
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4,
                                                    max_retries=0)
            session.mount('http://', adapter)
            session.mount('https://', adapter)
            self._session = session
        return self._session

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._session is not None:
            self._session.close()
            self._session = None


class ConnectionCache:
    """Idle `Connections` kept between batches, so that connections are reused."""

    def __init__(self, maxsize: int = 32):  # as many as the streams of a batch (streams.py)
        self._idle: list[Connections] = []
        self._lock = threading.Lock()
        self.maxsize = maxsize

    def get(self) -> Connections:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Connections()

    def put(self, connections: Connections) -> None:
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(connections)
                return
        connections.close()

    def forget(self) -> None:
        """Drop the idle connections without closing them (a forked child must not use them)."""
        self._idle = []
        self._lock = threading.Lock()


_CONNECTIONS = ConnectionCache()
if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_CONNECTIONS.forget)


class Worker:
    """What one download thread owns: a read buffer and (lazily) its HTTP connections."""

    def __init__(self):
        self.buffer = memoryview(bytearray(CHUNK_SIZE))
        self._connections: Connections | None = None

    @property
    def connections(self) -> Connections:
        if self._connections is None:
            self._connections = _CONNECTIONS.get()
        return self._connections

    def close(self) -> None:
        if self._connections is not None:
            _CONNECTIONS.put(self._connections)
            self._connections = None
