"""The provider seam, where a model call goes: `resolve_endpoint(settings, client)` is the one
place that branches on
the provider. Everything provider-specific (the cache identity, the API key, how to reach the
server, default concurrency, answer defaults for a tiny base model, the token counter) comes
from the `Endpoint` it returns, so no call site asks "is this the embedded model?".

- `local`: the embedded models (`aikit.local`, whose model table says what is specific to each:
  prompt format, stop sequences, answer defaults, context length, whether it follows
  instructions); its URL is known once its server runs, so `Endpoint.url()` starts or finds
  it on first use. Its cache identity is `aikit-local`, so the server's port never changes a
  cache key. An unknown local model name is a `ConfigError` listing the local models.
- `openai`: any OpenAI-compatible endpoint at `Settings.base_url` with `Settings.api_key`.
- `client`: a caller's own `openai.AsyncOpenAI`; identity from its base URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from aikit import _clients, local
from aikit._limit import Limiter, limiter_for
from aikit.cache import endpoint_identity
from aikit.errors import ConfigError
from aikit.tokens import counter_for

if TYPE_CHECKING:
    import openai

    from aikit.settings import Settings
    from aikit.tokens import TokenCounter

Kind = Literal["local", "openai", "client"]
AUTO_CONCURRENCY = (8, 64)  # batch's adaptive concurrency: start, ceiling
REMOTE_LIMIT = 64  # requests in flight to a remote endpoint from one process (`aikit._limit`)


def hosted_model(model: str) -> dict[str, Any]:
    """What aikit assumes of a hosted model: a chat model that follows instructions, whose
    prompt variants are chosen by its name, then `hosted`, then `instruct`."""
    return {"families": (model, "hosted", "instruct"), "answer_defaults": {}}


def local_model(model: str) -> dict[str, Any]:
    """An embedded model's entry of the model table (`aikit.local.MODELS`), checked."""
    spec = local.get_model(model)
    return {"families": spec.families, "answer_defaults": dict(spec.answer_defaults)}


@dataclass(frozen=True)
class Endpoint:
    """A resolved model endpoint.

    Attributes:
        kind: `local`, `openai` or `client` (a caller's own SDK client).
        identity: the endpoint part of the response store's key (no credentials, no port
            of the embedded server).
        base_url: the URL, or None for the embedded model until `url()` has started it.
        concurrency: `aikit.batch`'s automatic (start, ceiling) of calls in flight.
        limit: the most requests in flight to this server from the process, whoever sends
            them (`limiter()`; the embedded server: `local.CONCURRENCY`).
        serial: the server answers one request at a time, so a request sent while others
            are in flight waits in its line: the SDK timeout then allows for the `limit - 1`
            requests that can be ahead of it, and so measures service time, not queueing.
        answer_defaults: generation defaults for answers of a fixed shape (`rag.answer`):
            a base model needs a stop sequence and a short cap; a chat model does not.
        counter: the most exact offline prompt-token counter for a model name.
        label: what it is, for people (`aikit doctor`).
        api_key_env: the variable its key comes from, when it needs one.
        model_info: for a model name, its `families` (what a per-model prompt,
            `aikit.prompts.Prompt`, is chosen by) and `answer_defaults`.
    """

    kind: Kind
    identity: str
    base_url: str | None
    settings: Settings = field(repr=False, compare=False)
    counter: Callable[[str], TokenCounter] = field(repr=False, compare=False)
    concurrency: tuple[int, int] = AUTO_CONCURRENCY
    answer_defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    api_key: str | None = field(default=None, repr=False, compare=False)
    client: openai.AsyncOpenAI | None = field(default=None, repr=False, compare=False)
    label: str = "OpenAI-compatible endpoint"
    state: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    api_key_env: str | None = None
    limit: int = REMOTE_LIMIT
    serial: bool = False
    purpose: str = ""  # what the endpoint is for in messages, e.g. "embeddings"

    def limiter(self) -> Limiter:
        """This process's one limiter for this server (keyed by its identity)."""
        return limiter_for(self.identity, self.limit)

    @property
    def timeout(self) -> float:
        """The SDK timeout of one request (`AIKIT_TIMEOUT`, per request ahead in line)."""
        return self.settings.timeout * (self.limit if self.serial else 1)

    model_info: Callable[[str], dict[str, Any]] = field(
        default=hosted_model, repr=False, compare=False
    )

    def families(self, model: str) -> tuple[str, ...]:
        """The names a per-model prompt may use for `model`, most specific first."""
        return tuple(self.model_info(model)["families"])

    def answer_defaults_for(self, model: str | None) -> dict[str, Any]:
        """`answer_defaults` of `model` (default: the settings' model)."""
        if not model:
            return dict(self.answer_defaults)
        return dict(self.model_info(model)["answer_defaults"])

    async def url(self) -> str:
        """The base URL to send requests to (starts the embedded model when needed)."""
        if self.base_url is not None:
            return self.base_url
        return await asyncio.to_thread(local.ensure_server, self.settings)

    async def check_url(self) -> str:
        """`url()` for a one-off check (`aikit doctor`): also notes whether it had to start the
        embedded model, so `stop_what_it_started` can stop it again."""
        if self.base_url is None and "started" not in self.state:
            running = await asyncio.to_thread(local.server_info, self.settings)
            self.state["started"] = running is None
        return await self.url()

    def stop_what_it_started(self) -> None:
        """Stop the embedded model's server if `check_url()` started it (`aikit doctor` leaves
        no server behind); a server that was already running stays."""
        if self.state.get("started"):
            local.stop_server(self.settings)
            self.state["started"] = False

    async def open(
        self, *, max_retries: int | None = None, http_client: Any = None
    ) -> openai.AsyncOpenAI:
        """A new SDK client for this endpoint (the caller's own, re-optioned, for `client`)."""
        retries = self.settings.max_retries if max_retries is None else max_retries
        if self.client is not None:
            if http_client is None and max_retries is None:
                return self.client
            options: dict[str, Any] = {"max_retries": retries}
            if http_client is not None:
                options["http_client"] = http_client
            return self.client.with_options(**options)
        return _clients.async_client(
            base_url=await self.url(),
            api_key=self._key(),
            timeout=self.timeout,
            max_retries=retries,
            http_client=http_client,
        )

    def open_sync(self) -> openai.OpenAI:
        """A new sync SDK client for a remote endpoint (`rag`'s OpenAI embeddings)."""
        if self.base_url is None:
            raise ConfigError(
                f"no URL for {self.purpose or 'the model endpoint'}; set OPENAI_BASE_URL"
            )
        return _clients.sync_client(
            base_url=self.base_url,
            api_key=self._key(),
            timeout=self.timeout,
            max_retries=self.settings.max_retries,
        )

    def _key(self) -> str:
        if not self.api_key:
            what = f"{self.purpose} at " if self.purpose else ""
            hint = "" if self.purpose else " or use AIKIT_PROVIDER=local"
            raise ConfigError(
                f"no API key for {what}{self.base_url}; set OPENAI_API_KEY (any"
                f" non-empty value for a server that needs none){hint}"
            )
        return self.api_key


def resolve_endpoint(settings: Settings, client: openai.AsyncOpenAI | None = None) -> Endpoint:
    """The endpoint a call with `settings` (or the caller's own `client`) goes to."""
    if client is not None:
        return Endpoint(
            kind="client",
            identity=endpoint_identity(str(client.base_url)),
            base_url=str(client.base_url),
            settings=settings,
            counter=counter_for,
            client=client,
            label="your own openai client",
            limit=REMOTE_LIMIT,
        )
    if settings.provider == "local":
        spec = local.get_model(settings.model)  # an unknown name: one line listing the models
        return Endpoint(
            kind="local",
            identity=local.IDENTITY,
            base_url=None,
            settings=settings,
            counter=local.token_counter,
            concurrency=(local.CONCURRENCY, local.CONCURRENCY),
            limit=local.CONCURRENCY,
            serial=True,
            answer_defaults=MappingProxyType(dict(spec.answer_defaults)),
            api_key=local.API_KEY,
            label=f"the embedded model {spec.name}, llama.cpp on 127.0.0.1",
            model_info=local_model,
        )
    base_url = settings.base_url or ""
    return Endpoint(
        kind="openai",
        identity=endpoint_identity(base_url),
        base_url=base_url,
        settings=settings,
        counter=counter_for,
        api_key=settings.api_key,
        api_key_env="OPENAI_API_KEY",
        limit=REMOTE_LIMIT,
    )


def embeddings_endpoint(
    settings: Settings, *, base_url: str | None = None, api_key: str | None = None
) -> Endpoint:
    """Where OpenAI-compatible embeddings go: `base_url` and `api_key` when given, else the
    `openai` provider's (`OPENAI_BASE_URL`, OpenAI itself when unset; `OPENAI_API_KEY`): the
    embedded model serves no embeddings."""
    from aikit.settings import OPENAI_URL, Settings

    remote = settings if settings.base_url else Settings.resolve(provider="openai")
    url = (base_url or remote.base_url or OPENAI_URL).rstrip("/")
    return Endpoint(
        kind="openai",
        identity=endpoint_identity(url),
        base_url=url,
        settings=settings,
        counter=counter_for,
        api_key=api_key or remote.api_key,
        api_key_env="OPENAI_API_KEY",
        purpose="embeddings",
    )
