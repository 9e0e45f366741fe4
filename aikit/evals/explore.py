"""The data side of `aikit.widgets.explore`: one table per result or comparison, filters by
metric and status, and the HTML the widget shows (kept here so it is testable without a UI)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from aikit._markup import NO_MATH, escape_html
from aikit.evals.compare import Comparison
from aikit.evals.evaluate import EvalResult, per_item


def _one_per_id(result: EvalResult) -> pd.DataFrame:
    frame = result.samples.drop_duplicates("id").reset_index(drop=True).copy()
    for metric in result.metrics:
        frame[metric] = frame["id"].map(per_item(result.samples, metric))
    frame["failed_metrics"] = pd.Series(
        [
            set(e or {}) | (set(result.metrics) if err is not None else set())
            for e, err in zip(frame["metric_errors"], frame["error"], strict=True)
        ],
        index=frame.index,
        dtype=object,
    )
    return frame


def table_of(source: EvalResult | Comparison) -> pd.DataFrame:
    """One row per sample id: input, expected, output(s), a score per metric (`M` for a result;
    `M_a`, `M_b` for a comparison) and the metrics that errored."""
    if isinstance(source, EvalResult):
        return _one_per_id(source)
    a, b = _one_per_id(source.a), _one_per_id(source.b)
    metrics = list(source.summary["metric"])
    left = a[["id", "input", "expected", "output", "failed_metrics", *metrics]]
    right = b[["id", "output", "failed_metrics", *metrics]]
    return left.merge(right, on="id", suffixes=("_a", "_b"))


def filter_rows(table: pd.DataFrame, metric: str, status: str, threshold: float) -> pd.DataFrame:
    """The rows of `table` whose `metric` has `status` (all, passed, failed, unscored, error,
    and for a comparison regressed or improved; the others look at B)."""
    paired = f"{metric}_b" in table.columns
    score = table[f"{metric}_b" if paired else metric].astype(float)
    failed_col = table["failed_metrics_b" if paired else "failed_metrics"]
    errored = failed_col.map(lambda names: metric in names)
    if status == "all":
        mask = pd.Series(True, index=table.index)
    elif status == "error":
        mask = errored
    elif status == "unscored":
        mask = score.isna() & ~errored
    elif status == "passed":
        mask = score >= threshold
    elif status == "failed":
        mask = score < threshold
    elif status in ("regressed", "improved") and paired:
        before = table[f"{metric}_a"].astype(float)
        mask = (before >= threshold) & (score < threshold)
        if status == "improved":
            mask = (score >= threshold) & (before < threshold)
    else:
        raise ValueError(f"status={status!r}; use all, passed, failed, unscored or error")
    return table[mask]


def plural(n: int, noun: str) -> str:
    """`1 sample`, `2 samples`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cell_text(value: Any) -> str:
    """A table cell's HTML: a score to 3 significant digits, text escaped and cut at 80."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3g}"
    return escape_html(f"{value}"[:80])


def page_columns(rows: pd.DataFrame, metric: str) -> list[str]:
    """The columns the explorer's table shows: id, input, expected, output(s), scores."""
    outputs = [c for c in ("output", "output_a", "output_b") if c in rows.columns]
    scores = [c for c in (metric, f"{metric}_a", f"{metric}_b") if c in rows.columns]
    return ["id", "input", "expected", *outputs, *scores]


def page_caption(total: int, page: int, pages: int) -> str:
    """The line above the table: how many samples pass the filter and where the page is."""
    return f"<p>{plural(total, 'sample')} · page {page} of {pages}</p>"


def render_detail(row: pd.Series) -> str:
    """One sample's input, expected answer and output(s) side by side."""
    parts = [("input", row["input"]), ("expected", row["expected"])]
    parts += [(c, row[c]) for c in ("output", "output_a", "output_b") if c in row.index]
    cells = "".join(
        f"<td style='vertical-align:top;padding-right:1.5em'><b>{escape_html(name)}</b>"
        f"<pre style='white-space:pre-wrap;word-break:normal'>{escape_html(value)}</pre></td>"
        for name, value in parts
    )
    return f"<table class='{NO_MATH}'><tr>{cells}</tr></table>"


def caption(source: EvalResult | Comparison, table: pd.DataFrame, threshold: float) -> str:
    """The explorer's one-line static summary (byte-stable: counts only), shown before its
    cell runs. Regressions are counted per metric, with the same filter the widget applies."""
    use = "run this cell to filter by metric and status, page through and read samples"
    if isinstance(source, Comparison):
        regressed = ", ".join(
            f"{metric} {len(filter_rows(table, metric, 'regressed', threshold))}"
            for metric in source.summary["metric"]
        )
        return (
            f"Eval explorer: {source.a.name} vs {source.b.name},"
            f" {plural(len(table), 'paired sample')}, regressed per metric: {regressed}; {use}"
        )
    return (
        f"Eval explorer: {source.name}, {plural(len(table), 'sample')}, metrics"
        f" {', '.join(source.metrics)}; {use}"
    )
