"""Notebooks as pipelines: run a notebook or a playbook with checked parameters, in parallel,
on local worker processes or a Dask cluster, and record every run (see `aikit.registry`)."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

from aikit import _storage as storage
from aikit import tracing
from aikit._record import notebook_dir
from aikit._storage import is_url, normalize
from aikit.errors import ExecutorError, ParameterError
from aikit.registry import Run, iter_runs, table
from aikit.runner.cassettes import rerecord
from aikit.runner.execute import execute_run, make_spec
from aikit.runner.gate import apply_gate
from aikit.runner.kernel import KERNEL_NAME, check_kernel
from aikit.runner.params import check_secrets, convert, describe_parameters, read_parameters
from aikit.runner.playbook import load_playbook
from aikit.runner.progress import Progress, varying
from aikit.runner.ship import upload
from aikit.runner.spec import Plan, PlannedRun, RunSpec
from aikit.settings import Settings

Executor = Literal["local", "dask"]


@dataclass
class PlaybookResult:
    """What `run_playbook` did: every run (reused ones marked `skipped`), the gate lines
    that failed, and the summary files. The CLI prints exactly this."""

    name: str
    runs: list[Run]
    thresholds: dict[str, float] = field(default_factory=dict)
    gate_failures: list[str] = field(default_factory=list)
    summary_csv: str | None = None  # a path or URL
    summary_html: str | None = None

    @property
    def failed(self) -> list[Run]:
        """The runs that did not succeed."""
        return [r for r in self.runs if not r.ok]

    @property
    def ok(self) -> bool:
        """Every run succeeded and every gate held."""
        return not self.failed and not self.gate_failures

    def table(self) -> pd.DataFrame:
        """The runs as a table (see `aikit.registry.table`)."""
        return table(self.runs)


def run_notebook(
    path: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    out: str | Path = "runs",
    name: str | None = None,
    fail_under: Mapping[str, float] | None = None,
    progress: IO[str] | None = None,
) -> Run:
    """Run one notebook with checked parameters; the run is recorded under `out/name/`.

    A failed cell does not raise: the returned run says `status="failed"` with the cell in
    `run.failure`; `run.raise_for_status()` turns that into a `RunError`. With `fail_under`
    (metric -> lowest allowed value) the run is gated: its run.json keeps the gate and
    `run.gate_failures` lists what broke (a metric it did not record included). With
    `progress` (e.g. `sys.stdout`), lines say when it starts and ends and which cell it is in.
    """
    notebook = Path(path)
    if not notebook.is_file():
        raise ParameterError(f"notebook {path} does not exist; check the path")
    checked = convert(notebook, dict(params or {}))
    check_secrets(notebook, checked)  # here, not in the kernel
    _check_settings(notebook)
    check_kernel(notebook)
    spec = make_spec(notebook, checked, out=_out(out), name=name or notebook.stem)
    upload([spec])  # a URL as `out`: the notebook and its data/ go to the bucket first
    shown = Progress(1, stream=progress, varying=checked) if progress is not None else None
    run = _run_one(spec, shown)
    run.gate_failures = apply_gate([run], fail_under or {})
    return run


def _run_one(spec: RunSpec, progress: Progress | None) -> Run:
    """Execute one run here (a local thread), telling `progress` as it goes."""
    if progress is None:
        return execute_run(spec)
    progress.started(spec)
    run = execute_run(spec, lambda number, cells: progress.cell(spec, number, cells))
    progress.finished(run)
    return run


def _out(out: str | Path) -> str | Path:
    """A runs folder: a local path as given, a URL checked (no credentials in it)."""
    return normalize(out) if is_url(out) else Path(out)


def _check_settings(notebook: Path) -> None:
    """A bad AIKIT_*/OPENAI_* value (e.g. AIKIT_CACHE=bogus) is refused here, in one line,
    before a kernel starts, not after seconds in every run's kernel. The settings are those
    the kernel will see: the notebook's project's `.env` and `aikit.toml`."""
    Settings.resolve(start=notebook.parent)


def _succeeded(out: str | Path, name: str) -> dict[str, Run]:
    return {str(r.key): r for r in iter_runs(out, name) if r.ok}


def plan_playbook(
    path: str | Path,
    *,
    out: str | Path = "runs",
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Plan:
    """Check a playbook (read once); per step, the runs with the earlier successful run each
    may reuse."""
    playbook, steps = load_playbook(path)
    gridded = sorted(set(overrides or {}) & set(playbook.grid))
    if gridded:
        raise ParameterError(
            f"{path}: -p {gridded[0]} would replace grid.{gridded[0]} in every run (the same"
            f" run {len(playbook.grid[gridded[0]])} times); drop -p {gridded[0]} or edit the grid"
        )
    out = _out(out)
    done = {} if force else _succeeded(out, playbook.name)
    plan: list[list[PlannedRun]] = []
    for (notebook, parameter_sets), step in zip(steps, playbook.steps, strict=True):
        _check_settings(notebook)
        check_kernel(notebook)
        extra = {k: v for k, v in (overrides or {}).items() if k in read_parameters(notebook)}
        files = step.files if step.files is not None else playbook.files  # shipped with a URL
        specs = []
        for params in parameter_sets:
            merged = {**params, **convert(notebook, extra)} if extra else params
            spec = make_spec(
                notebook, merged, out=out, name=playbook.name, playbook=playbook.name, files=files
            )
            specs.append(PlannedRun(spec, done.get(spec.key)))
        plan.append(specs)
    unknown = [k for k in (overrides or {}) if not any(k in read_parameters(nb) for nb, _ in steps)]
    if unknown:
        raise ParameterError(f"{path}: no step declares parameter {unknown[0]!r}")
    return Plan(path=Path(path), playbook=playbook, out=out, steps=plan)


def describe_plan(
    path: str | Path,
    *,
    out: str | Path = "runs",
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
    workers: int | None = None,
) -> str:
    """What `aikit run PLAYBOOK --dry-run` prints: every run, and which would be skipped."""
    plan = plan_playbook(path, out=out, overrides=overrides, force=force)
    lines = [f"playbook {plan.name}: {len(plan.specs)} runs, {workers or plan.workers} workers"]
    for number, step in enumerate(plan.steps, start=1):
        for planned in step:
            earlier = planned.earlier
            what = f"skip (succeeded in {earlier.run_id})" if earlier else "run"
            notebook = Path(planned.spec.notebook).name
            lines.append(f"  step {number}  {notebook}  {dict(planned.spec.parameters)}  {what}")
    return "\n".join(lines)


def run_playbook(
    path: str | Path,
    *,
    out: str | Path = "runs",
    workers: int | None = None,
    executor: Executor = "local",
    scheduler: str | None = None,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    fail_under: Mapping[str, float] | None = None,
    progress: IO[str] | None = None,
) -> PlaybookResult:
    """Run every step of a playbook in order, grid items in parallel, then check its gates
    (the playbook's `fail_under` and `fail_under` here) and write `summary.csv` and
    `summary.html` beside the runs. With `progress` (e.g. `sys.stdout`), a line per run
    started and finished and, while one runs, which cell it is in."""
    plan = plan_playbook(path, out=out, overrides=overrides, force=force)
    if executor == "local" or not scheduler:  # a remote cluster's workers have their own
        for spec in plan.specs:
            check_secrets(spec.notebook, spec.parameters)
    results: list[Run] = []
    shown = None
    if progress is not None:
        specs = plan.specs
        shown = Progress(
            len(specs), stream=progress, varying=varying([s.parameters for s in specs])
        )
    span = tracing.span(f"aikit.playbook {plan.name}", {"aikit.playbook": plan.name})
    with span, _executor(executor, workers or plan.workers, scheduler) as submit:
        for step in plan.steps:
            todo = [planned.spec for planned in step if planned.earlier is None]
            upload(todo)  # a URL as `out`: each needed file goes to the bucket once
            if shown is not None:
                for planned in step:
                    if planned.earlier is not None:
                        shown.reused(planned.spec, planned.earlier)
            done = iter(submit(todo, shown))
            for planned in step:
                if planned.earlier is not None:
                    planned.earlier.skipped = True
                    results.append(planned.earlier)
                else:
                    results.append(next(done))
    thresholds = {**plan.fail_under, **(fail_under or {})}
    result = PlaybookResult(name=plan.name, runs=results, thresholds=thresholds)
    # each executed run keeps its gate, for monitoring (04_monitoring)
    result.gate_failures = apply_gate(results, thresholds)
    folder = storage.join(plan.out, plan.name)
    frame = result.table()
    result.summary_csv = storage.write_text(
        storage.join(folder, "summary.csv"), frame.to_csv(index=False)
    )
    result.summary_html = storage.write_text(
        storage.join(folder, "summary.html"), frame.to_html(index=False, na_rep="")
    )
    return result


class _executor:
    """A context manager giving `submit(specs) -> records in order` on threads or Dask."""

    def __init__(self, kind: Executor, workers: int, scheduler: str | None) -> None:
        if kind not in ("local", "dask"):
            raise ExecutorError(f"executor {kind!r} is not known; use 'local' or 'dask'")
        if scheduler and kind != "dask":
            raise ExecutorError("--scheduler needs --executor dask")
        self.kind, self.workers, self.scheduler = kind, workers, scheduler
        self._close: list[Any] = []

    def __enter__(self) -> Any:
        if self.kind == "local":
            pool = ThreadPoolExecutor(max_workers=self.workers)
            self._close.append(pool.shutdown)
            # each run in a copy of this context: its span is a child of the playbook's
            return lambda specs, progress=None: list(
                pool.map(
                    lambda job: job[0].run(_run_one, job[1], progress),
                    [(contextvars.copy_context(), spec) for spec in specs],
                )
            )
        try:
            from distributed import Client, LocalCluster, as_completed
        except ImportError as exc:
            raise ExecutorError(
                "the dask executor needs `distributed`; install it with pip install 'aikit[dask]'"
            ) from exc
        if self.scheduler:
            try:
                client = Client(self.scheduler, timeout="10s")
            except OSError as exc:
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {self.scheduler} ({exc});"
                    " check --scheduler tcp://HOST:PORT"
                ) from exc
        else:
            cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            self._close.append(cluster.close)
            client = Client(cluster)
        self._close.insert(0, client.close)

        def submit(specs: list[RunSpec], progress: Progress | None = None) -> list[Run]:
            futures = client.map(execute_run, specs, pure=False)
            if progress is not None:  # a worker's cells are out of reach: runs only
                for spec in specs:
                    progress.started(spec, "submitted")
                for future in as_completed(futures):
                    progress.finished(future.result())
            return list(client.gather(futures))

        return submit

    def __exit__(self, *exc: object) -> None:
        for close in self._close:
            close()


__all__ = [
    "KERNEL_NAME",
    "Plan",
    "PlaybookResult",
    "RunSpec",
    "check_kernel",
    "convert",
    "describe_parameters",
    "describe_plan",
    "notebook_dir",
    "plan_playbook",
    "read_parameters",
    "rerecord",
    "run_notebook",
    "run_playbook",
]
