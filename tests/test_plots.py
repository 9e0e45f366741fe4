"""The lessons' plots are readable: no legend covers a plotted point, line, bar or label and no
series is hidden under another (read from matplotlib's artists by `plotcheck.covered` and
`plotcheck.hidden`, on every figure 04 displays when it runs;
test_notebooks.py's nbval replay run checks every lesson's figures the same way), and no
output of a lesson is a warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
from conftest import ROOT
from plotcheck import covered, hidden, kernel_env, reports

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _figures(path: Path) -> int:
    """How many plots the committed notebook shows."""
    nb = nbformat.read(path, as_version=4)
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


def test_the_check_sees_a_legend_over_points_lines_and_bars_and_passes_one_beside_them() -> None:
    fig, (lines, bars) = plt.subplots(1, 2, figsize=(8, 3))
    lines.plot([0, 1, 2, 3], [0.0, 0.0, 0.0, 0.0], marker="o", label="flat at zero")
    lines.plot([0, 3], [1.0, 1.0], label="a line with no point under the legend")
    lines.scatter([0.1], [0.02], marker="x", color="red", label="below the gate")
    lines.set(title="lines", ylim=(-0.05, 1.05))
    lines.legend(loc="lower left")
    bars.bar(["a", "b"], [0.9, 1.0], label="tall bars")
    bars.set(title="bars")
    bars.legend(loc="upper right")
    assert covered(fig) == [
        "bars: legend covers tall bars",
        "lines: legend covers below the gate",
        "lines: legend covers flat at zero",
    ]
    lines.legend(loc="center left")  # over the segment from (0, 1) to (3, 1)? no: between
    lines.set_ylim(-0.05, 1.05)
    assert "lines: legend covers a line with no point under the legend" not in covered(fig)
    lines.legend(loc="upper center")  # across the line at 1.0, between its two ends
    assert "lines: legend covers a line with no point under the legend" in covered(fig)
    lines.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12))  # below the axes
    lines.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    assert covered(fig) == ["bars: legend covers tall bars"]  # beside its axes: in the next
    lines.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12))  # below the axes
    bars.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    assert covered(fig) == []
    plt.close(fig)


def _series_figure(dodge: float, trend_zorder: float) -> Any:
    """Two models with the same scores (model b moved `dodge` days sideways), a third that
    meets them once, and runs as dots with a wide trend line drawn at `trend_zorder`."""
    days, score = np.array([0, 1, 2, 3]), [0.8, 0.8, 0.9, 0.85]
    fig, (lines, dots) = plt.subplots(1, 2, figsize=(8, 3))
    lines.plot(days, score, marker="o", label="model a")
    lines.plot(days + dodge, score, marker="o", label="model b")
    lines.plot(days, [0.5, 0.6, 0.9, 0.7], marker="s", label="model c")  # meets a on day 2
    lines.set(title="lines")
    dots.scatter(days, score, s=40, label="run 1")
    dots.plot(days, score, color="k", linewidth=6, zorder=trend_zorder, label="trend")
    dots.set(title="dots")
    return fig


def test_the_check_sees_a_series_hidden_under_a_later_one_and_passes_one_dodged() -> None:
    hiding = _series_figure(dodge=0.0, trend_zorder=3)  # the trend drawn over the dots
    assert hidden(hiding) == [
        "dots: run 1 is hidden under trend",
        "lines: model a is hidden under model b, model c",
    ]
    # b a sixth of a day aside (~15 px, over three marker radii); the dots drawn over the trend
    dodged = _series_figure(dodge=0.15, trend_zorder=0.5)  # scatter: zorder 1
    assert hidden(dodged) == []
    plt.close(hiding)
    plt.close(dodged)


def test_no_legend_covers_a_plotted_point_in_04(tmp_path: Path) -> None:
    # 04 runs in a kernel that checks every figure it displays (plotcheck's startup file);
    # the strict nbval replay run in test_notebooks.py does the same for every lesson.
    lesson = ROOT / "notebooks" / "04_monitoring.ipynb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "OPENAI_"))}
    env |= kernel_env(tmp_path) | {"AIKIT_CACHE": "replay", "AIKIT_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "papermill", "--no-progress-bar", "--log-level", "WARNING"]
    done = subprocess.run(
        [*command, str(lesson), str(tmp_path / lesson.name)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checked = reports(tmp_path)
    assert len(checked) == _figures(lesson) >= 4, checked
    assert [c for fig in checked for c in fig["covered"]] == []
    assert [h for fig in checked for h in fig["hidden"]] == []


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_no_lesson_output_is_a_warning(lesson: Path) -> None:
    nb = nbformat.read(lesson, as_version=4)
    warnings = [
        (index, "".join(out.get("text", ""))[:200])
        for index, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("name") == "stderr" and "Warning" in "".join(out.get("text", ""))
    ]
    assert warnings == [], f"{lesson.name}: warnings in outputs (cell, text): {warnings}"
