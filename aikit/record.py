"""`aikit.record(name, value)`: a notebook result that the runner collects into the run record.

The value is displayed as an output with the `application/vnd.aikit.record+json` mime type
(JSON-able values as they are, DataFrames in pandas' "split" layout), next to a short
`text/plain` line for the reader. The runner reads these outputs back from the executed notebook.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from typing import Any

from aikit.errors import AikitError

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
        raise AikitError(
            f"aikit.record({name!r}, {value}) is not a finite number; record None or a string"
        )
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AikitError(
            f"aikit.record({name!r}, ...) got a {type(value).__name__}, which is not JSON-able;"
            " record a number, string, list, dict or DataFrame"
        ) from exc
    return value, "json"


def record(name: str, value: Any) -> None:
    """Record `value` under `name` for the run record (shown as one line in the notebook)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise AikitError(f"aikit.record name {name!r} must be an identifier such as 'accuracy'")
    payload, kind = _jsonable(name, value)
    from IPython.display import display

    shown = f"{len(value)} rows" if kind == "dataframe" else repr(payload)
    display(
        {MIME: {"name": name, "kind": kind, "value": payload}, "text/plain": f"{name} = {shown}"},
        raw=True,
    )


def read_records(notebook: dict[str, Any]) -> dict[str, Any]:
    """name -> value of every `aikit.record` output in an executed notebook (last one wins)."""
    found: dict[str, Any] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data", {}) or {}
            if MIME in data:
                item = data[MIME]
                value = item.get("value")
                if item.get("kind") == "dataframe":
                    import pandas as pd

                    split = value["dataframe"]
                    value = pd.DataFrame(split["data"], columns=split["columns"])
                found[str(item["name"])] = value
    return found
