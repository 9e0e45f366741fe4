"""Execute one run: papermill in a fresh process and kernel, secrets resolved in the kernel,
results written to `runs/<name>/<run_id>/`.

`execute_run(spec)` is what every executor calls (a local thread, a Dask worker, the cassette
recorder): it starts `python -m aikit.runner.execute` with the spec on stdin, so each run has
its own process, kernel, environment and working directory, and a crash cannot take other runs
with it. It returns the run as `aikit.registry.Run`.

A run whose folder is a URL (`--out s3://bucket/runs`) runs in a local scratch folder on
whichever machine picked it up, from the files shipped with it (`aikit.runner.ship`); the
finished folder is then uploaded, `run.json` last, so a reader never sees half a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from aikit import _storage as storage
from aikit import tracing
from aikit._record import read_records
from aikit._scrub import Scrubber, is_secret_ref, redact_urls, secret_envs
from aikit.costs import RUN_USAGE_ENV, total_usage
from aikit.errors import ParameterError
from aikit.registry import RUN_FILE, Run, load_run, write_run
from aikit.runner.lifeline import PARENT_ENV, QuietStream, watch_parent
from aikit.runner.params import check_secrets
from aikit.runner.progress import CELL_BAR, OnCell, read_cells
from aikit.runner.ship import display_path, git_commit_of, materialize, pack
from aikit.runner.spec import RunSpec
from aikit.settings import NOTEBOOK_DIR_ENV, PROJECT_ROOT_ENV, project_root

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
    out: str | Path,
    name: str,
    playbook: str | None = None,
    files: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> RunSpec:
    """Everything a worker needs to execute one run. With a URL as `out`, the spec also
    lists the files to ship (the notebook, its cassette, `files` or `data/`); `env` adds to
    the kernel's environment (the cassette recorder sets `AIKIT_CACHE` there)."""
    notebook = notebook.resolve()
    run_id = new_run_id(notebook.stem)
    root = project_root(notebook.parent)  # where its kernel finds `.env` and `aikit.toml`
    shipped = pack(notebook, files, storage.normalize(out)) if storage.is_url(out) else {}
    return RunSpec(
        notebook=str(notebook),
        parameters=parameters,
        name=name,
        playbook=playbook,
        run_id=run_id,
        run_dir=(
            storage.join(out, name, run_id)
            if storage.is_url(out)
            else str((Path(out) / name / run_id).resolve())
        ),
        key=run_key(notebook, parameters),
        env=dict(env or {}),
        project_root=str(root) if root else None,
        **shipped,  # aikit[cloud]: no shared disk, ship the run's files
    )


def execute_run(spec: RunSpec, on_cell: OnCell | None = None) -> Run:
    """Run `spec` in a child process and return the run (also when the process crashed);
    `on_cell(n, cells)` hears which cell the notebook is in as it goes."""
    if storage.is_url(spec.run_dir):
        return _execute_shipped(spec, on_cell)
    return _execute_here(spec, on_cell)


def _execute_shipped(spec: RunSpec, on_cell: OnCell | None) -> Run:
    """Run in a scratch folder from the shipped files, then upload the run folder."""

    with tempfile.TemporaryDirectory(prefix="aikit-run-") as tmp:
        scratch = Path(tmp)
        here = dataclasses.replace(spec, run_dir=str(scratch / "run"))
        if spec.files:
            here = dataclasses.replace(here, notebook=str(materialize(spec, scratch / "notebook")))
        run = _execute_here(here, on_cell)
        return _publish(scratch / "run", spec.run_dir, run)


def _publish(folder: Path, url: str, run: Run) -> Run:
    """Upload a finished run folder to `url`, run.json last (its `output` pointing there)."""
    if run.output:
        run.output = storage.join(url, Path(run.output).name)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != RUN_FILE)
    storage.put_files([(p, storage.join(url, *p.relative_to(folder).parts)) for p in files])
    run.dir = url
    write_run(run)
    return run


def _execute_here(spec: RunSpec, on_cell: OnCell | None = None) -> Run:
    """The run under its `aikit.run` span; its kernel's spans join it (`TRACEPARENT`)."""
    attributes = {"aikit.run_id": spec.run_id, "aikit.run_name": spec.name,
                  "aikit.notebook": display_path(Path(spec.notebook)),
                  "aikit.playbook": spec.playbook}  # fmt: skip
    with tracing.span(f"aikit.run {Path(spec.notebook).stem}", attributes) as current:
        run = _execute_child(spec, on_cell)
        tracing.annotate(current, {"aikit.run_status": run.status})
        if run.status != "succeeded":
            tracing.fail(current, (run.failure or {}).get("ename") or "RunFailed")
        return run


def _execute_child(spec: RunSpec, on_cell: OnCell | None = None) -> Run:
    run_dir = Path(spec.run_dir)
    child = subprocess.Popen(
        [sys.executable, "-m", "aikit.runner.execute"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_run_env(spec),
    )
    assert child.stdin is not None and child.stderr is not None
    with child:
        child.stdin.write(json.dumps(spec.to_json()).encode())
        child.stdin.close()
        lines = read_cells(child.stderr, on_cell)  # to its end: the child has exited then
    try:
        run: Run | None = load_run(run_dir)
    except Exception:
        run = None
    if child.returncode != 0 or run is None or run.status not in ("succeeded", "failed"):
        tail = lines[-1:] or ["no output"]
        # the worker's own words may hold a secret or a URL's credentials
        line = redact_urls(_scrubber(spec).text(tail[0]))
        run = _base_run(spec)
        run.status = "failed"
        run.error = f"{Path(spec.notebook).name}: worker exited {child.returncode}: {line}"
        write_run(run)
    return run


def _run_env(spec: RunSpec) -> dict[str, str]:
    notebook_dir = Path(spec.notebook).parent
    env = dict(os.environ)
    env.update(spec.env)
    env[RUN_USAGE_ENV] = str(Path(spec.run_dir) / "usage.jsonl")
    env[PARENT_ENV] = str(os.getpid())  # the child ends (with its kernel) when this process does
    env[NOTEBOOK_DIR_ENV] = str(notebook_dir)
    env.update(tracing.environ())  # W3C trace context: the kernel's spans join the run's
    if spec.secrets:  # which variables no span in the kernel may show (names only)
        env[tracing.SECRETS_ENV] = ",".join(sorted(spec.secrets))
    if spec.project_root:  # the kernel's cwd is the run folder: settings come from here
        env.setdefault(PROJECT_ROOT_ENV, spec.project_root)
    cassettes = [c for c in env.get("AIKIT_CASSETTES", "").split(os.pathsep) if c]
    env["AIKIT_CASSETTES"] = os.pathsep.join([*cassettes, str(notebook_dir / "cassettes")])
    return env


def _base_run(spec: RunSpec) -> Run:
    notebook = Path(spec.notebook)
    origin = spec.origin  # a shipped run: where the notebook came from, not the scratch
    return Run(
        run_id=spec.run_id,
        name=spec.name,
        playbook=spec.playbook,
        notebook=origin["notebook"] if origin else display_path(notebook),
        notebook_sha256=hashlib.sha256(notebook.read_bytes()).hexdigest(),
        key=spec.key,
        parameters=dict(spec.parameters),
        git_commit=origin["git_commit"] if origin else git_commit_of(notebook.parent),
        aikit_version=version("aikit"),
        dir=Path(spec.run_dir),
    )


def _prepare(notebook: Path, parameters: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The notebook with a cell that reads secret parameters from the environment inside the
    kernel, and the plain parameters for papermill to inject."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    plain = {k: v for k, v in parameters.items() if not is_secret_ref(v)}
    secret = secret_envs(parameters)
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


def _scrubber(spec: RunSpec) -> Scrubber:
    """Every form of the run's secret parameters (`secret:NAME` values) -> `secret:NAME`."""
    return Scrubber(spec.secrets)


def _failed_cell(nb: dict[str, Any]) -> dict[str, Any] | None:
    """The first error output of an executed notebook: its cell number, `ename`, `evalue`."""
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") == "error":
                return {
                    "cell": cell.get("execution_count"),
                    "ename": output.get("ename"),
                    "evalue": output.get("evalue"),
                }
    return None


def _all_cells_ran(nb: dict[str, Any]) -> bool:
    """Whether every code cell with code in an executed notebook has run."""
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    return bool(cells) and all(
        c.get("execution_count") is not None for c in cells if "".join(c.get("source", "")).strip()
    )


def run_in_process(spec: RunSpec) -> Run:
    """The child process's work: execute, scrub secrets, write the notebook and run.json."""
    import papermill

    from aikit.runner.scrubbed_io import scrubbed_path

    notebook = Path(spec.notebook)
    run = _base_run(spec)
    run_dir = Path(run.dir)  # always a local folder here (see _execute_shipped)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    run.started = _iso(started)
    # pid + host: `aikit runs` flags a record left at `running` by a process that is gone.
    run.pid, run.host = os.getpid(), socket.gethostname()
    write_run(run)
    scrubber = _scrubber(spec)
    secrets = spec.secrets
    nb, plain = _prepare(notebook, spec.parameters)
    output = run_dir / notebook.name
    # papermill saves as it goes, straight into the run folder, through a handler that scrubs
    # every save (no unscrubbed working copy anywhere, even after kill -9).
    failure: dict[str, Any] | None = None
    parent_gone = watch_parent()
    try:
        check_secrets(notebook.name, spec.parameters)  # on a remote worker: its own env
        papermill.execute_notebook(
            nb,
            scrubbed_path(output, secrets),
            parameters=plain,
            cwd=str(run_dir),
            # read by the parent's read_cells; a parent gone never fails the run
            progress_bar={**CELL_BAR, "file": QuietStream(sys.stderr)},
            log_output=False,
        )
    except ParameterError as exc:
        evalue = str(exc).removeprefix(f"{notebook.name}: ")
        failure = {"cell": None, "ename": "ParameterError", "evalue": evalue}
    except papermill.PapermillExecutionError as exc:
        failure = {"cell": exc.exec_count, "ename": exc.ename, "evalue": exc.evalue}
    except Exception as exc:  # kernel died, missing kernel, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        failure = {"cell": None, "ename": type(exc).__name__, "evalue": first}
    executed = json.loads(output.read_text(encoding="utf-8")) if output.exists() else {}
    if parent_gone.is_set():
        if _failed_cell(executed) is None and not _all_cells_ran(executed):
            return run  # interrupted: left `running`, its process gone (`aikit runs` says so)
        failure = _failed_cell(executed)  # it ran to its end (or failed in a cell) as it was
    if failure is not None:
        failure = _failed_cell(executed) or failure
        failure["evalue"] = redact_urls(scrubber.text(str(failure.get("evalue") or "")))
        where = f"cell {failure['cell']}: " if failure.get("cell") is not None else ""
        run.error = f"{notebook.name}: {where}{failure['ename']}: {failure['evalue']}"
        run.failure = failure
    usage_file = run_dir / "usage.jsonl"
    calls = (
        [json.loads(ln) for ln in usage_file.read_text().splitlines()]
        if usage_file.exists()
        else []
    )
    ended = time.time()
    run.status = "failed" if failure else "succeeded"
    run.pid = None
    run.ended = _iso(ended)
    run.duration_s = round(ended - started, 3)
    run.records = scrubber.json(read_records(executed)) if executed else {}
    run.usage = total_usage(calls)
    run.output = display_path(output) if output.exists() else None
    write_run(run)
    return run


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


if __name__ == "__main__":
    run_in_process(RunSpec.from_json(json.loads(sys.stdin.read())))
    sys.exit(0)
