"""The embedded models through aikit against bare llama-cpp-python, on the same messages.

For each embedded model (a row per model), each question is answered once per round by each
arm, in alternating order, in that model's own prompt format:

- **bare**: llama-cpp-python in this process, on the same GGUF file, with the server's context
  size and threads, temperature 0: for Gemma (a base model) `create_completion` on the
  transcript the server renders (`aikit.local.render_prompt`) with its stop sequences; for
  SmolLM2 `create_chat_completion`, i.e. llama-cpp-python's own rendering of the chat template
  in the GGUF;
- **server**: the openai SDK straight to the embedded server (no aikit on the client side);
- **aikit**: `aikit.chat(question, temperature=0, seed=0)` with the response store off, i.e.
  aikit -> the openai SDK -> HTTP -> the embedded server (`aikit serve`) -> llama.cpp.

It prints the median seconds per answer of each and the ratio bare / aikit per model (1.0 means
aikit adds nothing; the target is >= 0.9 for each), and the server's RSS with both models loaded
beside the RSS of one server process per model. Then determinism: every question asked again in a
shuffled order. aikit must give the same answers (its prompt-prefix reuse is history-free,
`aikit/local/_prefix.py`); bare llama-cpp-python's own prefix reuse is not, and the script
counts how often its answers change. Last, structured output (a JSON schema, 4 questions,
interleaved, on Gemma): bare llama-cpp-python with the schema's grammar against `aikit.chat(...,
response_format=Model)`, whose server asks the grammar about the likeliest tokens first
(`aikit/local/_grammar.py`); informational, no target. The exit code is 1 when the target is
missed or an aikit answer changes.

    .venv/bin/python benchmarks/local_model.py [--rounds 3] [--no-memory]
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


def _decodes(local: Any) -> dict[int, int]:
    """The server's decode calls so far per llama.cpp thread count (`/aikit/status`)."""
    status = local._server.idle_status(local.server_info() or {}) or {}
    return {int(k): int(v) for k, v in (status.get("decodes_by_threads") or {}).items()}


def _bare(llama_cpp: Any, local: Any, name: str) -> Any:
    from aikit.local._process import default_threads

    spec = local.get_model(name)
    llama = llama_cpp.Llama(
        model_path=str(local.model_path(name)),
        n_ctx=spec.n_ctx,
        n_threads=default_threads(),
        n_threads_batch=default_threads(),
        logits_all=False,
        verbose=False,
    )

    def ask(question: str) -> str:
        messages = [{"role": "user", "content": question}]
        if spec.prompt_format == "transcript":
            out = llama.create_completion(
                local.render_prompt(name, messages),
                max_tokens=MAX_TOKENS,
                temperature=0.0,
                seed=0,
                stop=list(spec.stop),
            )
            return str(out["choices"][0]["text"]).strip()
        chat = llama.create_chat_completion(
            messages, max_tokens=MAX_TOKENS, temperature=0.0, seed=0, repeat_penalty=1.0
        )
        return str(chat["choices"][0]["message"]["content"] or "").strip()

    return llama, ask


def _one_process_per_model(local: Any) -> dict[str, float]:
    """RSS of a server process holding one model, per model, after one answer each."""
    import subprocess

    import openai

    from aikit.local._server import _free_port

    found = {}
    for name in local.served_models():
        port = _free_port()
        command = [sys.executable, "-m", "aikit.local._process", "--model",
                   str(local.model_path(name)), "--alias", name, "--port", str(port)]  # fmt: skip
        env = {"MALLOC_ARENA_MAX": "2", **os.environ, "AIKIT_SERVER_IDLE_S": "0"}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            deadline = time.monotonic() + 180
            while not local.answers(base_url, timeout=1.0) and time.monotonic() < deadline:
                time.sleep(0.5)
            sdk = openai.OpenAI(base_url=base_url, api_key=local.API_KEY)
            for question in QUESTIONS[:3]:
                sdk.chat.completions.create(model=name, max_tokens=MAX_TOKENS, temperature=0,
                    messages=[{"role": "user", "content": question}])  # fmt: skip
            found[name] = _rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the one-per-model RSS")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="aikit-bench-local-")
    os.environ.update(AIKIT_HOME=home, AIKIT_PROVIDER="local", AIKIT_CACHE="off")
    os.environ.pop("AIKIT_PROFILE", None)
    os.environ.pop("AIKIT_MODEL", None)
    sys.path.insert(0, str(ROOT))
    import llama_cpp
    import openai

    import aikit
    from aikit import local

    names = local.served_models()
    failed = False
    rows = []
    try:
        sdk = openai.OpenAI(base_url=local.ensure_server(), api_key=local.API_KEY)
        for name in names:
            bare, ask_bare = _bare(llama_cpp, local, name)

            def ask_aikit(question: str, name: str = name) -> str:
                return aikit.chat(question, model=name, temperature=0, seed=0,
                                  max_tokens=MAX_TOKENS).text  # fmt: skip

            def ask_server(question: str, name: str = name) -> str:
                reply = sdk.chat.completions.create(
                    model=name,
                    messages=[{"role": "user", "content": question}],
                    temperature=0,
                    seed=0,
                    max_tokens=MAX_TOKENS,
                )
                return reply.choices[0].message.content or ""

            ask_aikit(QUESTIONS[0])  # warm all three up
            ask_bare(QUESTIONS[0])
            before = _decodes(local)
            arms = {"bare": ask_bare, "server": ask_server, "aikit": ask_aikit}
            times: dict[str, list[float]] = {arm: [] for arm in arms}
            answers: dict[str, dict[str, str]] = {arm: {} for arm in arms}
            for round_ in range(args.rounds):
                for i, question in enumerate(QUESTIONS):
                    order = list(arms.items())
                    order = order[(i + round_) % 3 :] + order[: (i + round_) % 3]
                    for arm, ask in order:
                        started = time.perf_counter()
                        answers[arm][question] = ask(question)
                        times[arm].append(time.perf_counter() - started)
            decodes = {k: v - before.get(k, 0) for k, v in _decodes(local).items()}
            structured = None
            if local.get_model(name).prompt_format == "transcript":
                structured = _structured(llama_cpp, bare, local, list(local.get_model(name).stop),
                                         args.rounds)  # fmt: skip
            shuffled = QUESTIONS[:]
            random.Random(7).shuffle(shuffled)
            again = {q: ask_aikit(q) for q in shuffled}
            bare_again = {q: ask_bare(q) for q in shuffled}
            bare.close()
            rows.append((name, times, answers, again, bare_again, structured, decodes))
        info = local.server_info() or {}
        rss_mib = _rss_mib(int(info.get("pid", 0)))
    finally:
        local.stop_server()
    separate = {} if args.no_memory else _one_process_per_model(local)

    n, total = len(QUESTIONS) * args.rounds, len(QUESTIONS)
    print(f"{n} answers each per model, {args.rounds} rounds, interleaved; max_tokens={MAX_TOKENS}")
    for name, times, answers, again, bare_again, structured, decodes in rows:
        median = {arm: statistics.median(seconds) for arm, seconds in times.items()}
        ratio = median["bare"] / median["aikit"]
        repeat = sum(again[q] == answers["aikit"][q] for q in QUESTIONS)
        bare_repeat = sum(bare_again[q] == answers["bare"][q] for q in QUESTIONS)
        failed |= ratio < TARGET or repeat != total
        print(f"{name}:")
        print(f"  bare llama-cpp-python     median {median['bare']:.3f} s per answer")
        print(f"  openai SDK -> server      median {median['server']:.3f} s per answer")
        print(f"  aikit.chat -> server      median {median['aikit']:.3f} s per answer")
        print(f"  ratio bare/aikit          {ratio:.2f}x   (target >= {TARGET}x)")
        print(f"  aikit answers unchanged   {repeat}/{total} when asked again in another order")
        print(f"  bare answers unchanged    {bare_repeat}/{total} (its own prefix reuse can"
              " change them)")  # fmt: skip
        shown = ", ".join(f"{n} threads {c}" for n, c in sorted(decodes.items())) or "none"
        print(f"  server decode calls        {shown} (llama.cpp threads by load)")
        if structured is not None:
            bare_json, aikit_json = structured
            print(
                f"  structured (JSON schema)  bare median {bare_json:.3f} s, aikit median"
                f" {aikit_json:.3f} s, ratio bare/aikit {bare_json / aikit_json:.2f}x"
            )
        for question in QUESTIONS[:2]:
            print(f"    {question!r} -> {answers['aikit'][question]!r}")
    print(
        f"server process RSS        {rss_mib:.0f} MiB with {len(names)} models loaded, after"
        " the run"
    )
    if separate:
        parts = " + ".join(f"{v:.0f}" for v in separate.values())
        print(f"one process per model     {parts} = {sum(separate.values()):.0f} MiB"
              f" ({', '.join(separate)}; 3 answers each)")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
