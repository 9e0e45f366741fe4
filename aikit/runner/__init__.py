"""Notebooks as pipelines: run a notebook or a playbook with checked parameters, in parallel,
on local worker processes or a Dask cluster, and record every run (see `aikit.registry`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

from aikit.errors import AikitError
from aikit.registry import iter_runs
from aikit.runner.execute import execute_run, make_spec
from aikit.runner.kernel import KERNEL_NAME, KernelMissingError, check_kernel
from aikit.runner.params import ParameterError, convert, describe, read_parameters
from aikit.runner.playbook import PlaybookError, load_playbook
from aikit.runner.record import record_notebook

Executor = Literal["local", "dask"]


@dataclass
class Run:
    """One executed notebook: its status, recorded values, usage and where it was written."""

    run_id: str
    name: str
    notebook: str
    status: str
    parameters: dict[str, Any]
    dir: Path
    error: str | None = None
    output: str | None = None
    records: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, skipped: bool = False) -> Run:
        return cls(
            run_id=str(record["run_id"]),
            name=str(record["name"]),
            notebook=str(record["notebook"]),
            status=str(record["status"]),
            parameters=dict(record.get("parameters") or {}),
            dir=Path(str(record.get("dir", ""))),
            error=record.get("error"),
            output=record.get("output"),
            records=dict(record.get("records") or {}),
            usage=dict(record.get("usage") or {}),
            duration_s=record.get("duration_s"),
            skipped=skipped,
        )


def notebook_dir() -> Path:
    """The folder of the notebook being run (its data files live beside it). Under `aikit run`
    the kernel works in the run's own folder; in Jupyter and nbval, in the notebook's."""
    return Path(os.environ.get("AIKIT_NOTEBOOK_DIR", ".")).resolve()


def run_notebook(
    path: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    out: str | Path = "runs",
    name: str | None = None,
) -> Run:
    """Run one notebook with checked parameters; the run is recorded under `out/name/`."""
    notebook = Path(path)
    if not notebook.is_file():
        raise AikitError(f"notebook {path} does not exist; check the path")
    checked = convert(notebook, dict(params or {}))
    _check_settings()
    check_kernel(notebook)
    spec = make_spec(notebook, checked, out=Path(out), name=name or notebook.stem)
    return Run.from_record(execute_run(spec))


def _check_settings() -> None:
    """robust (issue 15): a bad AIKIT_*/OPENAI_* value (e.g. AIKIT_CACHE=bogus) is refused here,
    in one line, before a kernel starts, not after seconds in every run's kernel."""
    from aikit.settings import Settings

    Settings.resolve()


def _succeeded(out: Path, name: str) -> dict[str, dict[str, Any]]:
    return {str(r["key"]): r for r in iter_runs(out, name) if r.get("status") == "succeeded"}


def plan_playbook(
    path: str | Path,
    *,
    out: str | Path = "runs",
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
) -> tuple[str, int, list[list[tuple[dict[str, Any], dict[str, Any] | None]]]]:
    """Check a playbook; per step, the run specs with the earlier successful run to reuse."""
    playbook, steps = load_playbook(path)
    _check_settings()
    done = {} if force else _succeeded(Path(out), playbook.name)
    plan = []
    for notebook, parameter_sets in steps:
        check_kernel(notebook)
        extra = {k: v for k, v in (overrides or {}).items() if k in read_parameters(notebook)}
        specs = []
        for params in parameter_sets:
            merged = {**params, **convert(notebook, extra)} if extra else params
            spec = make_spec(
                notebook, merged, out=Path(out), name=playbook.name, playbook=playbook.name
            )
            specs.append((spec, done.get(spec["key"])))
        plan.append(specs)
    unknown = [k for k in (overrides or {}) if not any(k in read_parameters(nb) for nb, _ in steps)]
    if unknown:
        raise ParameterError(f"{path}: no step declares parameter {unknown[0]!r}")
    return playbook.name, playbook.workers, plan


def describe_plan(
    path: str | Path,
    *,
    out: str | Path = "runs",
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
    workers: int | None = None,
) -> str:
    """What `aikit run PLAYBOOK --dry-run` prints: every run, and which would be skipped."""
    name, default_workers, plan = plan_playbook(path, out=out, overrides=overrides, force=force)
    lines = [
        f"playbook {name}: {sum(len(s) for s in plan)} runs, {workers or default_workers} workers"
    ]
    for number, step in enumerate(plan, start=1):
        for spec, earlier in step:
            what = f"skip (succeeded in {earlier['run_id']})" if earlier else "run"
            notebook = Path(spec["notebook"]).name
            lines.append(f"  step {number}  {notebook}  {spec['parameters']}  {what}")
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
) -> list[Run]:
    """Run every step of a playbook in order, grid items in parallel; returns all runs."""
    _, default_workers, plan = plan_playbook(path, out=out, overrides=overrides, force=force)
    n_workers = workers or default_workers
    results: list[Run] = []
    with _executor(executor, n_workers, scheduler) as submit:
        for step in plan:
            todo = [spec for spec, earlier in step if earlier is None]
            records = iter(submit(todo))
            for _, earlier in step:
                if earlier is not None:
                    results.append(Run.from_record(earlier, skipped=True))
                else:
                    results.append(Run.from_record(next(records)))
    return results


class _executor:
    """A context manager giving `submit(specs) -> records in order` on threads or Dask."""

    def __init__(self, kind: Executor, workers: int, scheduler: str | None) -> None:
        if kind not in ("local", "dask"):
            raise AikitError(f"executor {kind!r} is not known; use 'local' or 'dask'")
        if scheduler and kind != "dask":
            raise AikitError("--scheduler needs --executor dask")
        self.kind, self.workers, self.scheduler = kind, workers, scheduler
        self._close: list[Any] = []

    def __enter__(self) -> Any:
        if self.kind == "local":
            pool = ThreadPoolExecutor(max_workers=self.workers)
            self._close.append(pool.shutdown)
            return lambda specs: list(pool.map(execute_run, specs))
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise AikitError(
                "the dask executor needs `distributed`; install it with pip install 'aikit[dask]'"
            ) from exc
        if self.scheduler:
            try:
                client = Client(self.scheduler, timeout="10s")
            except OSError as exc:
                raise AikitError(
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

        def submit(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            futures = client.map(execute_run, specs, pure=False)
            return list(client.gather(futures))

        return submit

    def __exit__(self, *exc: object) -> None:
        for close in self._close:
            close()


def summary(runs: list[Run]) -> pd.DataFrame:
    """A table of runs: id, notebook, parameters, status, duration, recorded values."""
    import pandas as pd

    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.run_id,
            "notebook": Path(run.notebook).name,
            "status": "skipped (done)" if run.skipped else run.status,
            "duration_s": run.duration_s,
        }
        row.update(
            {k: v for k, v in run.parameters.items() if isinstance(v, (int, float, str, bool))}
        )
        row.update({k: v for k, v in run.records.items() if isinstance(v, (int, float, str, bool))})
        row["error"] = run.error
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = [
    "KERNEL_NAME",
    "KernelMissingError",
    "ParameterError",
    "PlaybookError",
    "Run",
    "check_kernel",
    "convert",
    "describe",
    "describe_plan",
    "notebook_dir",
    "plan_playbook",
    "read_parameters",
    "record_notebook",
    "run_notebook",
    "run_playbook",
    "summary",
]
