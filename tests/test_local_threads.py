"""llama.cpp's thread count from the load (aikit/local/_threads.py), without a model."""

from __future__ import annotations

import threading
import time

from aikit.local import _threads


def test_threads_are_the_cores_other_processes_leave_free() -> None:
    assert [_threads.threads_for(others, 2) for others in (0, 0.4, 0.7, 0.8, 2, 5)] == [
        2,
        2,
        2,
        1,
        1,
        1,
    ]
    assert _threads.threads_for(1, 8) == 7 and _threads.threads_for(0, 1) == 1


def test_the_watch_follows_what_it_samples_while_the_model_decodes() -> None:
    busy = threading.Event()  # the machine turns busy when the test says so, not on a clock
    watch = _threads.LoadWatch(2, interval_s=0.001, sample=lambda: 3 if busy.is_set() else 0)
    assert watch.enabled
    with watch.decoding():  # a decode call that runs while the machine turns busy
        time.sleep(0.05)  # quiet samples taken meanwhile (any number) leave both cores free
        assert watch.threads() == 2 and watch.others == 0
        busy.set()
        end = time.monotonic() + 60
        while watch.threads() != 1:  # waits for the state, no timing assumed
            assert time.monotonic() < end, watch.others
            time.sleep(0.01)
    assert 0.5 <= watch.others <= 3


def test_what_runs_while_the_model_is_idle_does_not_count() -> None:
    # a client's own work between its requests (here: 3 threads, always) holds no core the
    # model wanted; the watch samples only within HOLD_S of a decode call
    taken = threading.Semaphore(0)

    def sample() -> int:
        taken.release()
        return 3

    watch = _threads.LoadWatch(2, interval_s=0.001, sample=sample)
    assert taken.acquire(timeout=5)  # the one sample that tells /proc is readable
    time.sleep(0.2)
    assert not taken.acquire(blocking=False) and watch.others == 0 and watch.threads() == 2
    with watch.decoding():
        assert taken.acquire(timeout=60)  # sampling resumes with the decode call
        end = time.monotonic() + 60
        while watch.others == 0:
            assert time.monotonic() < end
            time.sleep(0.01)
    assert watch.others > 0


def test_where_proc_says_nothing_the_thread_count_stays() -> None:
    watch = _threads.LoadWatch(4, sample=lambda: None)
    assert not watch.enabled and watch.threads() == 4


def test_proc_is_read_while_a_thread_of_ours_is_busy() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        seen = [_threads.running_elsewhere() for _ in range(50)]
    finally:
        stop.set()
    assert all(isinstance(n, int) and n >= 0 for n in seen)  # /proc parsed on Linux
