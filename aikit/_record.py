"""The notebook's side of a run: `aikit.record(name, value)` keeps a result for the run, and
`aikit.notebook_dir()` finds the notebook's folder (its data files live beside it).

`record` shows the value as an outputwith the `application/vnd.aikit.record+json` mime type
(JSON-able values as they are, DataFrames in pandas' "split" layout), next to a short
`text/plain` line for the reader. The runner reads these outputs back from the executed notebook.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from aikit.errors import RecordError
from aikit.settings import NOTEBOOK_DIR_ENV, project_root

MIME = "application/vnd.aikit.record+json"


def _jsonable(name: str, value: Any) -> tuple[Any, str]:
    pd = sys.modules.get("pandas")  # a DataFrame can only exist if pandas is loaded
    if pd is not None and isinstance(value, pd.DataFrame):
        return {"dataframe": json.loads(value.to_json(orient="split", index=False))}, "dataframe"
    if pd is not None and isinstance(value, pd.Series):
        value = value.to_dict()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(
            f"aikit.record({name!r}, {value}) is not a finite number; record None or a string"
        )
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecordError(
            f"aikit.record({name!r}, ...) got a {type(value).__name__}, which is not JSON-able;"
            " record a number, string, list, dict or DataFrame"
        ) from exc
    return value, "json"


def record(name: str, value: Any) -> None:
    """Record `value` under `name` for the run record (shown as one line in the notebook)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise RecordError(f"aikit.record name {name!r} must be an identifier such as 'accuracy'")
    payload, kind = _jsonable(name, value)
    from IPython.display import display

    shown = f"{len(value)} rows" if kind == "dataframe" else repr(payload)
    display(
        {MIME: {"name": name, "kind": kind, "value": payload}, "text/plain": f"{name} = {shown}"},
        raw=True,
    )


def read_records(notebook: dict[str, Any]) -> dict[str, Any]:
    """name -> value of every `aikit.record` output in an executed notebook (last one wins),
    as JSON (a DataFrame as `{"dataframe": split}`; `Run.value` turns it back)."""
    found: dict[str, Any] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data", {}) or {}
            if MIME in data:
                item = data[MIME]
                found[str(item["name"])] = item.get("value")
    return found


def notebook_dir() -> Path:
    """The folder of the running notebook, wherever the kernel was started.

    In order: the runner's `AIKIT_NOTEBOOK_DIR` (`aikit run`, `aikit api`); Jupyter Server's
    `JPY_SESSION_NAME` (the notebook's path in JupyterLab); the working directory when it
    holds notebooks (nbval, papermill `--cwd`); else the project's `notebooks/` folder (plain
    `papermill notebooks/x.ipynb out.ipynb` from the repository root).
    """
    given = os.environ.get(NOTEBOOK_DIR_ENV)
    if given:
        return Path(given).resolve()
    session = os.environ.get("JPY_SESSION_NAME")
    if session and Path(session).is_file():
        return Path(session).resolve().parent
    cwd = Path.cwd().resolve()
    if any(cwd.glob("*.ipynb")):
        return cwd
    root = project_root(cwd)
    if root is not None and (root / "notebooks").is_dir():
        return root / "notebooks"
    return cwd
