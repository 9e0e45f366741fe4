"""Throughput of `aikit.batch` against a loopback OpenAI-compatible server with a fixed latency.

1,000 requests, 200 ms each, 32 at a time (ideal: 32 / 0.2 s = 160 requests/s). In the same
run it times three clients, each in its own process (so its peak memory is its own):

- `aikit.batch` with its defaults (response store on, progress bar) but concurrency 32;
- the loop a skilled user writes by hand: `asyncio` + a semaphore over `openai.AsyncOpenAI`;
- a plain sequential loop of SDK calls, timed on a sample and extrapolated.

The server is `tests/fault_server.py` (asyncio, keep-alive) with no faults, in a process of its
own. Targets: aikit >= 0.9x the hand-written loop and >= 20x the sequential loop; the exit code
is 1 when one is missed.

Tracing rows (`aikit.tracing`): the same `aikit.batch` with tracing off (nothing configured:
the no-op API) and tracing to a local OTLP receiver (Phoenix's server on 127.0.0.1, when
`aikit[phoenix]` is installed; one `chat` span per row under an `aikit.batch` span), runs
interleaved. Target: traced >= 0.97x the untraced throughput (overhead <= 3 %).

    .venv/bin/python benchmarks/batch_throughput.py [--requests 1000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from otlp_receiver import phoenix, spans_received

ROOT = Path(__file__).resolve().parents[1]
MODEL = "bench-model"
HAND_TARGET, SEQUENTIAL_TARGET, TRACED_TARGET = 0.9, 20.0, 0.97


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def prompts(client: str, count: int) -> list[str]:
    return [f"{client} request {i}: what is {i} + {i}?" for i in range(count)]


def run_aikit(base_url: str, count: int, concurrency: int) -> int:
    os.environ.update(
        AIKIT_PROVIDER="openai",
        OPENAI_BASE_URL=base_url,
        OPENAI_API_KEY="bench",
        AIKIT_MODEL=MODEL,
        AIKIT_HOME=tempfile.mkdtemp(prefix="aikit-bench-"),
    )
    import aikit

    frame = aikit.batch(prompts("aikit", count), concurrency=concurrency)
    return int(frame["output"].notna().sum())


def run_hand(base_url: str, count: int, concurrency: int) -> int:
    import openai

    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="bench")
        semaphore = asyncio.Semaphore(concurrency)

        async def one(prompt: str) -> str:
            async with semaphore:
                reply = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt}]
                )
                return reply.choices[0].message.content or ""

        try:
            return await asyncio.gather(*(one(p) for p in prompts("hand", count)))
        finally:
            await client.close()

    return sum(1 for text in asyncio.run(main()) if text)


def run_sequential(base_url: str, count: int, concurrency: int) -> int:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench")
    done = 0
    for prompt in prompts("sequential", count):
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}]
        )
        done += bool(reply.choices[0].message.content)
    return done


CLIENTS = {
    "aikit": run_aikit,
    "traced": run_aikit,  # the same, with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT in its environment
    "hand": run_hand,
    "sequential": run_sequential,
}


def measure(client: str, base_url: str, count: int, concurrency: int) -> None:
    """In a child process: run one client, print its figures as JSON."""
    import openai  # noqa: F401

    import aikit._batch  # noqa: F401  (imports are not what is measured)

    baseline = peak_rss_mib()
    started = time.perf_counter()
    answered = CLIENTS[client](base_url, count, concurrency)
    seconds = time.perf_counter() - started
    figures = {
        "seconds": seconds,
        "answered": answered,
        "peak_rss_mib": peak_rss_mib(),
        "run_rss_mib": peak_rss_mib() - baseline,
    }
    print(json.dumps(figures))


def child(
    client: str, base_url: str, count: int, concurrency: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            client,
            "--base-url",
            base_url,
            "--requests",
            str(count),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | (env or {}),
    )
    if done.returncode != 0:
        sys.exit(f"{client} client failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["answered"] != count:
        sys.exit(f"{client} client answered {figures['answered']} of {count} requests")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--sample", type=int, default=25, help="sequential calls timed")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each client; best kept")
    parser.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        measure(args.client, args.base_url, args.requests, args.concurrency)
        return 0

    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fault_server.py"), "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    receiver = phoenix()
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        endpoint = receiver.__enter__()
        n, c = args.requests, args.concurrency
        runs: dict[str, list[dict[str, Any]]] = {"aikit": [], "hand": []}
        traced_env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint or ""}
        if endpoint:
            runs["traced"] = []
        for _ in range(args.rounds):  # interleaved, so a slow spell hits both clients
            for name, kept in runs.items():
                kept.append(child(name, base_url, n, c, traced_env if name == "traced" else None))
        aikit, hand = (min(runs[name], key=lambda f: f["seconds"]) for name in ("aikit", "hand"))
        traced = min(runs["traced"], key=lambda f: f["seconds"]) if endpoint else None
        received = spans_received(endpoint) if endpoint else 0
        sample = child("sequential", base_url, args.sample, 1)
    finally:
        receiver.__exit__(None, None, None)
        server.terminate()
        server.wait(10)

    sequential_s = sample["seconds"] * n / args.sample
    ideal_rps = c / args.latency
    rps = {"aikit": n / aikit["seconds"], "hand": n / hand["seconds"], "seq": n / sequential_s}
    vs_hand, vs_seq = rps["aikit"] / rps["hand"], rps["aikit"] / rps["seq"]
    print(
        f"batch throughput: {n} requests, {args.latency * 1000:.0f} ms latency,"
        f" concurrency {c} (ideal {ideal_rps:.0f} requests/s), best of {args.rounds} runs"
    )
    print(f"{'client':<40}{'seconds':>9}{'req/s':>9}{'peak RSS':>11}{'run RSS':>10}")
    rows = [
        ("aikit.batch", aikit["seconds"], rps["aikit"], aikit),
        ("asyncio + semaphore + AsyncOpenAI", hand["seconds"], rps["hand"], hand),
        (f"sequential SDK calls ({args.sample}, extrapolated)", sequential_s, rps["seq"], sample),
    ]
    for name, seconds, speed, figures in rows:
        print(
            f"{name:<40}{seconds:>9.2f}{speed:>9.1f}"
            f"{figures['peak_rss_mib']:>7.0f} MiB{figures['run_rss_mib']:>6.0f} MiB"
        )
    for name, kept in runs.items():
        times = ", ".join(f"{figures['seconds']:.2f}" for figures in kept)
        print(f"  {name} runs: {times} s")
    print(f"aikit / hand-written loop: {vs_hand:.2f}x (target >= {HAND_TARGET}x)")
    print(f"aikit / ideal ({c} / {args.latency} s): {rps['aikit'] / ideal_rps:.2f}x")
    print(f"aikit / sequential loop: {vs_seq:.1f}x (target >= {SEQUENTIAL_TARGET:.0f}x)")
    print(
        f"aikit peak memory: {aikit['peak_rss_mib']:.0f} MiB RSS"
        f" ({aikit['run_rss_mib']:.0f} MiB for the run itself)"
    )
    missed = vs_hand < HAND_TARGET or vs_seq < SEQUENTIAL_TARGET
    if traced is None:
        print("tracing rows: skipped (no OTLP receiver: pip install 'aikit[phoenix]')")
    else:
        vs_off = (n / traced["seconds"]) / rps["aikit"]
        print("tracing (aikit.tracing), best of each:")
        print(f"  {'tracing off (nothing configured)':<52}{rps['aikit']:>9.1f} req/s")
        on = "tracing to a local OTLP receiver (Phoenix)"
        print(f"  {on:<52}{n / traced['seconds']:>9.1f} req/s")
        times = ", ".join(f"{figures['seconds']:.2f}" for figures in runs["traced"])
        print(f"  traced runs: {times} s; spans the receiver holds: {received}")
        print(f"traced / untraced throughput: {vs_off:.3f}x (target >= {TRACED_TARGET}x)")
        missed = missed or vs_off < TRACED_TARGET
    if missed:
        print("MISSED a target")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
