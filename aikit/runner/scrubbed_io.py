"""Papermill saves the executed notebook as it goes (after each cell); this I/O handler scrubs
every save before it reaches the disk, so no unscrubbed copy ever exists, even after `kill -9`.

`execute_notebook(nb, scrubbed_path(out), ...)` writes `out` (inside the run folder) through
`ScrubbedHandler`: the notebook JSON is decoded, every form of each secret is replaced inside
its string values (`aikit._scrub`), and the file is replaced atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aikit._scrub import Scrubber

SCHEME = "aikit-scrubbed://"


class ScrubbedHandler:
    """A papermill I/O handler for `aikit-scrubbed://<absolute path>` (write only)."""

    def __init__(self) -> None:
        self.scrubber = Scrubber({})

    @staticmethod
    def real_path(path: str) -> Path:
        return Path(path[len(SCHEME) :])

    def read(self, path: str) -> str:
        return self.real_path(path).read_text(encoding="utf-8")

    def listdir(self, path: str) -> list[str]:
        return os.listdir(self.real_path(path))

    def pretty_path(self, path: str) -> str:
        return str(self.real_path(path))

    def write(self, buf: str, path: str) -> None:
        target = self.real_path(path)
        notebook = self.scrubber.json(json.loads(buf), notebook=True)
        papermill = notebook.get("metadata", {}).get("papermill")
        if isinstance(papermill, dict) and str(papermill.get("output_path", "")).startswith(SCHEME):
            papermill["output_path"] = str(target)
        write_notebook(target, notebook)


def write_notebook(target: Path, notebook: dict[str, Any]) -> None:
    """Write a notebook's JSON atomically, as nbformat lays it out."""
    text = json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


_handler: ScrubbedHandler | None = None


def scrubbed_path(target: Path, secrets: dict[str, str]) -> str:
    """The papermill output path that writes `target` scrubbed of `secrets` (NAME -> value)."""
    global _handler
    if _handler is None:
        from papermill.iorw import papermill_io

        _handler = ScrubbedHandler()
        papermill_io.register(SCHEME, _handler)
    _handler.scrubber = Scrubber(secrets)
    return f"{SCHEME}{target.resolve()}"
