"""The statistics of `evaluate` and `compare` on simulated data: a paired comparison of two
independent draws from one distribution rejects at p < 0.05 about 5 % of the time; a known
effect is found as often as a power calculation says; the bootstrap interval matches
`scipy.stats.bootstrap`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import aikit.evals as ev
from aikit.evals.evaluate import bootstrap_ci, summarize


def result_of(scores: np.ndarray, name: str) -> ev.EvalResult:
    """An EvalResult holding `scores` (items x metrics: one column per metric, `m0`, `m1`, ...),
    built without running a task."""
    scores = scores.reshape(len(scores), -1)
    n, k = scores.shape
    metrics = [f"m{j}" for j in range(k)]
    samples = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "repeat": 0,
            "input": None,
            "expected": None,
            "output": None,
            "error": None,
            **{m: scores[:, j].astype(float) for j, m in enumerate(metrics)},
            "metric_errors": None,
        }
    )
    summary = summarize(samples, metrics, n_boot=200)
    return ev.EvalResult(samples, summary, metrics, name=name)


def simulate(n_items: int, delta: float, trials: int, seed: int) -> list[float]:
    """p-values of `trials` paired comparisons by `compare` of simulated pass/fail results:
    each item has its own difficulty p ~ U(0.3, 0.7); A passes with p, B independently with
    p + delta. Each metric column is one comparison (50 per `compare` call, for speed)."""
    rng = np.random.default_rng(seed)
    p_values: list[float] = []
    while len(p_values) < trials:
        k = min(50, trials - len(p_values))
        difficulty = rng.uniform(0.3, 0.7, size=(n_items, k))
        a = (rng.random((n_items, k)) < difficulty).astype(float)
        b = (rng.random((n_items, k)) < difficulty + delta).astype(float)
        summary = ev.compare(result_of(a, "a"), result_of(b, "b")).summary
        assert (summary["n_pairs"] == n_items).all()
        p_values += [float(p) for p in summary["p_value"]]
    return p_values


def predicted_power(n_items: int, delta: float, alpha: float = 0.05) -> float:
    """The power of the paired test for the simulation above, computed exactly.

    Per item the difference B - A is +1, 0 or -1, independently across items, with
    P(+1) = E[(p + delta)(1 - p)] and P(-1) = E[p(1 - p - delta)] for p ~ U(0.3, 0.7). A
    sign-flip permutation test of such differences is the exact two-sided sign test on the m
    non-zero ones, so: power = sum over m of P(m non-zero) * P(sign test rejects | m).
    """
    grid = np.linspace(0.3, 0.7, 100_001)
    up = float(np.mean((grid + delta) * (1 - grid)))
    down = float(np.mean(grid * (1 - grid - delta)))
    power = 0.0
    for m in range(1, n_items + 1):
        k = np.arange(m + 1)
        # Two-sided sign-test p-value of k ups among m: P(|2K - m| >= |2k - m|), K ~ Bin(m, 1/2).
        far = np.abs(2 * k - m)
        null = stats.binom.pmf(k, m, 0.5)
        p_values = np.array([null[far >= f].sum() for f in far])
        rejects = p_values < alpha
        power += float(stats.binom.pmf(m, n_items, up + down)) * float(
            stats.binom.pmf(k[rejects], m, up / (up + down)).sum()
        )
    return power


def test_compare_false_positive_rate_under_no_effect(capsys: Any) -> None:
    p_values = simulate(n_items=100, delta=0.0, trials=300, seed=11)
    rate = float(np.mean(np.array(p_values) < 0.05))
    with capsys.disabled():
        print(f"\ncompare, no real effect: {rate:.1%} of 300 comparisons reject at p < 0.05")
    assert 0.02 <= rate <= 0.09
    # The p-values of a valid test are uniform under the null: a quarter below 0.25.
    assert 0.17 <= float(np.mean(np.array(p_values) < 0.25)) <= 0.33


def test_compare_detects_a_known_effect_at_the_predicted_rate(capsys: Any) -> None:
    n_items, delta = 100, 0.12
    expected = predicted_power(n_items, delta)
    p_values = simulate(n_items=n_items, delta=delta, trials=200, seed=12)
    power = float(np.mean(np.array(p_values) < 0.05))
    with capsys.disabled():
        print(
            f"\ncompare, true delta {delta} on {n_items} items: detected in {power:.1%} of 200"
            f" comparisons; a power calculation predicts {expected:.1%}"
        )
    assert 0.3 < expected < 0.9  # a power where a miss of 10 points would show
    # The normal approximation (a paired z-test) says more; the exact calculation is the claim.
    assert abs(power - expected) <= 0.10


@pytest.mark.parametrize(("n", "p"), [(30, 0.5), (200, 0.8), (1000, 0.3)])
def test_bootstrap_interval_matches_scipy(n: int, p: float) -> None:
    rng = np.random.default_rng(n)
    data = rng.binomial(1, p, size=n).astype(float) * rng.uniform(0.5, 1.0, size=n)
    low, high = bootstrap_ci(data, n_boot=9999, seed=1)
    ref = stats.bootstrap(
        (data,), np.mean, confidence_level=0.95, n_resamples=9999, method="percentile",
        random_state=np.random.default_rng(2),
    ).confidence_interval  # fmt: skip
    width = ref.high - ref.low
    assert abs(low - ref.low) <= 0.05 * width and abs(high - ref.high) <= 0.05 * width
    # And both are about the normal interval of a mean for these sizes.
    half = 1.96 * data.std(ddof=1) / math.sqrt(n)
    assert abs((high - low) - 2 * half) <= 0.15 * 2 * half


def test_result_summary_uses_the_same_interval() -> None:
    scores = np.random.default_rng(3).binomial(1, 0.6, size=80).astype(float)
    row = result_of(scores, "x").summary.iloc[0]
    full = summarize(result_of(scores, "x").samples, ["m0"])
    assert (full.iloc[0].ci_low, full.iloc[0].ci_high) == bootstrap_ci(scores)
    assert row["mean"] == pytest.approx(scores.mean())


@pytest.mark.parametrize("n", [40, 300])
def test_paired_p_value_matches_scipy_permutation_test(n: int) -> None:
    from aikit.evals.compare import paired_p_value

    rng = np.random.default_rng(n)
    diffs = rng.integers(-1, 2, size=n) * 1.0 + (rng.random(n) < 0.15)  # a small real shift
    ours = paired_p_value(list(diffs))
    ref = stats.permutation_test(
        (diffs,), lambda d, axis: np.mean(d, axis=axis), permutation_type="samples",
        n_resamples=9999, alternative="two-sided", random_state=np.random.default_rng(1),
    ).pvalue  # fmt: skip
    # Both are Monte Carlo estimates from 9999 resamples: within 4 standard errors.
    assert abs(ours - ref) <= 4 * math.sqrt(max(ref, 1e-3) * (1 - ref) / 9999) + 1e-4
