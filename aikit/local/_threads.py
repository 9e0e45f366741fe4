"""llama.cpp's threads per decode step, from what else the machine is running.

llama.cpp (built with OpenMP) runs each decode step on `n_threads` threads that meet at a
barrier after every operation. On a quiet machine every core is fastest. When other processes
hold cores, a thread waiting at the barrier spins while the thread it waits for is not
running, and each step stalls for whole scheduler slices: on 2 cores beside two CPU-bound
processes, answers took 28x their quiet time with both threads, 2.5x with one
(`benchmarks/local_busy.py`). A smaller `GOMP_SPINCOUNT` softens the stall (8x) but costs
about 5% when quiet, and no fixed setting fits both.

So the server watches the machine while it decodes. `LoadWatch` samples, every `INTERVAL_S`
while a decode call runs (or ended less than `HOLD_S` ago: the gap between two tokens), how
many threads of *other* processes are runnable (the kernel's `procs_running` in `/proc/stat`
less this process's own running threads, counted before and after it) and smooths it. Only
contention while the model works counts: a client busy between its requests (a notebook, a
benchmark's own llama.cpp) holds no core the model wanted, and sampling all the time made a
quiet benchmark decode 15% of its steps on one thread. Between requests the estimate stays
as it was last seen. `ThreadsByLoad` sets llama.cpp's thread count before each decode call to
the cores nobody else wants, at least one
(`llama_set_n_threads`, a field of the context: free to change between calls). Answers do
not change with the thread count: each row of a matrix product is summed by one thread, so
the split changes who computes, not the sums (`tests/test_local_live.py` checks it under
load). Where `/proc/stat` cannot be read (not Linux), the thread count stays as loaded.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

INTERVAL_S = 0.05  # between samples
SMOOTHING = 0.2  # weight of a new sample: about a quarter of a second of decoding
HOLD_S = 0.01  # the watch samples until this long after a decode call (the gap between tokens)
STAT = Path("/proc/stat")
TASKS = Path("/proc/self/task")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for(others: float, available: int) -> int:
    """llama.cpp threads when `others` threads of other processes want a core: the cores left,
    at least one. A core counts as taken from 0.75 of a thread on average: a client's brief
    work around each request (and its own threads finishing) stays under it."""
    return max(1, min(available, available - int(others + 0.25)))


def running_elsewhere() -> int | None:
    """Runnable threads of other processes now, or None where `/proc` says nothing."""
    before = _running_here()
    try:
        total = next(
            int(line.split()[1])
            for line in STAT.read_text().splitlines()
            if line.startswith("procs_running ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    # our threads that were running just before or just after the kernel's count: one that
    # changed state in between (llama.cpp's threads do, at every barrier) is ours either way
    own = max(before, _running_here())
    return max(0, total - own)


def _running_here() -> int:
    own = 0
    try:
        tasks = list(TASKS.iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            # "pid (comm) S ...": the state follows the last ")", the name may hold spaces
            if (task / "stat").read_text().rpartition(")")[2].split()[0] == "R":
                own += 1
        except (OSError, IndexError):
            continue
    return own


class LoadWatch:
    """A daemon thread's smoothed count of other processes' runnable threads."""

    def __init__(
        self,
        available: int | None = None,
        *,
        interval_s: float = INTERVAL_S,
        sample: Callable[[], int | None] = running_elsewhere,
    ) -> None:
        self.available = available or cores()
        self.interval_s = interval_s
        self._sample = sample
        self.others = 0.0
        self._calls = 0  # decode calls running now
        self._until = 0.0  # and sample until then (monotonic): `HOLD_S` after the last one
        self._decoding = threading.Event()
        self.enabled = sample() is not None
        if self.enabled and self.available > 1:
            threading.Thread(target=self._watch, name="aikit-load", daemon=True).start()

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Around a decode call: the machine is sampled while it runs."""
        self._calls += 1
        if not self._decoding.is_set():
            self._decoding.set()
        try:
            yield
        finally:
            self._until = time.monotonic() + HOLD_S
            self._calls -= 1

    def _sampling(self) -> bool:
        return self._calls > 0 or time.monotonic() <= self._until

    def _watch(self) -> None:
        while True:
            self._decoding.wait()
            time.sleep(self.interval_s)
            if not self._sampling():
                self._decoding.clear()
                if self._sampling():  # a decode call came in meanwhile
                    self._decoding.set()
                continue
            now = self._sample()
            if now is not None:
                self.others += SMOOTHING * (now - self.others)

    def threads(self) -> int:
        """llama.cpp threads for the next decode call."""
        return threads_for(self.others, self.available) if self.enabled else self.available


_WATCH: LoadWatch | None = None
DECODES: Counter[int] = Counter()  # decode calls per thread count, every model of the process
_WATCH_LOCK = threading.Lock()


def watch() -> LoadWatch:
    """The process's one `LoadWatch` (started on first use)."""
    global _WATCH
    with _WATCH_LOCK:
        if _WATCH is None:
            _WATCH = LoadWatch()
        return _WATCH


class ThreadsByLoad:
    """Installs itself on a `llama_cpp.Llama`: wraps its `eval` so that each decode call runs
    on `watch().threads()` threads, never more than the model was loaded with."""

    def __init__(self, llama: Any, load: LoadWatch | None = None) -> None:
        import llama_cpp

        self.llama = llama
        self.load = load or watch()
        self.most = int(llama.context_params.n_threads)
        self.current = self.most
        self._set = llama_cpp.llama_set_n_threads
        self._eval: Callable[[Sequence[int]], None] = llama.eval
        llama.eval = self.eval

    def eval(self, tokens: Sequence[int]) -> None:
        n = min(self.most, self.load.threads())
        if n != self.current:
            self._set(self.llama.ctx, n, n)
            self.current = n
        DECODES[n] += 1
        with self.load.decoding():
            self._eval(tokens)
