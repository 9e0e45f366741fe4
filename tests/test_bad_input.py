"""Bad input, table-driven: every user mistake ends in one line, `aikit: error: ...` and a
non-zero exit (or, in the library, one `AikitError`), with nothing half-written.

Each case runs `aikit.cli.main` in this process (an escaped exception is a traceback) or calls
the library; `test_every_bad_input_is_one_line` prints how many were tried and handled cleanly.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

from aikit import cache, settings
from aikit.cli import main

NON_UTF8 = b"name: \xff\xfe bad \x80\n"
GOOD_PLAYBOOK = (
    "name: sweep\nsteps:\n  - notebook: demo.ipynb\ngrid:\n  n: [1, 2]\n"  # beside the notebook
)


def notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            'n: int = 1  # a number\napi_key: str = ""  # a secret\nt: float = 0.5  # a ratio',
            metadata={"tags": ["parameters"]},
        ),
        nbformat.v4.new_code_cell("print(n)"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "demo.ipynb"
    nbformat.write(nb, path)
    return path


def corrupt_store(path: Path) -> Path:
    """A response store whose pages after the header are garbage."""
    store = cache.ResponseStore(path)
    for i in range(300):
        req = cache.canonical_request(
            endpoint="e", model="m", messages=[{"role": "user", "content": f"q{i} " * 20}]
        )
        store.put(cache.request_key(req), req, {"pad": "x" * 400})
    store._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return garble(path)


def garble(path: Path) -> Path:
    """`path` with its pages after the first two overwritten with garbage here and there."""
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data) - 100, 997):
        data[offset : offset + 60] = b"\x13\x37garbage" * 6
    path.write_bytes(bytes(data))
    return path


@dataclass
class Case:
    """A bad input: CLI arguments (or a library call), the environment, and a setup step."""

    name: str
    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], object] | None = None
    call: Callable[[Path], Any] | None = None  # a library call instead of the CLI
    exit: int = 2
    absent: list[str] = field(default_factory=list)  # paths (under tmp) that must not exist
    warning: bool = False  # a one-line warning and exit 0, not an error
    says: str = ""  # what the line must say (the bad value or the fix), when given


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)

    return setup


def cassette_line(response: Any, *, edit: bool = False) -> str:
    req = cache.canonical_request(
        endpoint="e", model="m", messages=[{"role": "user", "content": "x"}]
    )
    key = cache.request_key(req)
    if edit:
        req = dict(req, model="other")
    return json.dumps({"key": key, "request": req, "response": response}) + "\n"


def bad_run(content: str) -> Callable[[Path], None]:
    return write("runs/demo/bad/run.json", content)


def healthy_runs(tmp: Path) -> None:
    from aikit.registry import Run, write_run

    for rid in ("20260101-000000-demo-aaaaaa", "20260101-000001-demo-bbbbbb"):
        run = Run(run_id=rid, name="demo", notebook="demo.ipynb", status="succeeded")
        run.started, run.records = "2026-01-01T00:00:00+00:00", {"score": 1}
        run.dir = tmp / "runs" / "demo" / rid
        write_run(run)


def dataset(kind: str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from aikit.evals import Dataset

        path = tmp / f"data.{kind}"
        path.write_bytes(b"input\n\xff\xfe\x80 bad\n")
        return Dataset.from_jsonl(path) if kind == "jsonl" else Dataset.from_csv(path)

    return call


def batch_call(**kwargs: Any) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        import aikit

        return aikit.batch(["x"], progress=False, **kwargs)

    return call


def chat_call(**kwargs: Any) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        import aikit

        return aikit.chat("x", **kwargs)

    return call


def estimate_call(**kwargs: Any) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        import aikit

        return aikit.estimate(["x"], **kwargs)

    return call


def embed_with(content: bytes | None) -> Callable[[Path], Any]:
    """Embed through a cache file holding `content` (None: a real cache, then damaged)."""

    def call(tmp: Path) -> Any:
        from aikit.rag import get_embedder

        path = tmp / "embeddings.sqlite"
        if content is None:  # a real cache, its pages after the header overwritten
            from aikit.rag._embed import EmbeddingCache

            real = EmbeddingCache(path)
            real.put_many("m", [(f"k{i}", b"\x00" * 1536) for i in range(300)], 384)
            real._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            real.close()
            garble(path)
        else:
            path.write_bytes(content)
        return get_embedder("local", cache=path).embed(["a text"])

    return call


def dataset_text(name: str, text: str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from aikit.evals import Dataset

        path = tmp / name
        path.write_text(text)
        return Dataset.from_jsonl(path) if name.endswith(".jsonl") else Dataset.from_csv(path)

    return call


def playbook(text: str) -> Callable[[Path], None]:
    return write("b.yaml", "name: x\nsteps:\n  - notebook: demo.ipynb\n" + text)


NB, PB = "demo.ipynb", "pb.yaml"
# `aikit api` points the process at the notebook's folder and project (os.environ): set here,
# so that each case's monkeypatch puts them back.
API = {"AIKIT_NOTEBOOK_DIR": "{tmp}", "AIKIT_PROJECT_ROOT": "{tmp}"}
CASES = [
    # argparse
    Case("no command", []),
    Case("unknown command", ["nosuch"]),
    Case("unknown option", ["--bogus"]),
    Case("run without a target", ["run"]),
    Case("-p without a value", ["run", NB, "-p", "n"]),
    Case("--workers -1", ["run", PB, "--workers", "-1"]),
    Case("--workers 0", ["run", PB, "--workers", "0"]),
    Case("--workers abc", ["run", PB, "--workers", "abc"]),
    Case("--executor nope", ["run", PB, "--executor", "nope"]),
    Case("cache nope", ["cache", "nope"]),
    # a notebook run
    Case("missing notebook", ["run", "missing.ipynb"]),
    Case("not a notebook file", ["run", "notes.txt"], setup=write("notes.txt", "hello")),
    Case("notebook not JSON", ["run", "junk.ipynb"], setup=write("junk.ipynb", "{oops")),
    Case("notebook a JSON list", ["run", "list.ipynb"], setup=write("list.ipynb", "[]")),
    Case("notebook not UTF-8", ["run", "bin.ipynb"], setup=write("bin.ipynb", NON_UTF8)),
    Case("unknown parameter", ["run", NB, "-p", "nn", "1"]),
    Case("wrong type", ["run", NB, "-p", "n", "abc"]),
    Case("plain secret", ["run", NB, "-p", "api_key", "plain"]),
    Case("bad secret ref", ["run", NB, "-p", "api_key", "secret:not a name"]),
    Case("-f missing", ["run", NB, "-f", "nope.yaml"]),
    Case("-f not UTF-8", ["run", NB, "-f", "p.yaml"], setup=write("p.yaml", NON_UTF8)),
    Case("-f malformed YAML", ["run", NB, "-f", "p.yaml"], setup=write("p.yaml", "n: [1, 2\nx: {")),
    Case("-f a list", ["run", NB, "-f", "p.yaml"], setup=write("p.yaml", "- 1\n- 2\n")),
    Case("-f unknown name", ["run", NB, "-f", "p.yaml"], setup=write("p.yaml", "zz: 1\n")),
    Case("--out is a file", ["run", NB, "--out", "taken"], setup=write("taken", "x")),
    Case("--workers on a notebook", ["run", NB, "--workers", "2"]),
    Case("--fail-under no =", ["run", NB, "--fail-under", "accuracy"]),
    Case("--fail-under not a number", ["run", NB, "--fail-under", "accuracy=high"]),
    Case("AIKIT_CACHE bogus", ["run", NB], env={"AIKIT_CACHE": "bogus"}, absent=["runs"]),
    Case("AIKIT_PROVIDER bogus", ["run", NB], env={"AIKIT_PROVIDER": "nope"}, absent=["runs"]),
    Case("AIKIT_TIMEOUT negative", ["run", NB], env={"AIKIT_TIMEOUT": "-1"}, absent=["runs"]),
    Case("AIKIT_MAX_RETRIES text", ["run", NB], env={"AIKIT_MAX_RETRIES": "x"}, absent=["runs"]),
    Case("OPENAI_BASE_URL not http", ["run", NB], env={"OPENAI_BASE_URL": "ftp://x"}),
    Case("AIKIT_PROFILE unknown", ["run", NB], env={"AIKIT_PROFILE": "nope"}, absent=["runs"]),
    # a playbook run
    Case("missing playbook", ["run", "nope.yaml"]),
    Case("playbook not UTF-8", ["run", "b.yaml"], setup=write("b.yaml", NON_UTF8)),
    Case("playbook malformed", ["run", "b.yaml"], setup=write("b.yaml", "name: x\nsteps: [\n")),
    Case("playbook a list", ["run", "b.yaml"], setup=write("b.yaml", "- a\n")),
    Case("playbook unknown field", ["run", "b.yaml"], setup=write("b.yaml", "name: x\nstep: []\n")),
    Case(
        "playbook missing notebook",
        ["run", "b.yaml"],
        setup=write("b.yaml", "name: x\nsteps:\n  - notebook: gone.ipynb\n"),
    ),
    Case(
        "playbook workers 0",
        ["run", "b.yaml"],
        setup=write("b.yaml", GOOD_PLAYBOOK + "workers: 0\n"),
    ),
    Case(
        "playbook grid not a list",
        ["run", "b.yaml"],
        setup=write("b.yaml", "name: x\nsteps:\n  - notebook: demo.ipynb\ngrid:\n  n: 3\n"),
    ),
    Case(
        "playbook bad name",
        ["run", "b.yaml"],
        setup=write("b.yaml", GOOD_PLAYBOOK.replace("sweep", "a b")),
    ),
    Case("playbook unknown override", ["run", PB, "-p", "zz", "1", "--dry-run"]),
    Case("playbook --scheduler without dask", ["run", PB, "--scheduler", "tcp://127.0.0.1:1"]),
    Case("playbook --out is a file", ["run", PB, "--out", "taken"], setup=write("taken", "x")),
    Case("playbook -f not UTF-8", ["run", PB, "-f", "p.yaml"], setup=write("p.yaml", NON_UTF8)),
    Case("playbook AIKIT_CACHE bogus", ["run", PB], env={"AIKIT_CACHE": "bogus"}, absent=["runs"]),
    # the response store
    Case("cache export without a file", ["cache", "export"]),
    Case("cache export into a missing folder", ["cache", "export", "missing/dir/x.jsonl"]),
    Case(
        "cache export onto a folder",
        ["cache", "export", "folder"],
        setup=lambda tmp: (tmp / "folder").mkdir(),
        absent=["folder.tmp"],
    ),
    Case("cache import missing", ["cache", "import", "nope.jsonl"]),
    Case(
        "cache import binary",
        ["cache", "import", "c.jsonl"],
        setup=write("c.jsonl", b"\x00\xff\xfe" * 50),
    ),
    Case(
        "cache import not JSON", ["cache", "import", "c.jsonl"], setup=write("c.jsonl", "{nope\n")
    ),
    Case(
        "cache import empty object", ["cache", "import", "c.jsonl"], setup=write("c.jsonl", "{}\n")
    ),
    Case(
        "cache import not a completion",
        ["cache", "import", "c.jsonl"],
        setup=write("c.jsonl", cassette_line({"answer": 42})),
    ),
    Case(
        "cache import edited entry",
        ["cache", "import", "c.jsonl"],
        setup=write("c.jsonl", cassette_line({}, edit=True)),
    ),
    Case("cache import --force", ["cache", "import", "c.jsonl", "--force"]),
    Case(
        "cache stats on a corrupt store",
        ["cache", "stats"],
        env={"AIKIT_CACHE_PATH": "{tmp}/bad.sqlite"},
        setup=lambda tmp: corrupt_store(tmp / "bad.sqlite"),
    ),
    Case(
        "cache clear on a corrupt store",
        ["cache", "clear"],
        env={"AIKIT_CACHE_PATH": "{tmp}/bad.sqlite"},
        setup=lambda tmp: corrupt_store(tmp / "bad.sqlite"),
    ),
    Case(
        "cache stats on a garbage file",
        ["cache", "stats"],
        env={"AIKIT_CACHE_PATH": "{tmp}/junk.sqlite"},
        setup=write("junk.sqlite", b"this is not sqlite at all" * 100),
    ),
    Case(
        "cache stats on a truncated store",
        ["cache", "stats"],
        env={"AIKIT_CACHE_PATH": "{tmp}/cut.sqlite"},
        setup=lambda tmp: (tmp / "cut.sqlite").write_bytes(
            corrupt_store(tmp / "whole.sqlite").read_bytes()[:5000]
        ),
    ),
    Case(
        "AIKIT_CACHE_PATH is a folder",
        ["cache", "stats"],
        env={"AIKIT_CACHE_PATH": "{tmp}"},
    ),
    # the embedded model server
    Case(
        "serve with AIKIT_HOME a file",
        ["serve"],
        env={"AIKIT_HOME": "{tmp}/home-file"},
        setup=write("home-file", "x"),
    ),
    # runs and compare
    Case("runs with a run.json that is []", ["runs"], setup=bad_run("[]"), exit=0, warning=True),
    Case(
        "runs with a bad date",
        ["runs"],
        setup=bad_run(
            '{"run_id": "x", "name": "demo", "status": "failed", "started": "yesterday"}'
        ),
        exit=0,
        warning=True,
    ),
    Case(
        "runs with an unknown schema",
        ["runs"],
        setup=bad_run('{"schema_version": "x"}'),
        exit=0,
        warning=True,
    ),
    Case(
        "runs with a newer schema",
        ["runs"],
        setup=bad_run('{"schema_version": 99}'),
        exit=0,
        warning=True,
    ),
    Case(
        "compare two healthy runs beside a bad one",
        ["compare", "20260101-000000", "20260101-000001"],
        setup=lambda tmp: (healthy_runs(tmp), bad_run("[]")(tmp)),
        exit=0,
        warning=True,
    ),
    Case(
        "playbook beside a bad run.json",
        ["run", PB, "--dry-run"],
        setup=write("runs/sweep/bad/run.json", "[]"),
        exit=0,
        warning=True,
    ),
    Case("compare a missing run", ["compare", "nope", "nada"]),
    Case(
        "compare a folder with a bad run.json",
        ["compare", "runs/demo/bad", "x"],
        setup=bad_run("[]"),
    ),
    # other commands
    Case("params of a missing notebook", ["params", "missing.ipynb"]),
    Case(
        "params of a binary notebook", ["params", "bin.ipynb"], setup=write("bin.ipynb", NON_UTF8)
    ),
    Case("params of a JSON list", ["params", "list.ipynb"], setup=write("list.ipynb", "[1]")),
    Case("record a missing notebook", ["record", "missing.ipynb"]),
    Case("doctor with AIKIT_CACHE bogus", ["doctor"], env={"AIKIT_CACHE": "bogus"}),
    Case(
        "doctor with a malformed aikit.toml",
        ["doctor"],
        env={"AIKIT_PROFILE": "x"},
        setup=write("aikit.toml", "[profiles\n"),
    ),
    Case(
        "doctor with credentials in OPENAI_BASE_URL, endpoint down",
        ["doctor"],
        env={
            "AIKIT_PROVIDER": "openai",
            "OPENAI_BASE_URL": "http://user:hunter2@127.0.0.1:9/v1?key=hunter2",
            "OPENAI_API_KEY": "x",
        },
        exit=1,
    ),
    # the library
    Case("Dataset.from_jsonl not UTF-8", call=dataset("jsonl")),
    Case("Dataset.from_csv not UTF-8", call=dataset("csv")),
    Case(
        "aikit.chat on a corrupt store",
        env={"AIKIT_CACHE_PATH": "{tmp}/bad.sqlite"},
        setup=lambda tmp: corrupt_store(tmp / "bad.sqlite"),
        call=lambda tmp: __import__("aikit").chat("hi"),
    ),
    Case("batch max_attempts=0", call=batch_call(max_attempts=0)),
    Case("batch deadline_s=-1", call=batch_call(deadline_s=-1)),
    # issue 22, item 7 (and more of the same families)
    Case(
        "-p given twice",
        ["run", NB, "-p", "n", "1", "-p", "n", "2"],
        absent=["runs"],
        says="'n' is given twice (-p n 1, then -p n 2); pass it once",
    ),
    Case(
        "-p given twice to a playbook",
        ["run", PB, "-p", "t", "1", "-p", "t", "2"],
        says="'t' is given twice",
    ),
    Case(
        "-p a float nan",
        ["run", NB, "-p", "t", ".nan"],
        absent=["runs"],
        says="parameter 't' expects float, got nan",
    ),
    Case("-p a float inf", ["run", NB, "-p", "t", ".inf"], absent=["runs"], says="got inf"),
    Case("-p an int as 1.5", ["run", NB, "-p", "n", "1.5"], absent=["runs"]),
    Case("-p an int as true", ["run", NB, "-p", "n", "true"], absent=["runs"]),
    Case(
        "-f a float nan",
        ["run", NB, "-f", "p.yaml"],
        setup=write("p.yaml", "t: .nan\n"),
        says="got nan",
    ),
    Case(
        "secret:UNSET",
        ["run", NB, "-p", "api_key", "secret:AIKIT_T_UNSET"],
        absent=["runs"],
        says="AIKIT_T_UNSET is not set in the environment; export AIKIT_T_UNSET=",
    ),
    Case(
        "secret: an empty variable",
        ["run", NB, "-p", "api_key", "secret:AIKIT_T_EMPTY"],
        env={"AIKIT_T_EMPTY": ""},
        absent=["runs"],
        says="AIKIT_T_EMPTY is not set (it is empty)",
    ),
    Case("secret: no name", ["run", NB, "-p", "api_key", "secret:"]),
    Case(
        "playbook secret:UNSET",
        ["run", PB, "-p", "api_key", "secret:AIKIT_T_UNSET"],
        absent=["runs"],
        says="AIKIT_T_UNSET is not set",
    ),
    Case(
        "playbook -p a float as text",
        ["run", PB, "-p", "t", "hot"],
        absent=["runs"],
        says="parameter 't' expects float, got 'hot'",
    ),
    Case(
        "playbook -p over its grid",
        ["run", PB, "-p", "n", "5"],
        absent=["runs"],
        says="-p n would replace grid.n",
    ),
    Case("playbook -p over its grid, dry run", ["run", PB, "-p", "n", "5", "--dry-run"]),
    Case(
        "playbook grid empty",
        ["run", "b.yaml"],
        setup=playbook("grid:\n  n: []\n"),
        says="grid.n: an empty list runs nothing",
    ),
    Case(
        "playbook grid repeats",
        ["run", "b.yaml"],
        setup=playbook("grid:\n  n: [1, 2, 1]\n"),
        says="grid.n: 1 is listed twice",
    ),
    Case(
        "playbook grid wrong type",
        ["run", "b.yaml"],
        setup=playbook("grid:\n  n: [1, two]\n"),
        absent=["runs"],
    ),
    Case(
        "playbook grid over a step parameter",
        ["run", "b.yaml"],
        setup=write(
            "b.yaml",
            "name: x\nsteps:\n  - notebook: demo.ipynb\n    parameters: {n: 3}\ngrid:\n  n: [1]\n",
        ),
        says="steps[0].parameters.n is also in grid.n",
    ),
    Case(
        "playbook grid a float nan",
        ["run", "b.yaml"],
        setup=playbook("grid:\n  t: [.nan]\n"),
        says="got nan",
    ),
    Case(
        "playbook fail_under nan",
        ["run", "b.yaml"],
        setup=playbook("fail_under: {x: .nan}\n"),
        says="fail_under.x: Input should be a finite number (got nan)",
    ),
    Case(
        "playbook workers true",
        ["run", "b.yaml"],
        setup=playbook("workers: true\n"),
        says="workers: Input should be a valid integer (got True)",
    ),
    Case("playbook workers 1.5", ["run", "b.yaml"], setup=playbook("workers: 1.5\n")),
    Case("playbook steps empty", ["run", "b.yaml"], setup=write("b.yaml", "name: x\nsteps: []\n")),
    Case(
        "playbook step not a mapping",
        ["run", "b.yaml"],
        setup=write("b.yaml", "name: x\nsteps: [3]\n"),
    ),
    Case("playbook name missing", ["run", "b.yaml"], setup=write("b.yaml", "steps: []\n")),
    Case("playbook empty file", ["run", "b.yaml"], setup=write("b.yaml", "")),
    Case(
        "playbook step parameter unknown",
        ["run", "b.yaml"],
        setup=write(
            "b.yaml", "name: x\nsteps:\n  - notebook: demo.ipynb\n    parameters: {z: 1}\n"
        ),
    ),
    Case(
        "playbook step plain secret",
        ["run", "b.yaml"],
        setup=write(
            "b.yaml",
            "name: x\nsteps:\n  - notebook: demo.ipynb\n    parameters: {api_key: sk-1}\n",
        ),
    ),
    Case(
        "AIKIT_TIMEOUT nan",
        ["run", NB],
        env={"AIKIT_TIMEOUT": "nan"},
        absent=["runs"],
        says="AIKIT_TIMEOUT='nan' is not a finite number",
    ),
    Case(
        "AIKIT_TIMEOUT 0",
        ["run", NB],
        env={"AIKIT_TIMEOUT": "0"},
        absent=["runs"],
        says="AIKIT_TIMEOUT='0' is zero",
    ),
    Case("AIKIT_TIMEOUT 1e999", ["run", NB], env={"AIKIT_TIMEOUT": "1e999"}, absent=["runs"]),
    Case(
        "AIKIT_MAX_RETRIES -1",
        ["run", NB],
        env={"AIKIT_MAX_RETRIES": "-1"},
        absent=["runs"],
        says="AIKIT_MAX_RETRIES='-1' is negative",
    ),
    Case("AIKIT_MAX_RETRIES 2.5", ["run", NB], env={"AIKIT_MAX_RETRIES": "2.5"}, absent=["runs"]),
    Case(
        "AIKIT_SERVER_IDLE_S soon",
        ["run", NB],
        env={"AIKIT_SERVER_IDLE_S": "soon"},
        says="AIKIT_SERVER_IDLE_S='soon' is not a number",
    ),
    Case(
        "AIKIT_SERVER_IDLE_S soon, serve",
        ["serve"],
        env={"AIKIT_SERVER_IDLE_S": "soon"},
        says="AIKIT_SERVER_IDLE_S='soon'",
    ),
    Case("AIKIT_SERVER_IDLE_S -1, doctor", ["doctor"], env={"AIKIT_SERVER_IDLE_S": "-1"}),
    Case(
        "AIKIT_TIMEOUT in .env",
        ["run", NB],
        setup=write(".env", "AIKIT_TIMEOUT=-1\n"),
        says="AIKIT_TIMEOUT='-1' is negative",
    ),
    Case(
        "malformed aikit.toml",
        ["run", NB],
        setup=write("aikit.toml", "[profiles\n"),
        absent=["runs"],
        says="aikit.toml is not valid TOML",
    ),
    Case("malformed aikit.toml, doctor", ["doctor"], setup=write("aikit.toml", "x = = 1\n")),
    Case("aikit.toml profiles a number", ["doctor"], setup=write("aikit.toml", "profiles = 3\n")),
    Case(
        "aikit.toml unknown profile key",
        ["run", NB],
        setup=write("aikit.toml", "[profiles.a]\nmodle = 'x'\n"),
    ),
    Case(
        "aikit.toml not UTF-8",
        ["doctor"],
        setup=write("aikit.toml", NON_UTF8),
        says="aikit.toml is not UTF-8 text",
    ),
    Case(
        ".env not UTF-8",
        ["run", NB],
        setup=write(".env", NON_UTF8),
        absent=["runs"],
        says=".env is not UTF-8 text",
    ),
    Case(".env not UTF-8, doctor", ["doctor"], setup=write(".env", NON_UTF8)),
    Case(".env not UTF-8, cache stats", ["cache", "stats"], setup=write(".env", NON_UTF8)),
    Case(
        "chat temperature='hot'",
        call=chat_call(temperature="hot"),
        says="temperature='hot' is not valid; pass a number from 0 to 2",
    ),
    Case(
        "chat temperature=nan",
        call=chat_call(temperature=float("nan")),
        says="temperature=nan is not valid",
    ),
    Case("chat temperature=3", call=chat_call(temperature=3)),
    Case(
        "chat max_tokens=0",
        call=chat_call(max_tokens=0),
        says="max_tokens=0 is not valid; pass a whole number >= 1",
    ),
    Case("chat max_tokens=-5", call=chat_call(max_tokens=-5), says="max_tokens=-5 is not valid"),
    Case("chat max_tokens=1.5", call=chat_call(max_tokens=1.5)),
    Case("chat max_tokens=True", call=chat_call(max_tokens=True)),
    Case("chat top_p=2", call=chat_call(top_p=2)),
    Case("chat n=0", call=chat_call(n=0)),
    Case("chat seed='x'", call=chat_call(seed="x")),
    Case("chat stop=[]", call=chat_call(stop=[])),
    Case("chat presence_penalty=9", call=chat_call(presence_penalty=9)),
    Case(
        "chat logprobs=True on the embedded model",
        call=chat_call(logprobs=True),
        says="logprobs=True is not available on the embedded model",
    ),
    Case(
        "chat top_logprobs=3 on the embedded model",
        call=chat_call(top_logprobs=3),
        says="top_logprobs=3 is not available",
    ),
    Case("chat logprobs='yes'", call=chat_call(logprobs="yes")),
    Case(
        "batch budget_usd=nan",
        call=batch_call(budget_usd=float("nan"), max_tokens=5),
        says="budget_usd=nan is not valid",
    ),
    Case("batch budget_usd=-1", call=batch_call(budget_usd=-1, max_tokens=5)),
    Case(
        "batch temperature='hot'",
        call=batch_call(temperature="hot"),
        says="temperature='hot' is not valid",
    ),
    Case("batch max_tokens=0", call=batch_call(max_tokens=0)),
    Case("estimate max_tokens=-5", call=estimate_call(max_tokens=-5)),
    Case(
        "playbook key twice",
        ["run", "b.yaml"],
        setup=write("b.yaml", "name: x\nname: y\nsteps:\n  - notebook: demo.ipynb\n"),
        says="b.yaml: line 2: 'name' is given twice; keep one",
    ),
    Case(
        "playbook grid name twice", ["run", "b.yaml"], setup=playbook("grid:\n  n: [1]\n  n: [2]\n")
    ),
    Case(
        "playbook step a folder",
        ["run", "b.yaml"],
        setup=lambda tmp: (
            (tmp / "d.ipynb").mkdir(),
            write("b.yaml", "name: x\nsteps:\n  - notebook: d.ipynb\n")(tmp),
        ),
    ),
    Case(
        "playbook step a JSON list",
        ["run", "b.yaml"],
        setup=lambda tmp: (
            write("l.ipynb", "[]")(tmp),
            write("b.yaml", "name: x\nsteps:\n  - notebook: l.ipynb\n")(tmp),
        ),
    ),
    Case("playbook files a string", ["run", "b.yaml"], setup=playbook("files: data\n")),
    Case("playbook grid a list", ["run", "b.yaml"], setup=playbook("grid: [1]\n")),
    Case(
        "AIKIT_MODEL blank",
        ["run", NB],
        env={"AIKIT_MODEL": "   "},
        absent=["runs"],
        says="AIKIT_MODEL='   ' is blank",
    ),
    Case(
        "AIKIT_CACHE_PATH under a file",
        ["cache", "stats"],
        env={"AIKIT_CACHE_PATH": "{tmp}/afile/cache.sqlite"},
        setup=write("afile", "x"),
    ),
    Case(
        "AIKIT_CASSETTES a non-JSONL file, replay",
        env={"AIKIT_CACHE": "replay", "AIKIT_CASSETTES": "{tmp}/c.jsonl"},
        setup=write("c.jsonl", "not json\n"),
        call=chat_call(),
    ),
    Case(
        "OPENAI_BASE_URL without a host",
        env={"AIKIT_PROVIDER": "openai", "OPENAI_BASE_URL": "http://", "OPENAI_API_KEY": "k"},
        call=chat_call(),
        says="OPENAI_BASE_URL='http://' is not an http(s) URL",
    ),
    Case(
        "provider openai without a key",
        env={"AIKIT_PROVIDER": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
        call=chat_call(),
    ),
    Case("-p a list as broken YAML", ["run", NB, "-p", "n", "[1, 2"], absent=["runs"]),
    Case("--out s3:// (no bucket)", ["run", NB, "--out", "s3://"], says="names no bucket"),
    Case("--out ftp:// refused", ["run", NB, "--out", "ftp://127.0.0.1:1/x"], says="cannot reach"),
    Case("--fail-under nan", ["run", NB, "--fail-under", "x=nan"], says="not a finite number"),
    Case("--fail-under inf", ["run", PB, "--fail-under", "x=inf", "--dry-run"]),
    Case("dataset row a list", call=dataset_text("d.jsonl", "[1, 2]\n"), says="row 1"),
    Case("dataset row without input", call=dataset_text("d.jsonl", '{"expected": 1}\n')),
    Case(
        "dataset ids repeat",
        call=dataset_text("d.jsonl", '{"id": "a", "input": "x"}\n{"id": "a", "input": "y"}\n'),
        says="id 'a' repeats row 1",
    ),
    Case("dataset CSV without input", call=dataset_text("d.csv", "question,expected\nx,y\n")),
    Case("dataset CSV ragged", call=dataset_text("d.csv", "input,expected\nx,y,z\n")),
    Case("embedding cache corrupt", call=embed_with(None), says="embedding cache"),
    Case(
        "embedding cache not SQLite",
        call=embed_with(b"not a database at all" * 200),
        says="is corrupt (file is not a database); delete it",
    ),
    # `aikit api`: live scores and the request log (refused before the notebook runs)
    Case("api --score unknown", ["api", NB, "--score", "nope"], env=API, says="'nope'"),
    Case("api --score bad rate", ["api", NB, "--score", "faithfulness:2"], env=API, says="'2'"),
    Case("api --score no name", ["api", NB, "--score", ":0.5"], env=API, says="METRIC:RATE"),
    Case("api --alert no <", ["api", NB, "--alert", "faithfulness>0.5"], env=API, says="<VALUE"),
    Case("api --alert not a number", ["api", NB, "--alert", "x<high"], env=API, says="'x<high'"),
    Case(
        "AIKIT_REQUEST_LOG not a database",
        ["api", NB],
        env={**API, "AIKIT_REQUEST_LOG": "mysql://u:hunter2@db.example/log"},
        says="postgresql://USER:PASSWORD@HOST:PORT/DB",
    ),
]


_said: dict[str, str] = {}  # case -> its message, printed with -s for review


def attempt(case: Case, tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> str | None:
    """None when the case was handled cleanly, else what went wrong."""
    notebook(tmp)
    (tmp / PB).write_text(GOOD_PLAYBOOK)
    if case.setup is not None:
        case.setup(tmp)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp)))
    monkeypatch.chdir(tmp)
    settings.reset_settings()
    cache._stores.clear()
    capsys.readouterr()
    shown = warnings.showwarning
    try:
        if case.call is not None:
            from aikit.errors import AikitError

            try:
                case.call(tmp)
            except AikitError as exc:
                text = str(exc)
                _said[case.name] = text
                if case.says not in text:
                    return f"does not say {case.says!r}: {text!r}"
                return None if "\n" not in text and text else f"message {text!r}"
            return "no error"
        try:
            code = main(case.argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        return f"traceback: {type(exc).__name__}: {str(exc)[:120]}"
    finally:
        warnings.showwarning = shown
    captured = capsys.readouterr()
    err = captured.err
    lines = err.splitlines()
    _said[case.name] = err.strip()
    if case.says not in err:
        return f"does not say {case.says!r}: {err!r}"
    if case.warning:
        ok = code == 0 and lines and all(ln.startswith("aikit: warning: ") for ln in lines)
        return None if ok else f"exit {code}, stderr {err!r}"
    if code != case.exit:
        return f"exit {code}, stderr {err!r}"
    if len(lines) != 1 or not lines[0].startswith("aikit: error: ") or "Traceback" in err:
        return f"stderr {err!r}"
    if "hunter2" in captured.out + err:
        return "a credential in the message"
    left = [p for p in case.absent if (tmp / p).exists()]
    return f"half-written: {left}" if left else None


def test_every_bad_input_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failures = {}
    for number, case in enumerate(CASES):
        folder = tmp_path / f"case{number:02d}"
        folder.mkdir()
        with monkeypatch.context() as patch:
            problem = attempt(case, folder, patch, capsys)
        if problem is not None:
            failures[case.name] = problem
    tried, clean = len(CASES), len(CASES) - len(failures)
    with capsys.disabled():
        print(f"\nbad inputs: tried {tried}, handled cleanly {clean}", file=sys.stderr)
        for name, problem in failures.items():
            print(f"  NOT CLEAN {name}: {problem}", file=sys.stderr)
        if os.environ.get("SHOW_BAD_INPUT_MESSAGES"):
            for name, text in _said.items():
                print(f"  {name}: {text}", file=sys.stderr)
    assert not failures, failures


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "x.yaml", "--workers", "-1"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "aikit: error: argument --workers: '-1' is not a positive whole number such as 2;"
        " see `aikit run --help`\n"
    )


def test_a_corrupt_store_says_so_and_clear_force_starts_afresh(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = corrupt_store(isolated / "cache.sqlite")
    with pytest.raises(sqlite3.DatabaseError), sqlite3.connect(path) as conn:  # really damaged
        conn.execute("SELECT COUNT(*), SUM(LENGTH(response)) FROM responses").fetchall()
    assert main(["cache", "stats"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aikit: error: the response store {str(path)!r} is corrupt (")
    assert err.rstrip().endswith("e.g. `aikit cache clear --force`") and err.count("\n") == 1
    assert main(["cache", "clear", "--force"]) == 0
    assert capsys.readouterr().out == f"deleted {path}\n" and not path.exists()
    cache._stores.clear()
    assert main(["cache", "stats"]) == 0 and "entries  0" in capsys.readouterr().out
