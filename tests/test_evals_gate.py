"""The `fail_under` quality gate: `aikit run --fail-under metric=value` and a playbook's
`fail_under:` make the run exit 1 when a recorded metric is below the threshold."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from aikit.cli import main
from aikit.errors import AikitError
from aikit.runner.gate import gate_failures, parse_thresholds


def make_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Gate demo"),
        nbformat.v4.new_code_cell(
            "value: float = 0.5  # the accuracy to record", metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell('import aikit\naikit.record("accuracy", value)'),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "gate.ipynb"
    nbformat.write(nb, path)
    return path


def test_gate_lines_name_metric_value_and_threshold() -> None:
    assert parse_thresholds(["accuracy=0.8", " f1 = 0.5"]) == {"accuracy": 0.8, "f1": 0.5}
    with pytest.raises(AikitError, match="'accuracy' is not METRIC=VALUE"):
        parse_thresholds(["accuracy"])
    with pytest.raises(AikitError, match="is not METRIC=VALUE"):
        parse_thresholds(["accuracy=high"])
    assert gate_failures([{"accuracy": 0.9}], {"accuracy": 0.8}) == []
    assert gate_failures([{"accuracy": 0.8}], {"accuracy": 0.8}) == []  # at the line passes
    assert gate_failures([{"accuracy": 0.5}], {"accuracy": 0.8}) == [
        "fail_under: accuracy = 0.5 is below 0.8"
    ]
    [missing] = gate_failures([{"f1": 0.9}], {"accuracy": 0.8})
    assert "accuracy was not recorded by any run" in missing
    [text] = gate_failures([{"accuracy": "high"}], {"accuracy": 0.8})
    assert "is not a number" in text


def test_cli_fail_under_sets_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = make_notebook(tmp_path)
    out = str(tmp_path / "runs")
    code = main(
        ["run", str(nb), "--out", out, "-p", "value", "0.5", "--fail-under", "accuracy=0.8"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "aikit: fail_under: accuracy = 0.5 is below 0.8" in err.splitlines()
    code = main(
        ["run", str(nb), "--out", out, "-p", "value", "0.9", "--fail-under", "accuracy=0.8"]
    )
    assert code == 0 and "fail_under" not in capsys.readouterr().err
    assert main(["run", str(nb), "--out", out, "--fail-under", "accuracy"]) == 2  # a usage error


def test_playbook_fail_under(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_notebook(tmp_path)
    playbook = tmp_path / "gate.yaml"
    playbook.write_text(
        "name: gate\nsteps:\n  - notebook: gate.ipynb\n    parameters: {value: 0.7}\n"
        "fail_under: {accuracy: 0.75}\n"
    )
    out = str(tmp_path / "runs")
    assert main(["run", str(playbook), "--out", out]) == 1
    assert "aikit: fail_under: accuracy = 0.7 is below 0.75" in capsys.readouterr().err
    # The command line adds to (and overrides) the playbook's thresholds.
    assert main(["run", str(playbook), "--out", out, "--fail-under", "accuracy=0.6"]) == 0


def test_each_run_record_keeps_its_gate(tmp_path: Path) -> None:
    from aikit.registry import iter_runs, runs

    make_notebook(tmp_path)
    playbook = tmp_path / "gate.yaml"
    playbook.write_text(
        "name: gate\nsteps:\n  - notebook: gate.ipynb\ngrid: {value: [0.7, 0.9]}\n"
        "fail_under: {accuracy: 0.8, f1: 0.5}\n"
    )
    out = tmp_path / "runs"
    assert main(["run", str(playbook), "--out", str(out), "--workers", "2"]) == 1
    gates = {r.parameters["value"]: r.gate for r in iter_runs(out, "gate")}
    # f1 is recorded by no run: it is not this run's gate (the playbook's gate line says so).
    assert gates[0.7] == {
        "fail_under": {"accuracy": 0.8},
        "passed": False,
        "failures": ["fail_under: accuracy = 0.7 is below 0.8"],
    }
    assert gates[0.9] == {"fail_under": {"accuracy": 0.8}, "passed": True, "failures": []}
    table = runs(out, "gate").set_index("value")
    assert table.loc[0.7, "gate_passed"] == False  # noqa: E712 (a numpy bool)
    assert table.loc[0.9, "gate_passed"] == True  # noqa: E712
    assert (table["fail_under_accuracy"] == 0.8).all()
    # A run without a gate keeps no gate and has no gate columns.
    nb = tmp_path / "gate.ipynb"
    assert main(["run", str(nb), "--out", str(tmp_path / "plain")]) == 0
    [plain] = iter_runs(tmp_path / "plain")
    assert plain.gate is None and "gate_passed" not in runs(tmp_path / "plain").columns


def test_eval_nightly_is_a_gated_grid_of_variants_and_slices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import ROOT

    from aikit.runner.playbook import load_playbook

    playbook = ROOT / "playbooks" / "eval-nightly.yaml"
    spec, [(notebook, runs)] = load_playbook(playbook)
    assert notebook.name == "03_evals.ipynb" and spec.fail_under == {"accuracy": 0.6}
    assert sorted((r["task"], r["subset"]) for r in runs) == [
        ("prompting:few_shot", "city"),
        ("prompting:few_shot", "sentiment"),
        ("prompting:instructed", "city"),
        ("prompting:instructed", "sentiment"),
    ]
    assert all(r["report"] == "eval_report.html" for r in runs)
    assert main(["run", str(playbook), "--dry-run", "--out", str(tmp_path)]) == 0
    assert "playbook eval-nightly: 4 runs" in capsys.readouterr().out


def test_the_example_history_was_made_by_the_runner_over_two_weeks() -> None:
    from conftest import ROOT

    from aikit.registry import iter_runs, runs

    folder = ROOT / "notebooks" / "data" / "monitoring"
    records = iter_runs(folder, "eval-nightly")
    table = runs(folder, "eval-nightly")
    assert len(records) >= 20
    assert (table["started"].max() - table["started"].min()).days >= 14
    assert table["task"].nunique() >= 2
    # What the runner writes (not hand-made): key, notebook hash, usage, gate, aikit version.
    for run in records:
        assert run.key and run.notebook_sha256 and run.usage and run.aikit_version and run.gate
        assert run.gate["fail_under"] == {"accuracy": 0.6}
        assert run.gate["passed"] == (run.records["accuracy"] >= 0.6)
        assert run.output is None  # executed notebooks are not kept (make_history.py)
    assert 0 < (~table["gate_passed"].astype(bool)).sum() < len(table)
