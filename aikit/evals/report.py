"""`EvalResult.to_html(path)`: one self-contained HTML file (tables, PNG plots inlined as
base64) that opens anywhere and can be attached to a ticket."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aikit._markup import escape_html
from aikit.errors import MissingDependencyError

if TYPE_CHECKING:
    import pandas as pd


class EvalResult(Protocol):
    """What a report reads of an `aikit.evals.EvalResult` (a protocol, so this module does
    not import `evaluate`, which imports it)."""

    name: str
    metrics: list[str]
    samples: pd.DataFrame
    summary: pd.DataFrame
    usage: dict[str, Any]


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(result: EvalResult) -> list[str]:
    """The report's figures as base64 PNGs: metric means with 95% intervals, score spread."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "the eval report needs matplotlib; pip install matplotlib"
        ) from exc
    summary = result.summary
    means = summary["mean"].fillna(0.0)
    low = (means - summary["ci_low"].fillna(means)).clip(lower=0)
    high = (summary["ci_high"].fillna(means) - means).clip(lower=0)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(summary)))
    ax.barh(summary["metric"], means, xerr=[low, high], color="#4c72b0", capsize=3)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("mean score (bars: bootstrap 95% interval)")
    first = _png(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    for metric in result.metrics:
        ax.hist(result.samples[metric].dropna(), bins=10, range=(0, 1), alpha=0.5, label=metric)
    ax.set_xlabel("score per sample")
    ax.set_ylabel("samples")
    ax.legend(fontsize="small")
    second = _png(fig)
    plt.close(fig)
    return [first, second]


def _table(frame: pd.DataFrame) -> str:
    """`frame` as an HTML table, its text escaped the way every aikit HTML is."""
    plain = (type(None), bool, int, float)  # numbers and gaps: formatted by pandas
    text = frame.map(lambda v: v if isinstance(v, plain) else escape_html(v))
    return str(text.to_html(index=False, na_rep="", float_format="{:.3f}".format, escape=False))


def write_html(result: EvalResult, path: Path) -> Path:
    """Write the report for `result` to `path` and return the path."""
    images = "".join(
        f'<p><img alt="plot" src="data:image/png;base64,{p}"></p>' for p in plots(result)
    )
    usage = "".join(
        f"<tr><th>{escape_html(k)}</th><td>{escape_html(v)}</td></tr>"
        for k, v in result.usage.items()
    )
    columns = ["id", "repeat", "input", "expected", "output", "error", *result.metrics]
    samples = _table(result.samples[columns])
    summary = _table(result.summary)
    title = html.escape(result.name)  # <title> holds text only: no span around a `$`
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title} eval</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}}</style>
</head><body>
<h1>Eval: {escape_html(result.name)}</h1>
<h2>Summary</h2>{summary}
<h2>Plots</h2>{images}
<h2>Cost and tokens</h2><table>{usage}</table>
<h2>Samples</h2>{samples}
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
