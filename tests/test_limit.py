"""One limit per model server (issue 21, item 3): every model call aikit makes goes through one
limiter per endpoint per process, counted here at the server (requests in flight), and the
embedded model's timeout measures service time, not the time a call waits in line."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import openai
import pytest
from conftest import API_KEY
from judge_server import JudgeServer
from openai_server import OpenAIServer

import aikit
from aikit import evals as ev
from aikit import llm, provider, settings
from aikit._limit import Limiter
from aikit._sync import run_sync
from aikit.errors import EndpointError

LIMIT = 3  # this test's remote endpoint takes at most 3 requests at once


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> Iterator[JudgeServer]:
    """A judge server behind a remote endpoint whose limit is `LIMIT`; answers take 50 ms,
    so calls that are allowed to overlap do."""
    server = JudgeServer().start()
    server.delay = 0.05
    monkeypatch.setattr(provider, "REMOTE_LIMIT", LIMIT)  # its URL is new: a new limiter
    monkeypatch.setenv("AIKIT_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("AIKIT_MODEL", "test-model")
    monkeypatch.setenv("AIKIT_MAX_RETRIES", "0")
    monkeypatch.setenv("AIKIT_CACHE", "off")
    settings.reset_settings()
    yield server
    server.stop()


def _items(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "input": f"question {i}", "expected": f"answer {i}"} for i in range(n)]


def test_evaluate_with_a_callable_task_and_a_judge_keeps_to_the_endpoints_limit(
    judged: JudgeServer,
) -> None:
    def task(question: str) -> str:  # 4 threads by default, each calling the model
        return aikit.chat(f"Answer: {question}").text

    correct = ev.judge("Does the answer match the reference?")  # 8 judges at a time by default
    result = ev.evaluate(task, _items(24), [correct])
    assert result.summary.set_index("metric").loc["judge", "n_scored"] == 24
    assert len(judged.requests) == 48  # 24 task calls, 24 verdicts
    assert 2 <= judged.peak_in_flight <= LIMIT
    assert judged.in_flight == 0


def test_calibrate_keeps_to_the_endpoints_limit(judged: JudgeServer) -> None:
    labelled = [
        {"id": str(i), "input": f"q{i}", "expected": "e", "output": "o", "label": i % 2 == 0}
        for i in range(20)
    ]
    report = ev.calibrate(ev.judge("Correct?"), labelled, concurrency=16)
    assert report.n == 20 and len(judged.requests) == 20
    assert 2 <= judged.peak_in_flight <= LIMIT


def test_the_limiter_is_one_per_endpoint_and_sized_from_it(judged: JudgeServer) -> None:
    endpoint = provider.resolve_endpoint(settings.get_settings())
    assert endpoint.limit == LIMIT and endpoint.limiter() is endpoint.limiter()
    again = provider.resolve_endpoint(settings.get_settings())
    assert again.limiter() is endpoint.limiter()
    chosen = settings.Settings.resolve(provider="local", model=aikit.local.CHAT_MODEL)
    local = provider.resolve_endpoint(chosen)
    assert local.limit == aikit.local.CONCURRENCY and local.limiter() is not endpoint.limiter()


def _local_at(server: OpenAIServer, timeout: float) -> provider.Endpoint:
    """The embedded model's endpoint, pointed at a test server that answers one at a time."""
    local = settings.Settings.resolve(provider="local", timeout=timeout, max_retries=0, cache="off")
    return dataclasses.replace(provider.resolve_endpoint(local), base_url=server.base_url)


async def _ask_all(endpoint: provider.Endpoint, n: int) -> list[llm.Reply | BaseException]:
    async def client() -> openai.AsyncOpenAI:
        return await llm.client_for(endpoint)

    asks = [llm.ask(llm.Ask(f"q{i}"), endpoint=endpoint, get_client=client) for i in range(n)]
    return await asyncio.gather(*asks, return_exceptions=True)


def test_a_local_call_queued_behind_slow_ones_does_not_time_out(server: OpenAIServer) -> None:
    # 8 calls to a server that answers one at a time, 0.4 s each, with AIKIT_TIMEOUT=1 s. Sent
    # at once, the last would wait 2.8 s in the server's line; through the limiter at most one
    # is ahead of a call at the server, and the wait for a slot is not counted.
    server.serial, server.delay = True, 0.4
    replies = run_sync(_ask_all(_local_at(server, timeout=1.0), 8))
    assert [getattr(r, "text", repr(r)) for r in replies] == [f"echo: q{i}" for i in range(8)]
    assert server.peak_in_flight == aikit.local.CONCURRENCY


def test_a_hung_local_server_still_times_out(server: OpenAIServer) -> None:
    server.hang = True
    (outcome,) = run_sync(_ask_all(_local_at(server, timeout=0.5), 1))
    assert isinstance(outcome, EndpointError)
    assert "timed out after 1 s (AIKIT_TIMEOUT)" in str(outcome)  # 0.5 s per call in line


def test_a_cancelled_waiter_gives_no_slot_away() -> None:
    async def scenario() -> tuple[int, int]:
        limiter = Limiter(1)
        await limiter.acquire()
        waiting = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        limiter.release()
        await asyncio.wait_for(limiter.acquire(), 5)  # the slot is free again
        return limiter.in_flight, len(limiter._waiters)

    assert run_sync(scenario()) == (1, 0)
