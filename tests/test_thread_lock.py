"""Tests of one._lib.thread_lock: a re-entrant lock whose `ahead()` goes before other threads."""
import pickle
import threading
import time

from one._lib.thread_lock import PriorityRLock


def _wait_until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.001)


def test_reentrant_and_pickled_as_a_new_free_lock():
    lock = PriorityRLock()
    with lock, lock, lock.ahead(), lock:
        copy = pickle.loads(pickle.dumps(lock))
        got = []
        thread = threading.Thread(target=lambda: got.append(copy._lock.acquire(timeout=5)))
        thread.start()
        thread.join()
        assert got == [True]  # the copy is not held
    assert lock._lock.acquire(blocking=False)  # released as often as taken
    lock._lock.release()


def test_ahead_is_served_before_threads_not_holding_the_lock():
    """The holder releases the lock and asks for it again at once (as a thread querying in a
    loop does): a plain lock gives it back to the holder, while `ahead` waits; here `ahead`
    goes first, and so it does before threads arriving meanwhile."""
    lock = PriorityRLock()
    order, a_in, release_a = [], threading.Event(), threading.Event()

    def holder():
        with lock:
            a_in.set()
            release_a.wait(10)
            with lock:  # the holder enters again while a thread waits ahead: no deadlock
                order.append('A nested')
        with lock:  # at once, without giving up the GIL in between
            order.append('A again')

    def ahead():
        with lock.ahead():
            order.append('ahead')

    def other():
        with lock:
            order.append('other')

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    assert a_in.wait(10)
    threads.append(threading.Thread(target=ahead))
    threads[1].start()
    _wait_until(lambda: lock._waiting == 1)
    for _ in range(2):  # threads arriving while `ahead` waits
        threads.append(threading.Thread(target=other))
        threads[-1].start()
    time.sleep(0.05)
    release_a.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert order[:2] == ['A nested', 'ahead']
    assert sorted(order[2:]) == ['A again', 'other', 'other']


def test_a_loop_of_queries_does_not_keep_ahead_waiting():
    """A thread taking the lock again and again lets `ahead()` in at its next turn."""
    lock = PriorityRLock()
    stop, turns = threading.Event(), []

    def loop():
        while not stop.is_set():
            with lock:
                turns.append(1)
                sum(range(2000))  # work while holding the lock

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        _wait_until(lambda: len(turns) > 10)
        for _ in range(20):
            before = len(turns)
            with lock.ahead():
                served_after = len(turns) - before
            assert served_after <= 1  # at most the turn that held the lock when asked
    finally:
        stop.set()
        thread.join(10)
