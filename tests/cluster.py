"""A cluster in miniature on 127.0.0.1, for tests and benchmarks: an S3 endpoint (moto's
server mode, a real S3 protocol peer) and a Dask scheduler with workers, each its own process.

Each worker runs in its own empty folder: its own working directory, `HOME`, `AIKIT_HOME` and
`TMPDIR`, so it can only see what the runner ships to it. Everything is started with
`start_new_session=True` and stopped by process group (a worker's nanny and its kernels go
with it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
# Test credentials: moto accepts any; tests check they never land in the bucket.
AWS_KEY_ID = "AKIATESTCLUSTER0KEY42"
AWS_SECRET = "test-Secret/ab12+Never-In-A-Record-9f8e7d"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is not None:
        return
    with_group = True
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        with_group = False
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        if with_group:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


class S3Server:
    """`moto_server` on a free port of 127.0.0.1; `env` holds what a client needs."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Credentials and endpoint, the way a machine of a real cluster would have them."""
        return {
            "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,  # botocore/s3fs and LanceDB read this
            "AWS_ALLOW_HTTP": "true",  # LanceDB: the endpoint is plain http on loopback
        }

    def start(self) -> S3Server:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"moto_server exited: {self.log.read_text()}") from None
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint}")

    def filesystem(self) -> Any:
        """An s3fs filesystem on this endpoint (for the test's own checks)."""
        import s3fs  # type: ignore[import-untyped]

        return s3fs.S3FileSystem(
            key=AWS_KEY_ID,
            secret=AWS_SECRET,
            endpoint_url=self.endpoint,
            skip_instance_cache=True,
        )

    def bucket(self, name: str) -> str:
        """Create a bucket; returns its URL."""
        self.filesystem().mkdir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


class DaskCluster:
    """`dask scheduler` and `workers` × `dask worker` (1 thread each), separate processes."""

    def __init__(self, root: Path, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.n_workers = workers
        self.env = env or {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.worker_dirs = [root / f"worker-{i}" for i in range(workers)]

    def _spawn(self, args: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(
                    [str(BIN / "dask"), *args],
                    cwd=cwd,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def start(self) -> DaskCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        base = {**os.environ, **self.env}
        self._spawn(
            ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
            self.root,
            base,
            self.root / "scheduler.log",
        )
        for index, folder in enumerate(self.worker_dirs):
            for sub in ("cwd", "home", "aikit-home", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            env = base | {
                "HOME": str(folder / "home"),
                "AIKIT_HOME": str(folder / "aikit-home"),
                "TMPDIR": str(folder / "tmp"),
            }
            self._spawn(
                [
                    "worker",
                    self.address,
                    "--name",
                    f"worker-{index}",
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / "tmp"),
                ],
                folder / "cwd",
                env,
                folder / "worker.log",
            )
        from distributed import Client

        try:
            with Client(self.address, timeout="60s") as client:
                client.wait_for_workers(self.n_workers, timeout=120)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)
