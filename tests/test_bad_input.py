"""Bad input, table-driven: every user mistake ends in one line, `aikit: error: ...` and a
non-zero exit (or, in the library, one `AikitError`), with nothing half-written.

Each case runs `aikit.cli.main` in this process (an escaped exception is a traceback) or calls
the library; `test_every_bad_input_is_one_line` prints how many were tried and handled cleanly.
"""

from __future__ import annotations

import json
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
            'n: int = 1  # a number\napi_key: str = ""  # a secret',
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


NB, PB = "demo.ipynb", "pb.yaml"
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
]


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
