"""`aikit.api.serving(NOTEBOOK)`: serve a notebook with `aikit api` and talk to it.

    with aikit.api.serving("02_rag.ipynb", token=secrets.token_urlsafe(24)) as api:
        api.post("/ask", json={"question": "..."}).json()
        for event, data in api.stream("ask", question="..."):
            ...

The server runs in a subprocess on a free port of 127.0.0.1 (the same `aikit api` a user
starts), with this process's environment; the block starts once `/healthz` answers and the
server is stopped when it ends (SIGTERM, so the last log rows are written).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from aikit.errors import ApiError

if TYPE_CHECKING:
    import httpx
    import pandas as pd

TOKEN_ENV = "AIKIT_API_TOKEN"


class Event(NamedTuple):
    """One server-sent event: its name (`chunk`, `result`, `error`) and its parsed data."""

    name: str
    data: Any


def events(response: httpx.Response) -> Iterator[Event]:
    """The server-sent events of a streamed response, as they arrive."""
    name = "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            yield Event(name, json.loads(line[len("data: ") :]))


class ApiClient:
    """An httpx client on a running `aikit api` (with its bearer token, if any)."""

    def __init__(
        self,
        url: str,
        process: subprocess.Popen[bytes],
        home: Path,
        output: Any,
        token: str | None = None,
        timeout: float = 120,
        log: str | None = None,
    ) -> None:
        import httpx

        self.url, self.process, self.home, self._output = url, process, home, output
        self.log = log  # the server's AIKIT_REQUEST_LOG (None: SQLite under `home`)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, **kwargs)

    def stream(self, name: str, /, **inputs: Any) -> Iterator[Event]:
        """`POST /name/stream` with `inputs`: its events as they arrive (chunk..., then
        result or error)."""
        with self.http.stream("POST", f"/{name}/stream", json=inputs) as response:
            if response.status_code != 200:
                response.read()
                raise ApiError(
                    f"POST /{name}/stream answered {response.status_code}: {response.text}"
                )
            yield from events(response)

    def requests(self, **kwargs: Any) -> pd.DataFrame:
        """The server's request log (`aikit.requests(home=...)` of its `AIKIT_HOME`, or of its
        `AIKIT_REQUEST_LOG`)."""
        from aikit.api._log import requests

        return requests(home=self.home, log=self.log, **kwargs)

    def scores(self, **kwargs: Any) -> pd.DataFrame:
        """The server's live scores (`aikit.api.scores`)."""
        from aikit.api._log import scores

        return scores(home=self.home, log=self.log, **kwargs)

    def output(self) -> str:
        """What the server has printed so far (stdout and stderr)."""
        self._output.seek(0)
        return str(self._output.read())

    def stop(self) -> None:
        """Stop the server (it writes its last log rows) and close the client."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    notebook: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    workers: int = 1,
    token: str | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    startup_timeout_s: float = 120.0,
) -> Iterator[ApiClient]:
    """Serve `notebook` with `aikit api` on a free port of 127.0.0.1; yield a client on it.

    Args:
        notebook: the notebook whose `@aikit.endpoint` functions to serve.
        parameters: its parameters (`-p NAME VALUE`; `secret:NAME` reads the environment).
        workers: server processes (`--workers`).
        token: require this bearer token (the client sends it; it reaches the server in an
            environment variable, never on its command line).
        args: more `aikit api` options, e.g. `["--timeout", "5"]`.
        env: environment variables for the server on top of this process's.
        cwd: the server's working directory.
        startup_timeout_s: how long the notebook may take to execute before `/healthz` answers.

    Raises:
        ApiError: the server did not start (the message ends with what it printed).
    """
    import httpx

    port = free_port()
    where = str(Path(notebook).resolve())  # relative to this process, not to `cwd`
    command = [sys.executable, "-m", "aikit.cli", "api", where, "--port", str(port)]
    for name, value in (parameters or {}).items():
        command += ["-p", name, value if isinstance(value, str) else json.dumps(value)]
    if workers != 1:
        command += ["--workers", str(workers)]
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if token is not None:
        command += ["--token-env", TOKEN_ENV]
        environ[TOKEN_ENV] = token
    command += list(args)
    home = Path(environ.get("AIKIT_HOME") or _default_home())
    output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (open while the server runs)
    process = subprocess.Popen(
        command, env=environ, cwd=cwd, stdout=output, stderr=subprocess.STDOUT
    )
    log = environ.get("AIKIT_REQUEST_LOG") or None
    client = ApiClient(f"http://127.0.0.1:{port}", process, home, output, token, log=log)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                if client.get("/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                said = client.output().strip().splitlines()
                raise ApiError(
                    f"aikit api {notebook} did not start"
                    f" ({'exited' if process.poll() is not None else 'timed out'}):"
                    f" {said[-1] if said else 'no output'}"
                )
            time.sleep(0.2)
        yield client
    finally:
        client.stop()
        output.close()


def _default_home() -> Path:
    from aikit.settings import get_settings

    return get_settings().home
