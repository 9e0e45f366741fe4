"""No secret in anything aikit saves or prints, in whatever form it is printed: a `secret:NAME`
canary holding `"`, `\\` and `'` printed eight ways in a real run, then grepped raw and escaped
across the run folder, AIKIT_HOME, the CLI's output and /tmp; a short secret; a run killed
with `kill -9`; credentials in OPENAI_BASE_URL."""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import API_KEY
from fault_server import Faults, FaultServer

import aikit
from aikit._scrub import Scrubber, forms, redact_url, redact_urls, scrub_json
from aikit.errors import EndpointError
from aikit.settings import reset_settings

PARAMS = 'api_key: str = ""  # a secret: pass secret:NAME\npin: str = ""  # a short secret'
SEVEN_WAYS = """\
import json, logging, sys
import pandas as pd
import aikit
from IPython.display import display
print("print:", api_key)                           # 1 print
print("repr:", repr(api_key), [api_key])           # 2 repr (and a list's repr)
print("json:", json.dumps({"key": api_key}))       # 3 json.dumps
frame = pd.DataFrame({"key": [api_key], "n": [1]})
print(frame.to_string())                           # 4 a DataFrame's text
display(frame)                                     # 5 its HTML (and text/plain)
aikit.record("leak", api_key)                      # 6 aikit.record
aikit.record("leaks", {"k": [api_key]})
logging.basicConfig(stream=sys.stderr)
logging.getLogger("canary").warning("logging: %s", api_key)  # 7 logging
api_key                                            # an execute_result: the repr again
"""
RAISE = 'raise ValueError(f"evalue: {api_key!r} / {api_key}")  # 8 a traceback\'s evalue\n'


def make_notebook(folder: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "canary.ipynb"
    nbformat.write(nb, path)
    return path


def cli(
    *args: str, env: dict[str, str], cwd: Path, **popen: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aikit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=300,
    )


def escaped(secret: str) -> list[str]:
    """The forms a leak would take, computed here independently of aikit._scrub."""
    inner = repr(secret)[1:-1]
    found = {
        secret,
        inner,
        json.dumps(secret)[1:-1],
        json.dumps(inner)[1:-1],
        html.escape(secret),
        html.escape(secret, quote=False),
        json.dumps(html.escape(secret))[1:-1],
        html.escape(inner),
    }
    return sorted(found)


def files_under(root: Path, since: float = 0.0) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            try:
                if path.is_file() and path.stat().st_mtime >= since and path.stat().st_size < 5e6:
                    yield path
            except OSError:
                continue


def leaks(text: str, secret: str, token: str) -> list[str]:
    return [form for form in [*escaped(secret), token] if form in text]


@pytest.fixture
def canary() -> tuple[str, str]:
    token = os.urandom(4).hex()  # unique per run: a leak from an older run cannot match
    return f"sk-\"ab\\cd'9QXZ{token}", token


def test_a_canary_printed_eight_ways_is_scrubbed_everywhere(
    tmp_path: Path, isolated: Path, canary: tuple[str, str]
) -> None:
    secret, token = canary
    started = time.time() - 1
    nb = make_notebook(tmp_path, [SEVEN_WAYS, RAISE])
    before = set(Path("/tmp").glob("aikit-run-*"))
    done = cli(
        "run",
        str(nb),
        "-p",
        "api_key",
        "secret:CANARY",
        "--out",
        str(tmp_path / "runs"),
        env={"CANARY": secret},
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr  # the last cell raises, on purpose
    [run_dir] = (tmp_path / "runs" / "canary").iterdir()
    executed = nbformat.read(run_dir / "canary.ipynb", as_version=4)  # still a valid notebook
    outputs = [o for c in executed.cells for o in c.get("outputs", [])]
    text = json.dumps(outputs)
    # every way of printing it reached the notebook, scrubbed
    for marker in ("print: secret:CANARY", "repr: ", "json: ", "logging: secret:CANARY"):
        assert marker in text, marker
    assert "text/html" in text and "application/vnd.aikit.record+json" in text
    [error] = [o for o in outputs if o["output_type"] == "error"]
    assert error["evalue"].startswith("evalue: ") and "secret:CANARY" in error["evalue"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["records"]["leak"] == "secret:CANARY"
    assert record["records"]["leaks"] == {"k": ["secret:CANARY"]}
    assert "secret:CANARY" in record["error"] and record["status"] == "failed"
    assert record["parameters"]["api_key"] == "secret:CANARY"
    assert "secret:CANARY" in done.stdout + done.stderr  # the CLI printed it, scrubbed

    found = {}
    for root, since in ((tmp_path, 0.0), (isolated, 0.0), (Path("/tmp"), started)):
        for path in files_under(root, since):
            hit = leaks(path.read_text(encoding="utf-8", errors="replace"), secret, token)
            if hit:
                found[str(path)] = hit
    found["CLI output"] = leaks(done.stdout + done.stderr, secret, token)
    assert not any(found.values()), found
    assert set(Path("/tmp").glob("aikit-run-*")) == before  # no working copy in /tmp


def test_a_short_secret_does_not_corrupt_the_notebook(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path, ["x = 1\nprint('pin', pin, x, 11)\naikit_value = [1, 1.5]"])
    done = cli(
        "run",
        str(nb),
        "-p",
        "pin",
        "secret:PIN",
        "--out",
        str(tmp_path / "runs"),
        env={"PIN": "1"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    [run_dir] = (tmp_path / "runs" / "canary").iterdir()
    executed = nbformat.read(run_dir / "canary.ipynb", as_version=4)
    nbformat.validate(executed)
    counts = [c.execution_count for c in executed.cells if c.cell_type == "code"]
    assert all(isinstance(n, int) for n in counts)  # no `"execution_count": secret:PIN`
    [cell] = [c for c in executed.cells if "print('pin'" in c.source]
    assert cell.outputs[0]["text"] == "pin secret:PIN secret:PIN secret:PINsecret:PIN\n"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "succeeded"


def test_kill_9_leaves_no_unscrubbed_copy_and_runs_flags_the_run(
    tmp_path: Path, canary: tuple[str, str]
) -> None:
    secret, token = canary
    nb = make_notebook(tmp_path, ["print('key', api_key)", "import time\ntime.sleep(120)"])
    before = set(Path("/tmp").glob("aikit-run-*"))
    process = subprocess.Popen(
        [sys.executable, "-m", "aikit.cli", "run", str(nb), "-p", "api_key", "secret:CANARY"],
        cwd=tmp_path,
        env={**os.environ, "CANARY": secret},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        saved = None
        while saved is None or "key secret:CANARY" not in saved.read_text():
            assert process.poll() is None and time.monotonic() < deadline, "never got going"
            time.sleep(0.2)
            saved = next(iter((tmp_path / "runs").rglob("canary.ipynb")), None)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    time.sleep(0.5)
    for path in files_under(tmp_path / "runs"):
        assert not leaks(path.read_text(errors="replace"), secret, token), path
    assert set(Path("/tmp").glob("aikit-run-*")) == before
    runs = cli("runs", env={}, cwd=tmp_path)
    assert runs.returncode == 0, runs.stderr
    assert "running (process gone)" in runs.stdout


def test_forms_and_json_scrubbing() -> None:
    secret = "sk-\"ab\\cd'9QXZ"
    assert set(escaped(secret)) <= set(forms(secret))
    doc = {"execution_count": 1, "1": ["a1", 1, 1.5, {"text": "pin=1"}], "output_type": "1"}
    assert scrub_json(doc, {"PIN": "1"}) == {
        "execution_count": 1,
        "1": ["asecret:PIN", 1, 1.5, {"text": "pin=secret:PIN"}],
        "output_type": "secret:PIN",
    }
    assert scrub_json(doc, {"PIN": "1"}, notebook=True)["output_type"] == "1"


def test_urls_lose_credentials_and_query() -> None:
    assert redact_url("http://user:pw@Host:8080/v1?key=pw#x") == "http://***@host:8080/v1?***"
    assert redact_url("https://api.example.com/v1") == "https://api.example.com/v1"
    text = "cannot reach http://u:p@127.0.0.1:9/v1?api-key=p (refused); see https://x.org/a?b=c"
    assert redact_urls(text) == (
        "cannot reach http://***@127.0.0.1:9/v1?*** (refused); see https://x.org/a?***"
    )


def test_endpoint_and_batch_errors_never_show_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIKIT_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:hunter2@127.0.0.1:9/v1?key=hunter2")
    monkeypatch.setenv("AIKIT_MAX_RETRIES", "0")
    reset_settings()
    with pytest.raises(EndpointError) as info:
        aikit.chat("hi")
    assert "hunter2" not in str(info.value) and "127.0.0.1:9" in str(info.value)

    server = FaultServer(Faults(slow=1.0, slow_s=1.0)).start()
    try:
        url = server.base_url.replace("http://", "http://user:hunter2@")
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("AIKIT_TIMEOUT", "0.2")
        reset_settings()
        frame = aikit.batch(["a", "b"], max_attempts=2, progress=False)
    finally:
        server.stop()
    for error in frame["error"]:
        assert "hunter2" not in error and "user" not in error
        assert "timed out after 0.2 s (AIKIT_TIMEOUT)" in error


NINE_WAYS = """\
import json, logging, sys
import pandas as pd
import aikit
from IPython.display import HTML, display
print("way1 print:", api_key)
print("way2 repr:", repr(api_key), [api_key])
print("way3 json:", json.dumps({"key": api_key}))
logging.basicConfig(stream=sys.stderr)
logging.getLogger("canary").warning("way4 logging: %s", api_key)
sys.stderr.write(f"way5 stderr: {api_key}\\n")
display(HTML(f"<pre>way6 html: {api_key}</pre>"))
frame = pd.DataFrame({"key": [api_key], "n": [1]})
print("way7 frame:", frame.to_string())
display(frame)
aikit.record("way8", api_key)
aikit.record("way8s", {"k": [api_key]})
api_key
"""
NINTH = 'raise ValueError(f"way9 evalue: {api_key!r} / {api_key}")\n'


@pytest.mark.parametrize("lines", ["multi-line", "one line"])
def test_a_secret_with_newlines_is_scrubbed_nine_ways(
    tmp_path: Path, isolated: Path, lines: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22, item 2: a PEM-like key printed nine ways; nbformat keeps text as a list of
    lines and pandas prints a newline as `\\n`, and neither may let a line of it through."""
    one, two = os.urandom(5).hex(), os.urandom(5).hex()  # unique: a match is a leak
    secret = f"-----BEGIN TEST KEY-----\nMIIB{one}q\"w\\e'r+/=\n{two}Zz09\n-----END TEST KEY-----\n"
    if lines == "one line":
        secret = secret.replace("\n", " ").strip()
    started = time.time() - 1
    nb = make_notebook(tmp_path, [NINE_WAYS, NINTH])
    done = cli(
        "run",
        str(nb),
        "-p",
        "api_key",
        "secret:PEM",
        "--out",
        str(tmp_path / "runs"),
        env={"PEM": secret},
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr  # the last cell raises, on purpose
    [run_dir] = (tmp_path / "runs" / "canary").iterdir()
    executed = nbformat.read(run_dir / "canary.ipynb", as_version=4)
    nbformat.validate(executed)
    text = json.dumps([o for c in executed.cells for o in c.get("outputs", [])])
    record = json.loads((run_dir / "run.json").read_text())
    shown = {  # each way reached the notebook (or run.json), scrubbed
        1: "way1 print: secret:PEM",
        2: "way2 repr: 'secret:PEM' ['secret:PEM']",
        3: 'way3 json: {\\"key\\": \\"secret:PEM\\"}',
        4: "way4 logging: secret:PEM",
        5: "way5 stderr: secret:PEM",
        6: "<pre>way6 html: secret:PEM</pre>",
        7: "<td>secret:PEM",
        8: "",
        9: "way9 evalue: 'secret:PEM' / secret:PEM",
    }
    reached = {way for way, marker in shown.items() if marker and marker in text}
    reached |= (
        {8}
        if record["records"] == {"way8": "secret:PEM", "way8s": {"k": ["secret:PEM"]}}
        else set()
    )
    if "secret:PEM  1" not in text:  # the frame's text form too, not only its HTML
        reached.discard(7)
    found = {}
    for root, since in ((tmp_path, 0.0), (isolated, 0.0), (Path("/tmp"), started)):
        for path in files_under(root, since):
            content = path.read_text(encoding="utf-8", errors="replace")
            hit = [t for t in (one, two) if t in content]
            if hit:
                found[str(path)] = hit
    cli_hits = [t for t in (one, two) if t in done.stdout + done.stderr]
    with capsys.disabled():
        print(f"\n{lines} secret: tried 9 ways, scrubbed {len(reached)}", file=sys.stderr)
    assert reached == set(shown), sorted(set(shown) - reached)
    assert not found and not cli_hits, (found, cli_hits)


def test_every_form_of_a_multi_line_secret_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    """The forms a PEM-like secret takes on its way out, computed here (not by aikit._scrub):
    each is scrubbed in text and inside a notebook's line lists; the counts are printed."""
    import pandas as pd

    token = os.urandom(5).hex()
    secret = (
        f"-----BEGIN TEST KEY-----\nMIIB{token}q\"w\\e'r+/=\n{token}Zz09\n-----END TEST KEY-----"
    )
    inner = repr(secret)[1:-1]
    pandas_form = secret.replace("\n", "\\n")
    frame = pd.DataFrame({"key": [secret]})
    with pd.option_context("display.max_colwidth", 50):
        cut = repr(frame)
    shown = {
        "raw": secret,
        "repr": repr(secret),
        "repr in a list": repr([secret]),
        "json": json.dumps(secret),
        "json of a repr": json.dumps(repr(secret)),
        "json, ensure_ascii": json.dumps({"k": secret}, ensure_ascii=False),
        "html": html.escape(secret),
        "html of a repr": html.escape(inner),
        "html in json": json.dumps(html.escape(secret)),
        "pandas text": frame.to_string(),
        "pandas cut short": cut,
        "pandas html": frame.to_html(),
        "pandas \\n form": pandas_form,
        "one line of it": f"x {secret.splitlines()[1]} y",
        "a line, repr": repr(secret.splitlines()[2]),
        "with CRLF": secret.replace("\n", "\r\n"),
        "upper half": secret[: len(secret) // 2] + "...",
    }
    scrubber = Scrubber({"PEM": secret})
    leaked = {name for name, text in shown.items() if token in scrubber.text(text)}
    lines = (secret + "\n").splitlines(True)
    cell = {"outputs": [{"output_type": "stream", "name": "stdout", "text": lines}]}
    scrubbed = scrubber.json(cell, notebook=True)
    if token in json.dumps(scrubbed):
        leaked.add("nbformat line list")
    tried = len(shown) + 1
    with capsys.disabled():
        print(f"\nsecret forms: tried {tried}, scrubbed {tried - len(leaked)}", file=sys.stderr)
    assert not leaked, sorted(leaked)
    assert scrubbed["outputs"][0]["text"] == ["secret:PEM\n"]
