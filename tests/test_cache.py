from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import OpenAIServer

from aikit.cache import (
    KEY_VERSION,
    ResponseStore,
    canonical_request,
    endpoint_identity,
    request_key,
)
from aikit.errors import ConfigError


def _request(**params: object) -> dict[str, object]:
    return canonical_request(
        endpoint="aikit-local",
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "hi"}],
        params=params,
    )


def test_key_spec_is_stable() -> None:
    # Pinned: changing the canonical form must bump KEY_VERSION (and this value).
    assert KEY_VERSION == 2
    assert request_key(_request(temperature=0, seed=1)) == (
        "v2:"
        + __import__("hashlib")
        .sha256(
            json.dumps(
                {
                    "endpoint": "aikit-local",
                    "key_version": 2,
                    "messages": [{"content": "hi", "role": "user"}],
                    "model": "gemma-3-270m",
                    "params": {"seed": 1, "temperature": 0},
                    "repeat": 0,
                    "response_format": None,
                    "tools": None,
                },
                sort_keys=True,
                separators=(",", ":"),
            ).encode()
        )
        .hexdigest()
    )


def test_key_ignores_what_cannot_change_the_answer() -> None:
    base = request_key(_request(temperature=0))
    assert (
        request_key(_request(temperature=0, timeout=5, stream=False, user="me", max_tokens=None))
        == base
    )
    assert request_key(_request(temperature=0.1)) != base
    assert request_key(_request(temperature=0, stop=["\n"])) != base
    rf = {"type": "json_schema", "json_schema": {"name": "A", "schema": {"type": "object"}}}
    assert request_key(_request(temperature=0, response_format=rf)) != base


def test_extra_body_and_extra_query_are_part_of_the_key() -> None:
    base = request_key(_request(temperature=0))
    top_k = request_key(_request(temperature=0, extra_body={"top_k": 5}))
    assert len({base, top_k, request_key(_request(temperature=0, extra_body={"top_k": 40}))}) == 3
    assert request_key(_request(temperature=0, extra_query={"api-version": "2024"})) != base
    assert request_key(_request(temperature=0, extra_body={})) == base  # nothing sent
    assert request_key(_request(temperature=0, extra_headers={"x-trace": "1"})) == base


def test_version_1_entries_answer_only_requests_without_extras(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "s.sqlite")
    plain = _request(temperature=0)
    old = {**plain, "key_version": 1}  # what aikit 1 stored for this request
    store.put(request_key(old), old, {"answer": "old"})
    assert request_key(old).startswith("v1:") and request_key(plain).startswith("v2:")
    assert store.find(plain) == {"answer": "old"}
    assert store.find(_request(temperature=0, extra_body={"top_k": 5})) is None
    store.put(request_key(plain), plain, {"answer": "new"})
    assert store.find(plain) == {"answer": "new"}  # the current key wins


def test_two_calls_differing_only_in_extra_body_are_two_entries(remote: OpenAIServer) -> None:
    import aikit

    first = aikit.chat("hi", extra_body={"top_k": 1})
    second = aikit.chat("hi", extra_body={"top_k": 50})
    again = aikit.chat("hi", extra_body={"top_k": 1})
    assert (first.cached, second.cached, again.cached) == (False, False, True)
    assert len(remote.requests) == 2
    assert [r.get("top_k") for r in remote.requests] == [1, 50]


def test_endpoint_identity_drops_credentials_and_query() -> None:
    assert (
        endpoint_identity("HTTPS://user:pw@API.example.com:8443/v1/?api-version=2024")
        == "https://api.example.com:8443/v1"
    )
    from aikit.provider import resolve_endpoint
    from aikit.settings import Settings

    assert resolve_endpoint(Settings.resolve(provider="local", dotenv=None)).identity == (
        "aikit-local"
    )


def test_export_import_roundtrip_is_sorted_text(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "a.sqlite")
    for word in ["b", "a", "c"]:
        req = canonical_request(
            endpoint="e", model="m", messages=[{"role": "user", "content": word}]
        )
        store.put(request_key(req), req, completion(word.upper()))
    cassette = tmp_path / "c.jsonl"
    assert store.export(cassette) == 3
    lines = cassette.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == sorted(
        json.loads(line)["key"] for line in lines
    )
    other = ResponseStore(tmp_path / "b.sqlite")
    assert other.import_(cassette) == 3
    assert other.stats()["entries"] == 3 and other.stats()["models"] == {"m": 3}
    key = json.loads(lines[0])["key"]
    assert other.get(key) == store.get(key)
    assert other.clear() == 3 and other.stats()["entries"] == 0


def completion(text: str) -> dict[str, object]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
    }


def test_import_refuses_bad_or_edited_lines_and_writes_nothing(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "a.sqlite")
    req = canonical_request(endpoint="e", model="m", messages=[{"role": "user", "content": "x"}])
    good = json.dumps({"key": request_key(req), "request": req, "response": completion("X")})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n{not json\n")
    with pytest.raises(ConfigError, match="line 2 is not a cassette entry"):
        store.import_(bad)
    edited = dict(req, model="other")
    bad.write_text(json.dumps({"key": request_key(req), "request": edited, "response": {}}) + "\n")
    with pytest.raises(ConfigError, match=r"line 1: key v2:.* does not match its request"):
        store.import_(bad)
    not_a_completion = {"key": request_key(req), "request": req, "response": {"answer": 42}}
    bad.write_text(good + "\n" + json.dumps(not_a_completion) + "\n")
    with pytest.raises(ConfigError, match=r"line 2: the response is not a chat completion \(id:"):
        store.import_(bad)
    bad.write_bytes(good.encode() + b"\n\xff\xfe\x00binary\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte \d+"):
        store.import_(bad)
    assert store.stats()["entries"] == 0
    bad.write_text(good + "\n")
    assert store.import_(bad) == 1
