"""`compare(a, b)`: two `EvalResult`s of the same dataset, paired by sample id.

Per metric: the mean difference b - a over ids scored in both, a bootstrap 95% interval of it,
and a paired permutation test's two-sided p-value (scipy). `regressions` lists the samples that
passed in A and failed in B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aikit.errors import EvalError
from aikit.evals.evaluate import EvalResult, bootstrap_ci, per_item

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["metric", "mean_a", "mean_b", "delta", "ci_low", "ci_high", "p_value", "n_pairs",
           "n_regressions", "n_improvements"]  # fmt: skip


@dataclass
class Comparison:
    """`summary`: one row per metric (`delta` = B - A, `ci_low`, `ci_high`, `p_value`, ...);
    `regressions`: one row per (metric, id) that passed in A and failed in B."""

    a: EvalResult
    b: EvalResult
    summary: pd.DataFrame
    regressions: pd.DataFrame
    threshold: float = 0.5

    def __repr__(self) -> str:
        return (
            f"Comparison({self.a.name!r} -> {self.b.name!r}, metrics={list(self.summary.metric)},"
            f" {len(self.regressions)} regressions)"
        )


def paired_p_value(diffs: list[float], *, n_resamples: int = 9999, seed: int = 0) -> float:
    """Two-sided p-value of a paired sign-flip permutation test of mean(diffs) = 0."""
    import numpy as np
    from scipy import stats

    data = np.asarray(diffs, dtype=float)
    if data.size == 0:
        return math.nan
    if not np.any(data):
        return 1.0
    result = stats.permutation_test(
        (data,),
        lambda d, axis: np.mean(d, axis=axis),
        permutation_type="samples",
        n_resamples=n_resamples,
        alternative="two-sided",
        random_state=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def compare(
    a: EvalResult, b: EvalResult, *, threshold: float | None = None, seed: int = 0
) -> Comparison:
    """Pair two results by sample id and test each shared metric's difference (B - A)."""
    import pandas as pd

    metrics = [m for m in a.metrics if m in b.metrics]
    if not metrics:
        raise EvalError(
            f"results {a.name!r} and {b.name!r} share no metric ({a.metrics} vs {b.metrics})"
        )
    shared = set(a.samples["id"]) & set(b.samples["id"])
    if not shared:
        raise EvalError(f"results {a.name!r} and {b.name!r} share no sample id; same dataset?")
    cut = a.threshold if threshold is None else threshold
    first_a = a.samples.drop_duplicates("id").set_index("id")
    first_b = b.samples.drop_duplicates("id").set_index("id")
    rows, regressions = [], []
    for metric in metrics:
        sa, sb = per_item(a.samples, metric), per_item(b.samples, metric)
        ids = [i for i in sa.index if i in shared and not math.isnan(sa[i])]
        ids = [i for i in ids if i in sb.index and not math.isnan(sb[i])]
        diffs = [float(sb[i] - sa[i]) for i in ids]
        low, high = bootstrap_ci(diffs, seed=seed)
        lost = [i for i in ids if sa[i] >= cut > sb[i]]
        won = [i for i in ids if sb[i] >= cut > sa[i]]
        rows.append(
            {
                "metric": metric,
                "mean_a": float(sa[ids].mean()) if ids else math.nan,
                "mean_b": float(sb[ids].mean()) if ids else math.nan,
                "delta": float(sum(diffs) / len(diffs)) if diffs else math.nan,
                "ci_low": low,
                "ci_high": high,
                "p_value": paired_p_value(diffs, seed=seed),
                "n_pairs": len(ids),
                "n_regressions": len(lost),
                "n_improvements": len(won),
            }
        )
        for i in lost:
            regressions.append(
                {
                    "metric": metric,
                    "id": i,
                    "score_a": float(sa[i]),
                    "score_b": float(sb[i]),
                    "input": first_a.loc[i, "input"],
                    "expected": first_a.loc[i, "expected"],
                    "output_a": first_a.loc[i, "output"],
                    "output_b": first_b.loc[i, "output"],
                }
            )
    reg_columns = ["metric", "id", "score_a", "score_b", "input", "expected", "output_a",
                   "output_b"]  # fmt: skip
    return Comparison(
        a, b, pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(regressions, columns=reg_columns),
        cut,
    )  # fmt: skip
