"""Token counts are exact offline: the OpenAI encodings ship inside a wheel (no download)."""

from __future__ import annotations

import os
import subprocess
import sys

from aikit.tokens import counter_for


def test_known_strings_count_as_openai_counts_them() -> None:
    # Reference counts of OpenAI's own encodings (tiktoken): "hello world" is [24912, 2375]
    # in o200k_base and [15339, 1917] in cl100k_base.
    o200k, cl100k = counter_for("gpt-4o-mini"), counter_for("gpt-4")
    assert (o200k.name, cl100k.name) == ("o200k_base", "cl100k_base")
    assert o200k.count("hello world") == 2 and cl100k.count("hello world") == 2
    assert o200k.count("") == 0
    text = "Ünïcödé, émojis 🎉 and <|endoftext|> stay text"
    assert 0 < o200k.count(text) < len(text.encode("utf-8"))  # BPE, not a bytes fallback
    unknown = counter_for("some-hosted-model")
    assert unknown.name == "o200k_base, approximate" and unknown.count("hello world") == 2
    # A chat request: 3 tokens per message + its role and text, 3 to prime the reply.
    messages = [{"role": "user", "content": "hello world"}]
    assert o200k.prompt_tokens(messages) == 3 + 1 + 2 + 3


def test_counting_needs_no_network() -> None:
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    code = "from aikit.tokens import counter_for; print(counter_for('gpt-4o').name)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout.strip() == "o200k_base", done.stderr
