"""`aikit api` against a hostile or careless client (issue 22): secrets kept out of every answer,
log and output; slow bodies; timed-out sync calls; cross-site and rebinding requests; input
outside the schema; bad options; killed workers. Real uvicorn on 127.0.0.1, called with httpx
or a raw socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from aikit._scrub import forms
from aikit.api import ApiClient, serving

pytest.importorskip("fastapi_offline", reason="aikit api needs `pip install aikit[api]`")
JSON = {"Content-Type": "application/json"}
SECRET = "sk-\"q\\uote'-0123456789abcdef"  # quotes and a backslash: every escaped form differs
CODE = """\
import asyncio
import time

import aikit

calls = []


@aikit.endpoint
def leak(how: str) -> str:
    print(f"printing the token {api_token}")
    if how == "key":
        raise KeyError(api_token)
    if how == "value":
        raise ValueError(f"bad token {api_token!r}")
    return f"the token is {api_token}"


@aikit.endpoint
def block(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@aikit.endpoint
async def sleepy(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@aikit.endpoint
def count(n: int, x: float = 0.0) -> int:
    calls.append(n)
    return len(calls)


@aikit.endpoint
def configured(model_config: str, schema: int = 1, _private: bool = False) -> list:
    return [model_config, schema, _private]
"""


def _notebook(folder: Path, code: str = CODE, name: str = "hostile.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            'api_token: str = "none"  # a secret', metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(code),
    ]
    path = folder / name
    nbformat.write(nb, path)
    return path


def _log(api: ApiClient, expected: int, *, settled: bool = True) -> Any:
    deadline = time.monotonic() + 15
    while True:
        frame = api.requests()
        done = len(frame) >= expected and (not settled or not (frame["status"] == 0).any())
        if done or time.monotonic() > deadline:
            return frame
        time.sleep(0.05)


def _aikit(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "aikit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _leaks(text: str | bytes) -> list[str]:
    """The forms of SECRET (as is, JSON-escaped, in a repr, ...) found in `text`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [form for form in forms(SECRET, depth=2) if form in text]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiClient]:
    folder = tmp_path_factory.mktemp("hostile")
    with serving(
        _notebook(folder),
        parameters={"api_token": "secret:SERVICE_SECRET"},
        args=["--timeout", "0.5", "--concurrency", "2", "--queue", "0", "--body-timeout", "1"],
        env={"AIKIT_HOME": str(folder / "home"), "SERVICE_SECRET": SECRET},
    ) as api:
        yield api


# -- 22.1 secrets ---------------------------------------------------------------------------------
def test_no_secret_in_any_answer_log_row_or_server_output(hostile: ApiClient) -> None:
    before = len(_log(hostile, 0))
    answers = [
        hostile.post("/leak", json={"how": "key"}),
        hostile.post("/leak", json={"how": "value"}),
        hostile.post("/leak", json={"how": "return"}),
        hostile.post("/leak/batch", json={"inputs": [{"how": "key"}, {"how": "return"}]}),
    ]
    assert [a.status_code for a in answers] == [500, 500, 200, 200]
    assert answers[0].json()["error"] == "KeyError: 'secret:SERVICE_SECRET'"
    assert answers[2].json() == "the token is secret:SERVICE_SECRET"
    streamed = list(hostile.stream("leak", how="value"))
    assert streamed[-1].name == "error" and "secret:SERVICE_SECRET" in streamed[-1].data["error"]
    log = _log(hostile, before + 5)
    stored = b"".join(p.read_bytes() for p in hostile.home.glob("requests.sqlite*"))
    assert _leaks(stored) == []
    assert "secret:SERVICE_SECRET" in " ".join(log["error"].dropna())
    assert "secret:SERVICE_SECRET" in " ".join(log["output"].dropna())
    for answer in answers:
        assert _leaks(answer.text) == []
    assert _leaks(json.dumps([e.data for e in streamed])) == []
    output = hostile.output()
    assert "Traceback" in output and "printing the token secret:SERVICE_SECRET" in output
    assert _leaks(output) == []


def test_a_cell_failing_at_start_up_does_not_print_the_secret(tmp_path: Path) -> None:
    code = 'raise RuntimeError(f"cannot start with {api_token}")'
    done = _aikit(
        "api",
        str(_notebook(tmp_path, code)),
        "-p",
        "api_token",
        "secret:SERVICE_SECRET",
        env={"AIKIT_HOME": str(tmp_path / "home"), "SERVICE_SECRET": SECRET},
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot start with secret:SERVICE_SECRET" in done.stderr
    assert _leaks(done.stdout + done.stderr) == []


# -- 22.3 slow bodies -----------------------------------------------------------------------------
def test_slow_bodies_get_408_and_do_not_take_the_workers_slots(hostile: ApiClient) -> None:
    port = int(hostile.url.rsplit(":", 1)[1])
    slow = []
    for _ in range(5):  # more slow senders than --concurrency 2 + --queue 0
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /count HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"n": '
        )
        slow.append(sock)
    try:
        time.sleep(0.2)
        assert hostile.post("/count", json={"n": 1}).status_code == 200  # not 503
        for sock in slow:
            sock.settimeout(30)
            answer = sock.recv(4096)
            while b"}" not in answer:  # the body may come in a second packet
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"did not arrive within 1 s" in answer
    finally:
        for sock in slow:
            sock.close()


# -- 22.4 timed-out sync calls -------------------------------------------------------------------
def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads")))


def test_a_timed_out_sync_call_keeps_its_slot_until_its_thread_stops(hostile: ApiClient) -> None:
    pid = hostile.process.pid
    before = _threads(pid)

    def call(_: int) -> int:
        with httpx.Client(base_url=hostile.url, timeout=30) as client:
            return client.post("/block", json={"seconds": 4}).status_code

    waves = []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(6):  # --concurrency 2 --queue 0: two run; they time out at 0.5 s
            waves.append(sorted(pool.map(call, range(2))))
    assert waves[0] == [504, 504]
    assert waves[1:] == [[503, 503]] * 5  # the two threads still run: no slot is free
    assert _threads(pid) <= before + 10  # the pool's threads at most (2 + 8), not one per call
    deadline = time.monotonic() + 30
    while hostile.post("/block", json={"seconds": 0}).status_code != 200:
        assert time.monotonic() < deadline, "the slots were never freed"
        time.sleep(0.2)


# -- 22.5 cross-site requests and DNS rebinding ---------------------------------------------------
def test_foreign_origins_hosts_and_non_json_bodies_are_refused(hostile: ApiClient) -> None:
    before = hostile.post("/count", json={"n": 0}).json()
    form = hostile.post("/count", content=b'{"n": 1}', headers={"Content-Type": "text/plain"})
    assert form.status_code == 415 and "application/json" in form.json()["error"]
    foreign = hostile.post("/count", json={"n": 1}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "--allow-origin" in foreign.json()["error"]
    rebound = hostile.post("/count", json={"n": 1}, headers={"Host": "evil.example:80"})
    assert rebound.status_code == 421 and "--allow-host" in rebound.json()["error"]
    assert hostile.get("/openapi.json", headers={"Host": "evil.example"}).status_code == 421
    same = hostile.post("/count", json={"n": 1}, headers={"Origin": hostile.url})
    assert same.status_code == 200
    assert same.json() == before + 1  # the refused requests never ran the function


def test_allowed_hosts_and_origins_are_answered(tmp_path: Path) -> None:
    with serving(
        _notebook(tmp_path),
        args=["--allow-host", "api.internal", "--allow-origin", "https://app.example"],
        env={"AIKIT_HOME": str(tmp_path / "home")},
    ) as api:
        headers = {"Host": "api.internal:8000", "Origin": "https://app.example"}
        assert api.post("/count", json={"n": 1}, headers=headers).status_code == 200
        other = api.post("/count", json={"n": 1}, headers={"Origin": "https://other.example"})
        assert other.status_code == 403


# -- 22.6 answers inside the schema --------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [b'{"n": false}', b'{"n": 1, "x": NaN}', b'{"n": 1, "x": Infinity}', b'{"n": 1, "x": 1e400}'],
    ids=["false-for-int", "nan", "infinity", "overflow"],
)
def test_booleans_and_non_finite_numbers_are_422(hostile: ApiClient, body: bytes) -> None:
    r = hostile.post("/count", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_batch_and_stream_answer_bad_json_with_422_and_a_request_id(hostile: ApiClient) -> None:
    for path in ("/count/batch", "/count/stream", "/count"):
        r = hostile.post(path, content=b"{not json", headers=JSON)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["detail"][0]["type"] == "json_invalid"
        assert r.json()["request_id"] == r.headers["x-request-id"]


def test_a_repeated_request_id_is_two_rows_and_two_tokens_are_refused(hostile: ApiClient) -> None:
    for n in (1, 2):
        hostile.post("/count", json={"n": n}, headers={"X-Request-ID": "same-id"})
    log = _log(hostile, 0)
    rows = log[log["request_id"] == "same-id"]
    assert sorted(json.loads(i)["n"] for i in rows["input"]) == [1, 2]
    two = httpx.post(
        f"{hostile.url}/count",
        json={"n": 1},
        headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
    )
    assert two.status_code == 400 and "more than one Authorization" in two.json()["error"]


# -- 22.7 bad input -----------------------------------------------------------------------------
def test_reserved_parameter_names_keep_their_names(hostile: ApiClient) -> None:
    r = hostile.post("/configured", json={"model_config": "a", "schema": 2, "_private": True})
    assert r.status_code == 200 and r.json() == ["a", 2, True]
    spec = hostile.get("/openapi.json").json()["components"]["schemas"]["ConfiguredRequest"]
    assert set(spec["properties"]) == {"model_config", "schema", "_private"}


def test_a_callable_parameter_is_one_line_at_start_up(tmp_path: Path) -> None:
    code = (
        "from collections.abc import Callable\nimport aikit\n\n@aikit.endpoint\n"
        "def apply(f: Callable[[int], int], x: int) -> int:\n    return f(x)\n"
    )
    done = _aikit("api", str(_notebook(tmp_path, code)), env={"AIKIT_HOME": str(tmp_path)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "parameter 'f'" in done.stderr and "no JSON schema" in done.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--port", "70000"], "--port 70000: a port is 1 to 65535"),
        (["--timeout", "nan"], "--timeout nan: must be a positive number"),
        (["--body-timeout", "inf"], "--body-timeout inf: must be a positive number"),
    ],
    ids=["port", "timeout-nan", "body-timeout-inf"],
)
def test_bad_numbers_are_one_line(tmp_path: Path, option: list[str], message: str) -> None:
    done = _aikit("api", str(_notebook(tmp_path)), *option)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"aikit: error: {message}")
    assert "serving" not in done.stdout


def test_a_port_in_use_is_one_line_before_serving(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = _aikit("api", str(_notebook(tmp_path)), "--port", port)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"aikit: error: cannot listen on 127.0.0.1:{port}")
    assert "serving" not in done.stdout


def test_workers_that_cannot_start_stop_the_server(tmp_path: Path) -> None:
    nb = _notebook(tmp_path, "x = 1 / 0")
    done = _aikit("api", str(nb), "--workers", "2", env={"AIKIT_HOME": str(tmp_path)}, timeout=180)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "failed at start-up: ZeroDivisionError" in done.stderr


# -- 22.9 a killed worker's requests --------------------------------------------------------------
def test_a_killed_workers_requests_stay_in_the_log(tmp_path: Path) -> None:
    with serving(_notebook(tmp_path), workers=2, env={"AIKIT_HOME": str(tmp_path / "home")}) as api:

        def call(i: int) -> int:
            try:
                with httpx.Client(base_url=api.url, timeout=30) as client:
                    headers = {"X-Request-ID": f"k-{i}"}
                    return client.post("/sleepy", json={"seconds": 4}, headers=headers).status_code
            except httpx.TransportError:
                return 0

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(call, i) for i in range(16)]
            deadline = time.monotonic() + 30
            while True:  # every request admitted: 16 rows in flight
                log = _log(api, 16, settled=False)
                if (log["status"] == 0).sum() == 16 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            victim = int(log["worker"].value_counts().index[0])
            lost = set(log[log["worker"] == victim]["request_id"])
            os.kill(victim, signal.SIGKILL)
            statuses = [f.result() for f in futures]
        log = _log(api, 16, settled=False)
    assert statuses.count(0) == len(lost) and statuses.count(200) == 16 - len(lost)
    gone = log[log["worker"] == victim]
    assert set(gone["request_id"]) == lost and (gone["status"] == 0).all()
    assert gone["error"].str.startswith("no answer yet").all()
    served = log[log["worker"] != victim]
    assert (served["status"] == 200).all() and len(served) == 16 - len(lost)
