"""The FastAPI app of `aikit api`: routes for each marked function, and a guard in front.

Routes per endpoint `name`: `POST /name` (one call), `POST /name/batch` (a list of inputs,
answered concurrently, in order, one result or error per item), `POST /name/stream`
(server-sent events: `chunk` events with the answer's text as the model produces it, then one
`result` or `error` event). Also `GET /healthz`, `GET /openapi.json` and `GET /docs` (Swagger
UI served from the package, no CDN).

The guard (pure ASGI, in front of FastAPI) gives every request an id (`X-Request-ID`), checks
the bearer token (constant-time), reads the body up to the size limit (413), admits at most
`concurrency` requests at once with `queue` more waiting (503 with `Retry-After` beyond), and
writes one row to the request log when the response is done. The function itself runs in a
thread (sync) or on the loop (async), bounded by the per-request timeout (504). A function that
raises answers 500 with a JSON error and the request id; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from aikit import _stream
from aikit.api import _guarding
from aikit.api._log import RequestLog, Row, clip, usage_of
from aikit.api._notebook import execute, resolve_secrets
from aikit.api._schema import Schema, build
from aikit.costs import Call, collect_calls

CONFIG_ENV = "AIKIT_API_CONFIG"
logger = logging.getLogger("aikit.api")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass
class Config:
    """Everything a server process needs (JSON-able: `--workers` hands it to each worker)."""

    notebook: str
    parameters: dict[str, Any] = field(default_factory=dict)
    token_env: str | None = None
    max_body: int = 1_048_576
    timeout_s: float = 60.0
    concurrency: int = 32
    queue: int = 64
    batch_concurrency: int = 8
    max_batch: int = 256
    guards: list[str] = field(default_factory=list)  # `--guard NAME`, on every endpoint

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Config:
        return cls(**json.loads(os.environ[CONFIG_ENV]))


@dataclass
class RequestInfo:
    """What the guard logs about one request; handlers fill in calls, input, output, error."""

    request_id: str
    endpoint: str
    kind: str
    started: float
    status: int = 0
    calls: list[Call] = field(default_factory=list)
    input: str | None = None
    output: str | None = None
    error: str | None = None
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # see aikit/api/_guarding.py


_current: ContextVar[RequestInfo | None] = ContextVar("aikit_api_request", default=None)


def _info() -> RequestInfo:
    info = _current.get()
    if info is None:  # a route reached without the guard (e.g. TestClient on the bare app)
        info = RequestInfo(uuid.uuid4().hex[:16], "", "call", time.perf_counter())
        _current.set(info)
    return info


def _error_body(status: int, message: str, request_id: str) -> bytes:
    return json.dumps({"error": message, "status": status, "request_id": request_id}).encode()


class ErrorBody(BaseModel):
    """Every error but 422: what went wrong, the HTTP status, the request id (for the log)."""

    error: str
    status: int
    request_id: str


class Guard:
    """Request ids, bearer token, body limit, admission (concurrency + queue), the log."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: dict[str, tuple[str, str]],
        fast: dict[str, Callable[[bytes], Awaitable[tuple[int, bytes]]]],
        config: Config,
        token: str | None,
        log: RequestLog,
    ) -> None:
        self.app, self.routes, self.config, self.log = app, routes, config, log
        self.fast = fast
        self.token = token.encode() if token else None
        self.inside = 0
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None:  # lifespan, /healthz, /docs, /openapi.json, 404s
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        info = RequestInfo(request_id, route[0], route[1], time.perf_counter())
        _current.set(info)
        stamp = time.time()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                info.status = info.status or int(message["status"])
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self._handle(scope, receive, send_with_id, headers, info)
        finally:
            self._write(info, stamp)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], info: Any
    ) -> None:
        if self.token is not None and not self._authorized(headers.get(b"authorization", b"")):
            await _respond(send, 401, "missing or wrong bearer token", info, bearer=True)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.config.max_body:
            await _respond(send, 413, self._too_large(), info)
            return
        if self.inside >= self.config.concurrency + self.config.queue:
            await _respond(send, 503, "server busy: concurrency limit and queue full", info)
            return
        self.inside += 1
        try:
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if len(body) > self.config.max_body:
                    await _respond(send, 413, self._too_large(), info)
                    return
                if not message.get("more_body", False):
                    break
            info.input = clip(body.decode("utf-8", "replace"))
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            if self._slots is None:
                self._slots = asyncio.Semaphore(self.config.concurrency)
            async with self._slots:
                fast = self.fast.get(scope["path"]) if scope.get("method") == "POST" else None
                if fast is None:
                    await self.app(scope, replay, send)
                    return
                status, payload = await fast(bytes(body))
                start = {"status": status, "headers": [(b"content-type", b"application/json")]}
                await send({"type": "http.response.start", **start})
                await send({"type": "http.response.body", "body": payload})
        finally:
            self.inside -= 1

    def _authorized(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        assert self.token is not None
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token)

    def _too_large(self) -> str:
        return f"request body over {self.config.max_body} bytes; send less (or raise --max-body)"

    def _write(self, info: RequestInfo, stamp: float) -> None:
        usage = usage_of(info.calls)
        self.log.write(
            Row(
                request_id=info.request_id,
                time=stamp,
                endpoint=info.endpoint,
                kind=info.kind,
                status=info.status or 499,  # 499: the client went away before an answer
                latency_s=round(time.perf_counter() - info.started, 6),
                model=usage["model"],
                calls=usage["calls"],
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
                cost_usd=usage["cost_usd"],
                cached=usage["cached"],
                error=self.log.scrub(info.error),
                input=self.log.scrub(_guarding.for_log(info.input, info.verdicts)),
                output=self.log.scrub(_guarding.for_log(info.output, info.verdicts)),
                worker=os.getpid(),
                guards=_guarding.log_column(info.verdicts),
            )
        )


async def _respond(
    send: Send, status: int, message: str, info: RequestInfo, *, bearer: bool = False
) -> None:
    info.status, info.error = status, message
    headers = [(b"content-type", b"application/json")]
    if bearer:
        headers.append((b"www-authenticate", b"Bearer"))
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send(
        {"type": "http.response.body", "body": _error_body(status, message, info.request_id)}
    )


# -- calling the function ----------------------------------------------------------------------
async def _invoke(schema: Schema, body: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    kwargs = {name: getattr(body, name) for name in type(body).model_fields}
    if schema.is_async:
        return await schema.function(**kwargs)
    return await run_in_threadpool(schema.function, **kwargs)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@_guarding.guarded(_info)  # guards=: the input set before, the output set after
async def _call(schema: Schema, body: Any, timeout: float) -> tuple[Any, int, str | None]:
    """(result, status, error) of one call; the calls it made go to the request's info."""
    try:
        with collect_calls() as calls:
            try:
                return await asyncio.wait_for(_invoke(schema, body), timeout), 200, None
            finally:
                _info().calls.extend(calls)
    except TimeoutError:
        return None, 504, f"{schema.name} did not finish within {timeout:g} s"
    except Exception as exc:
        logger.exception("endpoint %s failed (request %s)", schema.name, _info().request_id)
        return None, 500, _describe(exc)


def _invalid(errors: Any) -> bytes:
    """A 422 body like FastAPI's: one error per field, `loc` starting with "body"."""
    info = _info()
    details = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]} for e in errors]
    info.status = 422
    info.error = "; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in details)
    return json.dumps({"detail": details, "request_id": info.request_id}).encode()


def _routes(
    app: Any, schema: Schema, config: Config, auth: list[Any]
) -> Callable[[bytes], Awaitable[tuple[int, bytes]]]:
    """Add the three routes of `schema`; return the fast handler of `POST /name`."""
    from fastapi import Response
    from fastapi.responses import StreamingResponse
    from pydantic import Field, TypeAdapter, create_model

    guards = _guarding.for_endpoint(schema.function, config.guards)
    title = schema.request.__name__.removesuffix("Request")
    returns = type(None) if schema.response is None else schema.response
    output = TypeAdapter(returns)

    def render(result: Any) -> bytes:
        return output.dump_json(schema.to_response(result))

    errors = {
        code: {"description": text, "model": ErrorBody}
        for code, text in [
            (401, "missing or wrong bearer token"),
            (413, "request body too large"),
            (500, "the function raised"),
            (503, "busy: try again after Retry-After seconds"),
            (504, "the function did not finish in time"),
        ]
    }

    async def answer(body: BaseModel) -> tuple[int, bytes]:
        info = _info()
        result, status, error = await _call(schema, body, config.timeout_s, guards=guards)
        if error is not None:
            info.status, info.error = status, error
            return status, _error_body(status, error, info.request_id)
        payload = render(result)
        info.output = clip(payload.decode())
        return 200, payload

    async def fast(raw: bytes) -> tuple[int, bytes]:
        """`POST /name` without FastAPI's request machinery (the hot path; same answers)."""
        try:
            body = schema.request.model_validate_json(raw)
        except ValidationError as exc:
            return 422, _invalid(exc.errors(include_input=False, include_url=False))
        return await answer(body)

    async def call(body: BaseModel) -> Response:  # what /docs describes; `fast` answers
        status, payload = await answer(body)
        return Response(payload, status, media_type=JSON)

    maybe: Any = returns | None
    item = create_model(f"{title}BatchItem", output=(maybe, None), error=(str | None, None))
    inputs: Any = list[schema.request]  # type: ignore[name-defined]
    batch_in = create_model(f"{title}Batch", inputs=(inputs, Field(max_length=config.max_batch)))
    outputs: Any = list[item]  # type: ignore[valid-type]
    batch_out = create_model(f"{title}BatchResponse", outputs=(outputs, ...))

    async def batch(body: BaseModel) -> Response:
        info = _info()
        slots = asyncio.Semaphore(config.batch_concurrency)

        async def one(each: BaseModel) -> Any:
            async with slots:
                result, _, error = await _call(schema, each, config.timeout_s, guards=guards)
            if error is not None:
                return item(error=error)
            return item(output=schema.to_response(result))

        outputs = await asyncio.gather(*(one(each) for each in body.inputs))  # type: ignore[attr-defined]
        failed = [(i, o.error) for i, o in enumerate(outputs) if o.error is not None]
        if failed:
            first, why = failed[0]
            info.error = f"{len(failed)} of {len(outputs)} items failed; item {first}: {why}"
        payload = batch_out(outputs=outputs).model_dump_json().encode()
        info.output = clip(payload.decode())
        return Response(payload, media_type=JSON)

    async def stream(body: BaseModel) -> StreamingResponse:
        info = _info()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        async def work() -> tuple[Any, int, str | None]:
            with _stream.streaming_to(on_text):
                return await _call(schema, body, config.timeout_s, guards=guards)

        task = asyncio.ensure_future(work())
        return StreamingResponse(
            _guarding.cut(_events(task, pieces, info, render), guards, info),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    summary = (schema.doc.splitlines() or [schema.name])[0]
    common: dict[str, Any] = {"dependencies": auth, "responses": errors, "tags": [schema.name]}
    for path, handler, request, response, what in [
        (f"/{schema.name}", call, schema.request, schema.response, summary),
        (f"/{schema.name}/batch", batch, batch_in, batch_out, f"{schema.name}: many inputs"),
        (f"/{schema.name}/stream", stream, schema.request, None, f"{schema.name}: streamed (SSE)"),
    ]:
        handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=request)]
        )
        extra: dict[str, Any] = {}
        if response is None:
            extra["response_class"] = StreamingResponse
        app.add_api_route(
            path,
            handler,
            methods=["POST"],
            response_model=response,
            summary=what,
            description=schema.doc if handler is call else None,
            operation_id=f"{schema.name}_{handler.__name__}",
            **common,
            **extra,
        )
    return fast


JSON = "application/json"


async def _events(
    task: asyncio.Future[tuple[Any, int, str | None]],
    pieces: asyncio.Queue[str],
    info: RequestInfo,
    render: Callable[[Any], bytes],
) -> AsyncIterator[str]:
    """SSE: `chunk` events while the function runs, then its `result` (or an `error`)."""

    def event(name: str, data: Any) -> str:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n"

    try:
        while True:
            getter: asyncio.Future[Any] = asyncio.ensure_future(pieces.get())
            waiting: set[asyncio.Future[Any]] = {getter, task}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield event("chunk", {"text": getter.result()})
                continue
            getter.cancel()
            await asyncio.sleep(0)  # pieces sent just before the end
            while not pieces.empty():
                yield event("chunk", {"text": pieces.get_nowait()})
            result, status, error = task.result()
            if error is not None:
                info.status, info.error = status, error
                yield event(
                    "error", {"error": error, "status": status, "request_id": info.request_id}
                )
            else:
                payload = render(result).decode()
                info.output = clip(payload)
                yield f"event: result\ndata: {payload}\n\n"
            return
    finally:
        if not task.done():  # the client went away: stop the work
            task.cancel()


def create_app(config: Config) -> ASGIApp:
    """Execute the notebook and build the guarded app (what each server process runs)."""
    from fastapi import Depends, FastAPI, Request, Response
    from fastapi.exceptions import RequestValidationError
    from fastapi.security import HTTPBearer
    from fastapi_offline import FastAPIOffline

    from aikit.settings import get_settings

    notebook = Path(config.notebook)
    values, secrets = resolve_secrets(config.parameters)
    token = os.environ.get(config.token_env, "") if config.token_env else None
    schemas = [build(name, fn) for name, fn in execute(notebook, values).items()]
    log = RequestLog(get_settings().home, [*secrets, token or ""])

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(40, config.concurrency + config.batch_concurrency)
        yield
        log.close()

    app: FastAPI = FastAPIOffline(
        title=f"aikit api: {notebook.stem}",
        description=f"The marked functions of `{notebook.name}`, served by `aikit api`.",
        version="1",
        lifespan=lifespan,
    )
    auth = [Depends(HTTPBearer(auto_error=False))] if token is not None else []

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        body = _invalid([{**e, "loc": tuple(e["loc"])[1:]} for e in exc.errors()])
        return Response(body, 422, media_type=JSON)

    @app.get("/healthz", tags=["server"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "endpoints": [s.name for s in schemas], "worker": os.getpid()}

    routes: dict[str, tuple[str, str]] = {}
    fast: dict[str, Callable[[bytes], Awaitable[tuple[int, bytes]]]] = {}
    for schema in schemas:
        fast[f"/{schema.name}"] = _routes(app, schema, config, auth)
        routes[f"/{schema.name}"] = (schema.name, "call")
        routes[f"/{schema.name}/batch"] = (schema.name, "batch")
        routes[f"/{schema.name}/stream"] = (schema.name, "stream")
    guarded = Guard(app, routes=routes, fast=fast, config=config, token=token, log=log)
    guarded.fastapi = app  # type: ignore[attr-defined]
    return guarded


def app_from_env() -> ASGIApp:
    """The uvicorn factory each `--workers` process calls (`CONFIG_ENV` holds the config)."""
    return create_app(Config.from_env())
