"""Tokens, cost and latency of every call this process makes.

Prices come from a versioned table (`aikit/data/prices.json`, USD per million tokens); the
embedded model costs 0 and a model missing from the table has cost `None`, never a made-up 0.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

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
class CallRecord:
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


_lock = threading.Lock()
_records: list[CallRecord] = []


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
    record = CallRecord(
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
    with _lock:
        _records.append(record)


def usage() -> pd.DataFrame:
    """This process's calls, one row each: tokens, `cost_usd`, `latency_s`, `cached`."""
    with _lock:
        rows = [asdict(r) for r in _records]
    columns = list(CallRecord.__dataclass_fields__)
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(frame["time"], unit="s")
    return frame


def reset_usage() -> None:
    """Forget this process's usage log."""
    with _lock:
        _records.clear()
