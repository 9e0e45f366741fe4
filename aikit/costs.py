"""Costs: tokens, prices and latency of every model call (`aikit.usage()` lists this process's).

Prices come from a versioned table (`aikit/data/prices.json`, USD per million tokens); the
embedded model costs 0 and a model missing from the table has cost `None`, never a made-up 0.

One meaning of **calls** everywhere (a run's `usage`, the request log, `Reply.calls`,
`aikit.usage()`'s `calls` column): the chat completions asked of the model, so a structured
answer that needed its one re-ask is 2 calls; answers from the response store count as calls
too (`cached_calls` says how many). HTTP retries of the same completion are not calls (the
batch frame's `attempts` counts those). `total_usage` is the one sum of tokens, calls and cost
(`sum_costs`: None when any cost is unknown), for a run, a request and a notebook alike.

`aikit.usage()` keeps this process's last `KEEP_CALLS` calls (`AIKIT_USAGE_KEEP`, default
10,000), so a long-lived `aikit api` worker does not keep every call it ever made.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Usage:
    """Token counts of one reply (summed over a structured-output re-ask)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@cache
def price_table() -> dict[str, Any]:
    """The packaged price table: `{"version": ..., "models": {name: {input, output}}}`."""
    text = resources.files("aikit").joinpath("data/prices.json").read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def price_of(model: str) -> dict[str, float] | None:
    """Per-million-token prices of `model`, matching dated snapshots by longest prefix."""
    models: dict[str, dict[str, float]] = price_table()["models"]
    name = model.split("/")[-1].lower()
    if name in models:
        return models[name]
    prefixes = [m for m in models if name.startswith(m + "-")]
    return models[max(prefixes, key=len)] if prefixes else None


def cost_of(model: str, usage: Usage) -> float | None:
    """USD cost of `usage` tokens on `model`; `None` when the model has no known price."""
    price = price_of(model)
    if price is None:
        return None
    return (usage.prompt_tokens * price["input"] + usage.completion_tokens * price["output"]) / 1e6


@dataclass(frozen=True)
class Call:
    """One model call as `aikit.usage()` lists it."""

    time: float
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None
    latency_s: float
    cached: bool
    calls: int


RUN_USAGE_ENV = "AIKIT_RUN_USAGE"
KEEP_ENV = "AIKIT_USAGE_KEEP"


def _keep() -> int:
    value = os.environ.get(KEEP_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else 10_000


KEEP_CALLS = _keep()  # the most calls `aikit.usage()` keeps (the oldest go first)
_lock = threading.Lock()
_calls: deque[Call] = deque(maxlen=KEEP_CALLS)
# The calls of one unit of work (an `aikit api` request), whatever threads and loops they ran on.
_collector: ContextVar[list[Call] | None] = ContextVar("aikit_calls", default=None)


@contextmanager
def collect_calls() -> Iterator[list[Call]]:
    """The calls made inside the block (and in tasks and threads it starts), as a list."""
    calls: list[Call] = []
    token = _collector.set(calls)
    try:
        yield calls
    finally:
        _collector.reset(token)


def log_call(
    *,
    provider: str,
    model: str,
    usage: Usage,
    cost: float | None,
    latency_s: float,
    cached: bool,
    calls: int,
) -> None:
    """Append one call to this process's usage log (thread-safe)."""
    call = Call(
        time=time.time(),
        provider=provider,
        model=model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cost_usd=cost,
        latency_s=latency_s,
        cached=cached,
        calls=calls,
    )
    collector = _collector.get()
    if collector is not None:
        collector.append(call)
    with _lock:
        _calls.append(call)
        run_log = os.environ.get(RUN_USAGE_ENV)
        if run_log:  # set by the runner: the run record sums the kernel's calls
            with open(run_log, "a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(call)) + "\n")


def usage() -> pd.DataFrame:
    """This process's calls (its last `KEEP_CALLS`), one row each: tokens, `cost_usd`,
    `latency_s`, `cached`, `calls` (completions: 2 with a structured-output re-ask)."""
    import pandas as pd

    with _lock:
        rows = [asdict(r) for r in _calls]
    columns = list(Call.__dataclass_fields__)
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(frame["time"], unit="s")
    return frame


def sum_costs(costs: Iterable[float | None]) -> float | None:
    """The total of some costs in USD; None when any of them is unknown (an unpriced model)."""
    total = 0.0
    for cost in costs:
        if cost is None:
            return None
        total += cost
    return float(total)


def total_usage(calls: Iterable[Call | Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over calls (`Call`s, or dicts as `usage.jsonl` and `aikit.usage()` hold them):
    calls (completions, see the module docstring), cached calls, tokens, cost (None if any
    call was unpriced) and the models."""
    rows = [asdict(c) if isinstance(c, Call) else c for c in calls]
    counts = [int(c.get("calls") or 1) for c in rows]
    return {
        "calls": sum(counts),
        "cached_calls": sum(n for n, c in zip(counts, rows, strict=True) if c.get("cached")),
        "prompt_tokens": sum(int(c.get("prompt_tokens", 0)) for c in rows),
        "completion_tokens": sum(int(c.get("completion_tokens", 0)) for c in rows),
        "cost_usd": sum_costs(c.get("cost_usd") for c in rows),
        "models": sorted({str(c.get("model")) for c in rows}),
    }


def reset_usage() -> None:
    """Forget this process's usage log."""
    with _lock:
        _calls.clear()
