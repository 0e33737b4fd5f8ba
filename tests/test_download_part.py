"""Removing a download's partial file from outside the download (``one cache prune``): only
under the file's lock, never while a download holds it; on real files and real locks."""
import os
import threading
import time

import pytest

from one._download import part as part_module
from one._download.part import STALE_AFTER, Part, is_idle, is_partial_name, remove_if_idle

pytestmark = pytest.mark.skipif(part_module.fcntl is None, reason='POSIX file locks')


def test_a_partial_file_a_download_holds_is_kept(tmp_path):
    dest = tmp_path / 'spikes.times.npy'
    locked, go = threading.Event(), threading.Event()

    def download():
        part = Part(dest)  # takes the lock, as the engine does
        part.write(b'half')
        locked.set()
        go.wait(timeout=30)
        part.write(b'the whole file')
        part.commit(dest)
        part.close(keep=False)

    thread = threading.Thread(target=download)
    thread.start()
    assert locked.wait(timeout=30)
    partial = tmp_path / '.spikes.times.npy.part'
    assert is_partial_name(partial.name) and partial.exists()
    assert not is_idle(partial)
    assert not remove_if_idle(partial) and partial.exists()
    go.set()
    thread.join(timeout=30)
    assert dest.read_bytes() == b'the whole file'  # the download committed its file


def test_the_unlink_happens_under_the_lock(tmp_path):
    """The file is unlinked while the remover holds its lock, so a download that resumes it
    waits, then finds the name gone and starts a new file (part.Part._lock)."""
    partial = tmp_path / '.x.npy.part'
    partial.write_bytes(b'left by a crash')
    seen = {}

    def unlink_checking_the_lock(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            part_module.fcntl.flock(fd, part_module.fcntl.LOCK_EX | part_module.fcntl.LOCK_NB)
        except BlockingIOError:
            seen['locked'] = True
        finally:
            os.close(fd)
        os.unlink(path)
        return True

    assert part_module._if_idle(partial, STALE_AFTER, unlink_checking_the_lock)
    assert seen == {'locked': True} and not partial.exists()
    # A download of the same file afterwards starts from nothing
    part = Part(tmp_path / 'x.npy')
    try:
        assert part.size() == 0
    finally:
        part.close(keep=False)


def test_idle_partial_files_are_removed(tmp_path):
    partial = tmp_path / '.x.npy.part'
    partial.write_bytes(b'abandoned')
    assert is_idle(partial) and partial.exists()  # probing removes nothing
    assert remove_if_idle(partial) and not partial.exists()
    assert not remove_if_idle(partial)  # already gone
    target = tmp_path / 'elsewhere.npy'
    target.write_bytes(b'data')
    link = tmp_path / '.y.npy.part'
    link.symlink_to(target)
    assert not remove_if_idle(link) and target.exists()  # a link is not a download's file


def test_private_partial_files_are_removed_only_when_stale(tmp_path):
    """Where no lock can be taken the engine writes a private name it never resumes
    (``.<name>.<8 hex>.part``): it is removed once it has not been written for hours."""
    private = tmp_path / '.x.npy.0123abcd.part'
    private.write_bytes(b'being written without a lock')
    assert is_partial_name(private.name)
    assert not remove_if_idle(private) and private.exists()
    old = time.time() - STALE_AFTER - 60
    os.utime(private, (old, old))
    assert remove_if_idle(private) and not private.exists()
