"""Playbooks: YAML pipelines of notebook steps with parameter grids.

```yaml
name: prompt-sweep              # runs go to runs/<name>/
description: what it is for
workers: 2                      # grid items run in parallel
steps:
  - notebook: notebooks/01_prompting.ipynb   # relative to the playbook's folder or its parent
    parameters: {dataset: data/x.jsonl}
grid:                           # cartesian product, applied to every step declaring the name
  temperature: [0.0, 0.7]
fail_under: {accuracy: 0.8}     # exit non-zero if a run records accuracy below 0.8
files: [data/prompting.jsonl]   # shipped with each run when runs go to a URL (default: data/)
```
`files` (top level, or per step) lists the paths, relative to each notebook's folder, that
its runs read; with `--out s3://...` only those (plus the notebook and its cassette) reach a
worker (see `aikit.runner.ship`).
The whole file is checked before anything runs; an error names the file, the field and why.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from aikit._userfile import read_yaml
from aikit.errors import ParameterError, PlaybookError, StorageError
from aikit.runner.params import convert, read_parameters


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notebook: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    files: list[str] | None = None  # what its runs read, beside the notebook (default data/)


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    steps: list[Step] = Field(min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    workers: int = Field(default=1, ge=1, strict=True)
    fail_under: dict[str, FiniteFloat] = Field(default_factory=dict)  # metric -> lowest allowed
    files: list[str] | None = None  # default `files` of every step


def _field(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def load_playbook(path: str | Path) -> tuple[Playbook, list[tuple[Path, list[dict[str, Any]]]]]:
    """Read and check a playbook; returns it and, per step, the notebook and its parameter sets."""
    file = Path(path)
    data = read_yaml(file, what="playbook", error=PlaybookError)
    if not isinstance(data, dict):
        raise PlaybookError(f"{file}: a playbook is a mapping with name, steps (and grid, workers)")
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        # A misspelt field also makes the right one "missing": report the misspelling.
        err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        reason = err["msg"]
        if err["type"] not in ("missing", "extra_forbidden"):
            reason += f" (got {err['input']!r:.60})"
        if err["type"] == "extra_forbidden":
            owner = Step if "steps" in err["loc"] else Playbook
            reason = f"unknown field; known fields: {', '.join(owner.model_fields)}"
        raise PlaybookError(f"{file}: {_field(err['loc'])}: {reason}") from exc
    _check_grid(file, playbook)
    plan = []
    used_grid: set[str] = set()
    for index, step in enumerate(playbook.steps):
        notebook = _resolve(file, step.notebook)
        if notebook is None:
            raise PlaybookError(
                f"{file}: steps[{index}].notebook: {step.notebook} does not exist"
                f" (looked beside the playbook and in {file.resolve().parent.parent})"
            )
        files = step.files if step.files is not None else playbook.files
        if files is not None:  # checked now, shipped when runs go to a URL
            from aikit.runner.ship import declared_files

            try:
                declared_files(notebook, files)
            except StorageError as exc:
                where = f"steps[{index}]." if step.files is not None else ""
                raise PlaybookError(f"{file}: {where}{exc}") from exc
        declared = read_parameters(notebook)
        grid = {k: v for k, v in playbook.grid.items() if k in declared}
        used_grid |= set(grid)
        combos = [
            dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())
        ]
        sets = []
        for combo in combos or [{}]:
            try:
                sets.append(convert(notebook, {**step.parameters, **combo}))
            except ParameterError as exc:
                raise PlaybookError(f"{file}: steps[{index}].parameters: {exc}") from exc
        plan.append((notebook, sets))
    unused = sorted(set(playbook.grid) - used_grid)
    if unused:
        raise PlaybookError(
            f"{file}: grid.{unused[0]}: no step's notebook declares this parameter;"
            " check `aikit params NOTEBOOK`"
        )
    return playbook, plan


def _check_grid(file: Path, playbook: Playbook) -> None:
    """A grid that would run nothing, run one item twice, or silently beat a step's value."""
    for name, values in playbook.grid.items():
        if not values:
            raise PlaybookError(
                f"{file}: grid.{name}: an empty list runs nothing; give at least one value"
                " or remove the name"
            )
        seen: list[Any] = []
        for value in values:
            if any(type(value) is type(old) and value == old for old in seen):
                raise PlaybookError(
                    f"{file}: grid.{name}: {value!r} is listed twice; list each value once"
                )
            seen.append(value)
    for index, step in enumerate(playbook.steps):
        both = sorted(set(step.parameters) & set(playbook.grid))
        if both:
            raise PlaybookError(
                f"{file}: steps[{index}].parameters.{both[0]} is also in grid.{both[0]}, which"
                " would replace it in every run; keep one of the two"
            )


def _resolve(playbook_file: Path, notebook: str) -> Path | None:
    for base in (playbook_file.resolve().parent, playbook_file.resolve().parent.parent):
        candidate = (base / notebook).resolve()
        if candidate.is_file():
            return candidate
    return None
