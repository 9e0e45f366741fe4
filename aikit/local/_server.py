"""The embedded model's server lifecycle: one llama.cpp OpenAI-compatible server on 127.0.0.1
per `AIKIT_HOME`.

`ensure_server()` returns the base URL of a running server, starting one when none answers.
A discovery file (`$AIKIT_HOME/local-server.json`) lets every kernel and process reuse it, and
a file lock makes sure two callers racing at start-up start only one. The server runs in its own
session, so it outlives the kernel that started it; `stop_server()` (`aikit serve --stop`)
ends it. Its log is `$AIKIT_HOME/local-server.log`.

Identity (robust, issue 15): the server is started with a random token (`AIKIT_SERVER_TOKEN`
in its environment, also written to the discovery file) and sends it back in the
`x-aikit-server-token` header of every answer. A server that answers without our token (another
program now on that port) is not used. A recorded server whose process is stopped (SIGSTOP,
state `T` in /proc) is reported in seconds instead of being waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import openai
from filelock import FileLock, Timeout

from aikit._clients import sync_client
from aikit.errors import LocalModelError
from aikit.local._models import INSTALL_HINT, MODELS, get_model
from aikit.settings import DEFAULT_MODELS, Settings, get_settings

CHAT_MODEL = DEFAULT_MODELS["local"]  # the name clients send for the embedded chat model
API_KEY = "aikit-local-no-key"  # the embedded server needs no key; the SDK needs a value
DISCOVERY = "local-server.json"
LOCK = "local-server.lock"
LOG = "local-server.log"
START_TIMEOUT_S = 180.0
BUSY_WAIT_S = 120.0
PROBE_TIMEOUT_S = 3.0  # as before; a stopped server is found by its state, not a timeout
TOKEN_ENV = "AIKIT_SERVER_TOKEN"
STATUS_PATH = "/aikit/status"  # the server's idle time (aikit.local._process.IdleWatch)
TOKEN_HEADER = "x-aikit-server-token"


def model_path(model: str = CHAT_MODEL) -> Path:
    """The GGUF file of an embedded model (default Gemma 3 270M), from its installed package."""
    return get_model(model).path()


def served_models() -> list[str]:
    """The embedded models the server loads: the default, and every other one installed."""
    names = []
    for name, spec in MODELS.items():
        try:
            spec.path()
        except LocalModelError:
            if name == CHAT_MODEL:
                raise
            continue
        names.append(name)
    return names


def _paths(settings: Settings) -> tuple[Path, Path, Path]:
    home = settings.home
    return home / DISCOVERY, home / LOCK, home / LOG


# Discovery files whose server answered with its token, by path: (file's mtime_ns, record).
# Every call asks `server_info`; probing over HTTP each time cost ~50 ms of a 0.5 s answer, so a
# server seen once is trusted while its discovery file is unchanged and its process lives.
_verified: dict[Path, tuple[int, dict[str, Any]]] = {}


def server_info(settings: Settings | None = None) -> dict[str, Any] | None:
    """The discovery record of a server that answers now, else None."""
    settings = settings or get_settings()
    discovery, _, _ = _paths(settings)
    try:
        stamp = discovery.stat().st_mtime_ns
        seen = _verified.get(discovery)
        if seen is not None and seen[0] == stamp and _serving(int(seen[1]["pid"])):
            return seen[1]
        info: dict[str, Any] = json.loads(discovery.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or _stopped(int(info.get("pid", 0) or 0)):
        return None
    token = str(info.get("token", ""))
    if not token:
        return None  # written before servers had a token: cannot tell it is ours
    ours = answers(str(info.get("base_url", "")), timeout=PROBE_TIMEOUT_S, token=token)
    if ours and int(info.get("pid", 0) or 0) > 0:
        _verified[discovery] = (stamp, info)
    return info if ours else None


def _serving(pid: int) -> bool:
    """Whether the server process `pid` still runs (alive, ours, not stopped)."""
    return _alive(pid) and _is_our_server(pid) and not _stopped(pid)


def idle_status(info: dict[str, Any]) -> dict[str, Any] | None:
    """A running server's idle time and limit, and its llama.cpp threads (`GET /aikit/status`),
    or None."""
    url = str(info.get("base_url", "")).removesuffix("/v1") + STATUS_PATH
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as answer:
            status: dict[str, Any] = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return status


def answers(base_url: str, timeout: float = 3.0, token: str | None = None) -> bool:
    """Whether an OpenAI-compatible server at `base_url` lists its models (and, with `token`,
    sends it back in the `x-aikit-server-token` header: it is the server we started)."""
    if not base_url:
        return False
    client = sync_client(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=timeout)
    try:
        raw = client.models.with_raw_response.list()
    except openai.OpenAIError:
        return False
    finally:
        client.close()
    return token is None or secrets.compare_digest(raw.headers.get(TOKEN_HEADER, ""), token)


def _stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP/SIGTSTP: state T or t in /proc/PID/stat)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def ensure_server(settings: Settings | None = None) -> str:
    """The base URL of the machine's embedded-model server, started if none answers."""
    settings = settings or get_settings()
    info = server_info(settings)
    if info is not None:
        return str(info["base_url"])
    _, lock_path, _ = _paths(settings)
    _check_home(settings)
    try:
        with FileLock(str(lock_path), timeout=START_TIMEOUT_S + 30):
            info = server_info(settings)  # someone else may have started it meanwhile
            if info is None:
                info = _wait_for_busy(settings)
            if info is None:
                info = _start(settings)
    except Timeout as exc:
        raise LocalModelError(
            f"another process holds {lock_path} while starting the embedded model; wait for it"
            " or run `aikit serve --stop` and try again"
        ) from exc
    return str(info["base_url"])


def _check_home(settings: Settings) -> None:
    """AIKIT_HOME must be a folder aikit can write (the lock, the log, the discovery file)."""
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        what = "is a file" if home.is_file() else f"cannot be written ({exc.strerror})"
        raise LocalModelError(
            f"AIKIT_HOME={str(home)!r} {what}; set AIKIT_HOME to a folder you can write"
        ) from exc


def _wait_for_busy(settings: Settings) -> dict[str, Any] | None:
    """A recorded server whose process lives but did not answer at once is busy (a loaded
    machine, a long generation): wait for it rather than start a second one beside it. One that
    stays silent is stopped before a new one starts, so no server is left orphaned."""
    discovery, _, _ = _paths(settings)
    try:
        info: dict[str, Any] = json.loads(discovery.read_text())
    except (OSError, ValueError):
        return None
    pid = int(info.get("pid", 0))
    if pid <= 0 or not _alive(pid) or not _is_our_server(pid):
        return None
    token = str(info.get("token", ""))
    deadline = time.monotonic() + BUSY_WAIT_S
    while time.monotonic() < deadline:
        if _stopped(pid):
            raise LocalModelError(
                f"the embedded model server (pid {pid}) is stopped (SIGSTOP), so it cannot"
                f" answer; resume it with `kill -CONT {pid}` or end it with `aikit serve --stop`"
            )
        if token and answers(str(info.get("base_url", "")), timeout=10.0, token=token):
            return info
        if not token or answers(str(info.get("base_url", "")), timeout=PROBE_TIMEOUT_S):
            break  # an older server without a token, or another program answers on its port
        if not _alive(pid):
            return None
        time.sleep(1.0)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(settings: Settings) -> dict[str, Any]:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise LocalModelError(f"llama-cpp-python is not installed; {INSTALL_HINT}") from exc
    names = served_models()
    discovery, _, log_path = _paths(settings)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    token = secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "aikit.local._process",
        *(arg for name in names for arg in ("--model", str(model_path(name)), "--alias", name)),
        "--port",
        str(port),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.home,
            # glibc gives each thread that allocates its own 64 MB arena; the server answers on
            # a pool of worker threads, and the arenas held ~700 MB of a 1.2 GB RSS. (Beside
            # CPU-bound neighbours the process runs on fewer threads: aikit/local/_threads.py.)
            env={
                "MALLOC_ARENA_MAX": "2",
                **os.environ,
                TOKEN_ENV: token,
            },
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(base_url, timeout=1.0, token=token):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise LocalModelError(
                f"the embedded model server did not start ({_last_line(log_path)}); see {log_path}"
            )
        time.sleep(0.2)
    info = {
        "pid": process.pid,
        "port": port,
        "base_url": base_url,
        "model": CHAT_MODEL,
        "models": names,
        "model_path": str(model_path(CHAT_MODEL)),
        "python": sys.executable,
        "started": time.time(),
        "token": token,
    }
    tmp = discovery.with_name(discovery.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(discovery)
    return info


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:200] if lines else "no output"


def stop_server(settings: Settings | None = None) -> dict[str, Any] | None:
    """Stop the machine's embedded-model server; returns its record, or None if none ran."""
    settings = settings or get_settings()
    discovery, lock_path, _ = _paths(settings)
    if not settings.home.is_dir():
        return None  # no AIKIT_HOME folder (or a file there): no server was started from it
    with FileLock(str(lock_path), timeout=START_TIMEOUT_S + 30):
        try:
            info: dict[str, Any] = json.loads(discovery.read_text())
        except (OSError, ValueError):
            return None
        pid = int(info.get("pid", 0))
        if pid > 0 and _is_our_server(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        discovery.unlink(missing_ok=True)
        return info


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it was our own child
        if done == pid:
            return False
    return True


def _is_our_server(pid: int) -> bool:
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return _alive(pid)  # no /proc (macOS): trust the discovery file
    return b"aikit.local._process" in cmdline.read_bytes()
