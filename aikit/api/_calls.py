"""Calling a served function: validate the body, run the function (bounded in time and in
threads), render its result; the answers of `POST /name`, `/name/batch` and `/name/stream`.

`Endpoint.run` is the one place where a request's validated input reaches the function and
the function's output leaves it; every route goes through it (input and output guards belong
there). Sync functions run on a fixed pool of threads (`Workers`): a call over the timeout is
answered 504 at once, but its thread runs on (Python cannot interrupt it), so the request's
admission slot stays taken until the thread has stopped; a call that has not started yet is
cancelled. Async functions run on the loop and are cancelled at the timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model

from aikit import _stream
from aikit._scrub import Scrubber
from aikit.api import _guarding
from aikit.api._log import clip
from aikit.api._schema import Schema, validate
from aikit.costs import Call, collect_calls
from aikit.errors import GuardError

logger = logging.getLogger("aikit.api")
JSON = "application/json"
Answer = tuple[int, bytes]  # HTTP status, JSON body


@dataclass
class RequestInfo:
    """What the guard logs about one request; the handlers fill in calls, input, output,
    error, and the threads still running its function (`running`)."""

    request_id: str
    endpoint: str
    kind: str
    started: float
    status: int = 0
    calls: list[Call] = field(default_factory=list)
    input: str | None = None
    output: str | None = None
    error: str | None = None
    running: list[concurrent.futures.Future[Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # see aikit/api/_guarding.py
    # For live scores (aikit/api/_scoring.py): each answered input and result, and the span
    # context the request was admitted under.
    results: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    span_context: Any = None


@dataclass(frozen=True)
class Outcome:
    """One call of the function: its rendered JSON (`payload`) or an error with its status."""

    payload: bytes | None
    status: int = 200
    error: str | None = None


def error_body(status: int, message: str, request_id: str) -> bytes:
    return json.dumps({"error": message, "status": status, "request_id": request_id}).encode()


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, as a 500 and the log show it."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Workers:
    """The threads that run sync endpoint functions: never more than `size`, however many
    calls time out (a timed-out call keeps its thread until it returns)."""

    def __init__(self, size: int) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(size, thread_name_prefix="aikit-call")

    def submit(self, function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        context = contextvars.copy_context()  # the request's call collector and stream sink
        return self.pool.submit(context.run, functools.partial(function, **kwargs))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Endpoint:
    """One marked function, served: its request models and the answers of its three routes."""

    def __init__(
        self,
        schema: Schema,
        *,
        timeout_s: float,
        batch: tuple[int, int],
        workers: Workers,
        scrubber: Scrubber,
        guards: Any = None,
        scorers: list[Any] | None = None,
    ) -> None:
        self.scorers = scorers or []  # aikit.api._scoring.Scorer: live scores of its answers
        self.schema, self.timeout_s, self.workers, self.scrubber = (
            schema,
            timeout_s,
            workers,
            scrubber,
        )
        self.guards = guards  # aikit.guards.Guards or None (aikit/api/_guarding.py)
        self.batch_concurrency, max_batch = batch
        title = schema.request.__name__.removesuffix("Request")
        self.returns: Any = type(None) if schema.response is None else schema.response
        self.output = TypeAdapter(self.returns)
        inputs: Any = list[schema.request]  # type: ignore[name-defined]
        self.batch_request = create_model(
            f"{title}Batch", inputs=(inputs, Field(max_length=max_batch))
        )
        maybe: Any = self.returns | None
        self.batch_item = create_model(
            f"{title}BatchItem", output=(maybe, None), error=(str | None, None)
        )
        outputs: Any = list[self.batch_item]  # type: ignore[name-defined]
        self.batch_response = create_model(f"{title}BatchResponse", outputs=(outputs, ...))

    # -- the one place the function is called ---------------------------------------------
    async def run(self, body: BaseModel, info: RequestInfo) -> Outcome:
        """The function on a validated request: its rendered output, or a 500/504 error.

        Every route calls the function here and nowhere else: `body` is the request's
        validated input, `Outcome.payload` the output as it will be answered (scrubbed of
        every secret)."""
        schema = self.schema
        try:
            body = await _guarding.check_input(self.guards, body, info)
            with collect_calls() as calls:
                try:
                    result = await self._invoke(schema.kwargs(body), info)
                finally:
                    info.calls.extend(calls)
            result = await _guarding.check_output(self.guards, schema, result, info)
            payload = self.output.dump_json(schema.to_response(result))
            if self.scorers:  # scored once the answer has gone out (the guard hands it on)
                info.results.append((body.model_dump(mode="json"), result))
        except GuardError as exc:
            return Outcome(None, _guarding.status_of(exc), self.scrubber.text(str(exc)))
        except TimeoutError:
            return Outcome(None, 504, f"{schema.name} did not finish within {self.timeout_s:g} s")
        except Exception as exc:
            logger.exception("endpoint %s failed (request %s)", schema.name, info.request_id)
            return Outcome(None, 500, self.scrubber.text(describe(exc)))
        if self.scrubber:
            payload = json.dumps(self.scrubber.json(json.loads(payload))).encode()
        return Outcome(payload)

    async def _invoke(self, kwargs: dict[str, Any], info: RequestInfo) -> Any:
        if self.schema.is_async:
            return await asyncio.wait_for(self.schema.function(**kwargs), self.timeout_s)
        future = self.workers.submit(self.schema.function, kwargs)
        info.running.append(future)
        # On timeout wait_for cancels the wrapper, which cancels a call not yet started.
        return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)

    # -- the three routes ---------------------------------------------------------------------
    def parse(self, model: type[BaseModel], raw: bytes, info: RequestInfo) -> BaseModel | Answer:
        """The validated body, or the 422 answer (one error per field, like FastAPI's)."""
        try:
            return validate(model, raw)
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False)
        details = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]} for e in errors]
        info.status = 422
        info.error = "; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in details)
        return 422, json.dumps({"detail": details, "request_id": info.request_id}).encode()

    async def call(self, raw: bytes, info: RequestInfo) -> Answer:
        body = self.parse(self.schema.request, raw, info)
        if isinstance(body, tuple):
            return body
        outcome = await self.run(body, info)
        if outcome.payload is None:
            assert outcome.error is not None
            info.status, info.error = outcome.status, outcome.error
            return outcome.status, error_body(outcome.status, outcome.error, info.request_id)
        info.output = clip(outcome.payload.decode())
        return 200, outcome.payload

    async def batch(self, raw: bytes, info: RequestInfo) -> Answer:
        body = self.parse(self.batch_request, raw, info)
        if isinstance(body, tuple):
            return body
        slots = asyncio.Semaphore(self.batch_concurrency)

        async def one(each: BaseModel) -> Outcome:
            async with slots:
                return await self.run(each, info)

        outcomes = await asyncio.gather(*(one(each) for each in body.inputs))  # type: ignore[attr-defined]
        items = [
            b'{"output":' + o.payload + b',"error":null}'
            if o.payload is not None
            else b'{"output":null,"error":' + json.dumps(o.error).encode() + b"}"
            for o in outcomes
        ]
        failed = [(i, o.error) for i, o in enumerate(outcomes) if o.payload is None]
        if failed:
            first, why = failed[0]
            info.error = f"{len(failed)} of {len(outcomes)} items failed; item {first}: {why}"
        payload = b'{"outputs":[' + b",".join(items) + b"]}"
        info.output = clip(payload.decode())
        return 200, payload

    async def stream(
        self, body: BaseModel, info: RequestInfo, gone: asyncio.Future[Any] | None = None
    ) -> AsyncIterator[bytes]:
        """SSE: `chunk` events while the function runs, then its `result` (or an `error`);
        the work stops when the client goes away (the iterator is closed, or `gone` is done)."""
        loop = asyncio.get_running_loop()
        gone = gone or loop.create_future()
        pieces: asyncio.Queue[str] = asyncio.Queue()

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        async def work() -> Outcome:
            with _stream.streaming_to(on_text):
                return await self.run(body, info)

        def chunk(text: str) -> bytes:
            return _event("chunk", {"text": self.scrubber.text(text)})

        task = asyncio.ensure_future(work())
        try:
            while True:
                getter: asyncio.Future[str] = asyncio.ensure_future(pieces.get())
                waiting: set[asyncio.Future[Any]] = {getter, task, gone}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield chunk(getter.result())
                    continue
                getter.cancel()
                if gone in done:
                    return
                await asyncio.sleep(0)  # pieces sent just before the end
                while not pieces.empty():
                    yield chunk(pieces.get_nowait())
                outcome = task.result()
                if outcome.payload is None:
                    info.status, info.error = outcome.status, outcome.error
                    error = {"error": outcome.error, "status": outcome.status}
                    yield _event("error", {**error, "request_id": info.request_id})
                else:
                    info.output = clip(outcome.payload.decode())
                    yield b"event: result\ndata: " + outcome.payload + b"\n\n"
                return
        finally:
            if not task.done():  # the client went away: stop the work
                task.cancel()
            gone.cancel()


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
