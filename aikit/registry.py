"""Runs are data: every notebook run leaves `runs/<name>/<run_id>/` with the executed notebook,
`usage.jsonl` and `run.json`, the `Run` below written as JSON. This module owns that type,
reads runs back (`runs()` is a pandas DataFrame, one row per run) and compares two runs.
The runs folder is a local path or any fsspec URL (`s3://bucket/runs`; see `aikit._storage`).

run.json (schema version 1): run_id, name, playbook, notebook, notebook_sha256, key (notebook
content + parameters, used to skip runs that already succeeded), parameters (secrets as
`secret:NAME`), status (`running` | `succeeded` | `failed`), error (one line), failure (the
failed cell: `cell`, `ename`, `evalue`), started, ended, duration_s, records (from
`aikit.record`; a DataFrame in pandas' "split" layout under `{"dataframe": ...}`), usage
(calls, tokens, cost of the kernel's model calls), output (the executed notebook), git_commit,
aikit_version; and, when the run had a `fail_under` gate, gate (`fail_under` thresholds,
`passed`, `failures`; see `aikit.runner.gate`); pid and host (the process that wrote a
`running` record, so `runs()` can flag one whose process is gone). Keys this version does not
know are kept as they are (`Run.extra`).

A run.json that cannot be read (not JSON, not a record, a bad date, an unknown schema) is
skipped by `iter_runs` with one warning naming it, so one bad file never blocks the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aikit import _storage as storage
from aikit.errors import RegistryError, RunError, RunRecordError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
# MIGRATIONS[v] turns a version-v record into version v + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
NOT_STORED = ("extra", "dir", "skipped", "gate_failures")  # fields of Run not in run.json
TABLE_COLUMNS = ["run_id", "name", "notebook", "status", "started", "duration_s", "calls", "tokens"]


@dataclass
class Run:
    """One notebook run, as `run.json` holds it (see the module docstring for the fields).

    `dir` is where it was read from or written to (a path, or a URL string for object
    storage); `skipped` marks a run a playbook reused instead of executing again;
    `gate_failures` are the lines of a `fail_under` gate that broke when `run_notebook` ran it
    (see `aikit.runner.gate`). None of these three is stored.
    """

    run_id: str
    name: str
    notebook: str
    status: str = "running"
    parameters: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    playbook: str | None = None
    notebook_sha256: str | None = None
    error: str | None = None
    failure: dict[str, Any] | None = None
    started: str | None = None
    ended: str | None = None
    duration_s: float | None = None
    records: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    git_commit: str | None = None
    aikit_version: str | None = None
    gate: dict[str, Any] | None = None
    pid: int | None = None
    host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    dir: Path | str = field(default=Path("."), compare=False)
    skipped: bool = field(default=False, compare=False)
    gate_failures: list[str] = field(default_factory=list, compare=False)

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.status == "succeeded"

    def value(self, name: str) -> Any:
        """A recorded value, with a recorded DataFrame as a DataFrame."""
        value = self.records[name]
        if isinstance(value, dict) and set(value) == {"dataframe"}:
            import pandas as pd

            split = value["dataframe"]
            return pd.DataFrame(split["data"], columns=split["columns"])
        return value

    def raise_for_status(self) -> Run:
        """Raise `RunError` (with the failed cell's `cell`, `ename`, `evalue`) unless it
        succeeded; returns the run, so `run_notebook(...).raise_for_status()` chains."""
        if self.ok:
            return self
        failure = self.failure or {}
        raise RunError(
            self.error or f"{Path(self.notebook).name}: {self.status}",
            notebook=self.notebook,
            cell=failure.get("cell"),
            ename=failure.get("ename"),
            evalue=failure.get("evalue"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object `run.json` holds."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in NOT_STORED:
            data.pop(name)
        return {"schema_version": SCHEMA_VERSION, **data, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], dir: Path | str | None = None) -> Run:
        """A run from a (migrated) `run.json` object; unknown keys go to `extra`."""
        known = {f.name for f in dataclasses.fields(cls)} - set(NOT_STORED)
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k != "schema_version"}
        return cls(**values, extra=extra, dir=dir or Path("."))


def write_run(run: Run) -> str:
    """Write `run.json` into `run.dir` whole (a reader never sees half of it); a local folder
    or a URL."""
    text = json.dumps(run.to_json(), indent=2, default=str)
    return storage.write_text(storage.join(run.dir, RUN_FILE), text)


def load_run(path: str | Path) -> Run:
    """A run, migrated to the current schema; `path` is run.json or its folder (a local
    path or a URL)."""
    file = path if storage.name(path) == RUN_FILE else storage.join(path, RUN_FILE)
    try:
        text = storage.read_text(file)
    except (OSError, UnicodeDecodeError) as exc:
        raise RunRecordError(f"cannot read run record {file}: {exc}; is it a run folder?") from exc
    return _parse(text, str(file))


def _parse(text: str, file: str) -> Run:
    """A run from run.json's text, checked and migrated; its `dir` is the folder it was in."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunRecordError(f"cannot read run record {file}: {exc}; is it a run folder?") from exc
    if not isinstance(data, dict):
        raise RunRecordError(f"{file} is not a run record (a JSON {type(data).__name__})")
    version = data.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise RunRecordError(f"{file} has an unknown schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise RunRecordError(f"{file} has schema {version}, newer than this aikit's; upgrade aikit")
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise RunRecordError(f"{file} has schema_version {version}, which aikit cannot read")
        data = MIGRATIONS[version](data)
        version += 1
    for name in ("started", "ended"):
        value = data.get(name)
        if value is not None:
            try:
                datetime.fromisoformat(str(value))
            except ValueError as exc:
                raise RunRecordError(f"{file}: {name}={value!r} is not an ISO date") from exc
    for name in ("run_id", "name", "status"):
        if not isinstance(data.get(name), str):
            raise RunRecordError(f"{file}: {name} is missing or not a string")
    folder = storage.parent(file)
    return Run.from_json(data, dir=folder if storage.is_url(folder) else Path(folder))


class RunRecordWarning(UserWarning):
    """A run.json under the runs folder was skipped (the message names it and why)."""


def process_gone(run: Run) -> bool:
    """Whether a `running` run's process (pid + host in its record) no longer exists."""
    if run.status != "running" or run.host != socket.gethostname():
        return False
    if not isinstance(run.pid, int) or run.pid <= 0:
        return False
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    stat = Path(f"/proc/{run.pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is gone too
    except (OSError, IndexError):
        return False


def iter_runs(root: str | Path = "runs", name: str | None = None) -> list[Run]:
    """Every run under `root` (optionally only `root/name`), oldest first; a run.json that
    cannot be read is skipped with a `RunRecordWarning` naming it."""
    base = storage.join(root, name) if name else root
    found: list[Run] = []

    def add(file: str, read: Callable[[], str]) -> None:
        try:
            found.append(_parse(read(), file))
        except (RunRecordError, OSError, UnicodeDecodeError) as exc:
            warnings.warn(f"skipping {file}: {exc}", RunRecordWarning, stacklevel=3)

    if storage.is_url(base):  # one listing, then the records fetched concurrently
        texts = storage.read_many(storage.find(base, RUN_FILE))
        for file, data in texts.items():
            add(file, lambda data=data: data.decode("utf-8"))  # type: ignore[misc]
    else:
        for file in storage.find(base, RUN_FILE):
            add(file, lambda file=file: storage.read_text(file))  # type: ignore[misc]
    return sorted(found, key=lambda r: (str(r.started), r.run_id))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def table(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per run: id, name, notebook, status, start, duration, calls, tokens, cost, then
    the parameters and scalar recorded values as columns (a recorded value wins a name clash);
    with a gate, `gate_passed` and `fail_under_METRIC`; then the error. The one table builder
    behind `runs()` and a playbook's summary."""
    import pandas as pd

    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.run_id,
            "name": run.name,
            "notebook": Path(run.notebook).name,
            "status": (
                "skipped (done)"
                if run.skipped
                else "running (process gone)"
                if process_gone(run)
                else run.status
            ),
            "started": pd.Timestamp(run.started) if run.started else pd.NaT,
            "duration_s": run.duration_s,
            "calls": run.usage.get("calls", 0),
            "tokens": run.usage.get("prompt_tokens", 0) + run.usage.get("completion_tokens", 0),
            "cost_usd": run.usage.get("cost_usd"),
        }
        row.update({k: v for k, v in run.parameters.items() if _scalar(v)})
        row.update({k: v for k, v in run.records.items() if _scalar(v)})
        if run.gate:  # the run's fail_under gate (aikit.runner.gate.write_gate)
            row["gate_passed"] = run.gate.get("passed")
            row.update({f"fail_under_{m}": t for m, t in run.gate["fail_under"].items()})
        row["error"] = run.error
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else [*TABLE_COLUMNS, "cost_usd", "error"])


def runs(root: str | Path = "runs", name: str | None = None) -> pd.DataFrame:
    """The runs under `root` (optionally only playbook or notebook `name`) as a DataFrame,
    one row per run (see `table`)."""
    return table(iter_runs(root, name))


def find_run(ref: str, root: str | Path = "runs") -> Run:
    """The run whose id (or a unique prefix of it) or folder is `ref`."""
    if storage.exists(storage.join(ref, RUN_FILE)):
        return load_run(ref)
    matches = [r for r in iter_runs(root) if r.run_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RegistryError(f"no run {ref!r} under {root}/; list them with `aikit runs`")
    raise RegistryError(f"run id {ref!r} is ambiguous ({len(matches)} runs); give more of it")


def _delta(a: Any, b: Any) -> Any:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return b - a if numeric else None


def compare_runs(a: str, b: str, root: str | Path = "runs") -> pd.DataFrame:
    """Parameters, recorded values, usage and duration of two runs side by side, with
    numeric deltas (B - A). For a statistical comparison of eval results see `evals.compare`."""
    import pandas as pd

    run_a, run_b = find_run(a, root), find_run(b, root)
    rows = []
    for kind, left, right in (
        ("parameter", run_a.parameters, run_b.parameters),
        ("record", run_a.records, run_b.records),
        ("usage", _pick(run_a.usage), _pick(run_b.usage)),
        ("run", {"duration_s": run_a.duration_s}, {"duration_s": run_b.duration_s}),
    ):
        for key in dict.fromkeys([*left, *right]):
            va, vb = left.get(key), right.get(key)
            if not (_scalar(va) and _scalar(vb)):
                va = "(table)" if va is not None else None
                vb = "(table)" if vb is not None else None
            rows.append({"kind": kind, "name": key, "a": va, "b": vb, "delta": _delta(va, vb)})
    frame = pd.DataFrame(rows, columns=["kind", "name", "a", "b", "delta"])
    frame.attrs["runs"] = (run_a.run_id, run_b.run_id)
    return frame


def _pick(usage: Mapping[str, Any]) -> dict[str, Any]:
    return {k: usage.get(k) for k in ("cost_usd", "calls")}
