"""The embedded model through aikit against bare llama-cpp-python, on the same prompts.

Each question is rendered as the transcript the embedded server sends the model
(`aikit.local.render_transcript`) and answered twice per round, in alternating order:

- **bare**: `llama_cpp.Llama.create_completion` in this process, on the same GGUF file, with
  the server's context size and threads, the transcript's stop sequences, temperature 0;
- **server**: the openai SDK straight to the embedded server (no aikit on the client side);
- **aikit**: `aikit.chat(question, temperature=0, seed=0)` with the response store off, i.e.
  aikit -> the openai SDK -> HTTP -> the embedded server (`aikit serve`) -> llama.cpp.

It prints the median seconds per answer of each and the ratio bare / aikit (1.0 means aikit
adds nothing; the target is >= 0.9). Then determinism: every question asked again in a
shuffled order. aikit must give the same answers (its prompt-prefix reuse is history-free,
`aikit/local/_prefix.py`); bare llama-cpp-python's own prefix reuse is not, and the script
counts how often its answers change. Last, structured output (a JSON schema, 4 questions,
interleaved): bare llama-cpp-python with the schema's grammar against `aikit.chat(...,
response_format=Model)`, whose server asks the grammar about the likeliest tokens first
(`aikit/local/_grammar.py`); informational, no target. The exit code is 1 when the target is
missed or an aikit answer changes.

    .venv/bin/python benchmarks/local_model.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.9
QUESTIONS = [
    "What is the capital of France?",
    "How many days are in a week?",
    "What colour is the sky on a clear day?",
    "Translate 'good morning' into Spanish.",
    "What is 2 + 3?",
    "Name a fruit that is yellow.",
    "What do bees make?",
    "What is the opposite of hot?",
    "Which planet do we live on?",
    "How many wheels does a bicycle have?",
    "What is the largest ocean on Earth?",
    "Who wrote Romeo and Juliet?",
]
MAX_TOKENS = 48


def _rss_mib(pid: int) -> float:
    """Resident memory of process `pid` (Linux /proc), MiB; 0 where unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kib = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0
    )
    return kib / 1024


COUNTRIES = ["France", "Japan", "Italy", "Spain"]


def _structured(
    llama_cpp: Any, bare: Any, local: Any, stop: list[str], rounds: int
) -> tuple[float, float]:
    """Median seconds of a JSON answer: bare with the schema's grammar, and through aikit."""
    from pydantic import BaseModel

    import aikit

    class Capital(BaseModel):
        country: str
        capital: str

    grammar = llama_cpp.LlamaGrammar.from_json_schema(
        json.dumps(Capital.model_json_schema()), verbose=False
    )
    times: dict[str, list[float]] = {"bare": [], "aikit": []}
    for _ in range(rounds):
        for country in COUNTRIES:
            question = f"Give the country {country} and its capital as JSON."
            prompt = local.render_transcript([{"role": "user", "content": question}])
            started = time.perf_counter()
            bare.create_completion(
                prompt, max_tokens=MAX_TOKENS, temperature=0.0, grammar=grammar, stop=list(stop)
            )
            times["bare"].append(time.perf_counter() - started)
            started = time.perf_counter()
            aikit.chat(question, response_format=Capital, temperature=0, max_tokens=MAX_TOKENS)
            times["aikit"].append(time.perf_counter() - started)
    return statistics.median(times["bare"]), statistics.median(times["aikit"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="aikit-bench-local-")
    os.environ.update(AIKIT_HOME=home, AIKIT_PROVIDER="local", AIKIT_CACHE="off")
    os.environ.pop("AIKIT_PROFILE", None)
    sys.path.insert(0, str(ROOT))
    import llama_cpp
    import openai

    import aikit
    from aikit import local
    from aikit.local._process import DEFAULT_N_CTX, default_threads
    from aikit.local._transcript import STOP

    bare = llama_cpp.Llama(
        model_path=str(local.model_path()),
        n_ctx=DEFAULT_N_CTX,
        n_threads=default_threads(),
        n_threads_batch=default_threads(),
        verbose=False,
    )

    def ask_bare(question: str) -> str:
        prompt = local.render_transcript([{"role": "user", "content": question}])
        out = bare.create_completion(
            prompt, max_tokens=MAX_TOKENS, temperature=0.0, seed=0, stop=list(STOP)
        )
        return str(out["choices"][0]["text"]).strip()  # type: ignore[index]

    def ask_aikit(question: str) -> str:
        return aikit.chat(question, temperature=0, seed=0, max_tokens=MAX_TOKENS).text

    sdk: openai.OpenAI | None = None

    def ask_server(question: str) -> str:
        assert sdk is not None
        reply = sdk.chat.completions.create(
            model=local.CHAT_MODEL,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            seed=0,
            max_tokens=MAX_TOKENS,
        )
        return reply.choices[0].message.content or ""

    try:
        sdk = openai.OpenAI(base_url=local.ensure_server(), api_key=local.API_KEY)
        ask_aikit(QUESTIONS[0])  # warm all three up
        ask_bare(QUESTIONS[0])
        arms = {"bare": ask_bare, "server": ask_server, "aikit": ask_aikit}
        times: dict[str, list[float]] = {name: [] for name in arms}
        answers: dict[str, dict[str, str]] = {name: {} for name in arms}
        for round_ in range(args.rounds):
            for i, question in enumerate(QUESTIONS):
                order = list(arms.items())
                order = order[(i + round_) % 3 :] + order[: (i + round_) % 3]
                for name, ask in order:
                    started = time.perf_counter()
                    answers[name][question] = ask(question)
                    times[name].append(time.perf_counter() - started)
        structured = _structured(llama_cpp, bare, local, STOP, args.rounds)
        shuffled = QUESTIONS[:]
        random.Random(7).shuffle(shuffled)
        again = {q: ask_aikit(q) for q in shuffled}
        bare_again = {q: ask_bare(q) for q in shuffled}
        info = local.server_info() or {}
        rss_mib = _rss_mib(int(info.get("pid", 0)))
    finally:
        local.stop_server()

    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    ratio = median["bare"] / median["aikit"]
    repeat = sum(again[q] == answers["aikit"][q] for q in QUESTIONS)
    bare_repeat = sum(bare_again[q] == answers["bare"][q] for q in QUESTIONS)
    n, total = len(QUESTIONS) * args.rounds, len(QUESTIONS)
    print(f"{n} answers each, {args.rounds} rounds, interleaved; max_tokens={MAX_TOKENS}")
    print(f"bare llama-cpp-python     median {median['bare']:.3f} s per answer")
    print(f"openai SDK -> server      median {median['server']:.3f} s per answer")
    print(f"aikit.chat -> server      median {median['aikit']:.3f} s per answer")
    print(f"ratio bare/aikit          {ratio:.2f}x   (target >= {TARGET}x)")
    print(f"aikit answers unchanged   {repeat}/{total} when asked again in another order")
    print(f"bare answers unchanged    {bare_repeat}/{total} (its own prefix reuse can change them)")
    print(f"server process RSS        {rss_mib:.0f} MiB after the run")
    bare_json, aikit_json = structured
    print(
        f"structured (JSON schema)  bare median {bare_json:.3f} s, aikit median"
        f" {aikit_json:.3f} s, ratio bare/aikit {bare_json / aikit_json:.2f}x"
    )
    for question in QUESTIONS[:3]:
        print(f"  {question!r} -> {answers['aikit'][question]!r}")
    return 0 if ratio >= TARGET and repeat == total else 1


if __name__ == "__main__":
    sys.exit(main())
