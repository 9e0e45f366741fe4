"""The notebooks are documentation that cannot rot: strict nbval from their cassettes and,
live, on the embedded model (the same outputs byte for byte, sanitized only where a run truly
varies); one answer per request across the cassettes; prose that quotes only what the outputs
show."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import plotcheck
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
        assert executed, f"{path.name}: commit it with outputs (`make rerecord`)"


def test_code_lines_fit_a_jupyterlab_cell() -> None:
    # JupyterLab's editor does not wrap code: a longer line is cut off at the cell's right
    # edge (01 had lines of 101-163 characters). Markdown wraps, so only code cells count.
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        long = [
            (index, len(line))
            for index, cell in enumerate(nb.cells)
            if cell.cell_type == "code"
            for line in cell.source.splitlines()
            if len(line) > 100
        ]
        assert not long, f"{path.name}: code lines over 100 characters (cell, length): {long}"


def test_rag_tables_show_text_left_aligned_without_markdown() -> None:
    # JupyterLab right-aligns table cells; chunk text and answers are Markdown (`**€600**`).
    nb = nbformat.read(ROOT / "notebooks" / "02_rag.ipynb", as_version=4)
    tables = [
        "".join(out["data"]["text/html"])
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "<td" in "".join(out.get("data", {}).get("text/html", ""))
    ]
    text_tables = [t for t in tables if "€600" in t or "paid holiday" in t]
    assert len(text_tables) == 2  # the retrieved chunks and the graded answers
    for table in text_tables:
        assert "**" not in table and "text-align: left" in table


def test_the_notebooks_folder_holds_only_lessons() -> None:
    # What a reader sees in JupyterLab's file browser: lessons, their cassettes and data.
    tracked = subprocess.run(
        ["git", "ls-files", "notebooks"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    top = {Path(name).parts[1] for name in tracked}
    assert top == {p.name for p in NOTEBOOKS} | {"cassettes", "data"}


def test_pytest_nbval_collects_the_lessons_from_root_and_from_notebooks() -> None:
    # The repository root's conftest.py: notebooks/data is corpus, a missing kernel one line.
    stray = ROOT / "test-artifacts" / "kernel-check" / "stray.ipynb"  # git-ignored
    stray.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nb.metadata.kernelspec = {"name": "no-such-kernel", "display_name": "x", "language": "python"}
    nbformat.write(nb, stray)
    runs = [  # side by side: each is a few seconds of imports
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", *args],
            cwd=cwd,
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cwd, args in (
            (ROOT, ["--collect-only", "-q", "notebooks/"]),
            (ROOT / "notebooks", ["--collect-only", "-q", "."]),
            (ROOT, ["-q", str(stray)]),
        )
    ]
    (root, _), (inside, _), (_, error) = (run.communicate(timeout=600) for run in runs)
    for run, out in zip(runs[:2], (root, inside), strict=True):
        assert run.returncode == 0, out[-2000:]
        collected = {Path(line.split("::")[0]).name for line in out.split() if "::" in line}
        assert collected == {p.name for p in NOTEBOOKS}
    assert runs[2].returncode == 4  # a usage error, before any kernel starts
    assert error.strip() == (
        f"ERROR: {stray} needs the Jupyter kernel 'no-such-kernel', which is not installed;"
        " install kernel 'no-such-kernel' or set the notebook's kernel to 'aikit'"
    )


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
            "--nbval-sanitize-with",
            str(ROOT / "tests" / "sanitize.cfg"),
            *map(str, NOTEBOOKS),
        ],
        cwd=ROOT,
        # plotcheck: each kernel also checks that no legend covers a point of its figures
        # and no series is hidden under another.
        env=_clean_env(AIKIT_CACHE="replay", AIKIT_HOME=str(tmp_path / "home"))
        | plotcheck.kernel_env(tmp_path / "plots"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
    assert not (tmp_path / "home" / "local-server.json").exists()  # replay started no model
    figures = plotcheck.reports(tmp_path / "plots")
    shown = sum(
        "image/png" in out.get("data", {})
        for nb in NOTEBOOKS
        for cell in nbformat.read(nb, as_version=4).cells
        for out in cell.get("outputs", [])
    )
    assert len(figures) == shown  # every plot the lessons show was checked
    assert [c for fig in figures for c in fig["covered"]] == [], "a legend covers a point"
    assert [h for fig in figures for h in fig["hidden"]] == [], "a series hides another"


# What each notebook's output must hold when it ran through (beyond its aikit.record outputs).
EXPECTED_OUTPUT = {
    "00_quickstart": "Paris",
    "03_evals": "accuracy",
    "04_monitoring": "runs of eval-nightly over",
    "05_serving": "requests_logged",
    "06_guardrails": "injection_recall",
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
@pytest.mark.timeout(3600)  # every lesson, one after another, on the embedded model
def test_strict_nbval_runs_every_notebook_live(live: Path) -> None:
    # What a reader gets who runs a lesson: the response store off, every answer from the
    # embedded model, and strict nbval: the committed outputs, byte for byte (sanitize.cfg
    # only). `make rerecord` re-records every lesson when the model's answers change.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rf",
            "--nbval-sanitize-with",
            str(ROOT / "tests" / "sanitize.cfg"),
            "--nbval-cell-timeout",
            "1200",
            "--timeout",  # pytest-timeout's 300 s (pyproject) would cut a slow judge cell first,
            "1200",  # and a cut cell is a timeout, not a difference: the same bound as nbval's
            *map(str, NOTEBOOKS),
        ],
        cwd=ROOT,
        env=_clean_env(AIKIT_CACHE="off", AIKIT_HOME=str(live)),
        capture_output=True,
        text=True,
        timeout=3500,
    )
    report = ROOT / "test-artifacts" / "live-nbval.txt"  # every differing cell, for re-recording
    report.parent.mkdir(exist_ok=True)
    report.write_text(done.stdout + done.stderr, encoding="utf-8")
    # Every cell must run live without an error, and give the committed outputs: a difference
    # means a lesson's outputs (or its prose) no longer show what a reader gets; re-record it
    # (`aikit rerecord`) and fix the prose that `test_prose_quotes...` then names.
    assert "Cell execution caused an exception" not in done.stdout, done.stdout[-6000:]
    assert "from pytest-timeout" not in done.stdout, done.stdout[-6000:]  # a cut cell too
    differing = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    assert done.returncode == 0 and not differing, f"see {report}: {differing}"
    assert " passed" in done.stdout, done.stdout[-6000:] + done.stderr[-2000:]


@pytest.mark.live
@pytest.mark.timeout(900)  # a live notebook runs a few minutes on 2 cores
def test_quickstart_answers_another_question_live(live: Path, tmp_path: Path) -> None:
    quickstart = str(ROOT / "notebooks" / "00_quickstart.ipynb")
    record = _run_live(
        live, tmp_path, quickstart, "-p", "question", "What is the capital of Italy?"
    )
    assert "Rome" in record["records"]["answer"]
    assert record["records"]["parsed_ok"] is True


def _answer_conflicts(cassettes: list[Path]) -> list[str]:
    """Requests that two cassettes answer differently. Replay reads every cassette in
    notebooks/cassettes, so such a request gets whichever answer is read last, and strict nbval
    of one of the two lessons then fails. A `v1:` entry is the same request as a `v2:` one
    when the rest of its canonical form is equal (version 1 had no `extra_body`)."""
    from aikit.cache import read_cassette

    answers: dict[str, dict[str, tuple[str, Any]]] = {}
    for cassette in cassettes:
        for _, request, response in read_cassette(cassette):
            canonical = json.dumps(
                {k: v for k, v in request.items() if k != "key_version"}, sort_keys=True
            )
            said = [(c["message"], c["finish_reason"]) for c in response["choices"]]
            answers.setdefault(canonical, {})[cassette.name] = (cassette.name, said)
    return [
        f"{json.loads(request)['messages'][-1]['content'][:80]!r} in {sorted(by)}"
        for request, by in answers.items()
        if len({json.dumps(said, sort_keys=True) for _, said in by.values()}) > 1
    ]


def test_no_two_cassettes_answer_one_request_differently(tmp_path: Path) -> None:
    cassettes = sorted((ROOT / "notebooks" / "cassettes").glob("*.jsonl"))
    assert _answer_conflicts(cassettes) == []
    # The check sees a conflict: one entry of 00's cassette with another answer, in a copy.
    first = json.loads((ROOT / "notebooks" / "cassettes" / "00_quickstart.jsonl").open().readline())
    first["response"]["choices"][0]["message"]["content"] = "Lyon."
    (tmp_path / "other.jsonl").write_text(json.dumps(first) + "\n")
    conflicts = _answer_conflicts([*cassettes, tmp_path / "other.jsonl"])
    assert len(conflicts) == 1 and "'00_quickstart.jsonl', 'other.jsonl'" in conflicts[0]


# Prose that survives a re-recording. The convention for a lesson's Markdown (outside code
# spans and fences): text in double quotes ("..." or “...”) quotes what this notebook shows, a
# model's answer or a printed line, and must occur in its committed outputs; so must every
# decimal figure (0.583, +0.04, −0.021) and count ("6 of 12"). Quote anything else
# (a document, a user's words, a hosted model) in *italics* or a code span, and write figures
# that are not outputs in words or in a code span (`temperature=0.7`).
_QUOTE = re.compile(r'"([^"\n]+?)"|“([^”\n]+?)”')
_FIGURE = re.compile(r"(?<![\w.])[-+−]?\d+\.\d+(?![\w.]*\.\d)|\b\d+ of \d+\b")


def _plain(text: str) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return " ".join(text.replace("**", "").replace("−", "-").split())


def _shown(nb: Any) -> str:
    """Everything a notebook's outputs show, as plain text (HTML tables without their tags)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") or "json" in mime:
                    text = (
                        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                    )
                    parts.append(text)
    return _plain("\n".join(parts))


def _unshown(nb: Any) -> list[str]:
    """The quotes and figures of a notebook's Markdown that no output of it shows."""
    shown = _shown(nb)
    missing = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        prose = re.sub(r"`[^`\n]*`", " ", re.sub(r"```.*?```", " ", cell.source, flags=re.S))
        quotes = [m.group(1) or m.group(2) for m in _QUOTE.finditer(prose)]
        figures = [m.group(0).lstrip("+") for m in _FIGURE.finditer(prose)]
        missing += [f"cell {index}: {q!r}" for q in quotes + figures if _plain(q) not in shown]
    return missing


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_prose_quotes_and_figures_appear_in_the_outputs(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    assert _unshown(nb) == [], f"{notebook.name}: Markdown names what no output shows"
