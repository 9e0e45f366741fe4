"""Test isolation: every test gets its own AIKIT_HOME and a clean environment; the live
tests share one embedded-model server for the session and stop it at the end."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from openai_server import OpenAIServer

from aikit import cache, settings
from aikit.costs import reset_usage

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-test-5ecr3t-DO-NOT-STORE-0123456789"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private AIKIT_HOME, no AIKIT_*/OPENAI_*/OTEL_* variables (no trace exported by
    accident), a cwd with no `.env`."""
    for name in list(os.environ):
        if name.startswith(("AIKIT_", "OPENAI_", "OTEL_", "TRACEPARENT", "TRACESTATE")):
            monkeypatch.delenv(name)
    home = tmp_path / "aikit-home"
    monkeypatch.setenv("AIKIT_HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    settings.reset_settings()
    reset_usage()
    cache._stores.clear()
    yield home
    settings.reset_settings()
    cache._stores.clear()


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    """An OpenAI-compatible test server on 127.0.0.1."""
    srv = OpenAIServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def remote(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> OpenAIServer:
    """Settings pointing aikit at the test server as provider `openai`, with an API key."""
    monkeypatch.setenv("AIKIT_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("AIKIT_MODEL", "test-model")
    monkeypatch.setenv("AIKIT_MAX_RETRIES", "0")
    settings.reset_settings()
    return server


@pytest.fixture(scope="session")
def live_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One AIKIT_HOME for every live test, so they share one embedded-model server."""
    home = tmp_path_factory.mktemp("live-home")
    yield home
    from aikit import local

    local.stop_server(settings.Settings.resolve(home=home, dotenv=None))


@pytest.fixture
def live(live_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Provider `local` on the session's shared server; the cache stays per test."""
    pytest.importorskip("llama_cpp", reason="the embedded model needs `pip install aikit[local]`")
    monkeypatch.setenv("AIKIT_HOME", str(live_home))
    monkeypatch.setenv("AIKIT_CACHE_PATH", str(Path.cwd() / "cache.sqlite"))
    settings.reset_settings()
    return live_home
