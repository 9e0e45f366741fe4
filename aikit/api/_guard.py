"""The guard: pure ASGI middleware in front of the FastAPI app of `aikit api`.

For each request to an endpoint's route, in order: a request id (`X-Request-ID`, the client's
if valid), `POST` only (405), one `Authorization` header at most (400), a `Host` that names
this server (421: DNS rebinding) and no foreign `Origin` (403: cross-site requests), the
bearer token (401, constant-time), `Content-Type: application/json` (415: a cross-site form
or `text/plain` POST cannot run a function), the body read within `body_timeout_s` (408) and
up to `max_body` bytes (413), by at most `readers` clients at once (503); then admission: at
most `concurrency` requests run with `queue` more waiting (503 with `Retry-After` beyond). An
admitted request gets its log row at once (status 0), goes on to FastAPI with its record and
body in the ASGI scope (`_routes.py` routes it to `Endpoint`), and its row is completed when
it ends. Other paths (`/healthz`, `/docs`, `/openapi.json`, 404s) go to FastAPI after the
`Host` check.

One path, FastAPI's: `benchmarks/api.py` measured a plain FastAPI route and the guard's own
fast path side by side at the same p50 overhead (about 0.9 ms on 2 busy cores, budget 2 ms),
so the second path was not worth keeping.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import trace

from aikit.api import _guarding
from aikit.api._calls import Endpoint, RequestInfo, error_body
from aikit.api._config import Config
from aikit.api._log import IN_FLIGHT, RequestLog, Row, clip, usage_of
from aikit.api._routes import BODY_KEY, INFO_KEY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_WILDCARD = frozenset({"0.0.0.0", "::", ""})
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def hostname(host: str) -> str:
    """The name part of a `Host` header or netloc (`[::1]:8000` -> `::1`), lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(config: Config, loopback: bool) -> frozenset[str] | None:
    """The host names a request may address (None: any, for a wildcard bind without
    `--allow-host`)."""
    names = {hostname(h) for h in config.allow_hosts}
    if config.host in _WILDCARD:
        return frozenset(names) if names else None
    names.add(hostname(config.host))
    if loopback:
        names |= _LOOPBACK_NAMES
    return frozenset(names)


class Guard:
    """Request ids, host and origin, bearer token, content type, body, admission, the log."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        endpoints: dict[str, Endpoint],
        config: Config,
        token: str | None,
        log: RequestLog,
        hosts: frozenset[str] | None,
        scoring: Any = None,
    ) -> None:
        self.app, self.config, self.log, self.hosts = app, config, log, hosts
        self.scoring = scoring  # aikit.api._scoring.LiveScoring, when an endpoint is scored
        self.machine = socket.gethostname()
        self.routes: dict[str, tuple[Endpoint, str]] = {}
        for name, endpoint in endpoints.items():
            for kind, path in (("call", ""), ("batch", "/batch"), ("stream", "/stream")):
                self.routes[f"/{name}{path}"] = (endpoint, kind)
        self.token = token.encode() if token else None
        self.origins = frozenset(o.rstrip("/").lower() for o in config.allow_origins)
        self.inside = 0  # admitted and not yet done (running or waiting for a slot)
        self.reading = 0  # bodies being read
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        route = self.routes.get(scope.get("path", ""))
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        if route is None:
            if self._host_refused(headers):
                info = RequestInfo(uuid.uuid4().hex[:16], "", "", time.perf_counter())
                await self._answer(send, info, 421, self._host_message(headers))
                return
            await self.app(scope, receive, send)
            return
        endpoint, kind = route
        given = _header(headers, b"x-request-id").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        info = RequestInfo(request_id, endpoint.schema.name, kind, time.perf_counter())
        info.span_context = trace.get_current_span().get_span_context()  # the request's trace
        row_id, stamp = uuid.uuid4().hex, time.time()
        try:
            await self._handle(scope, receive, send, headers, endpoint, info, row_id, stamp)
        finally:
            self._write(info, row_id, stamp, final=True)
            if info.results and self.scoring is not None:  # the answer has gone out
                self._score(endpoint, info, row_id)

    def _score(self, endpoint: Endpoint, info: RequestInfo, row_id: str) -> None:
        """Hand the answered request to the live scorers (never waited for)."""
        from aikit.api._scoring import Job, sampled

        chosen = [s for s in endpoint.scorers if sampled(row_id, s.name, s.rate)]
        if chosen:
            model = usage_of(info.calls)["model"]
            job = Job(row_id, info.request_id, info.endpoint, model, info.results, chosen)
            job.span_context = info.span_context
            self.scoring.submit(job)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        endpoint: Endpoint,
        info: RequestInfo,
        row_id: str,
        stamp: float,
    ) -> None:
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, message, extra = refusal
            await self._answer(send, info, status, message, extra)
            return
        declared = _header(headers, b"content-length")
        if declared.isdigit() and int(declared) > self.config.max_body:
            await self._answer(send, info, 413, self._too_large())
            return
        if self.reading >= self.config.readers:
            await self._answer(send, info, 503, "server busy: too many bodies being read")
            return
        self.reading += 1
        try:
            body = await self._body(receive)
        finally:
            self.reading -= 1
        if isinstance(body, tuple):
            if body[0]:  # 0: the client went away
                await self._answer(send, info, body[0], body[1])
            return
        info.input = clip(body.decode("utf-8", "replace"))
        if self.inside >= self.config.concurrency + self.config.queue:
            await self._answer(send, info, 503, "server busy: concurrency limit and queue full")
            return
        self.inside += 1
        self._write(info, row_id, stamp)  # admitted: the row says so until it is completed
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.concurrency)
        try:
            await self._slots.acquire()
        except BaseException:
            self.inside -= 1
            raise
        try:
            routed = {**scope, INFO_KEY: info, BODY_KEY: body}  # the route's handler reads them
            await self.app(routed, _replay(body, receive), self._with_id(send, info))
        finally:
            self._release(info)

    def _refusal(
        self, scope: Scope, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """Why the request is refused before its body is read (status, message, headers)."""
        if scope.get("method") != "POST":
            return (
                405,
                f"{scope.get('method')} is not allowed here; send POST",
                [(b"allow", b"POST")],
            )
        if sum(1 for k, _ in headers if k == b"authorization") > 1:
            return 400, "more than one Authorization header; send one", []
        if self._host_refused(headers):
            return 421, self._host_message(headers), []
        origin = _header(headers, b"origin").decode("latin-1").rstrip("/").lower()
        if origin and not self._same_origin(origin, headers) and origin not in self.origins:
            return (
                403,
                f"Origin {origin!r} may not call this API; start `aikit api` with"
                f" --allow-origin {origin} to allow it",
                [],
            )
        if self.token is not None and not self._authorized(_header(headers, b"authorization")):
            return 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")]
        media = _header(headers, b"content-type").split(b";", 1)[0].strip().lower()
        if media != b"application/json":
            shown = media.decode("latin-1") or "none"
            return 415, f"Content-Type {shown} is not accepted; send application/json", []
        return None

    def _host_refused(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.hosts is None:
            return False
        return hostname(_header(headers, b"host").decode("latin-1")) not in self.hosts

    def _host_message(self, headers: list[tuple[bytes, bytes]]) -> str:
        host = _header(headers, b"host").decode("latin-1")
        return (
            f"Host {host!r} is not this server; address it as {self.config.host}, or start"
            f" `aikit api` with --allow-host {hostname(host) or 'NAME'}"
        )

    def _same_origin(self, origin: str, headers: list[tuple[bytes, bytes]]) -> bool:
        scheme, _, netloc = origin.partition("://")
        host = _header(headers, b"host").decode("latin-1").lower()
        return scheme in ("http", "https") and netloc == host

    async def _body(self, receive: Receive) -> bytes | tuple[int, str]:
        """The whole body, or (status, why) when it is too slow (408), too large (413) or
        the client went away (0)."""
        body = bytearray()
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return 0, "the client went away"
                    body += message.get("body", b"")
                    if len(body) > self.config.max_body:
                        return 413, self._too_large()
                    if not message.get("more_body", False):
                        return bytes(body)
        except TimeoutError:
            return 408, (
                f"the request body did not arrive within {self.config.body_timeout_s:g} s;"
                " send it at once (or raise --body-timeout)"
            )

    def _release(self, info: RequestInfo) -> None:
        """Free the request's slot once every thread running its function has stopped."""
        pending = [f for f in info.running if not f.done()]
        if not pending:
            self._free()
            return
        loop = asyncio.get_running_loop()
        left = len(pending)

        def one_done() -> None:
            nonlocal left
            left -= 1
            if left == 0:
                self._free()

        for future in pending:
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(one_done))

    def _free(self) -> None:
        self.inside -= 1
        assert self._slots is not None
        self._slots.release()

    def _authorized(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        assert self.token is not None
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token)

    def _too_large(self) -> str:
        return f"request body over {self.config.max_body} bytes; send less (or raise --max-body)"

    def _ids(
        self, info: RequestInfo, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        return [*headers, (b"x-request-id", info.request_id.encode())]

    def _with_id(self, send: Send, info: RequestInfo) -> Send:
        """`send` that adds the request id to the response and notes its status."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                info.status = info.status or int(message["status"])
                message["headers"] = self._ids(info, list(message.get("headers", [])))
            await send(message)

        return sending

    async def _answer(
        self,
        send: Send,
        info: RequestInfo,
        status: int,
        message: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        info.status, info.error = status, message
        headers = self._ids(info, [(b"content-type", b"application/json"), *(extra or [])])
        if status == 503:
            headers.append((b"retry-after", b"1"))
        body = error_body(status, message, info.request_id)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _write(self, info: RequestInfo, row_id: str, stamp: float, *, final: bool = False) -> None:
        """The request's row: in flight (status 0) when admitted, complete when it ends (499:
        the client went away before an answer)."""
        usage = usage_of(info.calls)
        self.log.write(
            Row(
                row_id=row_id,
                request_id=info.request_id,
                time=stamp,
                endpoint=info.endpoint,
                kind=info.kind,
                status=(info.status or 499) if final else 0,
                latency_s=round(time.perf_counter() - info.started, 6),
                model=usage["model"],
                calls=usage["calls"],
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
                cost_usd=usage["cost_usd"],
                cached=usage["cached"],
                error=info.error if final else IN_FLIGHT,
                input=_guarding.for_log(info.input, info.verdicts),
                output=_guarding.for_log(info.output, info.verdicts),
                worker=os.getpid(),
                guards=_guarding.log_column(info.verdicts),
                trace_id=_trace_id(info.span_context),
                host=self.machine,
            )
        )


def _trace_id(context: Any) -> str | None:
    """The W3C trace id (32 hex digits) of a valid span context, else None."""
    if context is None or not context.is_valid:
        return None
    return f"{context.trace_id:032x}"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key == name:
            return value
    return b""


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives the body the guard has read, then what the client sends next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
