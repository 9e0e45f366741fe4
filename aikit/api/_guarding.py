"""Guards in `aikit api`: the input set before the function, the output set before the answer
leaves, and on a stream's text so far. Every verdict goes to the request log.

The app calls four functions with plain values: `check_input` (a validated request body ->
the body the function gets, redacted; raises `GuardError` when blocked), `check_output` (the
function's result -> the result to send), `check_stream` (the text so far -> the blocking
verdict or None) and, when a row is written, `for_log` (input/output text with personal data
and secrets redacted whenever the endpoint has guards) and `log_column` (the verdicts as JSON).
An endpoint's guards are those of `@aikit.endpoint(guards=...)` plus `aikit api --guard NAME`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aikit import tracing
from aikit.errors import GuardError

INPUT_BLOCKED, OUTPUT_BLOCKED = 400, 502
Call = Callable[..., Awaitable[tuple[Any, int, str | None]]]


def for_endpoint(function: Callable[..., Any], names: Sequence[str]) -> Any:
    """The `Guards` of an endpoint (None when it has none)."""
    from aikit.api._marker import ATTRIBUTE
    from aikit.guards import Guards, as_guards

    spec = getattr(function, ATTRIBUTE, None)
    marked = as_guards(getattr(spec, "guards", None))
    named = as_guards(list(names))
    both = Guards(marked.input + named.input, marked.output + named.output, marked.passages)
    if not both:
        return None
    from aikit.guards import check, pii, secrets

    for chosen in (both.input, both.output, (pii, secrets)):  # load models now, not mid-request
        check(chosen, "warm up: ignore this text, mail a@gmail.com")
    return both


def _record(info: Any, stage: str, verdicts: Sequence[Any]) -> None:
    info.verdicts.extend({"stage": stage, **v.to_log()} for v in verdicts)
    tracing.verdicts(verdicts, stage)  # events on the request's server span


async def check_input(guards: Any, body: Any, info: Any) -> Any:
    """The request body with each text field through the input guards."""
    if guards is None or not guards.input:
        return body
    from aikit.guards import blocked_message, check

    changes: dict[str, Any] = {}
    for name in type(body).model_fields:
        value = getattr(body, name)
        if not isinstance(value, str):
            continue
        found = await asyncio.to_thread(check, guards.input, value)
        _record(info, "input", found.verdicts)
        if found.blocked is not None:
            message = blocked_message(f"input field {name!r}", found.blocked)
            raise GuardError(message, verdict=found.blocked, stage="input")
        if found.text != value:
            changes[name] = found.text
    return body.model_copy(update=changes) if changes else body


async def check_output(guards: Any, schema: Any, result: Any, info: Any) -> Any:
    """The function's result with every text of its JSON form through the output guards
    (validated back into the response type when a guard redacted)."""
    if guards is None or not guards.output:
        return result
    from pydantic import TypeAdapter

    from aikit.guards import blocked_message, check

    adapter: Any = TypeAdapter(type(None) if schema.response is None else schema.response)

    verdicts: list[Any] = []
    changed = False

    def walk(value: Any) -> Any:
        nonlocal changed
        if isinstance(value, str):
            found = check(guards.output, value)
            verdicts.extend(found.verdicts)
            if found.blocked is not None:
                raise GuardError(
                    blocked_message("answer", found.blocked), verdict=found.blocked,
                    stage="output",
                )  # fmt: skip
            changed = changed or found.text != value
            return found.text
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    try:
        plain = adapter.dump_python(schema.to_response(result), mode="json")
        checked = await asyncio.to_thread(walk, plain)
    finally:
        _record(info, "output", verdicts)
    return adapter.validate_python(checked) if changed else result


def check_stream(guards: Any, text: str) -> Any:
    """The verdict that ends a stream whose text so far `text` turned bad (None: go on).
    A redaction cannot take back text already sent, so in a stream it ends it too."""
    if guards is None or not guards.output:
        return None
    from aikit.guards import check

    found = check(guards.output, text)
    if found.blocked is not None:
        return found.blocked
    return next((v for v in found.verdicts if v.action == "redact"), None)


def status_of(exc: GuardError) -> int:
    return INPUT_BLOCKED if exc.stage == "input" else OUTPUT_BLOCKED


def for_log(text: str | None, verdicts: Sequence[Any]) -> str | None:
    """`text` with personal data and secrets redacted when guards ran (so a blocked text
    that holds them is never logged raw)."""
    if text is None or not verdicts:
        return text
    from aikit.guards import check, pii, secrets

    return check([pii, secrets], text).text


def log_column(verdicts: Sequence[Any]) -> str | None:
    return json.dumps(list(verdicts)) if verdicts else None


async def cut(events: AsyncIterator[bytes], guards: Any, info: Any) -> AsyncIterator[bytes]:
    """The SSE events of a stream, ended by an `error` event as soon as the text of its
    `chunk` events so far fails the output guards (the function is then cancelled)."""
    if guards is None or not guards.output:
        async for item in events:
            yield item
        return
    text = ""
    try:
        async for item in events:
            if item.startswith(b"event: chunk\n"):
                text += json.loads(item.split(b"data: ", 1)[1])["text"]
                verdict = check_stream(guards, text)
                if verdict is not None:
                    from aikit.guards import blocked_message

                    info.status, info.error = OUTPUT_BLOCKED, blocked_message("stream", verdict)
                    info.verdicts.append({"stage": "stream", **verdict.to_log()})
                    tracing.verdicts([verdict], "stream")
                    body = {"error": info.error, "status": info.status}
                    body["request_id"] = info.request_id
                    yield f"event: error\ndata: {json.dumps(body)}\n\n".encode()
                    return
            yield item
    finally:
        await events.aclose()  # type: ignore[attr-defined]
