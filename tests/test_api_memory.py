"""A long-lived `aikit api` worker keeps a bounded number of calls (issue 20, item 4): a real
`aikit api` process answers many model-calling requests against the loopback OpenAI test
server, and the length of its usage log, read from outside through an endpoint, stops at
`AIKIT_USAGE_KEEP` while the calls go on. No timing: counts only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from conftest import API_KEY
from openai_server import OpenAIServer

pytest.importorskip("fastapi_offline", reason="aikit api needs `pip install aikit[api]`")

KEEP = 40  # the worker's AIKIT_USAGE_KEEP
REQUESTS = 200  # five times as many calls as it may keep

CODE = """\
import aikit


@aikit.endpoint
def ask(question: str) -> str:
    return aikit.chat(question, max_tokens=20).text


@aikit.endpoint
def kept(worker: int = 0) -> dict[str, int]:
    import os

    return {"calls": len(aikit.usage()), "pid": os.getpid()}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def worker(tmp_path: Path, server: OpenAIServer) -> Iterator[tuple[httpx.Client, OpenAIServer]]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CODE)]
    notebook = tmp_path / "service.ipynb"
    nbformat.write(nb, notebook)
    port = _free_port()
    env = {
        **os.environ,
        "AIKIT_HOME": str(tmp_path / "home"),
        "AIKIT_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "AIKIT_MODEL": "test-model",
        "AIKIT_CACHE": "off",  # every request is a new call to the model server
        "AIKIT_USAGE_KEEP": str(KEEP),
    }
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aikit.cli", "api", str(notebook), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"aikit api did not start: {(tmp_path / 'api.log').read_text()}")
            time.sleep(0.2)
        yield client, server
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_long_lived_workers_usage_log_stays_bounded(
    worker: tuple[httpx.Client, OpenAIServer],
) -> None:
    client, server = worker
    seen = []
    for number in range(REQUESTS):
        answer = client.post("/ask", json={"question": f"q{number}"})
        assert answer.status_code == 200 and answer.json() == f"echo: q{number}"
        if number in (KEEP // 2 - 1, REQUESTS - 1):
            seen.append(client.post("/kept", json={}).json())
    assert server.completions == REQUESTS  # every request was a model call
    assert len({s["pid"] for s in seen}) == 1  # one worker answered all
    # halfway to the bound it keeps every call; after five times the bound, only the bound
    assert [s["calls"] for s in seen] == [KEEP // 2, KEEP]
