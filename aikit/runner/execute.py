"""Execute one run: papermill in a fresh process and kernel, secrets resolved in the kernel,
results written to `runs/<name>/<run_id>/`.

`execute_run(spec)` is what every executor calls (a local thread, a Dask worker): it starts
`python -m aikit.runner.execute` with the spec on stdin, so each run has its own process,
kernel, environment and working directory, and a crash cannot take other runs with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from aikit._scrub import Scrubber, redact_urls
from aikit.record import read_records
from aikit.registry import load_run, write_run
from aikit.runner.params import SECRET_PREFIX, is_secret_ref
from aikit.usage import RUN_USAGE_ENV, summarize

SECRETS_TAG = "aikit-secrets"


def run_key(notebook: Path, parameters: dict[str, Any]) -> str:
    """Identity of a run's inputs: the notebook's bytes and its parameters."""
    digest = hashlib.sha256(notebook.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def new_run_id(stem: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{stem}-{os.urandom(3).hex()}"


def make_spec(
    notebook: Path,
    parameters: dict[str, Any],
    *,
    out: Path,
    name: str,
    playbook: str | None = None,
) -> dict[str, Any]:
    """Everything a worker needs to execute one run (JSON-able)."""
    notebook = notebook.resolve()
    run_id = new_run_id(notebook.stem)
    return {
        "notebook": str(notebook),
        "parameters": parameters,
        "name": name,
        "playbook": playbook,
        "run_id": run_id,
        "run_dir": str((out / name / run_id).resolve()),
        "key": run_key(notebook, parameters),
    }


def execute_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `spec` in a child process and return its run record (also on a crash)."""
    run_dir = Path(spec["run_dir"])
    done = subprocess.run(
        [sys.executable, "-m", "aikit.runner.execute"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=_run_env(spec),
    )
    try:
        record = load_run(run_dir)
    except Exception:
        record = {}
    if done.returncode != 0 or record.get("status") not in ("succeeded", "failed"):
        tail = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
        # robust (issue 15): the worker's own words may hold a secret or a URL's credentials
        line = redact_urls(_scrubber(spec).text(tail[0]))
        record = _base_record(spec) | {
            "status": "failed",
            "error": f"{Path(spec['notebook']).name}: worker exited {done.returncode}: {line}",
        }
        write_run(run_dir, record)
        record = load_run(run_dir)
    return record


def _run_env(spec: dict[str, Any]) -> dict[str, str]:
    notebook_dir = Path(spec["notebook"]).parent
    env = dict(os.environ)
    env[RUN_USAGE_ENV] = str(Path(spec["run_dir"]) / "usage.jsonl")
    env["AIKIT_NOTEBOOK_DIR"] = str(notebook_dir)
    cassettes = [c for c in env.get("AIKIT_CASSETTES", "").split(os.pathsep) if c]
    env["AIKIT_CASSETTES"] = os.pathsep.join([*cassettes, str(notebook_dir / "cassettes")])
    return env


def _base_record(spec: dict[str, Any]) -> dict[str, Any]:
    notebook = Path(spec["notebook"])
    return {
        "run_id": spec["run_id"],
        "name": spec["name"],
        "playbook": spec.get("playbook"),
        "notebook": _display_path(notebook),
        "notebook_sha256": hashlib.sha256(notebook.read_bytes()).hexdigest(),
        "key": spec["key"],
        "parameters": spec["parameters"],
        "git_commit": _git_commit(notebook.parent),
        "aikit_version": version("aikit"),
    }


def _display_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _git_commit(folder: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _prepare(notebook: Path, parameters: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The notebook with a cell that reads secret parameters from the environment inside the
    kernel, and the plain parameters for papermill to inject."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    plain = {k: v for k, v in parameters.items() if not is_secret_ref(v)}
    secret = {k: str(v)[len(SECRET_PREFIX) :] for k, v in parameters.items() if is_secret_ref(v)}
    if secret:
        lines = ["# aikit: secret parameters, read from the environment inside the kernel"]
        lines.append("import os as _aikit_os")
        lines += [f"{name} = _aikit_os.environ[{env!r}]" for name, env in secret.items()]
        cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [SECRETS_TAG]})
        index = next(
            (i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])),
            -1,
        )
        nb.cells.insert(index + 1, cell)
    return nb, plain


def _scrubber(spec: dict[str, Any]) -> Scrubber:
    """Every form of the run's secret parameters (`secret:NAME` values) -> `secret:NAME`."""
    names = [str(v)[len(SECRET_PREFIX) :] for v in spec["parameters"].values() if is_secret_ref(v)]
    return Scrubber({name: os.environ.get(name, "") for name in names})


def _failed_cell(nb: dict[str, Any]) -> str | None:
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") == "error":
                count = cell.get("execution_count")
                return f"cell {count}: {output.get('ename')}: {output.get('evalue')}"
    return None


def run_in_process(spec: dict[str, Any]) -> dict[str, Any]:
    """The child process's work: execute, scrub secrets, write the notebook and run.json."""
    import papermill

    notebook = Path(spec["notebook"])
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base = _base_record(spec)
    # pid + host: `aikit runs` flags a record left at `running` by a process that is gone.
    running = {"status": "running", "started": _iso(started)}
    write_run(run_dir, base | running | {"pid": os.getpid(), "host": socket.gethostname()})
    scrubber = _scrubber(spec)
    secrets = {
        str(v)[len(SECRET_PREFIX) :]: os.environ.get(str(v)[len(SECRET_PREFIX) :], "")
        for v in spec["parameters"].values()
        if is_secret_ref(v)
    }
    nb, plain = _prepare(notebook, spec["parameters"])
    output = run_dir / notebook.name
    # robust (issue 15): papermill saves as it goes, straight into the run folder, through a
    # handler that scrubs every save (no unscrubbed working copy anywhere, even after kill -9).
    from aikit.runner.scrubbed_io import scrubbed_path

    error = None
    try:
        papermill.execute_notebook(
            nb,
            scrubbed_path(output, secrets),
            parameters=plain,
            cwd=str(run_dir),
            progress_bar=False,
            log_output=False,
        )
    except papermill.PapermillExecutionError as exc:
        error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, missing kernel, ...
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    executed = json.loads(output.read_text(encoding="utf-8")) if output.exists() else {}
    if error is not None:
        error = f"{notebook.name}: {_failed_cell(executed) or error}"
        error = redact_urls(scrubber.text(error))
    usage_file = run_dir / "usage.jsonl"
    calls = (
        [json.loads(ln) for ln in usage_file.read_text().splitlines()]
        if usage_file.exists()
        else []
    )
    ended = time.time()
    record = base | {
        "status": "failed" if error else "succeeded",
        "error": error,
        "pid": None,
        "started": _iso(started),
        "ended": _iso(ended),
        "duration_s": round(ended - started, 3),
        "records": read_records(executed) if executed else {},
        "usage": summarize(calls),
        "output": _display_path(output) if output.exists() else None,
    }
    record = _jsonable_records(record)
    record["records"] = scrubber.json(record["records"])  # scrubbed like the notebook
    write_run(run_dir, record)
    return record


def _jsonable_records(record: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    records = {}
    for name, value in (record.get("records") or {}).items():
        if isinstance(value, pd.DataFrame):
            value = {"dataframe": json.loads(value.to_json(orient="split", index=False))}
        records[name] = value
    return record | {"records": records}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


if __name__ == "__main__":
    record = run_in_process(json.loads(sys.stdin.read()))
    sys.exit(0)
