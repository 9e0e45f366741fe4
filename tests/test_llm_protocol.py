"""aikit.chat through the real openai SDK against an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from conftest import API_KEY, ROOT
from openai_server import OpenAIServer
from pydantic import BaseModel

import aikit
from aikit.cache import store_at
from aikit.errors import CacheMissError, ConfigError, EndpointError, StructuredOutputError
from aikit.settings import get_settings, reset_settings


class Place(BaseModel):
    city: str
    country: str


def entries() -> int:
    return int(store_at(get_settings().cache_path).stats()["entries"])


def test_chat_goes_through_the_sdk(remote: OpenAIServer) -> None:
    reply = aikit.chat("Say hi", system="Be brief.", temperature=0.0, max_tokens=5, seed=7)
    assert reply.text == "echo: Say hi"
    assert (reply.model, reply.cached, reply.calls) == ("test-model", False, 1)
    sent = remote.requests[0]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
    ]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.0, 5, 7)
    assert remote.headers[0]["authorization"] == f"Bearer {API_KEY}"
    assert "openai" in remote.headers[0]["user-agent"].lower()
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 3)
    assert reply.cost is None  # test-model has no price: unknown, not free


def test_cost_from_the_price_table(remote: OpenAIServer) -> None:
    reply = aikit.chat("one two three", model="gpt-4o-mini-2024-07-18")
    assert reply.usage.prompt_tokens == 3 and reply.usage.completion_tokens == 4
    assert reply.cost == pytest.approx((3 * 0.15 + 4 * 0.60) / 1e6)
    frame = aikit.usage()
    assert list(frame["model"]) == ["gpt-4o-mini-2024-07-18"]
    assert frame["cost_usd"].iloc[0] == pytest.approx(reply.cost)


def test_structured_output_reasks_once_and_sums_usage(remote: OpenAIServer) -> None:
    remote.enqueue("The city is Paris", '{"city": "Paris", "country": "France"}')
    reply = aikit.chat("Where is the Louvre?", response_format=Place)
    assert reply.parsed == Place(city="Paris", country="France")
    assert reply.error is None and reply.calls == 2
    first, second = remote.requests
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"]["required"] == ["city", "country"]
    assert second["messages"][-2] == {"role": "assistant", "content": "The city is Paris"}
    assert "did not match the required JSON schema" in second["messages"][-1]["content"]
    assert "Invalid JSON" in second["messages"][-1]["content"]
    words = [4, 4 + 4 + len(second["messages"][-1]["content"].split())]
    assert reply.usage.prompt_tokens == sum(words)
    assert reply.usage.completion_tokens == 4 + 4


def test_structured_output_second_failure_keeps_error(remote: OpenAIServer) -> None:
    remote.enqueue('{"city": "Paris"}', '{"town": "Paris"}')
    reply = aikit.chat("Where is the Louvre?", response_format=Place)
    assert reply.parsed is None and reply.calls == 2
    assert reply.error is not None and "country: Field required" in reply.error
    remote.enqueue("no", "still no")
    with pytest.raises(StructuredOutputError, match="failed Place validation twice"):
        aikit.chat("Where is the Eiffel tower?", response_format=Place, raise_on_invalid=True)


def test_cache_hit_miss_and_repeat(remote: OpenAIServer) -> None:
    first = aikit.chat("same question", temperature=0)
    second = aikit.chat("same question", temperature=0)
    assert (first.cached, second.cached, second.text, second.cost) == (False, True, first.text, 0.0)
    assert len(remote.requests) == 1
    aikit.chat("same question", temperature=0.5)  # another parameter: a miss
    aikit.chat("same question", temperature=0, repeat=1)  # another sample: a miss
    aikit.chat("same question", temperature=0, timeout=30)  # timeout cannot change the answer
    assert len(remote.requests) == 3
    assert entries() == 3
    assert list(aikit.usage()["cached"]) == [False, True, False, False, True]


def test_replay_miss_names_the_request_and_the_fix(
    remote: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    aikit.chat("recorded question")
    monkeypatch.setenv("AIKIT_CACHE", "replay")
    reset_settings()
    assert aikit.chat("recorded question").cached
    with pytest.raises(CacheMissError) as info:
        aikit.chat("What is the tallest mountain on the whole planet Earth?")
    message = str(info.value)
    assert "'What is the tallest mountain on the whole …'" in message
    assert message.endswith("re-record with AIKIT_CACHE=record")
    assert len(remote.requests) == 1


def test_record_overwrites_and_off_stores_nothing(
    remote: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote.enqueue("old answer")
    assert aikit.chat("q").text == "old answer"
    monkeypatch.setenv("AIKIT_CACHE", "record")
    reset_settings()
    remote.enqueue("new answer")
    assert aikit.chat("q").text == "new answer"
    monkeypatch.setenv("AIKIT_CACHE", "on")
    reset_settings()
    assert aikit.chat("q").text == "new answer" and len(remote.requests) == 2
    monkeypatch.setenv("AIKIT_CACHE", "off")
    reset_settings()
    aikit.chat("unstored")
    aikit.chat("unstored")
    assert len(remote.requests) == 4
    assert entries() == 1


def test_errors_and_empty_answers_are_not_cached(remote: OpenAIServer) -> None:
    remote.enqueue({"status": 500})
    with pytest.raises(openai.InternalServerError):
        aikit.chat("fails once")
    remote.enqueue("")
    assert aikit.chat("empty").text == ""
    assert entries() == 0
    assert aikit.chat("fails once").text == "echo: fails once"
    assert entries() == 1


def test_unknown_parameter_is_refused_with_a_suggestion(remote: OpenAIServer) -> None:
    with pytest.raises(
        ConfigError, match="unknown chat parameter 'temprature'; did you mean 'temperature'"
    ):
        aikit.chat("x", temprature=0)
    assert remote.requests == []


def test_chat_works_inside_a_running_loop_and_achat_awaits(remote: OpenAIServer) -> None:
    async def notebook_cell() -> tuple[str, str]:
        inside = aikit.chat("from a running loop")  # as in a Jupyter cell
        awaited = await aikit.achat("awaited")
        return inside.text, awaited.text

    assert asyncio.run(notebook_cell()) == ("echo: from a running loop", "echo: awaited")


def test_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKIT_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    monkeypatch.setenv("AIKIT_MAX_RETRIES", "0")
    reset_settings()
    with pytest.raises(
        EndpointError,
        match=r"cannot reach the model endpoint http://127.0.0.1:9/v1 .*OPENAI_BASE_URL",
    ):
        aikit.chat("anyone there?")


def _write_many(base_url: str, home: str, worker: int, count: int) -> None:
    os.environ.update(
        AIKIT_PROVIDER="openai",
        OPENAI_BASE_URL=base_url,
        OPENAI_API_KEY=API_KEY,
        AIKIT_MODEL="test-model",
        AIKIT_HOME=home,
    )
    for i in range(count):
        assert (
            aikit.chat(f"worker {worker} question {i}").text
            == f"echo: worker {worker} question {i}"
        )


def test_two_processes_write_the_store_at_once(remote: OpenAIServer, isolated: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_write_many, args=(remote.base_url, str(isolated), w, 60))
        for w in range(2)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0, 0]
    assert entries() == 120
    assert remote.completions == 120


def test_api_key_never_reaches_the_store(remote: OpenAIServer, isolated: Path) -> None:
    remote.enqueue("not json", '{"city": "Paris", "country": "France"}')
    aikit.chat("Where is the Louvre?", response_format=Place)
    aikit.chat("plain question")
    cassette = isolated / "export.jsonl"
    store_at(get_settings().cache_path).export(cassette)
    files = [p for p in isolated.rglob("*") if p.is_file()]
    assert any(p.name.startswith("cache.sqlite") for p in files) and cassette in files
    for path in files:
        data = path.read_bytes()
        assert API_KEY.encode() not in data, path
        assert b"Bearer" not in data, path
    assert (
        json.loads(cassette.read_text().splitlines()[0])["request"]["endpoint"] == remote.base_url
    )


def test_done_means_line_against_a_server_aikit_did_not_start(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "openai_server.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "OPENAI_"))}
        env.update(
            AIKIT_PROVIDER="openai",
            OPENAI_BASE_URL=base_url,
            OPENAI_API_KEY="sk-anything",
            AIKIT_HOME=str(tmp_path / "home"),
        )
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import aikit; print(aikit.chat('What is the capital of France?').text)",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=True,
        )
        assert out.stdout == "echo: What is the capital of France?\n"
    finally:
        server.kill()
        server.wait()
