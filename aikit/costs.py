"""Costs: tokens, prices and latency of every model call (`aikit.usage()` lists this process's).

Prices come from a versioned table (`aikit/data/prices.json`, USD per million tokens); the
embedded model costs 0 and a model missing from the table has cost `None`, never a made-up 0.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
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
_lock = threading.Lock()
_calls: list[Call] = []
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
    """This process's calls, one row each: tokens, `cost_usd`, `latency_s`, `cached`."""
    import pandas as pd

    with _lock:
        rows = [asdict(r) for r in _calls]
    columns = list(Call.__dataclass_fields__)
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(frame["time"], unit="s")
    return frame


def total_usage(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over calls as `usage.jsonl` holds them: calls, tokens, and cost (None if any
    call was unpriced)."""
    costs = [c.get("cost_usd") for c in calls]
    return {
        "calls": len(calls),
        "cached_calls": sum(1 for c in calls if c.get("cached")),
        "prompt_tokens": sum(int(c.get("prompt_tokens", 0)) for c in calls),
        "completion_tokens": sum(int(c.get("completion_tokens", 0)) for c in calls),
        "cost_usd": None if any(c is None for c in costs) else float(sum(c or 0.0 for c in costs)),
        "models": sorted({str(c.get("model")) for c in calls}),
    }


def reset_usage() -> None:
    """Forget this process's usage log."""
    with _lock:
        _calls.clear()
