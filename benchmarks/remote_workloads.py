"""The remote workloads of `bench_remote.py`, run in a fresh process by any ONE implementation.

Only the public API of ONE is used (``one.api.ONE`` and its methods), so the same script runs
with one-next and, as a black box, with ONE-api in its own virtual environment.  It connects to
the Alyx server (through the latency proxy), runs one workload, and prints one JSON line: the
wall time of the workload (after the instance is made), the proxy's request counts for it, and
an md5 digest of everything loaded (the arrays' dtype, shape and bytes, in order), so that the
answers of two implementations can be compared.

Workloads:

``script4``
    A typical remote script: ``search(subject=...)`` then, for 4 sessions, ``list_datasets``,
    ``load_object`` of 'trials' and 'wheel', ``eid2pid`` and ``load_object`` of 'spikes' for
    each probe collection.
``loop``
    ``load_object(eid, 'trials')`` for each session of the list.
``prefetch``
    ``prefetch(eids, 'trials')`` then the same loop (one-next only).

Usage::

    python remote_workloads.py WORKLOAD --url URL --cache-dir DIR [--eids FILE] [--subject S]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.request
import warnings

import numpy as np

USERNAME = 'test_user'
PASSWORD = 'TapetesBloc18'


def _proxy(url: str, action: str) -> dict:
    method = 'POST' if action == 'reset' else 'GET'
    req = urllib.request.Request(f'{url}/_proxy/{action}', method=method, data=b'' if
                                 method == 'POST' else None)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class Digest:
    """md5 of loaded objects: names, dtypes, shapes and bytes, in order."""

    def __init__(self):
        self.md5 = hashlib.md5()
        self.n_arrays = 0

    def add(self, name: str, value) -> None:
        self.md5.update(name.encode())
        if isinstance(value, dict):
            for key in sorted(value):
                self.add(f'{name}.{key}', value[key])
            return
        if hasattr(value, 'to_numpy') and not isinstance(value, np.ndarray):  # tables
            for column in value.columns:
                self.add(f'{name}.{column}', value[column].to_numpy())
            return
        array = np.ascontiguousarray(np.asarray(value))
        self.md5.update(f'{array.dtype.str}{array.shape}'.encode())
        self.md5.update(array.tobytes() if array.dtype != object else repr(array).encode())
        self.n_arrays += 1


def script4(one, digest: Digest, subject: str) -> None:
    eids = one.search(subject=subject)
    for eid in list(eids)[:4]:
        digest.add('datasets', np.array(sorted(one.list_datasets(eid)), dtype=str))
        digest.add('trials', dict(one.load_object(eid, 'trials')))
        digest.add('wheel', dict(one.load_object(eid, 'wheel')))
        _, labels = one.eid2pid(eid)
        for label in labels or []:  # ONE-api 3.6.1 gives None for a session without probes
            digest.add(f'spikes/{label}',
                       dict(one.load_object(eid, 'spikes', collection=f'alf/{label}')))


def loop(one, digest: Digest, eids: list) -> None:
    for eid in eids:
        digest.add('trials', dict(one.load_object(eid, 'trials')))


def prefetch(one, digest: Digest, eids: list) -> None:
    one.prefetch(eids, 'trials')
    loop(one, digest, eids)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('workload', choices=('script4', 'loop', 'prefetch'))
    parser.add_argument('--url', required=True, help='the (proxied) Alyx URL')
    parser.add_argument('--cache-dir', required=True)
    parser.add_argument('--eids', help='JSON file with the session ids (loop, prefetch)')
    parser.add_argument('--subject', default='SYN-001', help='the subject of script4')
    args = parser.parse_args(argv)
    warnings.simplefilter('ignore')
    import one.params
    from one.api import ONE

    # The data files are served by the same (proxied) server
    one.params.setup(client=args.url, silent=True)
    par = one.params.get(client=args.url, silent=True)
    one.params.save(par.set('HTTP_DATA_SERVER', args.url), args.url)
    one = ONE(base_url=args.url, username=USERNAME, password=PASSWORD,
              cache_dir=args.cache_dir, silent=True, mode='remote')
    with open(args.eids or os.devnull) as f:
        eids = json.loads(f.read() or "[]")
    digest = Digest()
    _proxy(args.url, 'reset')
    start = time.perf_counter()
    if args.workload == 'script4':
        script4(one, digest, args.subject)
    elif args.workload == 'loop':
        loop(one, digest, eids)
    else:
        prefetch(one, digest, eids)
    wall = time.perf_counter() - start
    stats = _proxy(args.url, 'stats')
    import one as one_module
    print(json.dumps({'wall': wall, 'stats': stats, 'digest': digest.md5.hexdigest(),
                      'n_arrays': digest.n_arrays, 'one_version': one_module.__version__,
                      'one_file': one_module.__file__, 'pid': os.getpid(),
                      'load_average': os.getloadavg()[0]}))
    sys.stdout.flush()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
