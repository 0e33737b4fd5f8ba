"""Tests for one._lib.files (atomic writes, md5 hashing) and one._lib.locks."""
import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from one._lib import files
from one._lib.locks import LockTimeout, file_lock


def _temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith('.tmp'))


# ------------------------------------------------------------------------------- atomic writes

def test_write_bytes_atomic_creates_and_replaces(tmp_path):
    target = tmp_path / 'data.bin'
    assert files.write_bytes_atomic(target, b'first') == target
    assert target.read_bytes() == b'first'
    files.write_bytes_atomic(target, b'second')
    assert target.read_bytes() == b'second'
    assert _temp_files(tmp_path) == []


def test_write_text_atomic_keeps_newlines_and_encoding(tmp_path):
    target = tmp_path / 'a.txt'
    files.write_text_atomic(target, 'é\r\nb\n')
    assert target.read_bytes() == 'é\r\nb\n'.encode()


def test_atomic_open_error_keeps_old_content_and_removes_temp(tmp_path):
    target = tmp_path / 'data.bin'
    target.write_bytes(b'old')
    with pytest.raises(RuntimeError, match='boom'), files.atomic_open(target) as f:
        f.write(b'partial new content')
        raise RuntimeError('boom')
    assert target.read_bytes() == b'old'
    assert _temp_files(tmp_path) == []


def test_atomic_path_temp_in_same_folder_and_hidden(tmp_path):
    target = tmp_path / 'table.pqt'
    with files.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith('.table.pqt.') and tmp.name.endswith('.tmp')
        assert not tmp.exists()
        tmp.write_bytes(b'x')
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_bytes() == b'x'


def test_atomic_path_block_that_writes_nothing_fails(tmp_path):
    target = tmp_path / 'x'
    with pytest.raises(FileNotFoundError), files.atomic_path(target):
        pass
    assert not target.exists()


def test_atomic_open_rejects_read_modes(tmp_path):
    with pytest.raises(ValueError, match='modes'), files.atomic_open(tmp_path / 'x', 'r'):
        pass


def test_remove_temp_files_only_removes_matching_temps(tmp_path):
    keep = [tmp_path / 'sessions.pqt', tmp_path / '.other.pqt.aaaaaaaaaaaa.tmp',
            tmp_path / '.sessions.pqt.notatempname.tmp']
    for p in keep:
        p.write_bytes(b'1')
    stale = files.temp_name(tmp_path / 'sessions.pqt')
    stale.write_bytes(b'partial')
    removed = files.remove_temp_files(tmp_path, 'sessions.pqt')
    assert removed == [stale]
    assert all(p.exists() for p in keep)


def test_killed_writer_leaves_old_file_intact(tmp_path):
    """A process killed in the middle of an atomic write leaves the previous file whole."""
    target = tmp_path / 'big.bin'
    target.write_bytes(b'old')
    code = textwrap.dedent(f"""
        import sys
        from one._lib import files
        with files.atomic_open({str(target)!r}) as f:
            f.write(b'x' * 1000)
            f.flush()
            print('writing', flush=True)
            sys.stdin.readline()  # block mid-write until killed
    """)
    proc = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'writing'
        assert len(_temp_files(tmp_path)) == 1  # the kill lands mid-write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert target.read_bytes() == b'old'
    assert len(files.remove_temp_files(tmp_path, 'big.bin')) == 1


# ------------------------------------------------------------------------------------ hashing

@pytest.mark.parametrize('size', [0, 1, files.BUFFER_SIZE - 1, files.BUFFER_SIZE,
                                  3 * files.BUFFER_SIZE + 17])
def test_md5_matches_hashlib(tmp_path, size):
    data = os.urandom(size)
    f = tmp_path / 'f.bin'
    f.write_bytes(data)
    assert files.md5(f) == hashlib.md5(data).hexdigest()


def test_md5_known_value(tmp_path):
    f = tmp_path / 'abc'
    f.write_bytes(b'abc')
    assert files.md5(str(f)) == '900150983cd24fb0d6963f7d28e17f72'


def test_md5_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        files.md5(tmp_path / 'missing')


def test_hash_files_keeps_order(tmp_path):
    paths, expected = [], []
    for i, size in enumerate([10, 5 * files.BUFFER_SIZE, 0, 300, 2 * files.BUFFER_SIZE + 1]):
        data = os.urandom(size)
        p = tmp_path / f'f{i}'
        p.write_bytes(data)
        paths.append(p)
        expected.append(hashlib.md5(data).hexdigest())
    paths = paths * 200  # many batches
    assert files.hash_files(paths, workers=3) == expected * 200
    assert files.hash_files(paths[:5], workers=1) == expected
    assert files.hash_files([]) == []


def test_hash_files_with_sizes_and_progress(tmp_path, capsys):
    p = tmp_path / 'a'
    p.write_bytes(b'abc')
    assert files.hash_files([p, p], sizes=[3, 3], progress=True) == \
        ['900150983cd24fb0d6963f7d28e17f72'] * 2
    assert 'Hashing files' in capsys.readouterr().err
    files.hash_files([p], progress=None)  # stderr captured: not a terminal, so no bar
    assert capsys.readouterr().err == ''
    with pytest.raises(ValueError, match='sizes'):
        files.hash_files([p], sizes=[1, 2])


def test_hash_files_error_propagates(tmp_path):
    good = tmp_path / 'good'
    good.write_bytes(b'1')
    with pytest.raises(FileNotFoundError):
        files.hash_files([good] * 300 + [tmp_path / 'missing'], sizes=[1] * 301, workers=2)


# -------------------------------------------------------------------------------------- locks

def _hold_lock(path, started, release):
    with file_lock(path):
        started.set()
        release.wait(60)


def test_lock_excludes_another_process(tmp_path):
    lock_path = tmp_path / '.ONE.lock'
    ctx = multiprocessing.get_context('spawn')
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(lock_path, started, release))
    proc.start()
    try:
        assert started.wait(60)
        with pytest.raises(LockTimeout, match='.ONE.lock'), file_lock(lock_path, timeout=0.2):
            pass
        assert isinstance(LockTimeout('x'), TimeoutError)
    finally:
        release.set()
        proc.join(60)
    with file_lock(lock_path, timeout=30) as p:  # released by its owner
        assert p == lock_path


def test_lock_of_killed_owner_does_not_block(tmp_path):
    lock_path = tmp_path / '.ONE.lock'
    ctx = multiprocessing.get_context('spawn')
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(lock_path, started, release))
    proc.start()
    assert started.wait(60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    assert lock_path.exists()  # the file stays; the OS lock is gone
    with file_lock(lock_path, timeout=30):
        pass


def test_lock_excludes_threads_of_one_process(tmp_path):
    import threading
    lock_path = tmp_path / '.lock'
    inside, errors = [], []

    def work():
        for _ in range(20):
            with file_lock(lock_path, timeout=60):
                inside.append(1)
                if len(inside) != 1:
                    errors.append(len(inside))
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
