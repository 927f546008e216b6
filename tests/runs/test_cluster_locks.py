"""runs/engine/cluster_locks.py: the locks django-q2's cluster shares between its processes are released when
their holder is SIGKILLed, and still exclude other processes and threads while it lives."""

import multiprocessing
import os
import signal
import threading
import time

import pytest

from runs.engine.cluster_locks import ProcessLock, install, process_value

fork = multiprocessing.get_context("fork")


def _hold(lock, held, release):
    lock.acquire()
    held.set()
    release.wait(60)
    lock.release()


def _holder(lock):
    """A forked process holding `lock` until told; returns (process, release event)."""
    held, release = fork.Event(), fork.Event()
    process = fork.Process(target=_hold, args=(lock, held, release), daemon=True)
    process.start()
    assert held.wait(30)
    return process, release


def test_a_lock_held_by_a_sigkilled_process_is_free():
    lock = ProcessLock()
    process, _release = _holder(lock)
    assert not lock.acquire(block=False)
    assert not lock.acquire(timeout=0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    assert lock.acquire(timeout=10)
    lock.release()


def test_a_living_holder_excludes_the_others_until_it_releases():
    lock = ProcessLock()
    process, release = _holder(lock)
    assert not lock.acquire(timeout=0.3)
    release.set()
    assert lock.acquire(timeout=10)
    process.join(10)
    lock.release()


def test_threads_of_one_process_exclude_each_other():
    lock = ProcessLock()
    inside, most = [], []

    def work():
        for _ in range(200):
            with lock:
                inside.append(1)
                most.append(len(inside))
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(most) == 1 and len(most) == 800


def test_a_reentrant_lock_guards_a_shared_value_across_processes():
    value = process_value("i", 0)
    with value.get_lock():  # django-q2's worker sets its timer while holding the timer's lock
        value.value = 5
        assert value.value == 5

    def add():
        for _ in range(500):
            with value.get_lock():
                value.value += 1

    processes = [fork.Process(target=add) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    assert value.value == 5 + 1500


def test_a_timeout_is_honoured_and_a_released_lock_cannot_be_released_again():
    lock = ProcessLock()
    process, release = _holder(lock)
    started = time.monotonic()
    assert not lock.acquire(timeout=0.5)
    assert 0.4 < time.monotonic() - started < 5
    release.set()
    process.join(10)
    with pytest.raises(ValueError):
        lock.release()


def test_install_makes_the_sentinel_build_crash_safe_queues_and_timers():
    from django_q import cluster

    install()
    queue = cluster.Queue()
    timer = cluster.Value("f", -1)
    assert isinstance(queue._rlock, ProcessLock) and isinstance(queue._wlock, ProcessLock)
    assert isinstance(timer.get_lock(), ProcessLock)
    queue.put({"n": 1})
    assert queue.get(timeout=10) == {"n": 1} and queue.qsize() == 0
    queue.close()
    queue.join_thread()
