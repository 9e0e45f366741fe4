"""A streamed answer is stored as the same request answered whole (issue 25).

Each request is answered twice, whole and streamed, into two response stores (one each, so the
second call is not answered by the first one's entry); the two stored entries must carry the
same key, text, finish reason and usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer

import aikit
from aikit import cache, settings


def _stored(path: Path) -> dict[str, Any]:
    """The one entry of the response store at `path`: its key, and what a reader of the
    stored answer gets (text, finish reason, usage), without the per-call id and time."""
    export = path.with_suffix(".jsonl")
    assert cache.store_at(path).export(export) == 1
    entry = json.loads(export.read_text())
    choice, usage = entry["response"]["choices"][0], entry["response"]["usage"]
    return {
        "key": entry["key"],
        "role": choice["message"]["role"],
        "text": choice["message"]["content"],
        "finish_reason": choice["finish_reason"],
        "usage": {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }


def _whole_and_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, question: str, **ask: Any
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The stored entries of `question` answered whole and streamed, and the streamed pieces."""
    entries, pieces = [], []
    for name, stream in (("whole", None), ("streamed", pieces.append)):
        path = tmp_path / f"{name}.sqlite"
        monkeypatch.setenv("AIKIT_CACHE_PATH", str(path))
        settings.reset_settings()
        reply = aikit.chat(question, stream=stream, **ask)
        assert not reply.cached
        entries.append(_stored(path))
        assert entries[-1]["text"] == reply.text
    return entries[0], entries[1], pieces


def test_test_server_streamed_entry_is_the_whole_one(
    remote: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client stores what the server sent, whole or streamed: it strips nothing itself
    (the text's spaces are the server's), and the stream's usage is the server's."""
    remote.enqueue(" Paris is the capital. ", " Paris is the capital. ")
    whole, streamed, pieces = _whole_and_streamed(tmp_path, monkeypatch, "Capital of France?")
    assert streamed == whole
    assert whole["text"] == " Paris is the capital. " and "".join(pieces) == whole["text"]
    assert whole["usage"]["completion_tokens"] == 4 and whole["finish_reason"] == "stop"
    streamed_flags = [r.get("stream", False) for r in remote.requests]
    assert streamed_flags == [False, True]  # both answered by the server, none by a store


@pytest.mark.live
@pytest.mark.parametrize(
    ("question", "ask"),
    [
        ("What is the capital of France?", {"temperature": 0, "seed": 1}),
        # cut by max_tokens, not by a stop sequence: the answer may end on a space
        ("Describe the sea in one long sentence.", {"temperature": 0, "seed": 2, "max_tokens": 9}),
    ],
)
def test_embedded_streamed_entry_is_the_whole_one(
    live: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, question: str, ask: dict[str, Any]
) -> None:
    """The embedded server answers a stream as it answers a whole request: the same stripped
    text (piece by piece) and, in the stream's last chunk, the same usage."""
    whole, streamed, pieces = _whole_and_streamed(tmp_path, monkeypatch, question, **ask)
    assert streamed == whole
    assert "".join(pieces) == whole["text"] == whole["text"].strip() != ""
    assert whole["usage"]["completion_tokens"] > 0
