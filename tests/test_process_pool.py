"""The local process pool of `map_sessions` (one/_lib/process_pool.py): real worker processes
(forkserver), sessions that crash their worker for real (``os._exit``), a state that cannot be
rebuilt in the workers, and an interrupt (SIGINT) of the parent in a child Python process."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from one.parallel import SessionError, map_sessions


def crash_or_count(one, eid, folder):
    """Sessions named 'crash*' kill their worker; the others leave a mark per run."""
    if eid.startswith('crash'):
        os._exit(3)  # as a segfault or an out-of-memory kill in native code would
    Path(folder, f'{eid}.{os.getpid()}.{time.monotonic_ns()}').touch()
    return eid.upper()


class Unloadable:
    """Pickles, but cannot be rebuilt: as a tables folder not mounted on a node."""

    def __reduce__(self):
        return _cannot_rebuild, ('/shared/snapshots/ephys',)


def _cannot_rebuild(folder):
    raise FileNotFoundError(f'no table file in {folder}')


def echo(one, eid):
    return eid


def runs(folder: Path) -> dict:
    out: dict = {}
    for path in folder.iterdir():
        eid = path.name.split('.')[0]
        out[eid] = out.get(eid, 0) + 1
    return out


@pytest.mark.parametrize('retries', [0, 1])
def test_a_dying_worker_costs_only_its_session(tmp_path, retries):
    import functools
    eids = ['crash1', 'crash2', 's0', 's1', 'crash3', 's2', 's3', 's4', 's5']
    fn = functools.partial(crash_or_count, folder=str(tmp_path))
    results = map_sessions(fn, eids, None, retries=retries, max_workers=2, progress=False)
    for eid, result in zip(eids, results):
        if eid.startswith('crash'):
            assert isinstance(result, SessionError), result
            assert (result.eid, result.type, result.attempts) == (eid, 'WorkerDied',
                                                                  retries + 1)
            assert 'exit code 3' in result.message
        else:
            assert result == eid.upper()
    # every healthy session ran exactly once: none was charged or run again for a neighbour
    assert runs(tmp_path) == {e: 1 for e in eids if not e.startswith('crash')}


def test_a_state_the_workers_cannot_rebuild_is_each_sessions_error():
    results = map_sessions(echo, ['a', 'b', 'c'], Unloadable(), max_workers=2, progress=False)
    assert [r.eid for r in results] == ['a', 'b', 'c']
    for result in results:
        assert isinstance(result, SessionError)
        assert (result.type, result.message) == ('FileNotFoundError',
                                                 'no table file in /shared/snapshots/ephys')
        assert '_cannot_rebuild' in result.traceback and 'unpickling' in result.traceback


def test_an_interrupt_stops_the_workers(tmp_path):
    """SIGINT to the parent only (as Jupyter's "interrupt kernel"): KeyboardInterrupt is
    raised while the sessions still sleep, and the worker processes are gone."""
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_process_pool import sleep_long
        from one.parallel import map_sessions
        if __name__ == '__main__':
            try:
                map_sessions(sleep_long, ['a', 'b', 'c', 'd'], {str(tmp_path)!r},
                             max_workers=2, progress=False)
            except KeyboardInterrupt:
                print('interrupted', flush=True)
    """)
    child = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    workers = []
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob('*.pid'))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [int(p.stem) for p in tmp_path.glob('*.pid')]
        assert len(workers) == 2, 'the sessions never started'
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)  # the sessions sleep 600 s
        assert out.strip() == 'interrupted', err
        assert [pid for pid in workers if _alive(pid)] == []
    finally:
        if child.poll() is None:
            child.kill()
        for pid in workers:  # whatever happened, no sleeping worker is left behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def sleep_long(folder, eid):
    Path(folder, f'{os.getpid()}.pid').touch()
    time.sleep(600)
