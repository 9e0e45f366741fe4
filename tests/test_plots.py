"""The lessons' plots are readable: no legend covers a plotted point, line, bar or label (read
from matplotlib's artists by `plotcheck.covered`, on every figure each lesson displays when it
runs from its cassette), and no output of a lesson is a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest
from conftest import ROOT
from plotcheck import covered

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _figures(path: Path) -> int:
    """How many plots the committed notebook shows."""
    nb = nbformat.read(path, as_version=4)
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


PLOTTING = [p for p in LESSONS if _figures(p)]


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


def test_no_legend_covers_a_plotted_point_in_any_lesson(tmp_path: Path) -> None:
    # Each lesson that plots runs from its cassette in a kernel that checks every figure it
    # displays (an IPython startup file installs plotcheck); side by side, a few seconds each.
    assert {p.stem for p in PLOTTING} >= {"04_monitoring"}
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-plotcheck.py").write_text("import plotcheck\nplotcheck.install()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "OPENAI_"))}
    env.update(
        AIKIT_CACHE="replay",
        AIKIT_HOME=str(tmp_path / "home"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")]),
    )
    runs = {}
    for lesson in PLOTTING:
        env_one = env | {"PLOTCHECK_OUT": str(tmp_path / f"{lesson.stem}.jsonl")}
        command = [sys.executable, "-m", "papermill", "--no-progress-bar", "--log-level"]
        command += ["WARNING", str(lesson), str(tmp_path / lesson.name)]
        runs[lesson] = subprocess.Popen(
            command, cwd=ROOT, env=env_one, stderr=subprocess.PIPE, text=True
        )
    problems = []
    for lesson, run in runs.items():
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, f"{lesson.name}: {err[-3000:]}"
        report = tmp_path / f"{lesson.stem}.jsonl"
        checked = [json.loads(line) for line in report.read_text().splitlines()]
        assert len(checked) == _figures(lesson), f"{lesson.name}: {checked}"
        problems += [f"{lesson.stem} · {c}" for fig in checked for c in fig["covered"]]
    assert problems == []


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
