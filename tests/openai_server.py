"""A small OpenAI-compatible server for tests, on 127.0.0.1.

It answers `GET /v1/models` and `POST /v1/chat/completions` (also with `stream=True`, one
server-sent event per word) like the real API, records every
request (body and headers), and replies from a queue (`enqueue`) or, by default, with
"echo: <last user message>". A queued `{"status": 500}` answers with that HTTP error.
`POST /v1/embeddings` answers with deterministic `fake_embedding` vectors.
It counts the chat requests in flight (`in_flight`, `peak_in_flight`); `delay` makes each
answer take that long, `serial` answers one request at a time (as llama.cpp's server does:
the others wait in line), `hang` answers nothing until `stop()`.
Run it as a script (`python tests/openai_server.py`) to get a server in another process; it
prints its base URL on the first line and serves until killed.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "test-model"
EMBEDDING_DIM = 16


class Handler(BaseHTTPRequestHandler):
    server: OpenAIServer

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._leave()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}],
                },
            )
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/").endswith("/embeddings"):
            self._embeddings(request)
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        self.server.record(request, {k.lower(): v for k, v in self.headers.items()})
        with self.server.lock:
            self.server.in_flight += 1
            self.server.peak_in_flight = max(self.server.peak_in_flight, self.server.in_flight)
        self.inside = True
        try:
            if self.server.hang:
                self.server.stopped.wait(600)
                return
            with self.server.line if self.server.serial else contextlib.nullcontext():
                if self.server.delay:
                    time.sleep(self.server.delay)
                self._complete(request)
        finally:
            self._leave()

    def _leave(self) -> None:
        """The request stops counting as in flight, once: just before its last bytes are
        written, since a client that has them may send its next request before this thread
        runs again (counting after the write let a busy machine see one request too many)."""
        if getattr(self, "inside", False):
            self.inside = False
            with self.server.lock:
                self.server.in_flight -= 1

    def _complete(self, request: dict[str, Any]) -> None:
        reply = self.server.next_reply(request)
        if isinstance(reply, dict) and "status" in reply:
            self._send(
                int(reply["status"]),
                {"error": {"message": reply.get("message", "injected"), "type": "server_error"}},
            )
            return
        text = str(reply)
        prompt_words = sum(
            len(str(m.get("content", "")).split()) for m in request.get("messages", [])
        )
        with self.server.lock:
            self.server.completions += 1
            number = self.server.completions
        if request.get("stream"):
            self._stream(request, number, text, prompt_words)
            return
        self._send(
            200,
            {
                "id": f"chatcmpl-{number}",
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
                    "completion_tokens": len(text.split()),
                    "total_tokens": prompt_words + len(text.split()),
                },
            },
        )

    def _stream(self, request: dict[str, Any], number: int, text: str, prompt_words: int) -> None:
        """`stream=True`: server-sent events, one chunk per word, then the usage when asked."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model", MODEL),
        }
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            self.wfile.write(f"data: {json.dumps(base | {'choices': [delta]})}\n\n".encode())
            self.wfile.flush()
            time.sleep(self.server.stream_delay)
        end = {"index": 0, "delta": {}, "finish_reason": "stop"}
        self.wfile.write(f"data: {json.dumps(base | {'choices': [end]})}\n\n".encode())
        if self.server.stream_usage and (request.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": prompt_words,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_words + len(text.split()),
            }
            self.wfile.write(
                f"data: {json.dumps(base | {'choices': [], 'usage': usage})}\n\n".encode()
            )
        self._leave()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _embeddings(self, request: dict[str, Any]) -> None:
        self.server.record(request, {k.lower(): v for k, v in self.headers.items()})
        texts = request.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        data = [
            {"object": "embedding", "index": i, "embedding": fake_embedding(str(t))}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(str(t).split()) for t in texts)
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": request.get("model", MODEL),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def fake_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic bag-of-words vector: each word adds 1 at a position its hash picks."""
    vector = [0.0] * dim
    for word in text.lower().split():
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dim] += 1.0
    return vector


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.queue: collections.deque[Any] = collections.deque()
        self.completions = 0
        self.stream_delay = 0.0  # seconds between streamed words
        self.stream_usage = True  # False: like llama.cpp's server, never send a stream's usage
        self.in_flight = 0  # chat requests being answered or waiting in `serial`'s line
        self.peak_in_flight = 0
        self.delay = 0.0  # seconds each chat answer takes
        self.serial = False  # one answer at a time; the other requests wait in line
        self.hang = False  # answer no chat request until stop()
        self.line = threading.Lock()
        self.stopped = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def enqueue(self, *replies: Any) -> None:
        """Replies for the next requests, in order: text, or {"status": code}."""
        with self.lock:
            self.queue.extend(replies)

    def record(self, request: dict[str, Any], headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)

    def next_reply(self, request: dict[str, Any]) -> Any:
        with self.lock:
            if self.queue:
                return self.queue.popleft()
        users = [m for m in request.get("messages", []) if m.get("role") == "user"]
        return f"echo: {users[-1]['content'] if users else ''}"

    def start(self) -> OpenAIServer:
        threading.Thread(target=self.serve_forever, name="openai-test-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.shutdown()
        self.server_close()


if __name__ == "__main__":
    server = OpenAIServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(server.base_url, flush=True)
    server.serve_forever()
