"""Streaming: a model's answer text, piece by piece, as the model produces it.

`aikit.chat(..., stream=callback)` (and `achat`) calls `callback(text)` with each piece and
still returns the whole `Reply` (usage, cost, `parsed`), so streaming changes what you see
while the answer arrives, not what you get. The callback is passed explicitly down to the
call (`llm.CallPolicy.on_text`). One ambient default exists, for a served request only:
`aikit api` runs a function for `POST /{name}/stream` inside `streaming_to(sink)`, and a model
call made deep inside it (a RAG pipeline) without `stream=` sends its text to the request's
sink, so any notebook function streams without being rewritten (the one ContextVar here; see
`aikit._ambient`).

The request goes through the openai SDK with `stream=True`; the pieces are assembled into one
`ChatCompletion` so the response store keeps the complete answer as for any other call. An
answer that comes from the response store (or a cassette) streams as one piece. A structured
answer streams its JSON text; a re-ask after a schema mismatch streams again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from aikit.tokens import TokenCounter

OnText = Callable[[str], object]
# Ambient: the sink of the request being served (set by `aikit api` only).
_sink: ContextVar[OnText | None] = ContextVar("aikit_stream", default=None)


def request_sink() -> OnText | None:
    """The sink of the served request this code runs in, if it is streamed (`aikit api`)."""
    return _sink.get()


@contextmanager
def streaming_to(on_text: OnText | None) -> Iterator[None]:
    """Serve a request with a streamed answer: model calls made inside the block without
    their own `stream=` send their text to `on_text` (None: leave the sink in place)."""
    if on_text is None:
        yield
        return
    token = _sink.set(on_text)
    try:
        yield
    finally:
        _sink.reset(token)


def whole(completion: ChatCompletion, on_text: OnText | None) -> ChatCompletion:
    """Stream an answer that was not produced now (response store, cassette) as one piece."""
    if on_text is not None and completion.choices:
        text = completion.choices[0].message.content
        if text:
            on_text(text)
    return completion


async def create(
    client: openai.AsyncOpenAI,
    on_text: OnText,
    *,
    model: str,
    messages: Any,
    count_prompt: Callable[[], Awaitable[int]],
    **params: Any,
) -> ChatCompletion:
    """`chat.completions.create(stream=True)`, each text delta to `on_text`, assembled into the
    `ChatCompletion` a non-streamed call would have returned.

    The usage is the server's when it sends one (`stream_options.include_usage`, as OpenAI
    does). llama.cpp's server sends none: then the answer's tokens are the streamed pieces (it
    streams one token per piece) and the prompt's are counted offline (`count_prompt`), so the
    stored answer and the request log still carry tokens.
    """
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **params,
    )
    pieces: list[str] = []
    deltas = 0
    finish: str | None = None
    usage: Any = None
    ident, created, served_model = "", int(time.time()), model
    async for chunk in stream:
        ident, created, served_model = chunk.id or ident, chunk.created or created, chunk.model
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.delta.content:
                deltas += 1
                pieces.append(choice.delta.content)
                on_text(choice.delta.content)
            finish = choice.finish_reason or finish
    if usage is None:
        prompt = await count_prompt()
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": deltas,
            "total_tokens": prompt + deltas,
        }
    payload: dict[str, Any] = {
        "id": ident or "stream",
        "object": "chat.completion",
        "created": created,
        "model": served_model or model,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish or "stop",
                "message": {"role": "assistant", "content": "".join(pieces)},
            }
        ],
        "usage": usage,
    }
    return ChatCompletion.model_validate(payload)


async def count_prompt(counter: TokenCounter, messages: list[dict[str, Any]]) -> int:
    """Prompt tokens counted offline (`Endpoint.counter`), for a stream that reports no usage."""
    return await asyncio.to_thread(counter.prompt_tokens, messages)
