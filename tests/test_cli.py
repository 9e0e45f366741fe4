"""The `aikit` command as a user runs it: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import API_KEY
from openai_server import OpenAIServer


def aikit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "aikit.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_setting_is_one_line_exit_2() -> None:
    done = aikit("doctor", env={"AIKIT_CACHE": "bogus"})
    assert done.returncode == 2
    assert done.stderr == (
        "aikit: error: AIKIT_CACHE='bogus' is not a cache mode;"
        " use one of: on, off, replay, record\n"
    )


def test_doctor_reports_a_healthy_endpoint(server: OpenAIServer) -> None:
    done = aikit(
        "doctor",
        env={
            "AIKIT_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": API_KEY,
            "AIKIT_CACHE": "replay",
        },
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["provider"] == "openai"
    assert lines["base_url"] == server.base_url
    assert lines["model"] == "gpt-4o-mini"
    assert lines["api_key"] == "set"
    assert lines["answers"].startswith("yes, in ") and "test-model" in lines["answers"]
    assert lines["cache"].startswith("replay") and lines["cache"].endswith("cache.sqlite")
    assert lines["kernel"].startswith(("aikit", "python3"))
    assert API_KEY not in done.stdout + done.stderr


def test_doctor_fails_in_one_line_when_the_endpoint_is_down() -> None:
    done = aikit(
        "doctor",
        env={
            "AIKIT_PROVIDER": "openai",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "OPENAI_API_KEY": "x",
        },
    )
    assert done.returncode == 1
    assert "answers    no" in done.stdout
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("aikit: error: http://127.0.0.1:9/v1 does not answer")
    assert "Traceback" not in done.stderr


def test_cache_export_import_stats(remote: OpenAIServer, isolated: Path) -> None:
    import aikit as kit

    kit.chat("one")
    kit.chat("two")
    cassette = isolated.parent / "cassette.jsonl"
    assert aikit("cache", "export", str(cassette)).stdout == f"exported 2 entries to {cassette}\n"
    assert aikit("cache", "clear").stdout.startswith("cleared 2 entries")
    assert aikit("cache", "import", str(cassette)).stdout == f"imported 2 entries from {cassette}\n"
    stats = aikit("cache", "stats").stdout
    assert "entries  2" in stats and "test-model: 2" in stats
    missing = aikit("cache", "import", str(isolated / "nope.jsonl"))
    assert missing.returncode == 2
    assert (
        missing.stderr.startswith("aikit: error: cannot read cassette")
        and "Traceback" not in missing.stderr
    )


def test_doctor_returns_a_report_that_the_cli_prints(
    server: OpenAIServer, monkeypatch: Any
) -> None:
    from aikit._cli.doctor import doctor
    from aikit.settings import reset_settings

    for name, value in {
        "AIKIT_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": API_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    report = doctor()
    assert report.ok and report.problem is None
    values = dict(report.lines)
    assert values["provider"] == "openai" and values["base_url"] == server.base_url
    assert values["answers"].startswith("yes, in ") and "test-model" in values["answers"]
    assert report.text().splitlines()[1] == "provider   openai"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    reset_settings()
    down = doctor()
    assert not down.ok and down.problem is not None
    assert down.problem.startswith("http://127.0.0.1:9/v1 does not answer")
    assert dict(down.lines)["answers"] == "no"
