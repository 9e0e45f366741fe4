"""A long-lived `aikit api` worker keeps a bounded number of calls (issue 20, item 4): a real
`aikit api` process answers many model-calling requests against the loopback OpenAI test
server, and the length of its usage log, read from outside through an endpoint, stops at
`AIKIT_USAGE_KEEP` while the calls go on. No timing: counts only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import API_KEY
from openai_server import OpenAIServer

from aikit.api import ApiClient, serving

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


@pytest.fixture
def worker(tmp_path: Path, server: OpenAIServer) -> Iterator[tuple[ApiClient, OpenAIServer]]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CODE)]
    notebook = tmp_path / "service.ipynb"
    nbformat.write(nb, notebook)
    env = {
        "AIKIT_HOME": str(tmp_path / "home"),
        "AIKIT_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "AIKIT_MODEL": "test-model",
        "AIKIT_CACHE": "off",  # every request is a new call to the model server
        "AIKIT_USAGE_KEEP": str(KEEP),
    }
    with serving(notebook, env=env) as client:
        yield client, server


def test_a_long_lived_workers_usage_log_stays_bounded(
    worker: tuple[ApiClient, OpenAIServer],
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
