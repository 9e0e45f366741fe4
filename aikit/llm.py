"""Model calls: `chat` / `achat`, structured output with one re-ask, every call through the
official openai SDK and the response store.

One async core (`achat`); `chat` runs it on a private event-loop thread, so it works the same
in a script and in a notebook cell whose loop is already running.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from aikit import _stream, tracing
from aikit import cache as _cache
from aikit._chatparams import check_params as check_params
from aikit._limit import slot
from aikit._scrub import redact_url, redact_urls
from aikit._structured import schema_format, validation_message
from aikit._sync import sync_of
from aikit.costs import Usage, cost_of, log_call, sum_costs
from aikit.errors import EndpointError, StoreError, StructuredOutputError
from aikit.prompts import Messages, Prompt, to_messages
from aikit.provider import Endpoint, resolve_endpoint
from aikit.settings import Settings, get_settings

REASK = (
    "Your answer did not match the required JSON schema: {error}. "
    "Answer again with only a JSON object that matches the schema."
)
GetClient = Callable[[], Awaitable[openai.AsyncOpenAI]]
Send = Callable[[], Awaitable[ChatCompletion]]


@dataclass(frozen=True)
class Ask:
    """One question to a model: the arguments of `achat` (and `aikit.batch`'s per row), defined
    once; `achat` builds one from its keyword arguments and `ask` answers it."""

    prompt: str | Prompt | Sequence[Mapping[str, Any]]
    model: str | None = None
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: Any = None
    repeat: int = 0
    raise_on_invalid: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallPolicy:
    """How `ask` sends, given explicitly by the caller (no hidden channel between modules).

    Attributes:
        send: wraps each HTTP attempt; `aikit.batch` passes its retry loop here (its rows'
            clients have the SDK's retries off; see `aikit._batch._retry` for why).
        on_store_error: takes a response-store write failure instead of raising it, so an
            answer already paid for is still returned (`aikit.batch` keeps it, then stops).
        on_text: gets each piece of the answer's text as it arrives (`stream=`).
    """

    send: Callable[[Send], Awaitable[ChatCompletion]] | None = None
    on_store_error: Callable[[StoreError], None] | None = None
    on_text: _stream.OnText | None = None


DEFAULT_POLICY = CallPolicy()


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
    verdicts: tuple[Any, ...] = ()  # with guards=: each guard's Verdict, input then output

    def __str__(self) -> str:
        return self.text


# -- clients ---------------------------------------------------------------------------------
# One SDK client per event loop and endpoint (an httpx pool is bound to its loop).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


async def client_for(endpoint: Endpoint) -> openai.AsyncOpenAI:
    """The shared SDK client for `endpoint` on the running loop (a caller's own as it is)."""
    if endpoint.client is not None:
        return endpoint.client
    settings = endpoint.settings
    # Keyed by the URL as it is now: the embedded server may have restarted on another port
    # (stopped, idle for AIKIT_SERVER_IDLE_S, killed), and a client for the old one is useless.
    url = await endpoint.url()
    key = (url, endpoint.api_key, settings.timeout, settings.max_retries)
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in per_loop:
        per_loop[key] = await endpoint.open()
    client: openai.AsyncOpenAI = per_loop[key]
    return client


# -- the call --------------------------------------------------------------------------------
async def _complete(
    settings: Settings,
    get_client: GetClient,
    endpoint: Endpoint,
    model: str,
    messages: Messages,
    params: dict[str, Any],
    repeat: int,
    policy: CallPolicy,
) -> tuple[ChatCompletion, bool]:
    """One completion through the response store; returns (completion, came_from_store)."""
    canonical = _cache.canonical_request(
        endpoint=endpoint.identity, model=model, messages=messages, params=params, repeat=repeat
    )
    store = None if settings.cache == "off" else _cache.store_at(settings.cache_path)
    key = _cache.request_key(canonical)
    # Streaming (aikit/_stream.py): a stored answer streams as one piece; a fresh one through
    # the SDK's stream=True, assembled into the same ChatCompletion (and stored as usual).
    if store is not None and settings.cache == "replay":
        stored = store.lookup(canonical, settings.cassettes)
        return _stream.whole(ChatCompletion.model_validate(stored), policy.on_text), True
    if store is not None and settings.cache == "on":
        hit = store.find(canonical)  # also under the version-1 key (see aikit.cache)
        if hit is not None:
            return _stream.whole(ChatCompletion.model_validate(hit), policy.on_text), True
    client = await get_client()
    url = redact_url(str(client.base_url)).rstrip("/")  # never a credential or query string
    on_text = policy.on_text
    sent = {k: v for k, v in params.items() if v is not None}
    limiter = endpoint.limiter()

    async def send() -> ChatCompletion:
        # One HTTP attempt holds a slot of the server's limiter (aikit/_limit.py): the SDK's
        # timeout starts once a slot is free, so waiting in line here never times out.
        async with slot(limiter):
            return await _send()

    async def _send() -> ChatCompletion:
        if on_text is not None:
            return await _stream.create(
                client,
                on_text,
                model=model,
                messages=cast(Any, messages),
                count_prompt=lambda: _stream.count_prompt(endpoint.counter(model), messages),
                **sent,
            )
        completion: ChatCompletion = await client.chat.completions.create(
            model=model, messages=cast(Any, messages), **sent
        )
        return completion

    try:
        completion = await (send() if policy.send is None else policy.send(send))
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
            # A paid answer is never thrown away. Under aikit.batch the failure is handed over
            # (the batch keeps the answer and stops); else it raises.
            if policy.on_store_error is None:
                raise
            policy.on_store_error(exc)
    return completion, False


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
    prompt_or_messages: str | Prompt | Sequence[Mapping[str, Any]],
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
    stream: _stream.OnText | None = None,
    guards: Any = None,
    **params: Any,
) -> Reply:
    """Ask a model and get its `Reply` (the async core; `chat` is its sync twin).

    Args:
        prompt_or_messages: a user prompt, a list of chat messages, or a `Prompt` without
            variables (kept per model: the variant of the model asked).
        model: model name; default `Settings.model` (`AIKIT_MODEL`).
        system: a system prompt put before the messages.
        temperature: sampling temperature; 0 with a `seed` repeats the same answer.
        max_tokens: cap on the answer's length.
        response_format: a pydantic model class (validated into `Reply.parsed`, re-asked once
            on a mismatch) or an openai `response_format` dict.
        repeat: the sample index in the response store's key: `repeat=1` asks again instead
            of answering from the store.
        client: your own `openai.AsyncOpenAI` (its base URL names the endpoint in the key).
        settings: settings for this call; default `aikit.get_settings()`.
        raise_on_invalid: raise `StructuredOutputError` when the answer fails validation
            twice (by default `Reply.parsed` is None and `Reply.error` says why).
        stream: called with each piece of the answer's text as the model produces it (e.g.
            `lambda t: print(t, end="")`); the whole `Reply` is still returned. An answer from
            the response store arrives as one piece. See `aikit/_stream.py`.
        guards: `aikit.guards.Guards` (or a list of guards and built-in names): the input set
            checks the prompt first, the output set the answer; a block raises `GuardError`,
            a redaction changes the text sent or returned; `Reply.verdicts` lists them all.
        **params: any other `chat.completions.create` argument (`seed`, `stop`, `top_p`,
            ...); a misspelt name is a `ConfigError` that suggests the right one.

    Example:
        >>> aikit.chat("What is the capital of France?").text  # doctest: +SKIP
        'Paris.'
    """
    settings = settings or get_settings()
    endpoint = resolve_endpoint(settings, client)

    async def get_client() -> openai.AsyncOpenAI:
        return await client_for(endpoint)

    with tracing.chat_span(endpoint, model or settings.model) as chat:
        verdicts: list[Any] = []
        if guards is not None:  # aikit/guards/apply.py: the prompt before, the answer after
            from aikit.guards.apply import guard_answer, guard_prompt, system_of

            if isinstance(prompt_or_messages, Prompt):  # the guards check what the model gets
                families = endpoint.families(model or settings.model)
                prompt_or_messages = prompt_or_messages.choose(families)[1].render()
            guards, prompt_or_messages, verdicts = guard_prompt(guards, prompt_or_messages)
            tracing.verdicts(verdicts, "input", chat and chat.span)
        question = Ask(
            prompt_or_messages,
            model=model,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            response_format=response_format,
            repeat=repeat,
            raise_on_invalid=raise_on_invalid,
            params=params,
        )
        # stream= or, for a function served by `aikit api` on /stream, the request's sink
        policy = CallPolicy(on_text=stream or _stream.request_sink())
        reply = await ask(
            question, endpoint=endpoint, get_client=get_client, policy=policy, chat=chat
        )
        if guards is not None:
            context = {"system_prompt": system_of(system, prompt_or_messages)}
            reply.text, after = guard_answer(guards, reply.text, context=context)
            tracing.verdicts(after, "output", chat and chat.span)
            reply.verdicts = (*verdicts, *after)
        return reply


async def ask(
    question: Ask,
    *,
    endpoint: Endpoint,
    get_client: GetClient,
    policy: CallPolicy = DEFAULT_POLICY,
    chat: tracing.Chat | None = None,
) -> Reply:
    """Answer `question` on a resolved endpoint with a given client getter (aikit's in-package
    seam under `achat`).

    `aikit.batch` calls it with its own client and a `CallPolicy` holding its retry loop; the
    cache key uses `endpoint.identity`, so the embedded server's port never changes a key.
    `chat` is the `chat {model}` span `achat` opened (None: `ask` opens its own).
    """
    if chat is None:
        with tracing.chat_span(endpoint, question.model or endpoint.settings.model) as chat:
            return await _answer(question, endpoint, get_client, policy, chat)
    return await _answer(question, endpoint, get_client, policy, chat)


async def _answer(
    question: Ask,
    endpoint: Endpoint,
    get_client: GetClient,
    policy: CallPolicy,
    chat: tracing.Chat | None,
) -> Reply:
    params = dict(question.params)
    check_params(
        params,
        temperature=question.temperature,
        max_tokens=question.max_tokens,
        local=endpoint.kind == "local",
    )
    settings = endpoint.settings
    model = question.model or settings.model
    families = endpoint.families(model)  # an unknown embedded model: a line listing them
    prompt = question.prompt
    if isinstance(prompt, Prompt):
        prompt = prompt.choose(families)[1].render()
    messages = to_messages(prompt, question.system)
    response_format, raise_on_invalid = question.response_format, question.raise_on_invalid
    repeat = question.repeat
    wire_format, validate = schema_format(response_format)
    request = {
        "temperature": question.temperature,
        "max_tokens": question.max_tokens,
        "response_format": wire_format,
        **params,
    }
    tracing.chat_request(chat, endpoint, messages, request)
    started = time.perf_counter()

    async def one(messages: Messages) -> tuple[ChatCompletion, bool]:
        return await _complete(
            settings, get_client, endpoint, model, messages, request, repeat, policy
        )

    completions = [await one(messages)]
    text = _text_of(completions[-1][0])
    parsed, error = None, None
    if validate is not None:
        try:
            parsed = validate(text)
        except (ValidationError, ValueError) as exc:
            error = validation_message(exc)
            reask = {"role": "user", "content": REASK.format(error=error)}
            completions.append(
                await one([*messages, {"role": "assistant", "content": text}, reask])
            )
            text = _text_of(completions[-1][0])
            try:
                parsed, error = validate(text), None
            except (ValidationError, ValueError) as again:
                error = validation_message(again)
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
    tracing.chat_reply(chat, endpoint, reply, last)
    log_call(
        provider=endpoint.kind,
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
    usage = Usage()
    costs: list[float | None] = []
    for completion, was_cached in completions:
        tokens = completion.usage
        call = Usage(tokens.prompt_tokens, tokens.completion_tokens) if tokens else Usage()
        usage = usage + call
        if not was_cached:
            costs.append(cost_of(model, call))
    return usage, sum_costs(costs)


@sync_of(achat)
def chat() -> None:
    """Ask a model and wait for its `Reply`; the arguments are `achat`'s.

    Works in a script and in a notebook cell (where an event loop is already running).

    Example:
        >>> aikit.chat("What is the capital of France?").text  # doctest: +SKIP
        'Paris.'
    """
