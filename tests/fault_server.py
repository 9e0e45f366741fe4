"""A fault-injecting OpenAI-compatible server on 127.0.0.1, for batch tests and benchmarks.

A raw asyncio HTTP/1.1 server (keep-alive), so it serves many slow requests at once. Each
`POST /v1/chat/completions` attempt draws one outcome, with the probabilities in `Faults`:

- `rate_limit`: 429 with `Retry-After: <retry_after>` (seconds, fractional);
- `server_error`: 500 (with `Retry-After` too when `error_retry_after` is set, like a 503);
- `slow`: no answer for `slow_s`, longer than the client's timeout, then the connection closes;
  never counted as served;
- `truncate`: headers promise the whole body, half of it comes, then the connection closes;
- otherwise, after `latency` seconds: a completion, "echo: <last user message>" (the prefix is
  `echo_prefix`; with `fill_max_tokens` its usage says it used all of `max_tokens`), counted in
  `completions` (what a provider would bill).

`burst=(first, count)` answers attempts `first .. first + count - 1` (in arrival order) with 429
whatever the draw; `hold_after=n` holds every request after the n-th completion unanswered
until `release()`, which then drops them. `log` has one `Attempt` per request.

Run as a script (`python tests/fault_server.py --latency 0.2`) it prints its base URL on the
first line and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

MODEL = "test-model"
REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class Faults:
    """What the server does to each attempt (probabilities are per attempt)."""

    rate_limit: float = 0.0
    retry_after: float = 0.05
    server_error: float = 0.0
    error_retry_after: float | None = None
    slow: float = 0.0
    slow_s: float = 2.0
    truncate: float = 0.0
    latency: float = 0.0
    burst: tuple[int, int] | None = None
    hold_after: int | None = None
    fill_max_tokens: bool = False
    echo_prefix: str = "echo: "
    seed: int = 0


@dataclass
class Attempt:
    """One request as the server saw it."""

    number: int
    time: float
    prompt: str
    in_flight: int
    outcome: str = "pending"


class FaultServer:
    """The server, on its own event-loop thread; counters are read from any thread."""

    def __init__(self, faults: Faults | None = None, port: int = 0) -> None:
        self.faults = faults or Faults()
        self.port = port
        self.completions = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.in_flight = 0
        self.held = 0
        self._promised = 0  # successful answers decided on, some still being written
        self.log: list[Attempt] = []
        self._random = random.Random(self.faults.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._release: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def attempts(self) -> int:
        return len(self.log)

    def count(self, outcome: str) -> int:
        """How many attempts ended with `outcome` (200, 429, 500, slow, truncated, held)."""
        return sum(1 for a in list(self.log) if a.outcome == outcome)

    # -- lifecycle --------------------------------------------------------------------------
    async def serve(self, ready: threading.Event | None = None) -> None:
        """Serve on the running loop until cancelled; sets `ready` once the port is bound."""
        self._loop = asyncio.get_running_loop()
        self._release = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        async with self._server:
            await self._server.serve_forever()

    def start(self) -> FaultServer:
        """Serve on a daemon thread; returns once the port is bound."""
        ready = threading.Event()

        def run() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                asyncio.run(self.serve(ready))

        self._thread = threading.Thread(target=run, name="fault-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault server did not start")
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def cancel_all() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()

        loop.call_soon_threadsafe(cancel_all)
        if self._thread is not None:
            self._thread.join(10)

    def release(self) -> None:
        """Drop the requests held by `hold_after` (unanswered) and stop holding."""
        self.faults.hold_after = None
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    # -- HTTP -------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)
                }
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                keep = await self._handle(method, path, body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # the client went away, or the server is stopping
        finally:
            writer.close()

    @staticmethod
    def _response(status: int, payload: Any, extra: dict[str, str] | None = None) -> bytes:
        body = json.dumps(payload).encode()
        head = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in (extra or {}).items()),
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def _handle(
        self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must close."""
        if method == "GET" and path.rstrip("/").endswith("/models"):
            data = [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}]
            writer.write(self._response(200, {"object": "list", "data": data}))
            await writer.drain()
            return True
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            writer.write(self._response(404, {"error": {"message": f"no route {path}"}}))
            await writer.drain()
            return True
        request = json.loads(body or b"{}")
        users = [m for m in request.get("messages", []) if m.get("role") == "user"]
        prompt = str(users[-1].get("content", "")) if users else ""
        self.in_flight += 1
        attempt = Attempt(len(self.log), time.monotonic(), prompt, self.in_flight)
        self.log.append(attempt)
        try:
            return await self._answer(request, prompt, attempt, writer)
        finally:
            self.in_flight -= 1

    async def _answer(
        self, request: dict[str, Any], prompt: str, attempt: Attempt, writer: asyncio.StreamWriter
    ) -> bool:
        f = self.faults
        if f.hold_after is not None and self._promised >= f.hold_after:
            attempt.outcome = "held"
            self.held += 1
            assert self._release is not None
            await self._release.wait()
            return False
        draw = self._random.random()
        in_burst = f.burst is not None and f.burst[0] <= attempt.number < f.burst[0] + f.burst[1]
        if in_burst or draw < f.rate_limit:
            attempt.outcome = "429"
            error = {"message": "Rate limit reached; retry later", "type": "rate_limit_error"}
            writer.write(self._response(429, {"error": error}, {"Retry-After": f"{f.retry_after}"}))
            await writer.drain()
            return True
        draw -= f.rate_limit
        if draw < f.server_error:
            attempt.outcome = "500"
            extra = {} if f.error_retry_after is None else {"Retry-After": f"{f.error_retry_after}"}
            error = {"message": "injected server error", "type": "server_error"}
            writer.write(self._response(500, {"error": error}, extra))
            await writer.drain()
            return True
        draw -= f.server_error
        payload = self._completion(request, prompt)
        if draw < f.slow:
            attempt.outcome = "slow"
            # The client has timed out by now. Nothing is sent: on a loaded machine a late answer
            # could still be read before the client's timeout fires, and be used but not counted.
            await asyncio.sleep(f.slow_s)
            return False
        draw -= f.slow
        if draw < f.truncate:
            attempt.outcome = "truncated"
            whole = self._response(200, payload)
            writer.write(whole[: len(whole) - len(json.dumps(payload)) // 2])
            await writer.drain()
            return False
        self._promised += 1
        if f.latency:
            await asyncio.sleep(f.latency)
        # Counted (billed) before the bytes go out: a client that has read them may finish its
        # batch, and the test read the counters, while this coroutine still waits in drain().
        attempt.outcome = "200"
        self.completions += 1
        usage = payload["usage"]
        self.prompt_tokens += usage["prompt_tokens"]
        self.completion_tokens += usage["completion_tokens"]
        writer.write(self._response(200, payload))
        await writer.drain()
        return True

    def _completion(self, request: dict[str, Any], prompt: str) -> dict[str, Any]:
        text = f"{self.faults.echo_prefix}{prompt}"
        prompt_words = sum(
            len(str(m.get("content", "")).split()) for m in request.get("messages", [])
        )
        completion = len(text.split())
        if self.faults.fill_max_tokens and request.get("max_tokens"):
            completion = int(request["max_tokens"])
        return {
            "id": f"chatcmpl-{len(self.log)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", MODEL),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": completion,
                "total_tokens": prompt_words + completion,
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    for field in fields(Faults):
        if field.name in ("burst", "fill_max_tokens", "echo_prefix"):
            continue
        kind = int if field.name in ("seed", "hold_after") else float
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=field.default)
    args = vars(parser.parse_args())
    port = args.pop("port")
    server = FaultServer(Faults(**args), port=port)

    async def run() -> None:
        ready = threading.Event()
        task = asyncio.create_task(server.serve(ready))
        while not ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        print(server.base_url, flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
