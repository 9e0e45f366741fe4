"""The embedded model: Gemma 3 270M (a base model) served by llama.cpp on 127.0.0.1.

Everything aikit knows about it lives in this package: the server's lifecycle (`ensure_server`,
`stop_server`, `server_info`), the child process (`aikit.local._process`), the transcript
format shared by the server and the token counter, and the defaults a 270M base model needs.
`aikit.provider.resolve_endpoint` hands these to the rest of aikit, so no other module asks
whether a call goes to the embedded model.
"""

from aikit.local._server import (
    API_KEY,
    CHAT_MODEL,
    DISCOVERY,
    answers,
    ensure_server,
    idle_status,
    model_path,
    server_info,
    stop_server,
)
from aikit.local._transcript import render_transcript
from aikit.local._vocab import token_counter

IDENTITY = "aikit-local"  # the endpoint in cache keys: the server's port never changes a key
CONCURRENCY = 2  # the server answers one request at a time; one more waits in line
# A base model answers a fixed-shape question (a cited RAG answer) in one short line: stop at
# the line's end and cap the length, or it continues with made-up turns.
ANSWER_DEFAULTS = {"stop": ["\n"], "max_tokens": 64}

__all__ = [
    "ANSWER_DEFAULTS",
    "API_KEY",
    "CHAT_MODEL",
    "CONCURRENCY",
    "DISCOVERY",
    "IDENTITY",
    "answers",
    "ensure_server",
    "idle_status",
    "model_path",
    "render_transcript",
    "server_info",
    "stop_server",
    "token_counter",
]
