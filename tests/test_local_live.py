"""Live tests on the embedded model (Gemma 3 270M through llama.cpp on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import aikit
from aikit import local
from aikit.settings import get_settings

pytestmark = pytest.mark.live


def _servers_under(home: Path) -> list[int]:
    """PIDs of embedded-model servers started for `home` (their working directory)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (
                b"aikit.local._process" in (proc / "cmdline").read_bytes()
                and Path(os.readlink(proc / "cwd")) == home
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_serve_answers_and_writes_discovery(live: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aikit.cli", "serve"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    info = json.loads((live / "local-server.json").read_text())
    assert info["base_url"].startswith("http://127.0.0.1:") and info["model"] == "gemma-3-270m"
    assert f"at {info['base_url']} (pid {info['pid']})" in done.stdout
    reply = aikit.chat("What is the capital of France?", temperature=0, seed=1)
    assert "Paris" in reply.text
    assert len(reply.text) < 80  # a short answer, not a repetition loop
    assert reply.usage.completion_tokens > 0 and reply.cost == 0.0
    # llama.cpp's threads as libgomp sets them (no spin count of aikit's: the thread count
    # follows the load instead, aikit/local/_threads.py), and the status says how many
    environ = Path(f"/proc/{info['pid']}/environ").read_bytes().split(b"\0")
    assert any(v.startswith(b"GOMP_SPINCOUNT=") for v in environ) == (
        "GOMP_SPINCOUNT" in os.environ
    )
    status = local.idle_status(info) or {}
    assert sum(status["decodes_by_threads"].values()) > 0, status


def _burn() -> None:
    while True:
        pass


def test_beside_cpu_bound_processes_the_model_runs_on_the_free_cores_and_answers_the_same(
    live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp's threads stall at their barrier when other processes hold the cores (28x on 2
    cores beside 2 busy loops): the server takes the cores nobody else wants, and the answers
    are the ones it gives on a quiet machine (issue 21 item 4)."""
    import multiprocessing

    monkeypatch.setenv("AIKIT_CACHE", "off")
    aikit.configure()
    calls = [(q, m) for m in ("gemma-3-270m", "smollm2-135m-instruct") for q in QUESTIONS[:3]]

    def answers() -> dict[tuple[str, str], str]:
        return {
            (q, m): aikit.chat(q, model=m, temperature=0, seed=0, max_tokens=24).text
            for q, m in calls
        }

    quiet = answers()
    info = local.server_info(get_settings()) or {}
    cores = len(os.sched_getaffinity(0))
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(cores)]
    for process in burners:
        process.start()
    before = (local.idle_status(info) or {})["decodes_by_threads"]
    try:
        loaded = answers()  # the server samples the machine while it decodes them
        after = local.idle_status(info) or {}
    finally:
        for process in burners:
            process.kill()
    assert loaded == quiet
    decodes = after["decodes_by_threads"]
    assert decodes.get("1", 0) > before.get("1", 0)  # those answers ran on one thread
    assert after["threads"] == 1  # idle since, it keeps what it saw last


def test_temperature_zero_with_seed_repeats(live: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKIT_CACHE", "off")
    aikit.configure()
    question = "Name a fruit that is yellow."
    answers = {aikit.chat(question, temperature=0, seed=42).text for _ in range(2)}
    assert len(answers) == 1 and answers != {""}


QUESTIONS = [
    "What is the capital of France?",
    "How many days are in a week?",
    "What do bees make?",
    "Who wrote Romeo and Juliet?",
    "Translate 'good morning' into Spanish.",
]


def test_answers_do_not_depend_on_what_was_asked_before(
    live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server reuses the shared transcript prefix (aikit/local/_prefix.py) but never in a
    way that changes an answer: the same questions in two orders give the same answers."""
    monkeypatch.setenv("AIKIT_CACHE", "off")
    aikit.configure()
    forward = {q: aikit.chat(q, temperature=0, seed=0, max_tokens=24).text for q in QUESTIONS}
    backward = {
        q: aikit.chat(q, temperature=0, seed=0, max_tokens=24).text for q in reversed(QUESTIONS)
    }
    assert backward == forward
    assert "Paris" in forward[QUESTIONS[0]]


def test_a_sampled_judge_gives_the_same_verdicts_whatever_came_before(
    live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A judge with repeats samples at 0.7. llama.cpp seeds an unseeded request from the one
    before it, so without the judge's own seeds a verdict changed with the server's history
    (03's judge cell, live against its recording: issue 25)."""
    from aikit import evals

    monkeypatch.setenv("AIKIT_CACHE", "off")
    aikit.configure()
    judge = evals.judge("The answer states the same fact as the reference.", repeats=2,
                        max_tokens=48)  # fmt: skip
    args = ("Yes, it is.", "positive")
    first = judge.judgement(*args, input="Is this review positive? 'Loved it.'")
    for question in QUESTIONS[:2]:  # unseeded sampled calls move the server's seed
        aikit.chat(question, temperature=0.9, max_tokens=8)
    again = judge.judgement(*args, input="Is this review positive? 'Loved it.'")
    assert (again.reason, again.score, again.n_parsed) == (first.reason, first.score,
                                                          first.n_parsed)  # fmt: skip


def test_a_structured_answer_keeps_control_characters_out_of_its_strings(
    live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-cpp-python's schema grammar let a raw newline into a JSON string: this verdict
    (03's calibration) came back as invalid JSON twice, re-ask included, before
    `aikit.local._grammar.strict_json_strings`; now the string closes where the line ended.
    Once `reason` had a `maxLength`, the same verdict parsed with `"score": 5` (unscored) until
    `unit_interval_numbers` kept the score between 0 and 1."""
    from aikit import evals

    monkeypatch.setenv("AIKIT_CACHE", "off")
    aikit.configure()
    passages = [
        "Up to 5 unused days may be carried over into the next year. Carried-over days must be"
        " used by 31 March; after that they expire. Days beyond five expire on 31 December"
        " unless your director approved an exception in writing.",
        "Every full-time employee has 27 working days of paid annual leave per calendar year, on"
        " top of public holidays. Part-time employees get the same allowance pro rata. New"
        " joiners accrue leave from their first day.",
    ]
    verdict = evals.support_judge().judgement(
        "You can carry over up to 5 unused days into the next year.",
        evals.numbered(passages),
        input="Can I carry unused leave into next year?",
    )
    assert verdict.n_parsed == 1, verdict.reason
    assert verdict.completion_tokens < 256  # one answer, not an answer and a re-ask


def test_a_judge_that_repeats_its_reason_is_cut_short_and_still_scores(
    live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gemma 3 270M repeats the passage in `reason` until `max_tokens` on this claim (a claim of
    `benchmarks/claims_judge.py`'s test split): 256 tokens, twice with the re-ask, and no
    verdict. The schema's `maxLength` lets the grammar close the string, so a score follows."""
    from aikit import evals
    from aikit.evals.judge import REASON_CHARS

    monkeypatch.setenv("AIKIT_CACHE", "off")
    aikit.configure()
    passage = (
        "Lunch in the staff canteen is free for employees on the late shift. Everyone else pays"
        " 4.50 euros for a hot meal. The canteen is open from 11:30 to 14:00 on weekdays and is"
        " closed at weekends."
    )
    verdict = evals.support_judge().judgement(
        "The canteen serves from 11:30 until 14:00, Monday to Friday.", evals.numbered([passage])
    )
    assert verdict.n_parsed == 1, verdict.reason
    assert verdict.score in (0.0, 1.0)
    assert len(verdict.reason) <= REASON_CHARS
    assert verdict.completion_tokens < 256  # one answer, not an answer and a re-ask


def test_prefix_reuse_is_bit_for_bit_a_fresh_evaluation() -> None:
    """StablePrefix on a bare Llama: the logits after reusing the cache equal those of a fresh
    evaluation exactly, and most of each prompt really comes from the cache."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import numpy as np

    from aikit.local._prefix import StablePrefix

    def model() -> tuple[Any, StablePrefix]:
        llama = llama_cpp.Llama(
            model_path=str(local.model_path()), n_ctx=1024, logits_all=False, verbose=False
        )
        return llama, StablePrefix(llama)

    def last_logits(llama: Any, prefix: StablePrefix, prompt: str) -> Any:
        tokens = llama.tokenize(prompt.encode(), special=True)
        # what Llama.generate does: keep the longest common prefix, evaluate the rest
        kept = 0
        for old, new in zip(llama.input_ids[: llama.n_tokens], tokens[:-1], strict=False):
            if old != new:
                break
            kept += 1
        llama.n_tokens = kept
        prefix.expect_prompt(len(tokens))
        llama.eval(tokens[kept:])
        logits = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, -1)
        return np.ctypeslib.as_array(logits, shape=(llama.n_vocab(),)).copy()

    reusing, reuse_prefix = model()
    fresh, fresh_prefix = model()
    for question in QUESTIONS:
        prompt = local.render_transcript([{"role": "user", "content": question}])
        fresh.reset()
        expected = last_logits(fresh, fresh_prefix, prompt)
        assert np.array_equal(last_logits(reusing, reuse_prefix, prompt), expected), question
    prompt_tokens = len(reusing.tokenize(prompt.encode(), special=True))
    assert fresh_prefix.reused == 0
    assert reuse_prefix.reused >= (len(QUESTIONS) - 1) * prompt_tokens * 0.7


def test_an_exact_cache_hit_does_not_change_the_answer() -> None:
    """The same prompt asked for one token, then for more (the whole prompt is in the cache):
    the answer is the one a fresh model gives."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from aikit.local._prefix import StablePrefix

    def model() -> tuple[Any, StablePrefix]:
        llama = llama_cpp.Llama(
            model_path=str(local.model_path()), n_ctx=1024, logits_all=False, verbose=False
        )
        return llama, StablePrefix(llama)

    (cached, prefix), (fresh, _) = model(), model()
    prompt = local.render_transcript([{"role": "user", "content": "Name three colours."}])
    ask = {"temperature": 0.0, "stop": ["\n\n", "\nUser:"]}
    cached.create_completion(prompt, max_tokens=1, **ask)
    again = cached.create_completion(prompt, max_tokens=24, **ask)["choices"][0]["text"]
    assert prefix.reused > 0  # the second answer came from the cached prompt
    assert again == fresh.create_completion(prompt, max_tokens=24, **ask)["choices"][0]["text"]


def test_the_grammar_bounds_a_unit_score_and_leaves_other_bounds_alone() -> None:
    """`unit_interval_numbers`: the judge's `score` (minimum 0, maximum 1) gets a rule that only
    spells numbers from 0 to 1; a number with other bounds keeps llama-cpp-python's own rule."""
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    from aikit.evals.judge import REASON_CHARS, Verdict
    from aikit.local._grammar import UNIT_NUMBER, unit_interval_numbers

    def rules(schema: dict[str, Any]) -> dict[str, str]:
        gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
        return dict(line.split(" ::= ", 1) for line in gbnf.strip().splitlines())

    unit_interval_numbers()
    unit_interval_numbers()  # twice is once
    verdict = rules(Verdict.model_json_schema())
    assert verdict["score"] == UNIT_NUMBER
    assert verdict["reason"].count("(char") == REASON_CHARS  # up to 200 characters, no more
    other = {"type": "object", "properties": {"n": {"type": "number", "minimum": 0, "maximum": 5}}}
    five = rules(other)
    assert "n" not in five or five["n"] != UNIT_NUMBER
    assert "integral-part" in five["number"]


def test_grammar_asked_last_gives_the_full_checks_answer() -> None:
    """GrammarLast on a bare Llama against llama-cpp-python's own grammar sampling: the same
    structured answers (greedy, with the server's default repeat penalty), and most tokens
    decided without the check over the whole vocabulary."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from aikit.local._grammar import GrammarLast

    verdict = {
        "type": "object",
        "properties": {"reason": {"type": "string"}, "passed": {"type": "boolean"}},
        "required": ["reason", "passed"],
    }
    capital = {
        "type": "object",
        "properties": {"country": {"type": "string"}, "capital": {"type": "string"}},
        "required": ["country", "capital"],
    }
    asks = [
        ("Give the country France and its capital as JSON.", capital),
        ("Give the country Japan and its capital as JSON.", capital),
        ("Is the review 'I love this kettle' positive? Reply with JSON.", verdict),
    ]

    def model() -> Any:
        return llama_cpp.Llama(
            model_path=str(local.model_path()), n_ctx=1024, logits_all=False, verbose=False
        )

    quick, plain = model(), model()
    checker = GrammarLast(quick)
    for question, schema in asks:
        prompt = local.render_transcript([{"role": "user", "content": question}])
        grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        texts = [
            llama.create_completion(
                prompt, max_tokens=64, temperature=0.0, repeat_penalty=1.1, grammar=grammar
            )["choices"][0]["text"]
            for llama in (quick, plain)
        ]
        assert texts[0] == texts[1], question
        assert json.loads(texts[0]).keys() == schema["properties"].keys()
    assert checker.quick > 3 * checker.full


def test_identical_calls_hit_the_cache(live: Path) -> None:
    first = aikit.chat("How many days are in a week?", temperature=0, seed=3)
    second = aikit.chat("How many days are in a week?", temperature=0, seed=3)
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text  # answered by the store: no second model call


def test_structured_output_is_grammar_constrained(live: Path) -> None:
    from pydantic import BaseModel

    class Capital(BaseModel):
        country: str
        capital: str

    reply = aikit.chat(
        "Give the country France and its capital as JSON.", response_format=Capital, temperature=0
    )
    assert isinstance(reply.parsed, Capital), reply.error
    assert reply.calls == 1


def test_two_kernels_share_one_server_started_once(live: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    local.stop_server(get_settings())
    assert _servers_under(live) == []
    env = {**os.environ, "AIKIT_HOME": str(live)}
    kernels = [start_new_kernel(kernel_name="python3", env=env) for _ in range(2)]
    urls: list[str] = []
    try:
        # Both kernels run ensure_server() at the same time (separate processes).
        ids = [
            kc.execute("from aikit import local; print(local.ensure_server())") for _, kc in kernels
        ]
        for (_, kc), msg_id in zip(kernels, ids, strict=True):
            out = []
            while True:
                msg = kc.get_iopub_msg(timeout=300)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    pytest.fail("\n".join(msg["content"]["traceback"]))
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            urls.append("".join(out).strip())
    finally:
        for km, kc in kernels:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    info = json.loads((live / "local-server.json").read_text())
    assert urls == [info["base_url"]] * 2
    assert _servers_under(live) == [info["pid"]]  # the lock let only one start


def test_serve_stop_stops_it(live: Path) -> None:
    local.ensure_server(get_settings())
    pid = json.loads((live / "local-server.json").read_text())["pid"]
    done = subprocess.run(
        [sys.executable, "-m", "aikit.cli", "serve", "--stop"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == f"stopped the embedded model server (pid {pid})\n"
    assert not (live / "local-server.json").exists()
    assert _servers_under(live) == []
    again = subprocess.run(
        [sys.executable, "-m", "aikit.cli", "serve", "--status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (again.returncode, again.stdout) == (1, "no server running\n")


def test_an_idle_server_exits_and_doctor_leaves_none_behind(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    home = tmp_path / "idle-home"
    env = {**os.environ, "AIKIT_HOME": str(home), "AIKIT_SERVER_IDLE_S": "4"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aikit.cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

    # doctor starts the server for its check and stops it again
    doctor = cli("doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert "answers    yes" in doctor.stdout and _servers_under(home) == []
    # a server nobody uses any more exits by itself after AIKIT_SERVER_IDLE_S
    assert cli("serve").returncode == 0
    [pid] = _servers_under(home)
    status = cli("serve", "--status")
    assert status.returncode == 0 and f"(pid {pid}, idle " in status.stdout
    assert "it stops after 4 s idle" in status.stdout
    deadline = time.monotonic() + 60
    while _servers_under(home) and time.monotonic() < deadline:
        time.sleep(1)
    assert _servers_under(home) == []
    assert cli("serve", "--status").stdout.strip() == "no server running"


# -- the second embedded model and prompting per model (issue 24) ------------------------------

SMOL = "smollm2-135m-instruct"
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Review: It broke after two days.\nPositive or negative?"},
    ],
    [
        {"role": "user", "content": "Review: Lovely mug.\nPositive or negative?"},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "Review: It leaks.\nPositive or negative?"},
    ],
]


def test_the_rendered_prompt_is_llama_cpp_pythons_own_rendering_of_the_gguf_template() -> None:
    """aikit renders SmolLM2's prompt (for the token counter, describe_request and the lesson)
    exactly as llama-cpp-python does from the GGUF's `tokenizer.chat_template` on load."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama = llama_cpp.Llama(model_path=str(local.model_path(SMOL)), vocab_only=True, verbose=False)
    eos, bos = llama.token_eos(), llama.token_bos()
    theirs = Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
    for messages in CONVERSATIONS:
        ours = local.render_prompt(SMOL, messages)
        assert ours == theirs(messages=messages).prompt
        assert ours.startswith("<|im_start|>system\n") and ours.endswith("<|im_start|>assistant\n")
    assert local.render_prompt("gemma-3-270m", CONVERSATIONS[0]).endswith(
        "User: What is the capital of France?\nAssistant:"
    )


@pytest.mark.parametrize("model", ["gemma-3-270m", SMOL])
def test_the_server_sees_the_prompt_aikit_counts(
    model: str, live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each model is prompted in its own format: the server's prompt tokens equal the offline
    count of aikit's rendering (transcript or chat template), and the same answers come back
    when the questions are asked again in another order (prefix reuse never changes one)."""
    monkeypatch.setenv("AIKIT_CACHE", "off")
    aikit.configure()
    counter = local.token_counter(model)
    assert counter.name == f"gguf vocabulary of {model}"
    replies = [
        aikit.chat(m, model=model, temperature=0, seed=0, max_tokens=24) for m in CONVERSATIONS
    ]
    for messages, reply in zip(CONVERSATIONS, replies, strict=True):
        assert reply.usage.prompt_tokens == counter.prompt_tokens(messages)
    forward = {q: aikit.chat(q, model=model, temperature=0, seed=0, max_tokens=24).text
               for q in QUESTIONS}  # fmt: skip
    backward = {q: aikit.chat(q, model=model, temperature=0, seed=0, max_tokens=24).text
                for q in reversed(QUESTIONS)}  # fmt: skip
    assert backward == forward and all(forward.values())
    info = json.loads((live / "local-server.json").read_text())
    assert info["models"] == ["gemma-3-270m", SMOL]  # one process holds both


def test_the_models_answer_differently_in_their_own_formats(live: Path) -> None:
    """The instruction-tuned model follows a zero-shot instruction the base model ignores."""
    review = "Review: It stopped working after two days.\nIs this review positive or negative?"
    gemma = aikit.chat(review, temperature=0, seed=1, max_tokens=24).text
    smol = aikit.chat(review, model=SMOL, temperature=0, seed=1, max_tokens=24).text
    assert gemma != smol
    assert "negative" in smol.lower() or "positive" in smol.lower()


def test_structured_output_and_the_grammar_shortcut_on_smollm2(live: Path) -> None:
    """The JSON grammar holds for the second model through the server, and GrammarLast on a bare
    SmolLM2 gives llama-cpp-python's own grammar-sampled text."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from pydantic import BaseModel

    from aikit.local._grammar import GrammarLast

    class Capital(BaseModel):
        country: str
        capital: str

    reply = aikit.chat("Give the country France and its capital as JSON.", model=SMOL,
                       response_format=Capital, temperature=0)  # fmt: skip
    assert isinstance(reply.parsed, Capital), reply.error
    schema = json.dumps(Capital.model_json_schema())

    def model() -> Any:
        return llama_cpp.Llama(model_path=str(local.model_path(SMOL)), n_ctx=1024,
                               logits_all=False, verbose=False)  # fmt: skip

    quick, plain = model(), model()
    checker = GrammarLast(quick)
    for country in ["France", "Japan"]:
        prompt = local.render_prompt(SMOL, [{"role": "user", "content": f"Give the country"
                                             f" {country} and its capital as JSON."}])  # fmt: skip
        grammar = llama_cpp.LlamaGrammar.from_json_schema(schema, verbose=False)
        texts = [
            llama.create_completion(prompt, max_tokens=48, temperature=0.0, grammar=grammar)[
                "choices"
            ][0]["text"]
            for llama in (quick, plain)
        ]
        assert texts[0] == texts[1], country
    assert checker.quick > 3 * checker.full


def test_a_prompt_picks_its_variant_by_the_model_a_call_goes_to(live: Path) -> None:
    """chat, batch and evaluate render a `Prompt`'s variant for the model asked: the base model
    gets the few-shot override, the instruction-tuned model the default."""
    from aikit import evals
    from aikit.prompts import Prompt, describe_request

    prompt = Prompt(
        "Classify the sentiment of this review as positive or negative.\nReview: {{ input }}",
        overrides={
            "base": "Review: Great mug.\nSentiment: positive\n\nReview: {{ input }}\nSentiment:"
        },
        name="sentiment",
    )
    assert prompt.for_model("gemma-3-270m")[0] == "base"
    assert prompt.for_model(SMOL)[0] == "default"
    items = [{"input": "It leaks everywhere.", "expected": "negative"}]
    for model, variant in [("gemma-3-270m", "base"), (SMOL, "default")]:
        text = prompt.choose(local.get_model(model).families)[1].render(input=items[0]["input"])
        seen = describe_request(text, model=model)
        assert prompt.describe(input=items[0]["input"], model=model) == {"variant": variant, **seen}
        frame = aikit.batch(items, template=prompt, model=model, max_tokens=8, progress=False)
        assert frame["prompt_tokens"].tolist() == [seen["prompt_tokens"]]
        result = evals.evaluate(prompt, items, [evals.contains], model=model, max_tokens=8,
                                progress=False)  # fmt: skip
        assert result.samples["prompt_tokens"].tolist() == [seen["prompt_tokens"]]
    gemma_sees = describe_request(prompt.render(input="x", model="gemma-3-270m"))["received"]
    assert "Sentiment: positive" in gemma_sees and gemma_sees.endswith("\nAssistant:")


def test_the_model_sweep_playbook_runs_its_grid_with_gates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """playbooks/model-sweep.yaml: models x prompt variants x data slices, one run each, replayed
    from 07_models' cassette (no model call), every run gated on its accuracy."""
    from aikit.runner import run_playbook

    root = Path(__file__).resolve().parents[1]
    cassette = root / "notebooks" / "cassettes" / "07_models.jsonl"
    env = {
        "AIKIT_CACHE": "replay",
        "AIKIT_HOME": str(tmp_path / "home"),
        "AIKIT_CACHE_PATH": str(tmp_path / "empty.sqlite"),
        "AIKIT_CASSETTES": str(cassette),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = run_playbook(root / "playbooks" / "model-sweep.yaml", out=tmp_path / "runs")
    table = aikit.runs(tmp_path / "runs", "model-sweep")
    assert len(table) == 16 and set(table["status"]) == {"succeeded"}
    assert set(table["model"]) == {"gemma-3-270m", SMOL}
    assert set(table["prompt_variant"]) == {"zero_shot", "instructed", "few_shot", "per_model"}
    assert set(table["subset"]) == {"sentiment", "city"}
    assert table["fail_under_accuracy"].eq(0.1).all() and table["accuracy"].between(0, 1).all()
    assert list(table["gate_passed"]) == list(table["accuracy"] >= 0.1)
    assert result.failed == []  # every run succeeded; a gate below 0.1 is a gate failure
    assert len(result.gate_failures) == int((table["accuracy"] < 0.1).sum())
