"""Runs are data: every notebook run leaves `runs/<name>/<run_id>/` with the executed notebook
and `run.json`; this module reads them back as a pandas DataFrame and compares two runs.

run.json (schema version 1): run_id, name, playbook, notebook, notebook_sha256, key (notebook
content + parameters, used to skip runs that already succeeded), parameters (secrets as
`secret:NAME`), status (`running` | `succeeded` | `failed`), error, started, ended,
duration_s, records (from `aikit.record`), usage (calls, tokens, cost of the kernel's model
calls), output (the executed notebook), git_commit, aikit_version, pid and host (the process
that wrote a `running` record, so `runs()` can flag one whose process is gone).

A run.json that cannot be read (not JSON, not a record, a bad date, an unknown schema) is
skipped by `iter_runs` with one warning naming it, so one bad file never blocks the others.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from aikit.errors import AikitError, RunRecordError

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
# MIGRATIONS[v] turns a version-v record into version v + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def write_run(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write `run.json` atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_FILE
    tmp = path.with_name(RUN_FILE + ".tmp")
    tmp.write_text(json.dumps({"schema_version": SCHEMA_VERSION, **record}, indent=2, default=str))
    tmp.replace(path)
    return path


def load_run(path: str | Path) -> dict[str, Any]:
    """A run record, migrated to the current schema; `path` is run.json or its folder."""
    file = Path(path)
    if file.is_dir():
        file = file / RUN_FILE
    try:
        record: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunRecordError(f"cannot read run record {file}: {exc}; is it a run folder?") from exc
    if not isinstance(record, dict):
        raise RunRecordError(f"{file} is not a run record (a JSON {type(record).__name__})")
    version = record.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise RunRecordError(f"{file} has an unknown schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise RunRecordError(f"{file} has schema {version}, newer than this aikit's; upgrade aikit")
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise RunRecordError(f"{file} has schema_version {version}, which aikit cannot read")
        record = MIGRATIONS[version](record)
        version += 1
    for name in ("started", "ended"):
        value = record.get(name)
        if value is not None:
            try:
                datetime.fromisoformat(str(value))
            except ValueError as exc:
                raise RunRecordError(f"{file}: {name}={value!r} is not an ISO date") from exc
    for name in ("run_id", "name", "status"):
        if not isinstance(record.get(name), str):
            raise RunRecordError(f"{file}: {name} is missing or not a string")
    record["schema_version"] = version
    record["dir"] = str(file.parent)
    return record


class RunRecordWarning(UserWarning):
    """A run.json under the runs folder was skipped (the message names it and why)."""


def process_gone(record: dict[str, Any]) -> bool:
    """Whether a `running` record's process (pid + host in the record) no longer exists."""
    if record.get("status") != "running" or record.get("host") != socket.gethostname():
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is gone too
    except (OSError, IndexError):
        return False


def iter_runs(root: str | Path = "runs", name: str | None = None) -> list[dict[str, Any]]:
    """Every run record under `root` (optionally only `root/name`), oldest first."""
    base = Path(root) / name if name else Path(root)
    if not base.exists():
        return []
    records = []
    for path in sorted(base.rglob(RUN_FILE)):
        try:
            records.append(load_run(path))
        except RunRecordError as exc:  # one bad file must not block the runs beside it
            warnings.warn(f"skipping {path}: {exc}", RunRecordWarning, stacklevel=2)
    return sorted(records, key=lambda r: (str(r.get("started")), str(r.get("run_id"))))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def runs(root: str | Path = "runs", name: str | None = None) -> pd.DataFrame:
    """One row per run: id, name, notebook, status, times, cost, then parameters and
    scalar recorded values as columns (a recorded value wins a name clash)."""
    import pandas as pd

    rows = []
    for r in iter_runs(root, name):
        usage = r.get("usage") or {}
        row: dict[str, Any] = {
            "run_id": r.get("run_id"),
            "name": r.get("name"),
            "notebook": Path(str(r.get("notebook"))).name,
            "status": "running (process gone)" if process_gone(r) else r.get("status"),
            "started": pd.Timestamp(r["started"]) if r.get("started") else pd.NaT,
            "duration_s": r.get("duration_s"),
            "calls": usage.get("calls", 0),
            "cost_usd": usage.get("cost_usd"),
            "error": r.get("error"),
        }
        row.update({k: v for k, v in (r.get("parameters") or {}).items() if _scalar(v)})
        row.update({k: v for k, v in (r.get("records") or {}).items() if _scalar(v)})
        rows.append(row)
    columns = [
        "run_id",
        "name",
        "notebook",
        "status",
        "started",
        "duration_s",
        "calls",
        "cost_usd",
        "error",
    ]
    return pd.DataFrame(rows, columns=None if rows else columns)


def find_run(ref: str, root: str | Path = "runs") -> dict[str, Any]:
    """The run whose id (or a unique prefix of it) or folder is `ref`."""
    if Path(ref, RUN_FILE).exists():
        return load_run(ref)
    matches = [r for r in iter_runs(root) if str(r.get("run_id", "")).startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AikitError(f"no run {ref!r} under {root}/; list them with `aikit runs`")
    raise AikitError(f"run id {ref!r} is ambiguous ({len(matches)} runs); give more of it")


def compare(a: str, b: str, root: str | Path = "runs") -> pd.DataFrame:
    """Recorded values and parameters of two runs side by side, with numeric deltas."""
    import pandas as pd

    run_a, run_b = find_run(a, root), find_run(b, root)
    rows = []
    for section in ("parameters", "records"):
        left, right = run_a.get(section) or {}, run_b.get(section) or {}
        for key in dict.fromkeys([*left, *right]):
            va, vb = left.get(key), right.get(key)
            if not (_scalar(va) and _scalar(vb)):
                va, vb = (
                    ("(table)" if va is not None else None),
                    ("(table)" if vb is not None else None),
                )
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
            delta = vb - va if numeric else None  # type: ignore[operator]
            rows.append(
                {
                    "kind": section[:-1] if section == "records" else "parameter",
                    "name": key,
                    "a": va,
                    "b": vb,
                    "delta": delta,
                }
            )
    usage_a, usage_b = run_a.get("usage") or {}, run_b.get("usage") or {}
    for key in ("cost_usd", "calls"):
        va, vb = usage_a.get(key), usage_b.get(key)
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        rows.append({"kind": "usage", "name": key, "a": va, "b": vb, "delta": delta})
    rows.append(
        {
            "kind": "run",
            "name": "duration_s",
            "a": run_a.get("duration_s"),
            "b": run_b.get("duration_s"),
            "delta": (run_b.get("duration_s") or 0) - (run_a.get("duration_s") or 0),
        }
    )
    frame = pd.DataFrame(rows, columns=["kind", "name", "a", "b", "delta"])
    frame.attrs["runs"] = (run_a["run_id"], run_b["run_id"])
    return frame
