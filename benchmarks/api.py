"""What `aikit api` costs over calling a notebook's function directly.

- Overhead: a trivial endpoint (`echo`), called one request at a time over a keep-alive
  connection, against calling the same function in-process; p50 and p99 of each, and their
  difference (target: p50 overhead <= 2 ms). Side by side, the same function as a plain
  FastAPI route (pydantic body, uvicorn, same options, no guard, no log): the measurement
  behind "the guard answers, FastAPI documents" (`aikit/api/_guard.py`).
- Throughput: an endpoint that makes one model call (`aikit.achat`, response store off) to a
  loopback OpenAI-compatible server answering in 200 ms (`tests/fault_server.py`), driven at
  concurrency 32 for 30 s by an async httpx client in its own process, against the same
  function called directly by 32 asyncio workers in another process (target: >= 0.9x,
  0 errors). The same endpoint behind the default guards (`aikit.guards.default()`: input
  max_length, invisible_text, secrets, pii, prompt_injection; output pii, secrets,
  system_prompt_leak), driven the same way (target: >= 0.9x the unguarded API).
- Live scores: the same endpoint with `score=[judge]` at rate 1.0 (every answer judged by the
  same loopback model, after it has gone out), driven the same way, against the unscored
  endpoint right before it (target: the caller's p50 within 5 %); the queue's drops are
  printed.
- Tracing (`aikit.tracing`): the throughput endpoint on a server with tracing off (nothing
  configured) and on a second `aikit api` whose spans go to a local OTLP receiver (Phoenix's
  server on 127.0.0.1, when `aikit[phoenix]` is installed: a server span and a chat span per
  request), driven the same way, one after the other (target: >= 0.97x, overhead <= 3 %); the
  spans the receiver then holds are counted.
- The request log on PostgreSQL (`AIKIT_REQUEST_LOG=postgresql://...`, a PostgreSQL 15 server
  started like the tests do, `tests/postgres_server.py`): the throughput load against a second
  server logging there; every request the client sent must be one completed row (target: 0
  lost rows). Skipped, and said, when PostgreSQL is not installed.

The server is `aikit api` on 127.0.0.1, one worker, in its own process; the request log is on.

    .venv/bin/python benchmarks/api.py [--seconds 30] [--concurrency 32] [--latency 0.2]
        [--only scored,traced,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from otlp_receiver import phoenix, spans_received

from aikit.api import serving

ROOT = Path(__file__).resolve().parents[1]
OVERHEAD_TARGET_MS, THROUGHPUT_TARGET = 2.0, 0.9
SCORED_P50_TARGET = 1.05  # scored / unscored p50 for the caller
TRACED_TARGET = 0.97  # traced / untraced API throughput
NOTEBOOK_CODE = """\
import aikit


@aikit.endpoint
def echo(text: str) -> str:
    return text


@aikit.endpoint
async def ask(question: str) -> str:
    reply = await aikit.achat(question, max_tokens=16)
    return reply.text


@aikit.endpoint(name="guarded", guards=aikit.guards.default())
async def ask_guarded(question: str) -> str:
    reply = await aikit.achat(question, max_tokens=16)
    return reply.text


on_topic = aikit.evals.judge("The answer addresses the question.", name="on_topic")


@aikit.endpoint(name="scored", score=[on_topic])
async def ask_scored(question: str) -> str:
    reply = await aikit.achat(question, max_tokens=16)
    return reply.text
"""


def write_notebook(folder: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CODE)]
    path = folder / "bench_service.ipynb"
    nbformat.write(nb, path)
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- clients, each run in a process of its own --------------------------------------------------
def overhead_direct(notebook: Path, n: int) -> dict[str, Any]:
    from aikit.api._notebook import execute

    echo = execute(notebook, {})["echo"]
    times = []
    for i in range(n + 200):
        started = time.perf_counter()
        echo(text=f"hello {i}")
        if i >= 200:
            times.append(time.perf_counter() - started)
    return {"latencies": times, "errors": 0}


def overhead_api(urls: str, n: int) -> dict[str, Any]:
    """Sequential calls of `echo`, alternating between the servers in `urls` (comma-separated),
    so a change of load on the machine weighs on each alike; figures per server."""
    import httpx

    clients = [httpx.Client(base_url=url, timeout=30) for url in urls.split(",")]
    times: list[list[float]] = [[] for _ in clients]
    errors = [0 for _ in clients]
    try:
        for i in range(n + 200):
            for k, client in enumerate(clients):
                started = time.perf_counter()
                r = client.post("/echo", json={"text": f"hello {i}"})
                if i >= 200:
                    times[k].append(time.perf_counter() - started)
                    errors[k] += r.status_code != 200
    finally:
        for client in clients:
            client.close()
    return {"servers": [{"latencies": t, "errors": e} for t, e in zip(times, errors, strict=True)]}


async def _closed_loop(call: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    why: list[str] = []  # what the first failures were
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        i = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                ok = await call(f"worker {w} question {i}: what is {i} + {w}?")
            except Exception as exc:
                ok = False
                why.append(f"{type(exc).__name__}: {exc}"[:200])
            latencies.append(time.perf_counter() - started)
            errors += not ok
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    figures = {"latencies": latencies, "errors": errors, "why": why[:3]}
    return {**figures, "seconds": time.perf_counter() - started}


def throughput_direct(notebook: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    from aikit.api._notebook import execute

    ask = execute(notebook, {})["ask"]

    async def call(question: str) -> bool:
        return bool(await ask(question=question))

    return asyncio.run(_closed_loop(call, concurrency, seconds))


def throughput_api(
    url: str, concurrency: int, seconds: float, path: str = "/ask"
) -> dict[str, Any]:
    import httpx

    async def main() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

            async def call(question: str) -> bool:
                r = await client.post(path, json={"question": question})
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code} {r.text[:150]}")
                return r.status_code == 200 and bool(r.json())

            return await _closed_loop(call, concurrency, seconds)

    return asyncio.run(main())


def fastapi_server(port: int) -> None:
    """The same `echo` as a plain FastAPI route, on uvicorn with aikit api's options."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    class EchoRequest(BaseModel):
        text: str

    app = FastAPI()

    def echo(body: Any) -> str:
        return str(body.text)

    echo.__annotations__ = {"body": EchoRequest, "return": str}  # real types for FastAPI
    app.post("/echo")(echo)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def child(*args: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"client {args[0]} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_child(argv: list[str]) -> None:
    kind, target = argv[0], argv[1]
    if kind == "fastapi-server":
        fastapi_server(int(target))
        return
    numbers = [float(a) for a in argv[2:]]
    if kind == "overhead-direct":
        figures = overhead_direct(Path(target), int(numbers[0]))
    elif kind == "overhead-api":
        figures = overhead_api(target, int(numbers[0]))
    elif kind == "throughput-direct":
        figures = throughput_direct(Path(target), int(numbers[0]), numbers[1])
    elif kind == "throughput-guarded":
        figures = throughput_api(target, int(numbers[0]), numbers[1], "/guarded")
    elif kind == "throughput-scored":
        figures = throughput_api(target, int(numbers[0]), numbers[1], "/scored")
    else:
        figures = throughput_api(target, int(numbers[0]), numbers[1])
    print(json.dumps(figures))


def _row(name: str, figures: dict[str, Any]) -> tuple[str, float, float, float, int]:
    rps = len(figures["latencies"]) / figures["seconds"]
    p50, p99 = (percentile(figures["latencies"], q) * 1000 for q in (0.5, 0.99))
    return name, rps, p50, p99, figures["errors"]


def _print_rows(rows: list[tuple[str, float, float, float, int]], *figures: Any) -> None:
    for name, rps, p50, p99, errors in rows:
        print(
            f"  {name:<26} {rps:7.1f} req/s   p50 {p50:6.0f} ms   p99 {p99:6.0f} ms"
            f"   errors {errors}"
        )
    for each in figures:
        for why in each.get("why", []):
            print(f"    failed: {why}")


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def scored_rows(api: Any, env: dict[str, str], c: str, s: str) -> bool:
    """The caller's p50 with `--score` at rate 1.0 (a judge) beside the unscored endpoint."""
    unscored = child("throughput-api", api.url, c, s, env=env)
    scored = child("throughput-scored", api.url, c, s, env=env)
    answered = len(scored["latencies"])
    judged = len(api.scores())
    rows = [_row("unscored endpoint", unscored), _row("--score judge, rate 1.0", scored)]
    print(f"live scores: a judge on every answer, after it has gone out ({_load()})")
    _print_rows(rows, unscored, scored)
    ratio = rows[1][2] / rows[0][2]
    print(
        f"scored / unscored p50 for the caller: {ratio:.3f}x (target <= {SCORED_P50_TARGET}x);"
        f" {judged} of {answered} answers scored so far (one scoring thread; the rest"
        " queued or dropped: queue full)"
    )
    return ratio <= SCORED_P50_TARGET and rows[1][4] == 0


def traced_rows(notebook: Path, env: dict[str, str], c: str, s: str, folder: Path) -> bool:
    """The throughput load on a server with tracing off, then on one tracing to Phoenix."""
    with phoenix() as endpoint:
        if endpoint is None:
            print("tracing rows: skipped (no OTLP receiver: pip install 'aikit[phoenix]')")
            return True
        with serving(notebook, env=env) as api:
            off = child("throughput-api", api.url, c, s, env=env)
        traced = {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
                  "AIKIT_HOME": str(folder / "traced-home")}  # fmt: skip
        with serving(notebook, env=traced) as api:
            on = child("throughput-api", api.url, c, s, env=env)
        received = spans_received(endpoint)
    rows = [_row("API, tracing off", off), _row("API, traced to Phoenix", on)]
    print(f"tracing: the same load, spans to a local OTLP receiver ({_load()})")
    _print_rows(rows, off, on)
    ratio = rows[1][1] / rows[0][1]
    print(
        f"traced / untraced API throughput: {ratio:.3f}x (target >= {TRACED_TARGET}x);"
        f" spans received {received}"
    )
    return ratio >= TRACED_TARGET and rows[1][4] == 0


def postgres_row(notebook: Path, env: dict[str, str], c: str, s: str, folder: Path) -> bool:
    """The throughput load against a server logging to PostgreSQL: 0 lost rows."""
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_server import PostgresServer, available

    if not available():
        print("request log on PostgreSQL: skipped (install Debian's postgresql package)")
        return True
    import aikit

    database = PostgresServer().start()
    try:
        url = database.create_database("bench")
        logged = {**env, "AIKIT_REQUEST_LOG": url, "AIKIT_HOME": str(folder / "pg-home")}
        with serving(notebook, env=logged) as api:
            figures = child("throughput-api", api.url, c, s, env=env)
            sent = len(figures["latencies"])
            deadline = time.monotonic() + 120
            while True:
                log = aikit.requests(log=url)
                done = log[(log["endpoint"] == "ask") & (log["status"] != 0)]
                if len(done) >= sent or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        row = _row("API, log on PostgreSQL", figures)
    finally:
        database.stop()
    lost = sent - len(done)
    doubled = len(done) - done["request_id"].nunique()
    print(f"request log on PostgreSQL 15 under the throughput load ({_load()})")
    _print_rows([row], figures)
    print(
        f"requests sent {sent}, rows completed {len(done)}: lost {lost}, doubled {doubled},"
        f" in flight {int((log['status'] == 0).sum())} (target: 0 lost)"
    )
    return lost == 0 and doubled == 0 and row[4] == 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--calls", type=int, default=2000, help="calls timed for the overhead")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated parts: overhead,throughput,scored,traced,postgres",
    )
    args = parser.parse_args()
    parts = set(args.only.split(",")) if args.only else PARTS
    if parts - PARTS:
        parser.error(f"--only {args.only}: the parts are {','.join(sorted(PARTS))}")

    folder = Path(tempfile.mkdtemp(prefix="aikit-bench-api-"))
    notebook = write_notebook(folder)
    model = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fault_server.py"), "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert model.stdout is not None
    base_url = model.stdout.readline().strip()
    env = {
        **os.environ,
        "AIKIT_PROVIDER": "openai",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "bench",
        "AIKIT_MODEL": "bench-model",
        "AIKIT_CACHE": "off",
        "AIKIT_HOME": str(folder / "home"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    c, s = str(args.concurrency), str(args.seconds)
    ok = True
    try:
        if parts & {"overhead", "throughput", "scored"}:
            with serving(notebook, env=env) as api:
                if parts & {"overhead", "throughput"}:
                    ok = measured(api, notebook, env, args, folder) and ok
                if "scored" in parts:
                    ok = scored_rows(api, env, c, s) and ok
        if "traced" in parts:
            ok = traced_rows(notebook, env, c, s, folder) and ok
        if "postgres" in parts:
            ok = postgres_row(notebook, env, c, s, folder) and ok
    finally:
        model.terminate()
        model.wait(10)
    if not ok:
        print("MISSED a target")
    return 0 if ok else 1


PARTS = {"overhead", "throughput", "scored", "traced", "postgres"}


def measured(api: Any, notebook: Path, env: dict[str, str], args: Any, folder: Path) -> bool:
    """The overhead and throughput rows (see the module doc)."""
    import httpx

    fastapi_port = _free_port()
    plain = subprocess.Popen(
        [sys.executable, __file__, "--child", "fastapi-server", str(fastapi_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "fastapi.log").open("w"),
    )
    try:
        plain_url = f"http://127.0.0.1:{fastapi_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(f"{plain_url}/echo", json={"text": "up"})
                break
            except httpx.TransportError:
                if plain.poll() is not None or time.monotonic() > deadline:
                    said = (folder / "fastapi.log").read_text()
                    sys.exit(f"the FastAPI server did not start:\n{said}")
                time.sleep(0.2)
        n, c, s = str(args.calls), str(args.concurrency), str(args.seconds)
        direct = child("overhead-direct", str(notebook), n, env=env)
        both = child("overhead-api", f"{api.url},{plain_url}", n, env=env)["servers"]
        via_api, via_fastapi = both
        if via_fastapi["errors"]:
            sys.exit("the plain FastAPI route did not answer 200")
        direct_tp = child("throughput-direct", str(notebook), c, s, env=env)
        api_tp = child("throughput-api", api.url, c, s, env=env)
        guarded_tp = child("throughput-guarded", api.url, c, s, env=env)
        logged = len(api.requests())
    finally:
        plain.terminate()
        plain.wait(30)

    d50, d99 = (percentile(direct["latencies"], q) * 1000 for q in (0.5, 0.99))
    a50, a99 = (percentile(via_api["latencies"], q) * 1000 for q in (0.5, 0.99))
    print(
        f"aikit api overhead: {args.calls} sequential calls of a trivial endpoint (keep-alive),"
        " alternating with a plain FastAPI route"
    )
    print(f"  direct call     p50 {d50:8.3f} ms   p99 {d99:8.3f} ms")
    print(f"  through the API p50 {a50:8.3f} ms   p99 {a99:8.3f} ms   errors {via_api['errors']}")
    f50, f99 = (percentile(via_fastapi["latencies"], q) * 1000 for q in (0.5, 0.99))
    print(
        f"  a FastAPI route p50 {f50:8.3f} ms   p99 {f99:8.3f} ms   errors {via_fastapi['errors']}"
    )
    overhead = a50 - d50
    print(
        f"p50 overhead: aikit api {overhead:.2f} ms, plain FastAPI route {f50 - d50:.2f} ms"
        f" (FastAPI / aikit api: {(f50 - d50) / max(overhead, 1e-9):.2f}x)"
    )
    print(
        f"p50 overhead: {overhead:.2f} ms (target <= {OVERHEAD_TARGET_MS} ms);"
        f" p99 overhead: {a99 - d99:.2f} ms"
    )
    ideal = args.concurrency / args.latency
    rows = [
        _row("direct (asyncio workers)", direct_tp),
        _row("through the API", api_tp),
        _row("API + default guards", guarded_tp),
    ]
    print(
        f"throughput: one model call per request, {args.latency * 1000:.0f} ms server latency,"
        f" concurrency {args.concurrency}, {args.seconds:.0f} s each (ideal {ideal:.0f} req/s)"
    )
    _print_rows(rows)
    ratio = rows[1][1] / rows[0][1]
    print(f"API / direct throughput: {ratio:.2f}x (target >= {THROUGHPUT_TARGET}x, 0 errors)")
    guarded_ratio = rows[2][1] / rows[1][1]
    print(
        f"guarded / unguarded API throughput: {guarded_ratio:.2f}x (target >= {THROUGHPUT_TARGET}x)"
    )
    print(f"request log rows written: {logged}")
    missed = overhead > OVERHEAD_TARGET_MS or ratio < THROUGHPUT_TARGET or rows[1][4] > 0
    missed = missed or guarded_ratio < THROUGHPUT_TARGET or rows[2][4] > 0
    return not missed


if __name__ == "__main__":
    sys.exit(main())
