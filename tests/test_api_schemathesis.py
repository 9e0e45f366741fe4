"""Schemathesis against `aikit api` (issue 22.6): every operation of a probe notebook whose
endpoints take every supported parameter type, with every check, must find nothing. Bounded:
a fixed number of examples per operation, a fixed seed, deterministic generation, no
shrinking; one worker (about a minute on 2 busy cores). Offline: the schema comes from the
server on 127.0.0.1."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from aikit.api import serving

pytest.importorskip("fastapi_offline", reason="aikit api needs `pip install aikit[api]`")
pytest.importorskip("schemathesis", reason="needs `pip install aikit[dev]`")
PROBE = '''\
import dataclasses
import datetime
import enum
from typing import Literal

from pydantic import BaseModel

import aikit


class Colour(enum.Enum):
    red = "red"
    blue = "blue"


class Item(BaseModel):
    name: str
    qty: int = 1
    weight: float = 0.0


class Everything(BaseModel):
    text: str
    whole: int
    real: float
    flag: bool
    choice: Literal["a", "b"]
    colour: Colour
    day: datetime.date
    numbers: list[int]
    scores: dict[str, float]
    maybe: str | None
    item: Item
    items: list[Item]


@dataclasses.dataclass
class Summary:
    words: int
    first: str | None


@aikit.endpoint
def probe(
    text: str,
    whole: int,
    real: float,
    flag: bool,
    choice: Literal["a", "b"],
    colour: Colour,
    day: datetime.date,
    numbers: list[int],
    scores: dict[str, float],
    item: Item,
    items: list[Item] = [],
    maybe: str | None = None,
) -> Everything:
    """Echo every parameter type aikit api serves."""
    return Everything(
        text=text, whole=whole, real=real, flag=flag, choice=choice, colour=colour, day=day,
        numbers=numbers, scores=scores, maybe=maybe, item=item, items=items,
    )


@aikit.endpoint
async def summary(text: str, model_config: int = 0) -> Summary:
    words = text.split()
    return Summary(words=len(words) + model_config * 0, first=words[0] if words else None)
'''


def _probe(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PROBE)]
    path = folder / "probe.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.timeout(600)
def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is in the dev extra"
    with serving(_probe(tmp_path), env={"AIKIT_HOME": str(tmp_path / "home")}) as api:
        done = subprocess.run(
            [
                st,
                "run",
                f"{api.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "100",
                "--seed",
                "1",
                "--generation-deterministic",
                "--no-shrink",
                "--workers",
                "1",
                "--request-timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=540,
            cwd=tmp_path,
        )
        rows = api.requests()
    assert done.returncode == 0, done.stdout[-6000:]
    assert "No issues found" in done.stdout, done.stdout[-3000:]
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated is not None and int(generated.group(1)) > 1000, done.stdout[-2000:]
    print(done.stdout[-600:])
    assert len(rows) > 100  # it did call the endpoints (every call is a log row)
    assert set(rows["endpoint"]) == {"probe", "summary"}
    assert {200, 422} <= set(rows["status"])
