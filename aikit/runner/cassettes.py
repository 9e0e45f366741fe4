"""Re-recording a notebook's cassette and outputs (`aikit rerecord`, `make rerecord`), through
the runner's one executor (`execute_run`: own process, kernel, secrets handling).

Two passes: first against the real model with `AIKIT_CACHE=record` into a fresh store,
exported as `cassettes/<name>.jsonl` beside the notebook; then again with `AIKIT_CACHE=replay`
from that cassette and every other cassette beside it (as the replay nbval reads them), in a
fresh `AIKIT_HOME` (no store, no runs of the user's), and those outputs are the ones committed.
So the committed notebook is exactly what strict nbval reproduces in replay mode. With a
`Progress`, each pass prints the lines `aikit run` prints: when it starts and finishes, and
which cell it is in.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from aikit.cache import ResponseStore
from aikit.errors import ParameterError
from aikit.registry import Run
from aikit.runner.execute import execute_run, make_spec
from aikit.runner.kernel import check_kernel
from aikit.runner.progress import Progress


def _execute(
    notebook: Path, out: Path, env: dict[str, str], progress: Progress | None, what: str
) -> Run:
    spec = make_spec(notebook, {}, out=out, name=notebook.stem, env=env)
    if progress is None:
        return execute_run(spec).raise_for_status()
    progress.started(spec, what)
    run = execute_run(spec, lambda done, cells: progress.cell(spec, done, cells))
    progress.finished(run)
    return run.raise_for_status()


def _strip_run_metadata(path: Path) -> None:
    """Drop papermill's timestamps and durations, which change every run (diff noise), and the
    widget state nbclient saves (`metadata.widgets`: random model ids; the saved outputs keep
    each widget's static text, and JupyterLab re-creates the widget when the cell runs). A
    cell's consecutive prints to one stream become one output, as JupyterLab saves them (how
    many pieces the kernel sent depends on timing), and JSON outputs keep numbers as JupyterLab
    writes them, so a Run All and save leaves git clean."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb.get("metadata", {}).pop("papermill", None)
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        if "outputs" in cell:
            cell["outputs"] = _coalesce_streams(cell["outputs"])
            for out in cell["outputs"]:
                data = out.get("data", {})
                for mime in [m for m in data if m.endswith("json")]:
                    data[mime] = _as_javascript_saves(data[mime])
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _as_javascript_saves(value: Any) -> Any:
    """A JSON output as JupyterLab writes it back: JavaScript has one number type, so a float
    with an integral value (`1.0`) is saved as `1`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _as_javascript_saves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_javascript_saves(v) for v in value]
    return value


def _coalesce_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and out.get("output_type") == last.get("output_type") == "stream"
            and out.get("name") == last.get("name")
        ):
            text = "".join(last["text"]) + "".join(out["text"])
            last["text"] = text.splitlines(keepends=True)
        else:
            merged.append(out)
    return merged


def rerecord(notebook: str | Path, progress: Progress | None = None) -> Path:
    """Re-record `notebook` on the configured model; returns the cassette path. `progress`
    hears both passes (two runs each: it counts `2 ×` the notebooks it is told of).

    Raises:
        RunError: a cell failed (in either pass); the notebook and its cassette are unchanged.
    """
    path = Path(notebook).resolve()
    if not path.is_file() or path.suffix != ".ipynb":
        raise ParameterError(
            f"{notebook} is not a notebook file; pass a path like notebooks/00_quickstart.ipynb"
        )
    check_kernel(path)
    cassette = path.parent / "cassettes" / f"{path.stem}.jsonl"
    cassette.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aikit-rerecord-") as tmp:
        store_path = Path(tmp) / "record.sqlite"
        recording = {"AIKIT_CACHE": "record", "AIKIT_CACHE_PATH": str(store_path)}
        _execute(path, Path(tmp), recording, progress, "recording on the model")
        store = ResponseStore(store_path)
        recorded = Path(tmp) / cassette.name
        store.export(recorded)
        store.close()
        others = sorted(p for p in cassette.parent.glob("*.jsonl") if p.name != cassette.name)
        replay = {
            "AIKIT_CACHE": "replay",
            "AIKIT_HOME": str(Path(tmp) / "home"),
            "AIKIT_CACHE_PATH": str(Path(tmp) / "empty.sqlite"),
            "AIKIT_CASSETTES": os.pathsep.join(map(str, [recorded, *others])),
        }
        run = _execute(path, Path(tmp), replay, progress, "replaying the new cassette")
        replayed = Path(run.dir) / path.name
        _strip_run_metadata(replayed)
        recorded.replace(cassette)
        replayed.replace(path)
    return cassette
