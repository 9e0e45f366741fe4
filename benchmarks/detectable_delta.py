"""How many samples a decision needs: the smallest difference between two variants that
`aikit.evals.compare` detects (p < 0.05) in at least 80 % of comparisons, at n = 50, 200, 1000.

Simulated pass/fail evals, paired by item: each item has its own difficulty p ~ U(0.5, 0.9)
(a mean pass rate of 0.7); variant A passes with p, variant B independently with p + delta.
For each n, delta is searched on a grid of 0.01 (bisection); each point runs `--trials`
comparisons through the kit's own `compare` (bootstrap interval and paired permutation test).
The normal-approximation delta (two-sided z-test, 80 % power) is printed beside it.

    .venv/bin/python benchmarks/detectable_delta.py [--trials 200]

It prints the table in playbooks/evals.md (`--trials 100`: 6 minutes on a busy 2-core VM).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd
from scipy import stats

import aikit.evals as ev
from aikit.evals.evaluate import summarize

POWER = 0.8
ALPHA = 0.05


def result_of(scores: np.ndarray, name: str) -> ev.EvalResult:
    samples = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(len(scores))],
            "repeat": 0,
            "input": None,
            "expected": None,
            "output": None,
            "error": None,
            "score": scores,
            "metric_errors": None,
        }
    )
    return ev.EvalResult(samples, summarize(samples, ["score"], n_boot=100), ["score"], name=name)


def power(n: int, delta: float, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        p = rng.uniform(0.5, 0.9, size=n)
        a = (rng.random(n) < p).astype(float)
        b = (rng.random(n) < np.clip(p + delta, 0, 1)).astype(float)
        row = ev.compare(result_of(a, "a"), result_of(b, "b")).summary.iloc[0]
        hits += float(row.p_value) < ALPHA
    return hits / trials


def analytic(n: int) -> float:
    """Smallest delta with 80 % power for a paired z-test (variance at delta = 0)."""
    grid = np.linspace(0.5, 0.9, 100_001)
    sd = math.sqrt(float(np.mean(2 * grid * (1 - grid))))
    return (stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)) * sd / math.sqrt(n)


def smallest(n: int, trials: int) -> tuple[float, float]:
    low, high = 0, 40  # in hundredths
    found = {}
    while low < high:
        mid = (low + high) // 2
        found[mid] = power(n, mid / 100, trials, seed=n * 1000 + mid)
        if found[mid] >= POWER:
            high = mid
        else:
            low = mid + 1
    if low not in found:
        found[low] = power(n, low / 100, trials, seed=n * 1000 + low)
    return low / 100, found[low]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="comparisons per delta")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"smallest delta compare detects (p < {ALPHA}) in >= {POWER:.0%} of {args.trials}"
          " simulated comparisons; pass rate ~0.7, paired items")  # fmt: skip
    print(f"{'n':>6} {'delta (simulated)':>18} {'power there':>12} {'delta (z-test)':>15}")
    for n in (50, 200, 1000):
        delta, reached = smallest(n, args.trials)
        print(f"{n:>6} {delta:>18.2f} {reached:>12.0%} {analytic(n):>15.3f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
