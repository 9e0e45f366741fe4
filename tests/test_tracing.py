"""OpenTelemetry traces (`aikit.tracing`) in a real receiver: Arize Phoenix's server on
127.0.0.1, started once for the session (its own working folder, offline), fed over OTLP/HTTP
by `aikit run` and `aikit api` processes, read back through its REST API. The notebook run is
`00_quickstart` replayed from its cassette (no model time); the API request goes to the
loopback OpenAI-compatible test server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from conftest import API_KEY, ROOT
from openai_server import OpenAIServer

pytest.importorskip("opentelemetry.sdk", reason="tracing needs `pip install 'aikit[otel]'`")
pytest.importorskip("phoenix", reason="the receiver is Phoenix: `pip install 'aikit[phoenix]'`")

TOKEN = "tok-FAKE-for-tests-0f9e8d7c6b5a4321"  # the bearer token: no span may hold it
CHROMIUM = Path("/usr/bin/chromium")
SEEN: dict[str, str] = {}  # the API request's trace, for the viewer's test


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Phoenix's server on free ports of 127.0.0.1; yields its base URL; stopped by PID."""
    folder = tmp_path_factory.mktemp("phoenix")
    port, grpc = _free_port(), _free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(folder),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",  # no fonts, telemetry or downloads
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (folder / "phoenix.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "phoenix"), "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # its first start migrates a new database
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"phoenix did not start: {(folder / 'phoenix.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _otel_env(phoenix: str, **more: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{phoenix}/v1/traces",
        "OTEL_SERVICE_NAME": "aikit-tests",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within 0.2 s, not 5 s
        **more,
    }


def _spans(phoenix: str, done: Callable[[list[dict[str, Any]]], bool], **query: Any) -> Any:
    """Phoenix's spans matching `query` once `done(spans)` holds (they arrive in batches)."""
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(f"{phoenix}/v1/projects/default/spans", params={"limit": 1000, **query})
        r.raise_for_status()
        spans: list[dict[str, Any]] = r.json()["data"]
        if done(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def _one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, [s["name"] for s in spans]
    return found[0]


def test_a_notebook_run_is_one_trace_with_the_kernels_chat_spans_under_the_run(
    phoenix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "AIKIT_CACHE": "replay",
        **_otel_env(phoenix, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true"),
    }
    out = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "aikit.cli", "run", str(ROOT / "notebooks" / "00_quickstart.ipynb"),
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = out.glob("00_quickstart/*/run.json")
    run_id = json.loads(record.read_text())["run_id"]
    runs = _spans(phoenix, bool, name="aikit.run 00_quickstart")
    (run,) = [s for s in runs if s["attributes"].get("aikit.run_id") == run_id]
    assert run["parent_id"] is None and run["attributes"]["aikit.run_status"] == "succeeded"
    trace_id = run["context"]["trace_id"]
    spans = _spans(phoenix, lambda s: len(s) >= 4, trace_id=trace_id)
    chats = [s for s in spans if s["name"] == "chat gemma-3-270m"]
    assert len(chats) == 3, [s["name"] for s in spans]  # the notebook's three calls
    for chat in chats:
        # the kernel is two processes below `aikit run`: it joined through TRACEPARENT
        assert chat["parent_id"] == run["context"]["span_id"]
        attributes = chat["attributes"]
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "llama_cpp"
        assert attributes["gen_ai.request.model"] == "gemma-3-270m"
        assert attributes["gen_ai.response.model"] == "gemma-3-270m"
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.usage.output_tokens"] > 0
        assert attributes["gen_ai.response.finish_reasons"] in (["stop"], ["length"])
        assert attributes["aikit.cached"] is True and attributes["aikit.cost_usd"] == 0.0
        messages = json.loads(attributes["gen_ai.input.messages"])
        assert messages[-1]["role"] == "user" and messages[-1]["parts"][0]["type"] == "text"
    answered = [json.loads(c["attributes"]["gen_ai.output.messages"]) for c in chats]
    assert any(a[0]["parts"][0]["content"] == "Paris." for a in answered)  # the recorded answer


SERVICE = """\
import aikit


@aikit.endpoint(guards=["invisible_text"])
def ask(question: str) -> str:
    return aikit.chat(question, max_tokens=20).text
"""


def _service(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SERVICE)]
    path = folder / "service.ipynb"
    nbformat.write(nb, path)
    return path


def test_an_api_request_is_a_server_span_over_its_chat_span_and_holds_no_secret(
    phoenix: str, server: OpenAIServer, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi_offline", reason="aikit api needs `pip install aikit[api]`")
    from aikit.api import serving

    env = {
        "AIKIT_HOME": str(tmp_path / "home"),
        "AIKIT_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "AIKIT_MODEL": "test-model",
        **_otel_env(
            phoenix,
            OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
            OTEL_METRICS_EXPORTER="console",  # printed at shutdown: read from its output
        ),
    }
    # The question holds the model endpoint's key and the service's token: the answer echoes
    # it back, so both are in the messages the chat span would capture.
    question = f"the key is {API_KEY} and the token {TOKEN}"
    with serving(_service(tmp_path), env=env, token=TOKEN) as api:
        r = api.post("/ask", json={"question": question})
        api.stop()  # flushes its spans and prints its metrics
        printed = api.output()
    assert r.status_code == 200, r.text
    trace_id, request_id = r.headers["x-trace-id"], r.headers["x-request-id"]
    SEEN["request_id"] = request_id
    assert len(trace_id) == 32 and int(trace_id, 16)
    spans = _spans(phoenix, lambda s: len(s) >= 2, trace_id=trace_id)
    root = _one(spans, "POST /ask")
    assert root["parent_id"] is None and root["span_kind"] in ("SERVER", "UNKNOWN", "CHAIN")
    assert root["attributes"]["aikit.request_id"] == request_id  # request id <-> trace id
    assert root["attributes"]["http.response.status_code"] == 200
    assert root["attributes"]["aikit.endpoint"] == "ask"
    guards = [e["attributes"] for e in root["events"] if e["name"] == "aikit.guard"]
    assert {(g["aikit.guard_stage"], g["aikit.guard_name"]) for g in guards} == {
        ("input", "invisible_text"),
        ("output", "invisible_text"),
    }, root["events"]
    chat = _one(spans, "chat test-model")
    assert chat["parent_id"] == root["context"]["span_id"]
    assert chat["attributes"]["gen_ai.provider.name"] == "openai"
    assert chat["attributes"]["server.address"] == "127.0.0.1"
    assert chat["attributes"]["aikit.cached"] is False
    # No secret in any span, in any form, with content capture on.
    everything = json.dumps(spans)
    assert API_KEY not in everything and TOKEN not in everything
    assert "secret:OPENAI_API_KEY" in chat["attributes"]["gen_ai.input.messages"]
    for name in (
        "http.server.request.duration",
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
    ):
        assert f'"name": "{name}"' in printed, printed[-3000:]
    assert API_KEY not in printed and TOKEN not in printed


def test_nothing_configured_means_no_span_no_sdk_and_no_exporter_thread(
    remote: OpenAIServer,
) -> None:
    code = (
        "import sys, threading, aikit\n"
        "from opentelemetry import trace\n"
        "reply = aikit.chat('hi', max_tokens=5)\n"
        "from aikit import tracing\n"
        "print(tracing.enabled(), 'opentelemetry.sdk' in sys.modules,\n"
        "      sorted(t.name for t in threading.enumerate() if 'Otel' in t.name or 'Export' in"
        " t.name or 'BatchProcessor' in t.name), trace.get_current_span().is_recording())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "[]", "False"]
    # ...while the same with an endpoint set up does start the SDK and its exporter thread
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://127.0.0.1:9/v1/traces"
    env["OTEL_BSP_EXPORT_TIMEOUT"] = "100"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    words = done.stdout.split()
    assert words[:2] == ["True", "True"] and words[2] != "[]", done.stdout + done.stderr


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)
def test_the_phoenix_ui_shows_the_api_requests_trace_offline(phoenix: str) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if "request_id" not in SEEN:
        pytest.skip("runs after the API request's test, which records its trace")
    project = httpx.get(f"{phoenix}/v1/projects").json()["data"][0]["id"]
    outside: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )  # fmt: skip
        try:
            page = browser.new_page()
            page.on("request", lambda r: outside.append(r.url) if "//127.0.0.1" not in r.url
                    and not r.url.startswith("data:") else None)  # fmt: skip
            page.goto(f"{phoenix}/projects/{project}", timeout=120_000)
            playwright.expect(page.get_by_text("POST /ask").first).to_be_visible(timeout=120_000)
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "phoenix-traces.png"))
        finally:
            browser.close()
    assert outside == []  # the viewer loaded nothing from outside this machine
