"""The one place aikit constructs openai SDK clients (an architecture test keeps it so).

Model calls get theirs from `aikit.provider.Endpoint.open` / `open_sync` (chat and
embeddings alike); the embedded server's own health check and `aikit doctor` call
`sync_client` directly, for a bare probe of a URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import openai


def async_client(
    *, base_url: str, api_key: str, timeout: float, max_retries: int, http_client: Any = None
) -> openai.AsyncOpenAI:
    """A new `openai.AsyncOpenAI`."""
    import openai

    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=max_retries,
        http_client=http_client,
    )


def sync_client(*, base_url: str, api_key: str, timeout: float, max_retries: int) -> openai.OpenAI:
    """A new `openai.OpenAI`."""
    import openai

    return openai.OpenAI(
        base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
    )
