"""`aikit run`, playbooks, secrets, records and the run registry, on real kernels."""

from __future__ import annotations

import ast
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from conftest import API_KEY

import aikit
from aikit.errors import ParameterError, RunError
from aikit.runner import describe_parameters, read_parameters, run_playbook

PARAMS_CELL = """\
# Parameters
question: str = "hi"  # what to ask
temperature: float = 0.5  # sampling temperature
n: int = 2  # how many
labels: list[str] = ["a", "b"]  # label set
# whether to shout
loud: bool = False
mode = "fast"  # no annotation: the default's type
api_key: str = ""  # a secret: pass secret:NAME
"""

BODY = """\
import os
import aikit
import pandas as pd
if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
aikit.record("answer", question.upper() if loud else question)
aikit.record("score", temperature * n)
aikit.record("labels", labels)
aikit.record("key_length", len(api_key))
aikit.record("table", pd.DataFrame({"label": labels, "n": [n] * len(labels)}))
print("key is", api_key)
open("written.txt", "w").write(os.getcwd())
"""


def make_notebook(folder: Path, name: str = "demo.ipynb", body: str = BODY) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Demo"),
        nbformat.v4.new_code_cell(PARAMS_CELL, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / name
    nbformat.write(nb, path)
    return path


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aikit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )


def test_params_reads_types_defaults_and_help(tmp_path: Path) -> None:
    params = read_parameters(make_notebook(tmp_path))
    assert list(params) == ["question", "temperature", "n", "labels", "loud", "mode", "api_key"]
    assert (params["labels"].type, params["labels"].default, params["labels"].help) == (
        "list[str]",
        ["a", "b"],
        "label set",
    )
    assert params["loud"].help == "whether to shout"  # a comment on the line above
    assert params["mode"].type == "" and params["mode"].default == "fast"
    table = describe_parameters(tmp_path / "demo.ipynb")
    assert table.splitlines()[0].split() == ["name", "type", "default", "help"]
    rows = {line.split()[0]: line.split()[1:3] for line in table.splitlines()[1:]}
    assert rows["temperature"] == ["float", "0.5"] and rows["mode"] == ["str", "'fast'"]


def test_cli_values_convert_to_declared_types(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path)
    got = aikit.runner.convert(
        nb,
        {
            "question": "1.0",
            "temperature": "1",
            "n": "3",
            "labels": "[x, y]",
            "loud": "yes",
            "mode": "slow",
        },
        from_cli=True,
    )
    assert got == {
        "question": "1.0",
        "temperature": 1.0,
        "n": 3,
        "labels": ["x", "y"],
        "loud": True,
        "mode": "slow",
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"tempreature": "1"},
            "unknown parameter 'tempreature'; known parameters:"
            " question, temperature, n, labels, loud, mode, api_key",
        ),
        ({"n": "many"}, "parameter 'n' expects int, got 'many' (str)"),
        ({"labels": "{a: 1}"}, "parameter 'labels' expects list[str], got {'a': 1} (dict)"),
        ({"mode": [1]}, "parameter 'mode' expects str, got [1] (list)"),
        (
            {"api_key": "sk-live-123"},
            "parameter 'api_key' looks like a secret and got a plain value; pass secret:NAME",
        ),
        ({"api_key": "secret:not a name"}, "is not a valid secret reference"),
    ],
)
def test_bad_values_are_refused_before_a_kernel_starts(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    with pytest.raises(ParameterError) as info:
        aikit.runner.convert(make_notebook(tmp_path), values, from_cli=True)
    assert message in str(info.value)


def test_run_records_values_usage_and_secrets_stay_out(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path)
    secret = "s3cr3t-Value-that-must-not-leak"
    done = cli(
        "run",
        str(nb),
        "-p",
        "n",
        "3",
        "-p",
        "labels",
        "[x, y, z]",
        "-p",
        "api_key",
        "secret:MY_TOKEN",
        "--out",
        str(tmp_path / "runs"),
        env={"MY_TOKEN": secret},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    [run_dir] = (tmp_path / "runs" / "demo").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["error"] is None
    assert record["parameters"] == {"n": 3, "labels": ["x", "y", "z"], "api_key": "secret:MY_TOKEN"}
    assert record["records"]["score"] == 1.5 and record["records"]["labels"] == ["x", "y", "z"]
    assert record["records"]["key_length"] == len(secret)  # resolved inside the kernel
    assert record["records"]["table"]["dataframe"]["columns"] == ["label", "n"]
    assert record["schema_version"] == 1 and record["aikit_version"] == version("aikit")
    assert record["duration_s"] > 0 and record["git_commit"] is None  # tmp_path is no git repo
    # The kernel worked in the run's own folder.
    assert (run_dir / "written.txt").read_text() == str(run_dir)
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    executed = (run_dir / "demo.ipynb").read_text()
    assert "secret:MY_TOKEN" in executed and "key is secret:MY_TOKEN" in executed
    assert secret not in done.stdout + done.stderr
    assert "\nexecuted notebook: runs/demo/" in done.stdout and "score = 1.5" in done.stdout


def test_failing_cell_is_one_line_exit_1_and_keeps_the_notebook(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path)
    done = cli("run", str(nb), "-p", "n", "-1", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 1
    # "cell N" is the execution count shown in the executed notebook (after the injected cell).
    assert done.stderr == "demo.ipynb: cell 3: ValueError: n must be >= 0, got -1\n"
    [run_dir] = (tmp_path / "runs" / "demo").iterdir()
    executed = nbformat.read(run_dir / "demo.ipynb", as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0].ename == "ValueError"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_a_failed_run_carries_the_cell_as_a_run_error(tmp_path: Path) -> None:
    run = aikit.run_notebook(make_notebook(tmp_path), {"n": -1}, out=tmp_path / "runs")
    assert not run.ok and run.failure == {
        "cell": 3,
        "ename": "ValueError",
        "evalue": "n must be >= 0, got -1",
    }
    with pytest.raises(RunError) as caught:
        run.raise_for_status()
    error = caught.value
    assert (error.cell, error.ename, error.evalue) == (3, "ValueError", "n must be >= 0, got -1")
    assert str(error) == "demo.ipynb: cell 3: ValueError: n must be >= 0, got -1"
    again = aikit.registry.load_run(run.dir)  # the same type comes back from run.json
    assert again == run and isinstance(again, aikit.Run)
    ok = aikit.run_notebook(make_notebook(tmp_path), {"n": 2}, out=tmp_path / "runs")
    assert ok.raise_for_status() is ok
    assert list(ok.value("table")["n"]) == [2, 2]


def test_run_playbook_returns_what_the_cli_prints(tmp_path: Path) -> None:
    book = _playbook(tmp_path, grid="n: [1, 2]", extra="fail_under:\n  score: 0.8\n")
    result = run_playbook(book, out=tmp_path / "runs")
    assert [r.ok for r in result.runs] == [True, True] and result.failed == []
    assert result.thresholds == {"score": 0.8}
    assert result.gate_failures == ["fail_under: score = 0.5 is below 0.8"]
    assert not result.ok
    assert result.summary_csv == str(tmp_path / "runs" / "sweep" / "summary.csv")
    assert result.summary_html is not None and Path(result.summary_html).is_file()
    assert len(pd.read_csv(result.summary_csv)) == 2
    stricter = run_playbook(book, out=tmp_path / "runs", fail_under={"score": 0.1})
    assert all(r.skipped for r in stricter.runs) and stricter.gate_failures == []
    assert stricter.ok  # the call's threshold replaces the playbook's for that metric


def test_a_playbook_is_planned_into_typed_runs_reading_the_file_once(tmp_path: Path) -> None:
    from aikit.runner import Plan, RunSpec, plan_playbook

    book = _playbook(tmp_path, grid="n: [1, 2]", extra="fail_under:\n  score: 0.8\n")
    plan = plan_playbook(book, out=tmp_path / "runs")
    assert isinstance(plan, Plan) and (plan.name, plan.workers) == ("sweep", 2)
    assert plan.fail_under == {"score": 0.8} and plan.out == tmp_path / "runs"
    book.write_text("not: a playbook any more")  # the plan holds the parsed file
    specs = plan.specs
    assert [s.parameters["n"] for s in specs] == [1, 2] and all(
        isinstance(s, RunSpec) for s in specs
    )
    assert [p.earlier for step in plan.steps for p in step] == [None, None]
    assert RunSpec.from_json(json.loads(json.dumps(specs[0].to_json()))) == specs[0]


def test_run_notebook_decides_its_gate(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path)
    gated = aikit.run_notebook(
        notebook, {"n": 1}, out=tmp_path / "runs", fail_under={"score": 0.8, "f1": 0.5}
    )
    assert gated.ok and gated.gate_failures == [
        "fail_under: score = 0.5 is below 0.8",
        "fail_under: f1 was not recorded by any run (threshold 0.5); record it with"
        " aikit.record('f1', value)",
    ]
    record = json.loads((Path(gated.dir) / "run.json").read_text())
    assert "gate_failures" not in record  # the run keeps its own gate, not the run's lines
    assert record["gate"] == {
        "fail_under": {"score": 0.8},
        "passed": False,
        "failures": gated.gate_failures[:1],
    }


def test_rerecord_goes_through_the_runner_and_keeps_no_secret(tmp_path: Path, remote: Any) -> None:
    nb = make_notebook(
        tmp_path,
        body="import aikit\nprint(aikit.chat('Say hi.', max_tokens=5).text)\n",
    )
    cassette = aikit.runner.rerecord(nb)
    assert cassette == tmp_path / "cassettes" / "demo.jsonl"
    entries = [json.loads(line) for line in cassette.read_text().splitlines()]
    assert len(entries) == 1 and entries[0]["request"]["model"] == "test-model"
    executed = nbformat.read(nb, as_version=4)
    printed = "".join(o.get("text", "") for o in executed.cells[2].outputs)
    assert printed.strip() == entries[0]["response"]["choices"][0]["message"]["content"]
    assert "papermill" not in executed.metadata  # no timestamps: the diff stays small
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text(errors="replace"), path


def test_rerecord_replays_with_every_cassette_in_a_fresh_home(tmp_path: Path, remote: Any) -> None:
    # The committed outputs come from the replay pass: it must see what the replay nbval sees
    # (every cassette beside the notebook; no store, no runs of the user's home).
    (tmp_path / "cassettes").mkdir()
    (tmp_path / "cassettes" / "other.jsonl").write_text("")
    home = Path(os.environ["AIKIT_HOME"])
    (home / "runs").mkdir(parents=True, exist_ok=True)
    nb = make_notebook(
        tmp_path,
        body="import os\nfrom pathlib import Path\nfrom aikit.settings import get_settings\n"
        "print(sorted(p.name for p in get_settings().cassettes if p.suffix == '.jsonl'))\n"
        "home = Path(os.environ['AIKIT_HOME'])\n"
        "print(sorted(p.name for p in home.iterdir()) if home.exists() else 'fresh')\n",
    )
    aikit.runner.rerecord(nb)
    executed = nbformat.read(nb, as_version=4)
    printed = "".join(o.get("text", "") for o in executed.cells[2].outputs).splitlines()
    assert printed == ["['demo.jsonl', 'other.jsonl']", "fresh"]


def test_rerecord_commits_the_new_answers_not_the_old_cassettes(
    tmp_path: Path, remote: Any
) -> None:
    # The same request, answered differently on the second recording (a server change): the
    # committed outputs must be the new answer, although the old cassette is still beside it
    # while the replay pass runs.
    nb = make_notebook(tmp_path, body="import aikit\nprint(aikit.chat('Say hi.').text)\n")
    printed = []
    for answer in ("first answer", "second answer"):
        remote.enqueue(answer)
        cassette = aikit.runner.rerecord(nb)
        cells = nbformat.read(nb, as_version=4).cells
        printed.append("".join(o.get("text", "") for o in cells[2].outputs).strip())
    assert printed == ["first answer", "second answer"]
    assert "second answer" in cassette.read_text() and "first answer" not in cassette.read_text()


def test_rerecord_prints_progress_lines_as_aikit_run_does(tmp_path: Path, remote: Any) -> None:
    nb = make_notebook(
        tmp_path, body="import aikit\nprint(aikit.chat('Say hi.', max_tokens=5).text)\n"
    )
    done = cli("rerecord", str(nb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # Which cell a pass is in is printed every few seconds: as many lines as the machine's load.
    cells = [line for line in lines if re.fullmatch(r"\[[12]/2\] demo: cell [1-3]/3", line)]
    runs = [line for line in lines if line not in cells]
    assert runs[0] == "[1/2] demo: recording on the model"
    assert re.fullmatch(r"\[1/2\] demo: succeeded in \d+\.\d s", runs[1]), lines
    assert runs[2] == "[2/2] demo: replaying the new cassette"
    assert re.fullmatch(r"\[2/2\] demo: succeeded in \d+\.\d s", runs[3]), lines
    assert runs[4:] == [f"re-recorded {nb} (cassette {tmp_path / 'cassettes' / 'demo.jsonl'})"]


def test_rerecord_saves_json_outputs_as_jupyterlab_writes_them(tmp_path: Path, remote: Any) -> None:
    # JupyterLab has one number type: it saves a recorded 1.0 as 1. A rerecorded notebook that
    # kept 1.0 would change on the first Run All and save.
    nb = make_notebook(tmp_path, body="import aikit\naikit.record('share', 1.0)\n")
    done = cli("rerecord", str(nb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [out] = [o for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])]
    [record] = [v for k, v in out["data"].items() if k.endswith("json")]
    assert record["value"] == 1 and isinstance(record["value"], int)


def test_user_mistakes_are_one_line_exit_2(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path)
    for args, start in [
        (["run", str(nb), "-p", "nn", "1"], "aikit: error: "),
        (["run", str(tmp_path / "missing.ipynb")], "aikit: error: "),
        (["run", str(nb), "-p", "api_key", "plain"], "aikit: error: "),
    ]:
        done = cli(*args, cwd=tmp_path)
        assert (
            done.returncode == 2 and done.stderr.startswith(start) and done.stderr.count("\n") == 1
        )
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_missing_kernel_says_how_to_install_it(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path)
    data = json.loads(nb.read_text())
    data["metadata"]["kernelspec"]["name"] = "no-such-kernel"
    nb.write_text(json.dumps(data))
    done = cli("run", str(nb), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "needs the Jupyter kernel 'no-such-kernel', which is not installed" in done.stderr
    data["metadata"]["kernelspec"]["name"] = "aikit"
    nb.write_text(json.dumps(data))
    assert aikit.runner.check_kernel(nb) == "aikit"  # installed by `make setup`


def _playbook(
    tmp_path: Path, grid: str = "n: [1, 2]\n  temperature: [0.0, 1.0]", extra: str = ""
) -> Path:
    (tmp_path / "notebooks").mkdir()
    make_notebook(tmp_path / "notebooks")
    book = tmp_path / "playbooks" / "sweep.yaml"
    book.parent.mkdir(exist_ok=True)
    book.write_text(
        f"name: sweep\ndescription: test\nworkers: 2\nsteps:\n  - notebook: notebooks/demo.ipynb\n"
        f"    parameters: {{question: grid}}\ngrid:\n  {grid}\n{extra}"
    )
    return book


def test_playbook_grid_runs_in_parallel_and_skips_done(tmp_path: Path) -> None:
    book = _playbook(tmp_path, grid="n: [1, -1]\n  temperature: [0.0, 1.0]")
    done = cli("run", str(book), cwd=tmp_path)
    assert done.returncode == 1  # the two n=-1 runs fail; the others still ran
    frame = aikit.runs(tmp_path / "runs")
    assert sorted(frame["status"]) == ["failed", "failed", "succeeded", "succeeded"]
    ok = frame[frame["status"] == "succeeded"].sort_values("temperature")
    assert list(ok["score"]) == [0.0, 1.0] and set(ok["question"]) == {"grid"}
    assert (
        "\nruns: runs/sweep/  summary: runs/sweep/summary.html and runs/sweep/summary.csv"
        in done.stdout
    )
    # As it goes: a line per run started and finished, with the parameters that vary (not
    # `question`, the same in every run), status, duration and recorded numbers.
    started = re.findall(
        r"^\[(\d)/4\] demo (n=-?1 temperature=[01]\.0): started$", done.stdout, re.M
    )
    assert sorted(n for n, _ in started) == ["1", "2", "3", "4"] and len(set(started)) == 4
    finished = re.findall(
        r"^\[\d/4\] demo (n=-?1) temperature=[01]\.0: (\w+) in \d+\.\d s  (.*)$",
        done.stdout,
        re.M,
    )
    assert sorted(finished) == [
        ("n=-1", "failed", "demo.ipynb: cell 3: ValueError: n must be >= 0, got -1"),
        ("n=-1", "failed", "demo.ipynb: cell 3: ValueError: n must be >= 0, got -1"),
        ("n=1", "succeeded", "score=0.0  key_length=0"),
        ("n=1", "succeeded", "score=1.0  key_length=0"),
    ]
    # the summary: one table of the columns with values (no usage: the notebook calls no model)
    header = done.stdout.split("\ndemo.ipynb\n", 1)[1].splitlines()[0].split()
    columns = "run_id status duration_s question n temperature answer score key_length"
    assert header == columns.split()
    summary = pd.read_csv(tmp_path / "runs" / "sweep" / "summary.csv")
    assert len(summary) == 4
    # The two runs overlapped in time: grid items ran in parallel.
    spans = sorted(
        (pd.Timestamp(r["started"]), pd.Timestamp(r["ended"]))
        for r in map(lambda p: json.loads(p.read_text()), (tmp_path / "runs").rglob("run.json"))
    )
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    dry = cli("run", str(book), "--dry-run", cwd=tmp_path)
    assert dry.stdout.count("skip (succeeded in") == 2 and dry.stdout.count("  run\n") == 2
    again = cli("run", str(book), cwd=tmp_path)
    assert again.stdout.count("skipped (done)") == 2
    assert again.stdout.count(": reused, succeeded earlier in ") == 2
    assert len(aikit.runs(tmp_path / "runs")) == 6  # only the 2 failures ran again
    forced = cli("run", str(book), "--force", "--workers", "1", cwd=tmp_path)
    assert forced.returncode == 1 and len(aikit.runs(tmp_path / "runs")) == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nsteps:\n  - notebok: notebooks/demo.ipynb\n",
            "steps[0].notebok: unknown field; known fields: notebook, parameters",
        ),
        (
            "name: x\nsteps:\n  - notebook: notebooks/nope.ipynb\n",
            "steps[0].notebook: notebooks/nope.ipynb does not exist",
        ),
        (
            "name: x\nsteps:\n  - notebook: notebooks/demo.ipynb\ngrid:\n  colour: [1]\n",
            "grid.colour: no step's notebook declares this parameter",
        ),
        (
            "name: x\nsteps:\n  - notebook: notebooks/demo.ipynb\n    parameters: {n: lots}\n",
            "steps[0].parameters: ",
        ),
        ("name: x\nsteps: [\n", "is not valid YAML"),
        ("name: x\nsteps: []\n", "steps: List should have at least 1 item"),
        (
            "name: x\nworkers: 0\nsteps:\n  - notebook: notebooks/demo.ipynb\n",
            "workers: Input should be greater than or equal to 1",
        ),
    ],
)
def test_playbook_is_validated_whole_first(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "notebooks").mkdir()
    make_notebook(tmp_path / "notebooks")
    book = tmp_path / "playbooks" / "bad.yaml"
    book.parent.mkdir()
    book.write_text(text)
    done = cli("run", str(book), cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.startswith(f"aikit: error: {book}")
    assert not (tmp_path / "runs").exists()


def test_compare_two_runs(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path)
    a = aikit.run_notebook(nb, {"n": 1}, out=tmp_path / "runs")
    b = aikit.run_notebook(nb, {"n": 4, "temperature": 0.25}, out=tmp_path / "runs")
    assert a.ok and b.ok and a.records["score"] == 0.5 and b.records["score"] == 1.0
    table = aikit.registry.compare_runs(a.run_id, b.run_id, tmp_path / "runs")
    score = table[(table["kind"] == "record") & (table["name"] == "score")].iloc[0]
    assert (score["a"], score["b"], score["delta"]) == (0.5, 1.0, 0.5)
    n = table[(table["kind"] == "parameter") & (table["name"] == "n")].iloc[0]
    assert (n["a"], n["b"], n["delta"]) == (1, 4, 3)
    shown = cli("compare", a.run_id, b.run_id, "--out", str(tmp_path / "runs"))
    assert shown.returncode == 0 and "score" in shown.stdout
    listed = cli("runs", "--out", str(tmp_path / "runs"))
    assert a.run_id in listed.stdout and b.run_id in listed.stdout


def test_dask_executor_with_a_local_cluster_and_a_scheduler_address(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    book = _playbook(tmp_path, grid="n: [1, 2]")
    done = cli("run", str(book), "--executor", "dask", "--workers", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(aikit.runs(tmp_path / "runs")["score"]) == [0.5, 1.0]  # temperature 0.5 x n
    # on Dask a run is seen submitted and finished (its cells are on a worker, out of reach)
    assert sorted(re.findall(r"^\[\d/2\] demo (n=\d): submitted$", done.stdout, re.M)) == [
        "n=1",
        "n=2",
    ]
    assert len(re.findall(r"^\[\d/2\] demo n=\d: succeeded in .* score=", done.stdout, re.M)) == 2
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        done = cli(
            "run",
            str(book),
            "--force",
            "--executor",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    assert len(aikit.runs(tmp_path / "runs")) == 4
    bad = cli(
        "run", str(book), "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", cwd=tmp_path
    )
    assert bad.returncode == 2 and bad.stderr.startswith(
        "aikit: error: cannot reach the Dask scheduler"
    )


def test_aikit_run_shows_the_cell_a_run_is_in_without_a_line_per_cell(tmp_path: Path) -> None:
    # Not a terminal: a plain line at most every 5 s per run, not one per cell.
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("pause: float = 1.0", metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell("import time\ntime.sleep(pause)") for _ in range(8)]
    nb.cells += [nbformat.v4.new_code_cell("import aikit\naikit.record('score', 0.5)")]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "slow.ipynb")
    done = cli("run", "slow.ipynb", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[1/1] slow: started"
    cells = [int(n) for n in re.findall(r"^\[1/1\] slow: cell (\d+)/10$", done.stdout, re.M)]
    assert 1 <= len(cells) <= 3 and cells == sorted(cells), done.stdout  # 8+ s, every 5 s
    assert re.search(r"^\[1/1\] slow: succeeded in \d+\.\d s  score=0\.5$", done.stdout, re.M)
    assert done.stdout.index("succeeded in") < done.stdout.index("executed notebook: ")


def test_progress_draws_one_live_line_on_a_terminal_and_reads_cell_tokens() -> None:
    import io

    from aikit.registry import Run
    from aikit.runner.progress import Progress, read_cells

    calls: list[tuple[int, int]] = []
    stderr = b"warming up\n\raikit-cell 0 5\raikit-cell 1 5   \rTraceback\nValueError: x"
    lines = read_cells(io.BytesIO(stderr), lambda n, total: calls.append((n, total)))
    assert calls == [(0, 5), (1, 5)] and lines == ["warming up", "Traceback", "ValueError: x"]

    screen = io.StringIO()
    progress = Progress(2, stream=screen, tty=True, varying=["k"])
    from aikit.runner import RunSpec

    def spec(run_id: str, k: int) -> RunSpec:
        return RunSpec("/x/nb.ipynb", {"k": k, "same": 0}, "nb", run_id, f"/x/{run_id}", "key")

    a, b = spec("a", 1), spec("b", 2)
    progress.started(a)
    progress.started(b)
    progress.cell(a, 2, 5)
    time.sleep(0.25)  # the live line is redrawn at most 5 times a second
    progress.cell(b, 0, 5)
    run = Run(run_id="a", name="nb", notebook="nb.ipynb", status="succeeded", duration_s=1.25)
    run.records = {"accuracy": 0.75, "answer": "text is not shown"}
    progress.finished(run)
    text = screen.getvalue()
    assert text.startswith("[1/2] nb k=1: started\n[2/2] nb k=2: started\n")
    assert "\r\x1b[K[1/2] nb k=1: cell 3/5" in text
    assert "\r\x1b[K[1/2] nb k=1: cell 3/5 · [2/2] nb k=2: cell 1/5" in text
    # the finished line replaces the live line, which is drawn again below it for run b
    assert text.endswith(
        "\r\x1b[K[1/2] nb k=1: succeeded in 1.2 s  accuracy=0.75\n[2/2] nb k=2: cell 1/5"
    )


def test_playbook_p_values_take_the_notebooks_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aikit run PLAYBOOK -p NAME VALUE` converts VALUE as `aikit run NOTEBOOK` does: YAML
    rules to the declared type (an int, a float, a list), a `str` parameter as typed."""
    from aikit.cli import main

    book = _playbook(tmp_path, grid="temperature: [0.0, 1.0]")
    argv = ["run", str(book), "--dry-run", "-p", "n", "3", "-p", "labels", "[x, y]"]
    assert main([*argv, "-p", "mode", "007", "--out", str(tmp_path / "runs")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "demo.ipynb" in ln]
    assert len(lines) == 2
    for line, temperature in zip(lines, (0.0, 1.0), strict=True):
        shown = line.split("demo.ipynb  ", 1)[1].rsplit("  run", 1)[0]
        assert ast.literal_eval(shown) == {
            "question": "grid",
            "temperature": temperature,
            "n": 3,
            "labels": ["x", "y"],
            "mode": "007",  # a str parameter keeps the text as typed
        }
    # the same NAME twice is refused, not the last one taken
    assert main([*argv, "-p", "n", "4"]) == 2
    assert capsys.readouterr().err == (
        "aikit: error: parameter 'n' is given twice (-p n 3, then -p n 4); pass it once\n"
    )


KILLED_PARAMS = 'n: int = 1  # which run\nfolder: str = ""  # where the kernels leave their pids'
KILLED_CELLS = [
    "import atexit, os, pathlib, time\nimport aikit\n"
    'pathlib.Path(folder, f"kernel-{n}").write_text(str(os.getpid()))',
    "if n == 1:  # until the other run's kernel is up: both are running at the kill\n"
    "    deadline = time.monotonic() + 300\n"
    '    while not pathlib.Path(folder, "kernel-2").exists() and time.monotonic() < deadline:\n'
    "        time.sleep(0.1)\n"
    "else:\n"
    "    time.sleep(300)  # run 2 is interrupted here",
    "def exiting():  # the kernel's shutdown: run 1 has run every cell and is finishing\n"
    '    pathlib.Path(folder, f"exiting-{n}").write_text("")\n'
    "    time.sleep(30)\n"
    "atexit.register(exiting)\n"
    'aikit.record("score", n * 10)',
]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_kill_9_of_a_playbook_keeps_finished_runs_and_its_children_end(tmp_path: Path) -> None:
    """Issue 22, item 8: `kill -9` of `aikit run PLAYBOOK` (2 workers) while run 1 has run
    every cell (its kernel is shutting down) and run 2 is in a cell: run 1 is `succeeded` with
    its values, run 2 `running (process gone)`, and both run processes and kernels end."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(KILLED_PARAMS, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in KILLED_CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "killed.ipynb")
    pids = tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "book.yaml").write_text(
        "name: killed\nworkers: 2\nsteps:\n  - notebook: killed.ipynb\n"
        f"    parameters: {{folder: {str(pids)!r}}}\ngrid:\n  n: [1, 2]\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "aikit.cli", "run", "book.yaml"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    watched: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not (pids / "exiting-1").exists():
            assert process.poll() is None and time.monotonic() < deadline, "never got there"
            time.sleep(0.05)
        records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("run.json")]
        watched = [r["pid"] for r in records if r.get("pid")]  # the two run processes
        watched += [int((pids / f"kernel-{n}").read_text()) for n in (1, 2)]
        assert len(watched) == 4 and all(map(_alive, watched)), records
        os.kill(process.pid, signal.SIGKILL)  # the parent only, as a crash or the OOM killer
        process.wait(10)
        deadline = time.monotonic() + 90  # a bound for a loaded machine, not a timing claim
        while any(_alive(pid) for pid in watched) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in watched if _alive(pid)] == []
    finally:
        for pid in watched:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    frame = aikit.runs(tmp_path / "runs").sort_values("n")
    assert list(frame["n"]) == [1, 2]
    assert list(frame["status"]) == ["succeeded", "running (process gone)"]
    assert frame["score"].iloc[0] == 10 and frame["error"].isna().all()
    listed = cli("runs", cwd=tmp_path)
    assert listed.returncode == 0 and "running (process gone)" in listed.stdout


def test_a_secret_unset_where_the_run_executes_fails_it_before_a_kernel(tmp_path: Path) -> None:
    """On a remote worker the submitter cannot check `secret:NAME`: the run fails there, in
    one line, without starting a kernel (no executed notebook)."""
    from aikit.runner.execute import execute_run, make_spec

    nb = make_notebook(tmp_path)
    spec = make_spec(nb, {"api_key": "secret:AIKIT_T_NOWHERE"}, out=tmp_path / "runs", name="d")
    run = execute_run(spec)
    assert (run.status, run.output) == ("failed", None)
    assert run.error == (
        "demo.ipynb: ParameterError: parameter 'api_key' = 'secret:AIKIT_T_NOWHERE', but"
        " AIKIT_T_NOWHERE is not set in the environment; export AIKIT_T_NOWHERE=... before the run"
    )
    assert not (Path(run.dir) / "demo.ipynb").exists()
