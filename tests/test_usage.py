"""Usage in one shape (issue 20, item 4): one sum of calls, tokens and cost for a run, a
request and a notebook; "calls" are completions (a structured-output re-ask is a second)."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from aikit import costs
from aikit.costs import Call, Usage, sum_costs, total_usage


def _call(model: str, cost: float | None, calls: int = 1, cached: bool = False) -> Call:
    return Call(0.0, "openai", model, 3, 2, 5, cost, 0.1, cached, calls)


def test_one_sum_for_calls_and_their_records() -> None:
    made = [_call("a", 0.5), _call("b", 0.25, calls=2, cached=True)]
    total = total_usage(made)
    assert total == total_usage([asdict(c) for c in made])  # usage.jsonl rows sum the same
    assert total == {
        "calls": 3,  # the re-ask is a call
        "cached_calls": 2,
        "prompt_tokens": 6,
        "completion_tokens": 4,
        "cost_usd": 0.75,
        "models": ["a", "b"],
    }
    assert total_usage([*made, _call("c", None)])["cost_usd"] is None  # one unpriced call
    assert (sum_costs([]), sum_costs([0.1, None]), sum_costs([0.5, 0.25])) == (0.0, None, 0.75)


def test_the_process_usage_log_keeps_only_the_last_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import deque

    monkeypatch.setattr(costs, "_calls", deque(maxlen=3))
    for number in range(5):
        costs.log_call(
            provider="openai",
            model=f"m{number}",
            usage=Usage(1, 1),
            cost=0.0,
            latency_s=0.0,
            cached=False,
            calls=1,
        )
    assert list(costs.usage()["model"]) == ["m2", "m3", "m4"]
