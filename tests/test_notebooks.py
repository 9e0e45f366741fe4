"""The notebooks are documentation that cannot rot: strict nbval from their cassettes, and a
live papermill run of the quickstart on the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "OPENAI_"))}
    env.update(extra)
    return env


def test_every_notebook_has_a_cassette_and_parameters() -> None:
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        assert (path.parent / "cassettes" / f"{path.stem}.jsonl").is_file(), path
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one `parameters` cell"
        assert nb.metadata.kernelspec.name == "aikit", f"{path.name}: use the project's kernel"
        executed = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
        assert executed, f"{path.name}: commit it with outputs (`make record`)"


def test_strict_nbval_replays_every_notebook(tmp_path: Path) -> None:
    # No AIKIT_CASSETTES: each kernel must find notebooks/cassettes on its own.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "-p",
            "no:cacheprovider",
            "-q",
            "--sanitize-with",
            str(ROOT / "notebooks" / "sanitize.cfg"),
            *map(str, NOTEBOOKS),
        ],
        cwd=ROOT,
        env=_clean_env(AIKIT_CACHE="replay", AIKIT_HOME=str(tmp_path / "home")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
    assert not (tmp_path / "home" / "local-server.json").exists()  # replay started no model


# What each notebook's output must hold when it ran through (beyond its aikit.record outputs).
EXPECTED_OUTPUT = {
    "00_quickstart": "Paris",
    "03_evals": "accuracy",
    "04_monitoring": "runs of eval-nightly over",
    "05_serving": "requests_logged",
}
# Plain papermill from the repository root for every notebook; from notebooks/ for one only:
# nbval (above) already starts every notebook's kernel in notebooks/ (CI time: ~2 min here).
PAPERMILL_CASES = [(nb, "root") for nb in NOTEBOOKS] + [
    (nb, "notebooks") for nb in NOTEBOOKS if nb.stem == "00_quickstart"
]


@pytest.mark.parametrize(
    ("notebook", "where"), PAPERMILL_CASES, ids=[f"{nb.stem}-from-{w}" for nb, w in PAPERMILL_CASES]
)
def test_plain_papermill_runs_every_notebook_from_the_root_and_notebooks(
    tmp_path: Path, notebook: Path, where: str
) -> None:
    # No AIKIT_NOTEBOOK_DIR, no AIKIT_CASSETTES: the notebook finds its data and its cassette
    # from the kernel's working directory alone, as `papermill NB OUT` gives it.
    cwd = ROOT if where == "root" else ROOT / "notebooks"
    out = tmp_path / "out.ipynb"
    before = set((ROOT / "notebooks").iterdir())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "--no-progress-bar",
            "--log-level",
            "WARNING",
            str(notebook.relative_to(cwd)),
            str(out),
        ],
        cwd=cwd,
        env=_clean_env(AIKIT_CACHE="replay", AIKIT_HOME=str(tmp_path / "home")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "application/vnd.aikit.record+json" in text
    assert EXPECTED_OUTPUT.get(notebook.stem, "") in text
    assert set((ROOT / "notebooks").iterdir()) == before  # nothing written beside the lessons


# Smaller live runs where a notebook has a knob for it (CI time on 2 cores).
LIVE_PARAMETERS = {
    "03_evals": ["-p", "limit", "12", "-p", "judge_items", "1", "-p", "calibration_claims", "3"]
}


def _run_live(live: Path, tmp_path: Path, *args: str) -> dict[str, Any]:
    """`aikit run ARGS` on the embedded model with the cache off; its one run record."""
    done = subprocess.run(
        [sys.executable, "-m", "aikit.cli", "run", *args, "--out", str(tmp_path / "runs")],
        cwd=tmp_path,
        env=_clean_env(AIKIT_HOME=str(live), AIKIT_CACHE="off"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("run.json")]
    return dict(record)


@pytest.mark.live
@pytest.mark.timeout(900)  # a live notebook runs a few minutes on 2 cores
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_runs_live_through_aikit_run(
    live: Path, tmp_path: Path, notebook: Path
) -> None:
    # Live, the point is that every cell runs against the real model; 03 scores a sample.
    extra = LIVE_PARAMETERS.get(notebook.stem, [])
    record = _run_live(live, tmp_path, str(notebook), *extra)
    # A notebook whose cassette holds answers asks the model live; 04 reads runs only.
    cassette = notebook.parent / "cassettes" / f"{notebook.stem}.jsonl"
    asks = bool(cassette.exists() and cassette.read_text().strip())
    assert record["status"] == "succeeded" and (record["usage"]["calls"] > 0) == asks
    assert record["usage"]["cached_calls"] == 0  # live: every answer came from the model


@pytest.mark.live
@pytest.mark.timeout(900)  # a live notebook runs a few minutes on 2 cores
def test_quickstart_answers_another_question_live(live: Path, tmp_path: Path) -> None:
    quickstart = str(ROOT / "notebooks" / "00_quickstart.ipynb")
    record = _run_live(
        live, tmp_path, quickstart, "-p", "question", "What is the capital of Italy?"
    )
    assert "Rome" in record["records"]["answer"]
    assert record["records"]["parsed_ok"] is True
