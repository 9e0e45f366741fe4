"""The embedded models, served by llama.cpp on 127.0.0.1: Gemma 3 270M (a base model, the
default) and SmolLM2-135M-Instruct (instruction-tuned), both in one server process.

Everything aikit knows about them lives in this package: the model table (`MODELS`,
`get_model`: prompt format, stop sequences, answer defaults, context length, whether it follows
instructions), the server's lifecycle (`ensure_server`, `stop_server`, `server_info`), the child
process (`aikit.local._process`), and how messages become each model's prompt
(`render_prompt`), shared by the server and the token counter.
`aikit.provider.resolve_endpoint` hands these to the rest of aikit, so no other module asks
whether a call goes to the embedded model.
"""

from aikit.local._models import MODELS, LocalModel, get_model
from aikit.local._server import (
    API_KEY,
    CHAT_MODEL,
    DISCOVERY,
    answers,
    ensure_server,
    idle_status,
    model_path,
    served_models,
    server_info,
    stop_server,
)
from aikit.local._transcript import render_prompt, render_transcript
from aikit.local._vocab import token_counter

IDENTITY = "aikit-local"  # the endpoint in cache keys: the server's port never changes a key
CONCURRENCY = 2  # the server answers one request at a time; one more waits in line
ANSWER_DEFAULTS = dict(MODELS[CHAT_MODEL].answer_defaults)  # the default model's

__all__ = [
    "ANSWER_DEFAULTS",
    "API_KEY",
    "CHAT_MODEL",
    "CONCURRENCY",
    "DISCOVERY",
    "IDENTITY",
    "MODELS",
    "LocalModel",
    "answers",
    "ensure_server",
    "get_model",
    "idle_status",
    "model_path",
    "render_prompt",
    "render_transcript",
    "served_models",
    "server_info",
    "stop_server",
    "token_counter",
]
