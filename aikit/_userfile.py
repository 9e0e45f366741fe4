"""Reading a user's file (a parameters file, a playbook, a dataset) with one-line errors.

Every failure is the caller's `AikitError` subclass with one line that names the file and the
fix: it cannot be read, it is not UTF-8 (the byte where it stops), it is not valid YAML (the
line). One helper, so the CLI, the runner and `evals` say it the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aikit.errors import AikitError


def read_text(
    path: str | Path, *, what: str, error: type[AikitError], save_as: str = "UTF-8"
) -> str:
    """The text of `path` (newlines as they are); `what` names the file in messages
    ("dataset", "playbook", ...)."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(
            f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as"
            f" {save_as}"
        ) from exc


def read_yaml(path: str | Path, *, what: str, error: type[AikitError]) -> Any:
    """The YAML document in `path` (`yaml.safe_load`), as `read_text` reads it."""
    import yaml

    text = read_text(path, what=what, error=error, save_as="UTF-8 YAML")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{where} is not valid YAML ({problem}); fix the {what}") from exc
