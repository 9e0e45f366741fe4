"""One limit per model server: at most `Endpoint.limit` requests in flight to it from this
process, whoever sends them (`aikit.batch`, judges, `evaluate`'s callable tasks and metric
judges, `calibrate`, RAG metrics, `rag.answer` under `aikit api`).

Every HTTP attempt of `aikit.llm` takes a slot of its endpoint's `Limiter` first and gives it
back when the answer is in, so the SDK's timeout starts only once the request is really sent:
time spent waiting for a slot is not counted against `AIKIT_TIMEOUT`. The limiter works across
threads and event loops (a sync `aikit.chat` runs on aikit's own loop thread, an async one on
the caller's loop, `evaluate` runs callable tasks in threads), so it is a counter under a
`threading.Lock` with one future per waiter, woken on its own loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Limiter:
    """A counting semaphore shared by every thread and event loop of the process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_flight = 0
        self.peak = 0  # the most requests it let through at once (for tests and doctor)
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.in_flight < self.size and not self._waiters:
                self._take()
                return
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                if (loop, future) in self._waiters:  # never handed a slot
                    self._waiters.remove((loop, future))
                    raise
            if not future.cancelled():  # handed a slot just before the cancel: give it back
                self.release()
            raise  # (a cancelled future's slot is given back by `_wake`)

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
            while self._waiters:
                loop, future = self._waiters.popleft()
                if future.done() or loop.is_closed():
                    continue
                self._take()  # the slot goes to this waiter now, so no one can overtake it
                loop.call_soon_threadsafe(_wake, future, self)
                return


def _wake(future: asyncio.Future[None], limiter: Limiter) -> None:
    if future.cancelled():  # cancelled after it was handed the slot
        limiter.release()
    else:
        future.set_result(None)


@asynccontextmanager
async def slot(limiter: Limiter) -> AsyncIterator[None]:
    """Hold one of `limiter`'s slots for the block."""
    await limiter.acquire()
    try:
        yield
    finally:
        limiter.release()


_lock = threading.Lock()
_limiters: dict[str, Limiter] = {}


def limiter_for(key: str, size: int) -> Limiter:
    """The process's limiter of the endpoint named `key` (its URL), made with `size` slots."""
    with _lock:
        found = _limiters.get(key)
        if found is None:
            found = _limiters[key] = Limiter(max(1, size))
        return found
