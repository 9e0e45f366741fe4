"""The embedded server aikit uses is the one it started: a discovery file pointing at another
live server is not trusted, and a stopped (SIGSTOP) server is reported in seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer

from aikit import local
from aikit.errors import LocalModelError
from aikit.local._process import IdentityHeader
from aikit.settings import get_settings

SILENT_SERVER = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(16)
print(sock.getsockname()[1], flush=True)
time.sleep(600)
"""


def discovery(home: Path, **info: object) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / local.DISCOVERY).write_text(json.dumps(info))


def test_another_server_on_the_recorded_port_is_not_used(
    isolated: Path, server: OpenAIServer
) -> None:
    # Our server died; another OpenAI-compatible program now answers on its port.
    discovery(isolated, pid=os.getpid(), port=0, base_url=server.base_url, token="ab" * 16)
    assert local.answers(server.base_url)  # it does answer ...
    assert local.server_info(get_settings()) is None  # ... but not with our token
    assert not local.answers(server.base_url, token="ab" * 16)


def test_a_stopped_server_is_reported_in_seconds(isolated: Path) -> None:
    # A process that looks like ours (its command line names aikit.local._process), listening
    # on a port, then stopped: connections are accepted by the kernel but never answered.
    fake = subprocess.Popen(
        [sys.executable, "-c", SILENT_SERVER, "aikit.local._process"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert fake.stdout is not None
        port = int(fake.stdout.readline())
        os.kill(fake.pid, signal.SIGSTOP)
        base_url = f"http://127.0.0.1:{port}/v1"
        discovery(isolated, pid=fake.pid, port=port, base_url=base_url, token="cd" * 16)
        started = time.monotonic()
        with pytest.raises(LocalModelError, match=rf"server \(pid {fake.pid}\) is stopped"):
            local.ensure_server(get_settings())
        assert time.monotonic() - started < 10  # not BUSY_WAIT_S (120 s) and more
        assert local.server_info(get_settings()) is None
    finally:
        os.killpg(fake.pid, signal.SIGKILL)
        fake.wait(10)


def test_the_server_sends_its_token_on_every_answer() -> None:
    import asyncio

    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    async def record(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    asyncio.run(
        IdentityHeader(app, "t0k3n")({"type": "http", "path": "/v1/models"}, receive, record)
    )  # type: ignore[arg-type]
    assert (b"x-aikit-server-token", b"t0k3n") in sent[0]["headers"]  # type: ignore[operator]


@pytest.mark.live
def test_the_embedded_server_is_recognised_by_its_token(live: Path) -> None:
    base_url = local.ensure_server(get_settings())
    info = json.loads((live / local.DISCOVERY).read_text())
    assert info["base_url"] == base_url and len(info["token"]) == 32
    assert local.answers(base_url, token=info["token"])
    assert not local.answers(base_url, token="0" * 32)  # a server with another token: not ours
    assert local.server_info(get_settings()) == info


def test_an_unknown_local_model_is_one_line_listing_the_local_models(isolated: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aikit.cli", "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AIKIT_HOME": str(isolated), "AIKIT_MODEL": "llama-9b"},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "aikit: error: unknown local model 'llama-9b'; the embedded models are: gemma-3-270m,"
        " smollm2-135m-instruct (set AIKIT_MODEL to one of them, or AIKIT_PROVIDER=openai for a"
        " hosted model)\n"
    )
    assert not (isolated / local.DISCOVERY).exists()  # nothing started


def test_each_model_has_its_own_answer_defaults() -> None:
    from aikit.provider import resolve_endpoint
    from aikit.settings import Settings

    gemma = resolve_endpoint(Settings.resolve(provider="local", dotenv=None))
    smol = resolve_endpoint(
        Settings.resolve(provider="local", model="smollm2-135m-instruct", dotenv=None)
    )
    assert dict(gemma.answer_defaults) == {"stop": ["\n"], "max_tokens": 64}
    assert dict(smol.answer_defaults) == {"max_tokens": 96}
    assert gemma.answer_defaults_for("smollm2-135m-instruct") == {"max_tokens": 96}
    assert smol.families("gemma-3-270m") == ("gemma-3-270m", "gemma", "base")
    hosted = resolve_endpoint(Settings.resolve(provider="openai", api_key="k", dotenv=None))
    assert hosted.families("gpt-4o-mini") == ("gpt-4o-mini", "hosted", "instruct")
    assert hosted.answer_defaults_for("gpt-4o-mini") == {}
