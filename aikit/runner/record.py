"""Notebook execution through papermill.

`record_notebook` re-records a notebook's cassette and outputs in two passes: first against the
real model with `AIKIT_CACHE=record` into a fresh store, exported as
`cassettes/<name>.jsonl` beside the notebook; then again with `AIKIT_CACHE=replay` from that
cassette, and those outputs are the ones committed. So the committed notebook is exactly what
strict nbval reproduces in replay mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aikit.cache import ResponseStore
from aikit.errors import AikitError


def execute(
    notebook: Path, output: Path, *, env: Mapping[str, str], cwd: Path | None = None
) -> None:
    """Run `notebook` with papermill in a kernel that sees `env`; write it to `output`."""
    command = [
        sys.executable,
        "-m",
        "papermill",
        "--log-level",
        "WARNING",
        "--cwd",
        str(cwd or notebook.parent),
        str(notebook),
        str(output),
    ]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"papermill exited {done.returncode}"
        raise AikitError(f"{notebook} failed: {reason}; see the executed notebook {output}")


def _strip_run_metadata(path: Path) -> None:
    """Drop papermill's timestamps and durations, which change every run (diff noise)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb.get("metadata", {}).pop("papermill", None)
    for cell in nb.get("cells", []):
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def record_notebook(notebook: str | Path) -> Path:
    """Re-record `notebook` on the configured model; returns the cassette path."""
    path = Path(notebook).resolve()
    if not path.is_file() or path.suffix != ".ipynb":
        raise AikitError(
            f"{notebook} is not a notebook file; pass a path like notebooks/00_quickstart.ipynb"
        )
    from aikit.runner.kernel import check_kernel

    check_kernel(path)
    cassette = path.parent / "cassettes" / f"{path.stem}.jsonl"
    cassette.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aikit-record-") as tmp:
        store_path = Path(tmp) / "record.sqlite"
        executed = Path(tmp) / path.name
        execute(path, executed, env={"AIKIT_CACHE": "record", "AIKIT_CACHE_PATH": str(store_path)})
        store = ResponseStore(store_path)
        store.export(cassette)
        store.close()
        replayed = Path(tmp) / f"replayed-{path.name}"
        execute(
            path,
            replayed,
            env={
                "AIKIT_CACHE": "replay",
                "AIKIT_CACHE_PATH": str(Path(tmp) / "empty.sqlite"),
                "AIKIT_CASSETTES": str(cassette),
            },
        )
        _strip_run_metadata(replayed)
        replayed.replace(path)
    return cassette
