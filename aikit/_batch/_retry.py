"""The retry policy of `aikit.batch`: what is retried, and how long to wait before it.

Why batch has its own loop (the SDK's `max_retries` is 0 on a batch's client, so this replaces
the SDK's loop rather than stacking a second one on it): a batch is a long unattended job, and
the SDK's loop
- does not retry a 200 whose body was cut short (the JSON does not parse, or the connection
  closes mid-body), which a proxy or an overloaded server produces;
- counts retries per call, so a row has no one budget over every kind of failure, and a batch
  no deadline;
- keeps the row's concurrency slot while it sleeps; the batch's loop gives it back, so rows
  waiting out a Retry-After never hold up rows that could be answered.

Retried: 429, 408, 409 and 5xx answers, timeouts, connection errors, malformed bodies. The wait
is the server's Retry-After (or `retry-after-ms`, at most 60 s) times 1-1.1 (jitter), else
exponential backoff: 0.25 s doubling per attempt, at most 8 s, drawn in the upper half of that
(jitter). No retry past `max_attempts` HTTP attempts of the row, nor one whose wait would end
after the batch's deadline.
"""

from __future__ import annotations

import json
import random
import time

import openai

from aikit import tracing

DEFAULT_MAX_ATTEMPTS = 8
BACKOFF_S, BACKOFF_CAP_S, RETRY_AFTER_CAP_S = 0.25, 8.0, 60.0


def retryable(exc: Exception) -> bool:
    """Transient failures worth another attempt (see the module docstring)."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(
        exc, openai.APIConnectionError | openai.APIResponseValidationError | json.JSONDecodeError
    )


def retry_after(exc: Exception) -> float | None:
    """The server's Retry-After (seconds, or `retry-after-ms`), when it sent one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if 0 <= seconds <= RETRY_AFTER_CAP_S:
                return seconds
    return None


def retry_wait(
    exc: Exception, attempts: int, max_attempts: int, deadline: float | None
) -> float | None:
    """Seconds to wait before the next attempt after `exc`, or None: do not retry.

    `attempts` is how many HTTP attempts the row has made; `deadline` a `time.monotonic()`.
    """
    if not retryable(exc) or attempts >= max_attempts:
        return None
    wait = retry_after(exc)
    if wait is not None:
        wait *= random.uniform(1.0, 1.1)
    else:
        ceiling = min(BACKOFF_CAP_S, BACKOFF_S * 2 ** (attempts - 1))
        wait = random.uniform(ceiling / 2, ceiling)
    if deadline is not None and time.monotonic() + wait >= deadline:
        return None
    status = getattr(exc, "status_code", None)
    tracing.event("aikit.retry", {"aikit.attempt": attempts, "aikit.retry_wait_s": round(wait, 3),
                                  "error.type": str(status or type(exc).__name__)})  # fmt: skip
    return wait
