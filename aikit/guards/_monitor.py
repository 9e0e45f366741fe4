"""The guards in production: how often each one blocks, over time, from the request log.

`block_rate(aikit.requests(), every="1h")` reads the `guards` column of the log (the
verdicts of every guarded request) and gives, per time bucket, the share of guarded requests
each guard blocked; `plot_block_rate` draws it with the legend outside the axes, so the
lines are never hidden behind it. Requests of endpoints without guards are not counted.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aikit.errors import GuardError

if TYPE_CHECKING:
    import pandas as pd

ACTIONS = ("block", "redact", "flag")


def _verdicts(cell: Any) -> list[dict[str, Any]] | None:
    if cell is None or (isinstance(cell, float) and cell != cell):  # None or NaN: no guards
        return None
    found = json.loads(cell) if isinstance(cell, str) else cell
    return list(found) if isinstance(found, list) else None


def _acted(verdict: dict[str, Any], action: str) -> bool:
    # A stream cut (stage "stream") ends the answer whatever the guard's own action: a block.
    if action == "block" and verdict.get("stage") == "stream":
        return True
    return bool(verdict.get("action") == action)


def block_rate(log: pd.DataFrame, *, every: str = "1h", action: str = "block") -> pd.DataFrame:
    """Per `every` (a pandas frequency: "1h", "15min", "1D") and guard, the share of guarded
    requests that guard blocked (or, with `action="redact"` / `"flag"`, acted on that way).

    Args:
        log: the request log, as `aikit.requests()` returns it (columns `time`, `guards`).
        every: the width of a time bucket.
        action: `block` (a stream cut counts as one), `redact` or `flag`.

    Returns:
        One row per bucket that holds guarded requests (index `time`, the bucket's start):
        `requests` (guarded requests in it), `any` (share acted on by any guard), then one
        column per guard that ran, sorted by name (shares in [0, 1]).
    """
    import pandas as pd

    if action not in ACTIONS:
        raise GuardError(f"action {action!r}: use one of {', '.join(ACTIONS)}")
    missing = {"time", "guards"} - set(log.columns)
    if missing:
        raise GuardError(
            f"the log has no {', '.join(sorted(missing))} column; pass aikit.requests()"
        )
    rows = []
    for when, cell in zip(log["time"], log["guards"], strict=True):
        verdicts = _verdicts(cell)
        if verdicts is None:
            continue
        row: dict[str, Any] = {"time": pd.Timestamp(when), "requests": 1}
        for v in verdicts:
            name = str(v.get("guard"))
            row[name] = max(row.get(name, 0), int(_acted(v, action)))
        row["any"] = int(any(_acted(v, action) for v in verdicts))
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["requests", "any"], index=pd.DatetimeIndex([], name="time"))
    frame = pd.DataFrame(rows).set_index("time").sort_index()
    names = sorted(c for c in frame.columns if c not in ("requests", "any"))
    frame[names] = frame[names].fillna(0)  # a guard that did not run on a request: not acted
    buckets = frame.resample(every)
    counts = buckets["requests"].sum()
    rates = buckets[["any", *names]].mean()
    out = pd.concat([counts.rename("requests"), rates], axis=1)
    out = out[out["requests"] > 0]
    out["requests"] = out["requests"].astype(int)
    return out


def plot_block_rate(rates: pd.DataFrame, *, ax: Any = None, title: str | None = None) -> Any:
    """Plot `block_rate(...)`: one line per guard (and `any`, dashed) over time, in percent,
    the legend outside the axes on the right. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.5))
    guards = [c for c in rates.columns if c not in ("requests", "any")]
    for name in guards:
        ax.plot(rates.index, rates[name] * 100, marker="o", label=name)
    if "any" in rates.columns:
        ax.plot(rates.index, rates["any"] * 100, color="black", linestyle="--", label="any guard")
    ax.set(ylabel="% of guarded requests", ylim=(-2, 102))
    ax.set_title(title or "requests blocked per guard")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize="small")
    ax.figure.autofmt_xdate()
    ax.figure.tight_layout()
    return ax
