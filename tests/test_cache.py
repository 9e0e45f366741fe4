from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    assert KEY_VERSION == 1
    assert request_key(_request(temperature=0, seed=1)) == (
        "v1:"
        + __import__("hashlib")
        .sha256(
            json.dumps(
                {
                    "endpoint": "aikit-local",
                    "key_version": 1,
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
        store.put(request_key(req), req, {"choices": [{"message": {"content": word.upper()}}]})
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


def test_import_refuses_bad_or_edited_lines_and_writes_nothing(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "a.sqlite")
    req = canonical_request(endpoint="e", model="m", messages=[{"role": "user", "content": "x"}])
    good = json.dumps({"key": request_key(req), "request": req, "response": {}})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n{not json\n")
    with pytest.raises(ConfigError, match="line 2 is not a cassette entry"):
        store.import_(bad)
    edited = dict(req, model="other")
    bad.write_text(json.dumps({"key": request_key(req), "request": edited, "response": {}}) + "\n")
    with pytest.raises(ConfigError, match=r"line 1: key v1:.* does not match its request"):
        store.import_(bad)
    assert store.stats()["entries"] == 0
