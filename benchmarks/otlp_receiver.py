"""A local OTLP receiver for the benchmarks' "tracing on" rows: Arize Phoenix's server on free
ports of 127.0.0.1, in a temporary working folder, offline (`pip install 'aikit[phoenix]'`).

    with phoenix() as endpoint:   # None when Phoenix is not installed
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def phoenix(startup_timeout_s: float = 300) -> Iterator[str | None]:
    """Phoenix's OTLP/HTTP traces endpoint while the block runs (None if not installed)."""
    if importlib.util.find_spec("phoenix") is None:
        yield None
        return
    import httpx

    with tempfile.TemporaryDirectory(prefix="aikit-bench-phoenix-") as folder:
        port = _free_port()
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": folder,
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(_free_port()),
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }
        with (Path(folder) / "phoenix.log").open("w") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "phoenix"), "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + startup_timeout_s
                while True:
                    try:
                        if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if process.poll() is not None or time.monotonic() > deadline:
                        sys.exit(
                            "phoenix did not start: "
                            + (Path(folder) / "phoenix.log").read_text()[-2000:]
                        )
                    time.sleep(0.5)
                yield f"{url}/v1/traces"
            finally:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def spans_received(endpoint: str, settle_s: float = 60) -> int:
    """How many spans the receiver at `endpoint` holds (its default project), once the count
    stops growing (it writes what it receives in batches, later under load)."""
    deadline, last = time.monotonic() + settle_s, -1
    while True:
        count = _count(endpoint)
        if (count == last and count > 0) or time.monotonic() > deadline:
            return count
        last = count
        time.sleep(2)


def _count(endpoint: str) -> int:
    import httpx

    url = endpoint.removesuffix("/v1/traces")
    count, cursor = 0, None
    while True:
        params: dict[str, str | int] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        body = httpx.get(f"{url}/v1/projects/default/spans", params=params, timeout=60).json()
        count += len(body["data"])
        cursor = body.get("next_cursor")
        if not cursor:
            return count
