"""Execute a notebook once, in this process, and collect its marked functions.

The parameters cell runs first, then the checked parameter values (the runner's conversion:
the same types and `secret:NAME` references as `aikit run`) are set, then every other code
cell in order, in an IPython shell, so magics and `display` work as in a kernel. Cells tagged
`skip-api` are left out (measurements, plots, clean-up that a server does not need). A cell
that fails stops start-up with a one-line error naming it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aikit._scrub import Scrubber, is_secret_ref, secret_env
from aikit.api._marker import marked
from aikit.errors import ApiError

SKIP_TAG = "skip-api"


def resolve_secrets(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Parameters with each `secret:NAME` read from the environment, and the secret values by
    NAME (to scrub from everything the server answers, logs and prints)."""
    values: dict[str, Any] = dict(parameters)
    secrets: dict[str, str] = {}
    for name, value in parameters.items():
        if is_secret_ref(value):
            env = secret_env(value)
            if env not in os.environ:
                raise ApiError(
                    f"parameter {name!r} = {value!r}, but {env} is not set; export {env}"
                    " before starting the server"
                )
            values[name] = secrets[env] = os.environ[env]
    return values, secrets


def code_cells(notebook: Path) -> list[tuple[int, str, list[str]]]:
    """(cell number from 1, source, tags) of each code cell."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ApiError(f"cannot read notebook {notebook}: {exc}; check the path") from exc
    cells = []
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        cells.append((number, text, list(cell.get("metadata", {}).get("tags", []))))
    return cells


def execute(
    notebook: Path,
    parameters: Mapping[str, Any],
    *,
    quiet: bool = True,
    scrubber: Scrubber | None = None,
) -> dict[str, Callable[..., Any]]:
    """Run `notebook` with resolved `parameters` in this process; its marked functions (a
    failing cell's error is scrubbed of the secrets in `scrubber`)."""
    scrub = (scrubber or Scrubber({})).text
    from IPython.core.interactiveshell import InteractiveShell

    os.environ.setdefault("MPLBACKEND", "Agg")  # plots are drawn for nobody
    os.environ["AIKIT_NOTEBOOK_DIR"] = str(notebook.resolve().parent)
    shell = InteractiveShell.instance()
    for number, source, tags in code_cells(notebook):
        if SKIP_TAG in tags:
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
            result = shell.run_cell(source, silent=True, store_history=False)  # type: ignore[no-untyped-call]
        if "parameters" in tags:
            shell.user_ns.update(parameters)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            first = (str(error).splitlines() or [""])[0]
            text = scrub(f"{type(error).__name__}: {first}")
            raise ApiError(
                f"{notebook}: cell {number} failed at start-up: {text};"
                f" fix it, or tag the cell {SKIP_TAG!r} if the server does not need it"
            )
    found = marked(shell.user_ns)
    if not found:
        raise ApiError(
            f"{notebook} marks no function as an endpoint; put @aikit.endpoint above a"
            " function with type hints"
        )
    return found
