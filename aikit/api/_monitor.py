"""Live scores for monitoring (`04_monitoring`): per endpoint and model over time, and a plot
of them beside a nightly eval's series with the thresholds drawn.

    live = aikit.api.live_scores(freq="1h")            # from the request log
    nightly = aikit.runs("runs", "eval-nightly")       # the nightly playbook's runs
    aikit.api.plot_live_scores(live, nightly, metric="faithfulness", threshold=0.7)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

LIVE_COLUMNS = ["time", "endpoint", "model", "metric", "mean", "n", "unscored"]


def live_scores(
    metric: str | None = None,
    *,
    freq: str = "1h",
    endpoint: str | None = None,
    since: float | str | None = None,
    scores: pd.DataFrame | None = None,
    home: str | Path | None = None,
    log: str | Path | None = None,
) -> pd.DataFrame:
    """The live scores of `aikit api --score` per endpoint, model and metric over time.

    One row per period of `freq` (a pandas frequency: "1h", "15min", "1D") in which a score was
    computed: time (the period's start, UTC), endpoint, model, metric, mean (over the scored
    requests), n (requests scored), unscored (requests the metric left unscored).

    Args:
        metric: only this metric.
        freq: the length of a period.
        endpoint: only this endpoint.
        since: only scores at or after this time (Unix seconds or an ISO date string).
        scores: rows of `aikit.api.scores()` to summarise (default: read the log).
        home: the `AIKIT_HOME` whose log to read; log: the log's path or URL (as `requests()`).
    """
    import pandas as pd

    from aikit.api._log import scores as read_scores

    frame = read_scores(endpoint, since=since, home=home, log=log) if scores is None else scores
    if metric is not None:
        frame = frame[frame["metric"] == metric]
    if endpoint is not None:
        frame = frame[frame["endpoint"] == endpoint]
    if frame.empty:
        return pd.DataFrame(columns=LIVE_COLUMNS)
    frame = frame.assign(
        period=frame["time"].dt.floor(freq),
        model=frame["model"].fillna("(no model call)"),
        scored=frame["value"].notna(),
    )
    grouped = frame.groupby(["period", "endpoint", "model", "metric"], sort=True)
    out = grouped.agg(
        mean=("value", "mean"), n=("scored", "sum"), unscored=("scored", lambda s: int((~s).sum()))
    ).reset_index()
    out = out.rename(columns={"period": "time"})
    out["n"] = out["n"].astype(int)
    return out[LIVE_COLUMNS]


def _dodged(ax: Any, i: int, n: int, step_points: float = 5.0) -> Any:
    """Series `i` of `n` drawn `step_points` apart sideways (in points, whatever the axis
    range), so series with equal values sit side by side instead of one hiding another."""
    from matplotlib.transforms import ScaledTranslation

    shift = (i - (n - 1) / 2) * step_points / 72
    return ax.transData + ScaledTranslation(shift, 0, ax.figure.dpi_scale_trans)


def plot_live_scores(
    live: pd.DataFrame,
    nightly: pd.DataFrame | None = None,
    *,
    metric: str,
    nightly_metric: str | None = None,
    threshold: float | None = None,
) -> Any:
    """Live scores of `metric` (rows of `live_scores`) beside a nightly eval's series.

    Left: one line per endpoint · model, a period's mean score. Right (with `nightly`, rows of
    `aikit.runs(...)`): the nightly runs' `nightly_metric` (default `metric`), one line per
    model, task and subset, and the `fail_under_<metric>` gates found in the runs. Every
    threshold (`threshold` and the nightly gates) is a dashed line on both; the legends sit
    outside the axes, below them, so no point is hidden. Returns the matplotlib figure.
    """
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    nightly_metric = nightly_metric or metric
    show_nightly = nightly is not None and nightly_metric in nightly.columns
    fig, axes = plt.subplots(
        1, 2 if show_nightly else 1, figsize=(11 if show_nightly else 6, 3.6), sharey=True
    )
    axes = list(axes) if show_nightly else [axes]
    left = axes[0]
    rows = live[live["metric"] == metric] if not live.empty else live
    live_groups = list(rows.groupby(["endpoint", "model"], sort=True)) if not rows.empty else []
    for i, ((endpoint, model), series) in enumerate(live_groups):
        left.plot(
            series["time"],
            series["mean"],
            marker="o",
            label=f"/{endpoint} · {model}",
            transform=_dodged(left, i, len(live_groups)),
        )
    if rows.empty:
        left.text(0.5, 0.5, f"no live {metric} scores yet", ha="center", transform=left.transAxes)
    left.set(title=f"live {metric} (mean per period)", ylabel=metric, ylim=(-0.05, 1.05))
    lines = {threshold: f"threshold {threshold:g}"} if threshold is not None else {}
    if show_nightly:
        assert nightly is not None
        right = axes[1]
        runs = nightly.sort_values("started")
        by = [c for c in ("model", "task", "subset") if c in runs.columns and runs[c].nunique()]
        groups: list[tuple[Any, pd.DataFrame]] = (
            list(runs.groupby(by, dropna=False)) if by else [(("nightly",), runs)]
        )
        for i, (key, series) in enumerate(groups):
            label = " · ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
            right.plot(
                series["started"],
                series[nightly_metric],
                marker="s",
                label=label,
                transform=_dodged(right, i, len(groups)),
            )
        right.set(title=f"nightly eval: {nightly_metric}")
        gate = f"fail_under_{nightly_metric}"
        if gate in runs.columns:
            for value in runs[gate].dropna().unique():
                lines.setdefault(float(value), f"nightly gate {float(value):g}")
    for ax in axes:
        for value, name in sorted(lines.items()):
            ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=name)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=6)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(
                handles,
                labels,
                fontsize="small",
                loc="upper left",
                bbox_to_anchor=(0.0, -0.16),
                ncols=1,
                frameon=False,
            )
    fig.tight_layout()
    return fig
