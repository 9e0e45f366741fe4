"""The embedded model's server process: llama-cpp-python's OpenAI-compatible server, plus the
two things a base model and the OpenAI protocol need from it. Started by `aikit.local`
(`python -m aikit.local._process`).

- Chat messages are rendered as a few-shot transcript (`aikit.local._transcript`) with stop
  sequences, because Gemma 3 270M is a base model.
- OpenAI's `response_format={"type": "json_schema", ...}` is rewritten to llama.cpp's
  `{"type": "json_object", "schema": ...}` so the answer is grammar-constrained to the schema,
  and no repetition penalty is applied unless a request asks for one (OpenAI's default).
- A streamed answer is the whole one in pieces: the same stripped text, and its usage on the
  last chunk (`aikit.local._answer`).
- A prompt's prefix is reused from the last one without changing any answer
  (`aikit.local._prefix`), and a JSON grammar is asked about the likeliest tokens before the
  whole vocabulary (`aikit.local._grammar`).
- Every answer carries the `x-aikit-server-token` header with the token `aikit.local` gave the
  process (`AIKIT_SERVER_TOKEN`), so a client can tell this server from another program that
  took over the port.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from aikit.local._answer import TokenCount, trimmed
from aikit.local._grammar import GrammarLast, strict_json_strings, unit_interval_numbers
from aikit.local._models import get_model
from aikit.local._prefix import StablePrefix
from aikit.local._threads import DECODES, ThreadsByLoad, watch
from aikit.local._transcript import STOP, render_transcript

# The llama-cpp-python chat format of each prompt format of the model table.
CHAT_FORMATS = {"transcript": "aikit-transcript", "gguf-template": "aikit-gguf-template"}
IDLE_ENV = "AIKIT_SERVER_IDLE_S"  # seconds without a request before the server exits; 0: never
DEFAULT_IDLE_S = 900.0
STATUS_PATH = "/aikit/status"


def default_threads() -> int:
    """llama.cpp threads: every core (its own default is half of them)."""
    return os.cpu_count() or 1


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class JsonSchemaShim:
    """ASGI middleware: OpenAI `json_schema` response formats -> llama.cpp `json_object`, and
    OpenAI's defaults where llama-cpp-python's server has its own (`rewrite_body`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or not str(scope.get("path", "")).endswith(
            "/chat/completions"
        ):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = rewrite_body(body)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, replay, send)


class IdentityHeader:
    """ASGI middleware: add `x-aikit-server-token: <token>` to every HTTP answer."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or not self.token:
            await self.app(scope, receive, send)
            return

        async def send_with_token(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-aikit-server-token", self.token))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_token)


class IdleWatch:
    """ASGI middleware: the server exits after `idle_s` seconds without a request (so a killed
    test or kernel never leaves it running for ever), and answers `GET /aikit/status` with its
    idle time for `aikit serve --status`. `idle_s` 0 means never."""

    def __init__(self, app: ASGIApp, idle_s: float) -> None:
        self.app, self.idle_s = app, idle_s
        self.last, self.in_flight = time.monotonic(), 0
        if idle_s > 0:
            threading.Thread(target=self._watch, name="aikit-idle", daemon=True).start()

    def idle(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last

    def _watch(self) -> None:
        while True:
            time.sleep(min(5.0, max(self.idle_s / 4, 0.2)))
            if self.idle() > self.idle_s:
                os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down cleanly
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") == STATUS_PATH:
            load = watch()
            body = json.dumps(
                {
                    "idle_s": round(self.idle(), 1),
                    "idle_limit_s": self.idle_s,
                    # llama.cpp's threads now, and the decode calls run on each count so far
                    "threads": load.threads(),
                    "others_running": round(load.others, 2),
                    "decodes_by_threads": {str(k): v for k, v in sorted(DECODES.items())},
                }
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last = time.monotonic()


MODEL_THREAD = ThreadPoolExecutor(1, thread_name_prefix="aikit-model")
_DONE = object()


def _on_model_thread(chunks: Iterator[Any]) -> Iterator[Any]:
    """A stream whose chunks are produced on the model's thread."""
    while (chunk := MODEL_THREAD.submit(next, chunks, _DONE).result()) is not _DONE:
        yield chunk


def keep_all_proxy() -> Any:
    """llama-cpp-python's model proxy, with every model loaded at start and kept: its own
    closes one model to load the next whenever a request names another (seconds per switch,
    and the prompt cache gone)."""
    from llama_cpp.server.model import LlamaProxy

    class KeepAll(LlamaProxy):
        """Loads every model at start; a request gets the model it names."""

        def __init__(self, models: list[Any]) -> None:
            self._model_settings_dict = {str(m.model_alias): m for m in models}
            self._loaded = {
                str(m.model_alias): self.load_llama_from_model_settings(m) for m in models
            }
            self._default_model_settings = models[0]
            self._default_model_alias = str(models[0].model_alias)
            self._current_model_alias = self._default_model_alias
            self._current_model = self._loaded[self._default_model_alias]

        def __call__(self, model: str | None = None) -> Any:
            return self._loaded.get(model or "", self._loaded[self._default_model_alias])

        def free(self) -> None:
            for llama in self._loaded.values():
                llama.close()
            self._loaded.clear()

    return KeepAll


def chat_handlers() -> dict[str, Callable[..., Any]]:
    """The server's chat handler for each prompt format, all on the model thread.

    `transcript`: the few-shot transcript with its stop sequences. `gguf-template`: the handler
    llama-cpp-python itself builds from the GGUF's `tokenizer.chat_template` when it loads the
    model (`Llama._chat_handlers["chat_template.default"]`, a `Jinja2ChatFormatter` that stops
    at the end-of-turn token).
    """

    from llama_cpp.llama_chat_format import (
        ChatFormatterResponse,
        chat_formatter_to_chat_completion_handler,
    )

    def _format(messages: list[dict[str, Any]], **_: Any) -> Any:
        return ChatFormatterResponse(prompt=render_transcript(messages), stop=list(STOP))

    transcript = chat_formatter_to_chat_completion_handler(cast(Any, _format))

    def template(**kwargs: Any) -> Any:
        return kwargs["llama"]._chat_handlers["chat_template.default"](**kwargs)

    return {
        CHAT_FORMATS["transcript"]: _on_one_thread(transcript),
        CHAT_FORMATS["gguf-template"]: _on_one_thread(template),
    }


def _on_one_thread(handler: Callable[..., Any]) -> Callable[..., Any]:
    def _handle(**kwargs: Any) -> Any:
        # llama.cpp's OpenMP threads belong to the thread that calls it; the server would call
        # from whichever pool thread took the request, and idle teams spinning beside the busy
        # one cost ~30% per answer on 2 cores. So every model call (of every model) runs on
        # one thread.
        result = MODEL_THREAD.submit(_answer, handler, kwargs).result()
        if isinstance(result, Iterator):  # stream=True: each chunk is generated there too
            return _on_model_thread(result)
        return result

    return _handle


def _answer(handler: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    # Reuse the cached prompt prefix only up to a canonical cut, so an answer never depends
    # on what was asked before (aikit/local/_prefix.py); each model has its own cache.
    # Structured output checks the grammar last (aikit/local/_grammar.py).
    # A whole answer and a stream get the same text and usage (aikit/local/_answer.py).
    # Each decode call runs on the cores other processes leave free (aikit/local/_threads.py).
    llama = kwargs["llama"]
    if not isinstance(getattr(llama, "_aikit_prefix", None), StablePrefix):
        llama._aikit_threads = ThreadsByLoad(llama)  # under the prefix: sees every decode
        llama._aikit_prefix = StablePrefix(llama)
        llama._aikit_grammar = GrammarLast(llama)
        llama._aikit_count = TokenCount(llama)
    result = handler(**kwargs)
    if isinstance(result, Iterator):
        count: TokenCount = llama._aikit_count
        return count.stream(result)
    if isinstance(result, dict):
        for choice in result.get("choices", []):
            message: Any = choice.get("message") or {}
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = trimmed(content)
    return result


# What a request gets when it does not say: OpenAI's meaning of its parameters, not
# llama-cpp-python's server defaults. Its repeat_penalty of 1.1 changed greedy answers and
# cost ~10% of each answer's time (benchmarks/local_model.py); pass `extra_body=
# {"repeat_penalty": 1.1}` to have it.
OPENAI_DEFAULTS = {"repeat_penalty": 1.0}


def rewrite_body(body: bytes) -> bytes:
    """A chat request as llama.cpp should see it: a `json_schema` response format becomes
    llama.cpp's `json_object` with the schema, and `OPENAI_DEFAULTS` fill what is not given."""
    try:
        request = json.loads(body)
    except ValueError:
        return body
    if not isinstance(request, dict):
        return body
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        request["response_format"] = {"type": "json_object", "schema": schema}
    return json.dumps({**OPENAI_DEFAULTS, **request}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description="aikit's embedded-model server (loopback only)")
    parser.add_argument("--model", action="append", required=True, help="a GGUF file (repeat)")
    parser.add_argument("--alias", action="append", required=True, help="its model name")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0, help="0: all cores")
    args = parser.parse_args()

    import uvicorn
    from llama_cpp.llama_chat_format import LlamaChatCompletionHandlerRegistry
    from llama_cpp.server import app as server_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    strict_json_strings()  # schema grammars keep control characters out of strings
    unit_interval_numbers()  # and a judge's score between 0 and 1
    registry = LlamaChatCompletionHandlerRegistry()  # type: ignore[no-untyped-call]
    for name, handler in chat_handlers().items():
        registry.register_chat_completion_handler(name, handler, overwrite=True)

    threads = args.threads or default_threads()
    models = [
        ModelSettings(
            model=path,
            model_alias=alias,
            chat_format=CHAT_FORMATS[get_model(alias).prompt_format],
            n_ctx=get_model(alias).n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            # Its default, True, computes the logits of every prompt token over the whole
            # vocabulary (Gemma's has 262k tokens) and holds n_ctx x n_vocab floats: only
            # logprobs need it.
            logits_all=False,
            verbose=False,
        )
        for path, alias in zip(args.model, args.alias, strict=True)
    ]
    server_app.LlamaProxy = keep_all_proxy()  # type: ignore[attr-defined]  # all stay loaded
    app = server_app.create_app(
        server_settings=ServerSettings(host="127.0.0.1", port=args.port), model_settings=models
    )
    token = os.environ.get("AIKIT_SERVER_TOKEN", "")
    idle_s = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)
    uvicorn.run(
        IdentityHeader(IdleWatch(JsonSchemaShim(app), idle_s), token),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
