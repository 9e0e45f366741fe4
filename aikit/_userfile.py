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
    """The YAML document in `path` (YAML's safe loader, refusing a mapping key given twice,
    where YAML would silently keep the last), as `read_text` reads it."""
    import yaml

    class Repeated(Exception):
        def __init__(self, key: Any, line: int) -> None:
            super().__init__(key)
            self.key, self.line = key, line

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, str | int | float | bool) and key in seen:
                    raise Repeated(key, key_node.start_mark.line + 1)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    text = read_text(path, what=what, error=error, save_as="UTF-8 YAML")
    try:
        return yaml.load(text, Loader=UniqueKeys)  # a SafeLoader
    except Repeated as exc:
        raise error(f"{path}: line {exc.line}: {exc.key!r} is given twice; keep one") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{where} is not valid YAML ({problem}); fix the {what}") from exc
