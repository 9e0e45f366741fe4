"""Pacing a batch: an adaptive limit on calls in flight, and a spending budget.

`Concurrency` is AIMD, as TCP paces a connection, cut on a *rate* of 429s rather than on each
one: the outcomes of the last `WINDOW` attempts sent since the last cut are kept, and the limit
halves when the window holds at least `2 * limit` outcomes (4 at least, `WINDOW` at most), at
least `MIN_429` of them 429s, and more than `CUT_SHARE` of them. A burst (every answer a 429)
cuts about once per round trip; a steady random rate (a provider refusing 20 % of calls
whatever the load) practically never does (at 20 %, 13 or more 429s in 20 answers has odds of
1.5e-5), so it does not pin the limit low, where every slot would also wait out every slow
answer. Attempts sent before the last cut are ignored: that cut was the answer to
their congestion. After a window of `limit` successful rows (sent since the last cut), the
limit doubles back up to the level of the last cut, then grows by one per window, up to the
ceiling. A row gives its slot back while it waits out a Retry-After or a backoff (see
`aikit._batch._retry`). `Budget` reserves an upper bound of a call's cost before
it starts and settles the real cost when it ends, so the spend never passes the limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from aikit.costs import Usage, cost_of

PROMPT_MARGIN, PROMPT_SLACK = 1.1, 8  # reserve for a tokenizer that counts a little differently
REASK_SLACK = 256  # tokens of a structured-output re-ask: the instruction and the error

WINDOW = 20  # attempts (sent since the last cut) whose outcomes decide a cut
MIN_429 = 4  # at least this many 429s in the window ...
CUT_SHARE = 0.6  # ... and more than this share of it


class Concurrency:
    """An adaptive limit on the calls in flight (AIMD; see the module docstring)."""

    def __init__(self, start: int, ceiling: int) -> None:
        self.limit, self.ceiling, self.threshold = start, ceiling, ceiling
        self.in_flight = 0
        self._successes = 0
        self._last_cut = -math.inf
        self._started = time.monotonic()
        self._window: deque[bool] = deque(maxlen=WINDOW)  # True: a 429
        self.trace: list[tuple[float, int]] = [(0.0, start)]
        self._wake = asyncio.Event()

    async def acquire(self) -> None:
        while self.in_flight >= self.limit:
            self._wake.clear()
            await self._wake.wait()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._wake.set()

    def observe(self, sent_at: float, limited: bool) -> None:
        """An HTTP answer arrived (`limited`: a 429) to an attempt sent at `sent_at`."""
        if sent_at < self._last_cut:
            return  # sent before the last cut: that cut was the answer to this congestion
        self._window.append(limited)
        seen, hits = len(self._window), sum(self._window)
        enough = seen >= min(WINDOW, max(4, 2 * self.limit))
        if limited and enough and hits >= MIN_429 and hits > CUT_SHARE * seen:
            self._cut()

    def rate_limited(self, sent_at: float) -> None:
        """A 429 (see `observe`)."""
        self.observe(sent_at, True)

    def _cut(self) -> None:
        self._last_cut = time.monotonic()
        self._window.clear()
        self.threshold = max(1, self.limit // 2)
        self._set(self.threshold)

    def succeeded(self, sent_at: float) -> None:
        if sent_at < self._last_cut:
            return  # sent before the last cut: says nothing about the new limit
        self._successes += 1
        if self._successes >= self.limit and self.limit < self.ceiling:
            grown = min(2 * self.limit, self.threshold)
            self._set(min(self.ceiling, grown if grown > self.limit else self.limit + 1))

    def _set(self, limit: int) -> None:
        self._successes = 0
        if limit != self.limit:
            self.limit = limit
            self.trace.append((round(time.monotonic() - self._started, 3), limit))
        self._wake.set()


class Budget:
    """Reserve an upper bound before a call, settle the real cost after; never overspend."""

    def __init__(self, limit_usd: float | None) -> None:
        self.limit = limit_usd
        self.spent = 0.0
        self._reserved = 0.0
        self._holders = 0
        self._wake = asyncio.Event()

    async def reserve(self, amount: float) -> bool:
        if self.limit is None:
            return True
        while self.spent + self._reserved + amount > self.limit:
            if self._holders == 0:
                return False  # does not fit even with nothing in flight
            self._wake.clear()
            await self._wake.wait()
        self._reserved += amount
        self._holders += 1
        return True

    def settle(self, reserved: float | None, actual: float) -> None:
        self.spent += actual
        if reserved is not None and self.limit is not None:
            self._holders -= 1
            self._reserved = self._reserved - reserved if self._holders else 0.0
        self._wake.set()


def completion_bound(max_tokens: int | None, params: Mapping[str, Any]) -> int | None:
    """The most answer tokens one call can bill (`max_tokens` times `n`), None if unbounded."""
    bound = max_tokens if max_tokens is not None else params.get("max_completion_tokens")
    return None if bound is None else int(bound) * int(params.get("n") or 1)


def upper_cost(model: str, prompt: int, completion: int, structured: bool) -> float:
    """The most one row can cost (priced models only): a call, and a re-ask if structured."""
    prompt = math.ceil(prompt * PROMPT_MARGIN) + PROMPT_SLACK
    cost = cost_of(model, Usage(prompt, completion)) or 0.0
    if structured:
        reask = Usage(prompt + completion + REASK_SLACK, completion)
        cost += cost_of(model, reask) or 0.0
    return cost
