"""How far a checker agrees with people: intervals for a share and for Cohen's kappa, and the
per-kind report of a claim checker on a labelled claim set.

- `wilson_interval(k, n)`: the Wilson score interval of a share `k / n`.
- `kappa_interval(human, machine)`: a bootstrap interval of Cohen's kappa.
- `claim_report(rows, split="test")`: on labelled claims (`notebooks/data/evals/claims.jsonl`:
  `claim`, `context`, `supported`, `kind`, `split`), the accuracy and kappa of the offline claim
  test (or of a judge), and per kind the share it got right (for an unsupported kind, the share
  caught) with its interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aikit.errors import DatasetError
from aikit.evals.judge import cohen_kappa

if TYPE_CHECKING:
    import pandas as pd

    from aikit.evals.judge import Judge

__all__ = ["ClaimReport", "claim_report", "kappa_interval", "load_claims", "wilson_interval"]

SUPPORTED_KIND = "supported paraphrase"


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of the share `successes / n` ((0.0, 1.0) when n is 0)."""
    if n <= 0:
        return (0.0, 1.0)
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def kappa_interval(
    human: Sequence[Any],
    machine: Sequence[Any],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A bootstrap interval of Cohen's kappa between two raters over the same items (pairs
    resampled with replacement; resamples where kappa is undefined are skipped). None when
    kappa is undefined on the items themselves."""
    import numpy as np

    if len(human) != len(machine):
        raise DatasetError(
            f"human has {len(human)} labels and machine {len(machine)}; pass one each per item"
        )
    if cohen_kappa(list(human), list(machine)) is None:
        return None
    rng = np.random.default_rng(seed)
    h, m = list(human), list(machine)
    values = []
    for rows in rng.integers(0, len(h), (resamples, len(h))):
        value = cohen_kappa([h[i] for i in rows], [m[i] for i in rows])
        if value is not None:
            values.append(value)
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return (round(float(low), 4), round(float(high), 4))


def load_claims(path: str | Path, *, split: str | None = None) -> list[dict[str, Any]]:
    """The labelled claims of a JSONL file, those of `split` only when given."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}:{number}: not JSON ({exc.msg}); write one object a line"
            ) from None
        missing = {"claim", "context", "supported", "kind"} - set(row)
        if missing:
            raise DatasetError(f"{path}:{number}: missing {sorted(missing)}; see claims.jsonl")
        if split is None or row.get("split") == split:
            rows.append(row)
    return rows


@dataclass
class ClaimReport:
    """A checker against the labels: `accuracy`, `kappa` (with `kappa_interval`), `unscored`
    (claims a judge left without a verdict) and `kinds`, one row per kind: `claims`, `right`
    (the share it got right: kept for supported paraphrases, caught for the rest) and `low`,
    `high` (the 95% Wilson interval)."""

    claims: int
    accuracy: float
    kappa: float | None
    kappa_interval: tuple[float, float] | None
    unscored: int
    kinds: pd.DataFrame

    def __str__(self) -> str:
        interval = (
            "undefined"
            if self.kappa_interval is None
            else "{:.2f} to {:.2f}".format(*self.kappa_interval)
        )
        kappa = "undefined" if self.kappa is None else f"{self.kappa:.3f}"
        lines = [
            f"{self.claims} claims: accuracy {self.accuracy:.3f}, Cohen's kappa {kappa}"
            f" (95% interval {interval}), unscored {self.unscored}"
        ]
        for row in self.kinds.itertuples():
            what = "kept" if row.kind == SUPPORTED_KIND else "caught"
            lines.append(
                f"  {row.kind}: {what} {row.right:.2f} of {row.claims}"
                f" (95% interval {row.low:.2f} to {row.high:.2f})"
            )
        return "\n".join(lines)


def claim_report(
    rows: Sequence[dict[str, Any]] | str | Path,
    *,
    split: str | None = "test",
    judge: Judge | None = None,
    checker: Callable[[dict[str, Any]], bool | None] | None = None,
) -> ClaimReport:
    """How the offline claim test (default), a `judge`, or any `checker(row) -> bool | None`
    agrees with labelled claims, on `split` only (None: all rows)."""
    import pandas as pd

    from aikit.evals.rag_metrics import claim_support

    if isinstance(rows, str | Path):
        rows = load_claims(rows, split=split)
    elif split is not None:
        rows = [r for r in rows if r.get("split") == split]
    if not rows:
        raise DatasetError(f"no labelled claims in split {split!r}; use 'calibration' or 'test'")

    def default(row: dict[str, Any]) -> bool | None:
        question = row.get("question")
        return claim_support([row["claim"]], row["context"], question=question, judge=judge)[0]

    verdicts = [(checker or default)(row) for row in rows]
    scored = [(r, v) for r, v in zip(rows, verdicts, strict=True) if v is not None]
    human = [bool(r["supported"]) for r, _ in scored]
    machine = [bool(v) for _, v in scored]
    kinds = []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [(r, v) for r, v in zip(rows, verdicts, strict=True) if r["kind"] == kind]
        right = sum(v is not None and bool(v) == bool(r["supported"]) for r, v in mine)
        low, high = wilson_interval(right, len(mine))
        share = right / len(mine)
        kinds.append({"kind": kind, "claims": len(mine), "right": share, "low": low, "high": high})
    accuracy = sum(h == m for h, m in zip(human, machine, strict=True)) / max(1, len(rows))
    return ClaimReport(
        claims=len(rows),
        accuracy=round(accuracy, 4),
        kappa=None if not scored else cohen_kappa(human, machine),
        kappa_interval=None if not scored else kappa_interval(human, machine),
        unscored=len(rows) - len(scored),
        kinds=pd.DataFrame(kinds),
    )
