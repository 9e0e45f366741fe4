"""Model calls: `chat` / `achat`, structured output with one re-ask, every call through the
official openai SDK and the response store.

One async core (`achat`); `chat` runs it on a private event-loop thread, so it works the same
in a script and in a notebook cell whose loop is already running.
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import json
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast, get_type_hints

import openai
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from pydantic import BaseModel, ValidationError

from aikit import cache as _cache
from aikit._scrub import redact_url, redact_urls
from aikit.errors import ConfigError, EndpointError, StoreError, StructuredOutputError
from aikit.settings import Settings, get_settings
from aikit.usage import Usage, cost_of, log_call

T = TypeVar("T")
Messages = list[dict[str, Any]]
LOCAL_API_KEY = "aikit-local-no-key"
# Parameters `achat` accepts in **params: everything chat.completions.create takes.
_SDK_PARAMS = frozenset(get_type_hints(CompletionCreateParamsBase)) | {
    "extra_headers",
    "extra_query",
    "extra_body",
    "timeout",
}
_OWN_PARAMS = frozenset({"model", "messages", "temperature", "max_tokens", "response_format"})
REASK = (
    "Your answer did not match the required JSON schema: {error}. "
    "Answer again with only a JSON object that matches the schema."
)


@dataclass
class Reply:
    """A model's answer with its accounting.

    `parsed` holds the validated object when `response_format` was given; if validation failed
    twice it is None and `error` says why. `usage` and `cost` sum over a re-ask; `cost` is what
    this call spent (0 when every answer came from the response store).
    """

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    cost: float | None = 0.0
    latency_s: float = 0.0
    cached: bool = False
    parsed: Any = None
    error: str | None = None
    finish_reason: str | None = None
    calls: int = 1

    def __str__(self) -> str:
        return self.text


def to_messages(
    prompt_or_messages: str | Sequence[Mapping[str, Any]], system: str | None
) -> Messages:
    """Normalize a prompt string or a message list, prepending `system` when given."""
    if isinstance(prompt_or_messages, str):
        messages: Messages = [{"role": "user", "content": prompt_or_messages}]
    elif isinstance(prompt_or_messages, Sequence) and all(
        isinstance(m, Mapping) and "role" in m for m in prompt_or_messages
    ):
        messages = [dict(cast(Mapping[str, Any], m)) for m in prompt_or_messages]
    else:
        raise ConfigError(
            f"cannot send {type(prompt_or_messages).__name__} {prompt_or_messages!r:.60} to a"
            " model; pass a string or a list of {'role': ..., 'content': ...} messages"
        )
    if not messages:
        raise ConfigError("no messages to send; pass a prompt string or a non-empty message list")
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def _check_params(params: Mapping[str, Any]) -> None:
    for name in params:
        if name in _OWN_PARAMS or name not in _SDK_PARAMS:
            close = difflib.get_close_matches(name, sorted(_SDK_PARAMS | _OWN_PARAMS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see openai chat.completions.create"
            raise ConfigError(f"unknown chat parameter {name!r}; {hint}")


# -- structured output -----------------------------------------------------------------------
Validator = Callable[[str], Any]


def _schema_format(response_format: Any) -> tuple[dict[str, Any] | None, Validator | None]:
    """The wire `response_format` and a validator of the answer text (raises on mismatch)."""
    if response_format is None:
        return None, None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        model_cls = response_format
        name = re.sub(r"[^A-Za-z0-9_-]", "_", model_cls.__name__)[:64]
        wire = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": model_cls.model_json_schema()},
        }
        return wire, lambda text: model_cls.model_validate_json(_strip_fences(text))
    if isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        return dict(response_format), lambda text: json.loads(_strip_fences(text))
    if isinstance(response_format, Mapping) and response_format.get("type") == "text":
        return dict(response_format), None
    raise ConfigError(
        f"response_format={response_format!r:.80} is not supported; pass a pydantic model class"
        " or {'type': 'json_object'} / {'type': 'json_schema', 'json_schema': {...}}"
    )


def _strip_fences(text: str) -> str:
    match = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, flags=re.S)
    return match.group(1) if match else text


def _validation_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]
        return "; ".join(parts)
    return str(exc)


# -- clients ---------------------------------------------------------------------------------
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


def _client_for(settings: Settings, base_url: str) -> openai.AsyncOpenAI:
    loop = asyncio.get_running_loop()
    api_key = settings.api_key if settings.provider == "openai" else LOCAL_API_KEY
    key = (base_url, api_key, settings.timeout, settings.max_retries)
    per_loop = _clients.setdefault(loop, {})
    if key not in per_loop:
        if settings.provider == "openai" and not api_key:
            raise ConfigError(
                f"no API key for {base_url}; set OPENAI_API_KEY (any non-empty value for a"
                " server that needs none) or use AIKIT_PROVIDER=local"
            )
        per_loop[key] = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )
    client: openai.AsyncOpenAI = per_loop[key]
    return client


async def _resolve_client(
    settings: Settings, client: openai.AsyncOpenAI | None
) -> openai.AsyncOpenAI:
    if client is not None:
        return client
    if settings.provider == "local":
        from aikit import local

        base_url = await asyncio.to_thread(local.ensure_server, settings)
    else:
        base_url = settings.base_url or ""
    return _client_for(settings, base_url)


def _endpoint_of(settings: Settings, client: openai.AsyncOpenAI | None) -> str:
    if client is not None:
        return _cache.endpoint_identity(str(client.base_url))
    if settings.provider == "local":
        return _cache.LOCAL_ENDPOINT
    return _cache.endpoint_identity(settings.base_url)


# -- the call --------------------------------------------------------------------------------
async def _complete(
    settings: Settings,
    get_client: Callable[[], Awaitable[openai.AsyncOpenAI]],
    endpoint: str,
    model: str,
    messages: Messages,
    params: dict[str, Any],
    repeat: int,
) -> tuple[ChatCompletion, bool]:
    """One completion through the response store; returns (completion, came_from_store)."""
    canonical = _cache.canonical_request(
        endpoint=endpoint, model=model, messages=messages, params=params, repeat=repeat
    )
    store = None if settings.cache == "off" else _cache.store_at(settings.cache_path)
    key = _cache.request_key(canonical)
    if store is not None and settings.cache == "replay":
        return ChatCompletion.model_validate(store.lookup(canonical, settings.cassettes)), True
    if store is not None and settings.cache == "on":
        hit = store.find(canonical)  # also under the version-1 key (see aikit.cache)
        if hit is not None:
            return ChatCompletion.model_validate(hit), True
    client = await get_client()
    url = redact_url(str(client.base_url)).rstrip("/")  # never a credential or query string

    async def send() -> ChatCompletion:
        completion: ChatCompletion = await client.chat.completions.create(
            model=model,
            messages=cast(Any, messages),
            **{k: v for k, v in params.items() if v is not None},
        )
        return completion

    wrapper = call_wrapper.get()  # robust (issue 15): aikit.batch's retry loop, if any
    try:
        completion = await (send() if wrapper is None else wrapper(send))
    except json.JSONDecodeError as exc:
        raise EndpointError(
            f"the model endpoint {url} sent a malformed response body ({exc});"
            " the server or a proxy cut it short, try again"
        ) from exc
    except openai.APITimeoutError as exc:
        raise EndpointError(
            f"the model endpoint {url} timed out after {_timeout_of(client, params)} s"
            " (AIKIT_TIMEOUT); raise AIKIT_TIMEOUT or check the server"
        ) from exc
    except openai.APIConnectionError as exc:
        if type(exc.__cause__).__name__ == "RemoteProtocolError":  # connected, answer cut short
            raise EndpointError(
                f"the model endpoint {url} cut its answer short"
                f" ({redact_urls(str(exc.__cause__))}); the server or a proxy dropped it, try again"
            ) from exc
        raise EndpointError(
            f"cannot reach the model endpoint {url} ({redact_urls(str(exc.__cause__ or exc))});"
            " check OPENAI_BASE_URL or run `aikit doctor`"
        ) from exc
    except openai.AuthenticationError as exc:
        raise EndpointError(
            f"{url} rejected the API key (401); set OPENAI_API_KEY to a valid key"
        ) from exc
    if store is not None and _storable(completion):
        try:
            store.put(key, canonical, completion.model_dump(mode="json"))
        except StoreError as exc:
            # robust (issue 15): a paid answer is never thrown away. Under aikit.batch the
            # failure is handed over (the batch keeps the answer and stops); else it raises.
            failures = store_failures.get()
            if failures is None:
                raise
            failures.append(exc)
    return completion, False


# Set by aikit.batch for each row: wraps each HTTP call (the batch's retry loop, which sees the
# SDK's typed errors and the malformed bodies the SDK does not retry).
Send = Callable[[], Awaitable[ChatCompletion]]
call_wrapper: contextvars.ContextVar[Callable[[Send], Awaitable[ChatCompletion]] | None] = (
    contextvars.ContextVar("aikit_call_wrapper", default=None)
)
# Set by aikit.batch for each row: store write failures are collected here instead of raised,
# so the answer already paid for is still returned (the batch then stops with the error).
store_failures: contextvars.ContextVar[list[StoreError] | None] = contextvars.ContextVar(
    "aikit_store_failures", default=None
)


def _timeout_of(client: openai.AsyncOpenAI, params: Mapping[str, Any]) -> str:
    timeout = params.get("timeout") or client.timeout
    seconds = getattr(timeout, "read", timeout)
    return f"{seconds:g}" if isinstance(seconds, int | float) else str(seconds)


def _storable(completion: ChatCompletion) -> bool:
    if not completion.choices:
        return False
    message = completion.choices[0].message
    return bool(message.content) or bool(message.tool_calls)


async def achat(
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    response_format: Any = None,
    repeat: int = 0,
    client: openai.AsyncOpenAI | None = None,
    settings: Settings | None = None,
    raise_on_invalid: bool = False,
    **params: Any,
) -> Reply:
    """Ask a model; the async core of `chat` (same arguments)."""
    settings = settings or get_settings()
    resolved: list[openai.AsyncOpenAI] = []

    async def get_client() -> openai.AsyncOpenAI:
        if not resolved:
            resolved.append(await _resolve_client(settings, client))
        return resolved[0]

    return await _achat(
        prompt_or_messages,
        endpoint=_endpoint_of(settings, client),
        get_client=get_client,
        provider=settings.provider if client is None else "client",
        settings=settings,
        model=model,
        system=system,
        temperature=temperature,
        max_tokens=max_tokens,
        response_format=response_format,
        repeat=repeat,
        raise_on_invalid=raise_on_invalid,
        **params,
    )


async def _achat(
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    *,
    endpoint: str,
    get_client: Callable[[], Awaitable[openai.AsyncOpenAI]],
    provider: str,
    settings: Settings,
    model: str | None,
    system: str | None,
    temperature: float | None,
    max_tokens: int | None,
    response_format: Any,
    repeat: int,
    raise_on_invalid: bool,
    **params: Any,
) -> Reply:
    """`achat` with an explicit endpoint identity (the cache key's) and client getter.

    `aikit.batch` uses it with its own client, whose base URL (the embedded server's port)
    must not change the key of the embedded model (`aikit-local`).
    """
    _check_params(params)
    messages = to_messages(prompt_or_messages, system)
    model = model or settings.model
    wire_format, validate = _schema_format(response_format)
    request = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        "response_format": wire_format,
        **params,
    }
    started = time.perf_counter()

    async def ask(messages: Messages) -> tuple[ChatCompletion, bool]:
        return await _complete(settings, get_client, endpoint, model, messages, request, repeat)

    completions = [await ask(messages)]
    text = _text_of(completions[-1][0])
    parsed, error = None, None
    if validate is not None:
        try:
            parsed = validate(text)
        except (ValidationError, ValueError) as exc:
            error = _validation_message(exc)
            reask = {"role": "user", "content": REASK.format(error=error)}
            completions.append(
                await ask([*messages, {"role": "assistant", "content": text}, reask])
            )
            text = _text_of(completions[-1][0])
            try:
                parsed, error = validate(text), None
            except (ValidationError, ValueError) as again:
                error = _validation_message(again)
                if raise_on_invalid:
                    what = getattr(response_format, "__name__", "JSON schema")
                    raise StructuredOutputError(
                        f"the answer of {model} failed {what} validation twice ({error});"
                        " simplify the schema or use a stronger model"
                    ) from again
    latency = time.perf_counter() - started
    usage, cost = _account(model, completions)
    last = completions[-1][0]
    reply = Reply(
        text=text,
        model=model,
        usage=usage,
        cost=cost,
        latency_s=latency,
        cached=all(was_cached for _, was_cached in completions),
        parsed=parsed,
        error=error,
        finish_reason=last.choices[0].finish_reason if last.choices else None,
        calls=len(completions),
    )
    log_call(
        provider=provider,
        model=model,
        usage=usage,
        cost=cost,
        latency_s=latency,
        cached=reply.cached,
        calls=reply.calls,
    )
    return reply


def _text_of(completion: ChatCompletion) -> str:
    return (completion.choices[0].message.content or "") if completion.choices else ""


def _account(
    model: str, completions: list[tuple[ChatCompletion, bool]]
) -> tuple[Usage, float | None]:
    """Tokens over all calls; cost of those not answered from the store (None if unpriced)."""
    usage, cost = Usage(), 0.0
    total: float | None = cost
    for completion, was_cached in completions:
        tokens = completion.usage
        call = Usage(tokens.prompt_tokens, tokens.completion_tokens) if tokens else Usage()
        usage = usage + call
        if not was_cached:
            call_cost = cost_of(model, call)
            total = None if call_cost is None or total is None else total + call_cost
    return usage, total


def chat(
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    response_format: Any = None,
    **params: Any,
) -> Reply:
    """Ask a model and wait for its `Reply`.

    Args:
        prompt_or_messages: a user prompt, or a list of chat messages.
        model: model name; default `Settings.model` (`AIKIT_MODEL`).
        system: a system prompt put before the messages.
        temperature: sampling temperature; 0 with a `seed` repeats the same answer.
        max_tokens: cap on the answer's length.
        response_format: a pydantic model class (validated into `Reply.parsed`, re-asked once on
            a mismatch) or an openai `response_format` dict.
        **params: any other `chat.completions.create` argument (`seed`, `stop`, `top_p`, ...),
            plus `repeat` (sample index for the cache), `client`, `settings`, `raise_on_invalid`.

    Example:
        >>> aikit.chat("What is the capital of France?").text  # doctest: +SKIP
        'Paris.'
    """
    return run_sync(
        achat(
            prompt_or_messages,
            model=model,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            response_format=response_format,
            **params,
        )
    )


# -- running async code from sync code, also inside a running loop (Jupyter) -------------------
_portal_lock = threading.Lock()
_portal_loop: asyncio.AbstractEventLoop | None = None


def _portal() -> asyncio.AbstractEventLoop:
    global _portal_loop
    with _portal_lock:
        if _portal_loop is None or _portal_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="aikit-loop", daemon=True).start()
            _portal_loop = loop
        return _portal_loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on aikit's loop thread and return its result."""
    future = asyncio.run_coroutine_threadsafe(coro, _portal())
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise
