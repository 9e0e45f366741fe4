"""RAG answer metrics against people: the hand-labelled claims of
notebooks/data/evals/faithfulness.jsonl, offline (all-MiniLM-L6-v2) and with a judge served on
127.0.0.1 through the openai SDK (one that follows a rule, one that answers garbage)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import API_KEY, ROOT
from judge_server import JudgeServer

import aikit.evals as ev
from aikit import settings
from aikit.evals.judge import cohen_kappa
from aikit.evals.rag_metrics import split_claims

pytest.importorskip("sentence_transformers", reason="the offline metrics need aikit[rag]")

LABELLED = ROOT / "notebooks" / "data" / "evals" / "faithfulness.jsonl"
PAIRS = [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]
# A sentence no passage of the knowledge base supports (checked below for every pair).
UNSUPPORTED = "Employees also receive a free gym membership in Riga worth €900 a year."


@pytest.fixture(scope="module")
def embed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the module: each text is embedded once."""
    return tmp_path_factory.mktemp("embed-home")


@pytest.fixture
def cached(embed_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKIT_HOME", str(embed_home))
    settings.reset_settings()


def _serve(monkeypatch: pytest.MonkeyPatch, server: JudgeServer) -> Iterator[JudgeServer]:
    server.start()
    monkeypatch.setenv("AIKIT_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("AIKIT_MAX_RETRIES", "0")
    settings.reset_settings()
    yield server
    server.stop()


@pytest.fixture
def judge_server(monkeypatch: pytest.MonkeyPatch, cached: None) -> Iterator[JudgeServer]:
    yield from _serve(monkeypatch, JudgeServer())


@pytest.fixture
def garbage_server(monkeypatch: pytest.MonkeyPatch, cached: None) -> Iterator[JudgeServer]:
    yield from _serve(monkeypatch, JudgeServer(garbage=True))


def agreement(human: list[bool], machine: list[bool | None]) -> tuple[float, float | None, int]:
    pairs = [(h, m) for h, m in zip(human, machine, strict=True) if m is not None]
    hs, ms = [h for h, _ in pairs], [bool(m) for _, m in pairs]
    accuracy = sum(h == m for h, m in pairs) / len(pairs)
    return accuracy, cohen_kappa(hs, ms), len(pairs)


def test_the_labelled_set_is_what_the_docs_say() -> None:
    assert len(PAIRS) >= 30
    labels = [c["supported"] for p in PAIRS for c in p["claims"]]
    assert 0.2 < labels.count(False) / len(labels) < 0.5  # both kinds, neither rare
    for pair in PAIRS:
        # Each answer's claims are exactly what split_claims finds, so metric and labels agree
        # on what a claim is; every answer has a supported claim (monotonicity needs one).
        assert split_claims(pair["answer"]) == [c["text"] for c in pair["claims"]], pair["id"]
        assert any(c["supported"] for c in pair["claims"]), pair["id"]
        assert all(isinstance(p, str) and p for p in pair["context"])
        assert len(pair["sources"]) == len(pair["context"])
        for source, passage in zip(pair["sources"], pair["context"], strict=True):
            document = " ".join((ROOT / "notebooks/data/kb" / source).read_text().split())
            # Copied from the knowledge base (Markdown bold and code marks dropped).
            plain = document.replace("**", "").replace("`", "")
            assert passage.split(". ")[0][:30] in plain, (pair["id"], source)


def test_split_claims() -> None:
    assert split_claims("Leave is 27 days [1]. It is paid; ask HR!  ") == [
        "Leave is 27 days.",
        "It is paid",
        "ask HR!",
    ]
    assert split_claims("") == [] and split_claims(None) == []
    assert split_claims("Costs €5,000.00 in total.") == ["Costs €5,000.00 in total."]


@pytest.mark.timeout(900)  # every claim embedded afresh: minutes on a loaded 2-core machine
def test_offline_support_agrees_with_the_labels(cached: None, capsys: Any) -> None:
    from sklearn.metrics import cohen_kappa_score

    human = [c["supported"] for p in PAIRS for c in p["claims"]]
    machine = [
        s for p in PAIRS for s in ev.claim_support([c["text"] for c in p["claims"]], p["context"])
    ]
    accuracy, kappa, n = agreement(human, machine)
    assert n == len(human) and kappa is not None
    assert kappa == pytest.approx(cohen_kappa_score(human, [bool(m) for m in machine]))
    with capsys.disabled():
        print(
            f"\noffline claim test vs human labels (faithfulness.jsonl, {n} claims of"
            f" {len(PAIRS)} answers): accuracy {accuracy:.3f}, Cohen's kappa {kappa:.3f}"
        )
    assert accuracy >= 0.8 and kappa >= 0.6


CLAIMS = ROOT / "notebooks" / "data" / "evals" / "claims.jsonl"
KINDS = [
    "supported paraphrase",
    "invented on-topic",
    "negation",
    "changed number or date",
    "swapped entity",
    "dropped qualifier",
    "over-generalisation",
    "partly supported",
]


def _labels_match_kinds_one_claim_each(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert row["supported"] == (row["kind"] == "supported paraphrase"), row["id"]
        assert split_claims(row["claim"]) == [row["claim"]], row["id"]  # one claim each


def test_the_claim_set_covers_every_kind_in_both_splits() -> None:
    rows = ev.load_claims(CLAIMS)
    assert len(rows) >= 250 and len({r["id"] for r in rows}) == len(rows)
    assert {r["kind"] for r in rows} == set(KINDS)
    _labels_match_kinds_one_claim_each(rows)
    for split in ("calibration", "test"):
        mine = [r for r in rows if r["split"] == split]
        assert all(sum(r["kind"] == k for r in mine) >= 13 for k in KINDS), split
    # A passage is in one split only: the test split's passages were never calibrated on.
    groups = {s: {r["group"] for r in rows if r["split"] == s} for s in ("calibration", "test")}
    assert not groups["calibration"] & groups["test"]


def test_the_training_claims_share_nothing_with_the_test_split() -> None:
    # Written blind to the test split (a second test of the rules, and the training set of
    # benchmarks/claim_model.py): kinds as in the labelled set, one claim each, and no passage
    # or claim in common with either split.
    rows = ev.load_claims(CLAIMS)
    train = ev.load_claims(CLAIMS.with_name("claims_train.jsonl"))
    assert len(train) == 800 and {r["split"] for r in train} == {"train"}
    assert all(sum(r["kind"] == k for r in train) >= 80 for k in KINDS)
    _labels_match_kinds_one_claim_each(train)
    assert not {r["id"] for r in train} & {r["id"] for r in rows}
    assert not {r["group"] for r in train} & {r["group"] for r in rows}
    passages = {p for r in rows for p in r["context"]}
    assert not {p for r in train for p in r["context"]} & passages
    assert not {r["claim"] for r in train} & {r["claim"] for r in rows}


# playbooks/evals.md's figures on the 800 training claims: claims right per kind, and kappa.
ON_THE_TRAINING_CLAIMS = {
    "supported paraphrase": (62, 240),
    "invented on-topic": (79, 80),
    "negation": (70, 80),
    "changed number or date": (78, 80),
    "swapped entity": (44, 80),
    "dropped qualifier": (30, 80),
    "over-generalisation": (76, 80),
    "partly supported": (75, 80),
}


@pytest.mark.timeout(900)  # 800 claims embedded afresh: minutes on a loaded 2-core machine
def test_the_rules_on_claims_written_apart_from_them(cached: None, capsys: Any) -> None:
    """The second measurement playbooks/evals.md quotes: on claims written apart from the rules,
    whose paraphrases lean on inference, the rules agree with the labels barely above chance.
    Within one claim per kind of the figures there, so a change to the rules that moves them
    updates the docs."""
    report = ev.claim_report(CLAIMS.with_name("claims_train.jsonl"), split="train")
    with capsys.disabled():
        print(f"\noffline claim test, the 800 training claims:\n{report}")
    kinds = report.kinds.set_index("kind")
    assert report.claims == 800 and report.unscored == 0
    for kind, (right, claims) in ON_THE_TRAINING_CLAIMS.items():
        assert kinds.loc[kind, "claims"] == claims, kind
        assert abs(kinds.loc[kind, "right"] * claims - right) <= 1, (kind, kinds.loc[kind])
    assert report.kappa is not None and report.kappa_interval is not None
    low, high = report.kappa_interval
    assert 0 < low < 0.02 and report.kappa < 0.1 < high  # barely above chance


@pytest.mark.timeout(900)  # every claim embedded afresh: minutes on a loaded 2-core machine
def test_offline_claim_test_on_the_test_split(cached: None, capsys: Any) -> None:
    """The figures playbooks/evals.md quotes: the test split only, per kind, with intervals;
    beside it the similarity-and-numbers test this one replaced, on the same claims."""
    report = ev.claim_report(CLAIMS, split="test")

    def similarity_only(row: dict[str, Any]) -> bool:
        check = ev.claim_checks([row["claim"]], row["context"], threshold=0.65)[0]
        return not [f for f in check.failed if f.startswith(("similar", "numbers"))]

    before = ev.claim_report(CLAIMS, split="test", checker=similarity_only)
    with capsys.disabled():
        print(f"\noffline claim test, test split:\n{report}")
        print(f"similarity >= 0.65 and numbers only (the former test), same split:\n{before}")
    kinds = report.kinds.set_index("kind")
    old = before.kinds.set_index("kind")
    assert report.claims == 130 and report.unscored == 0
    assert report.kappa is not None and report.kappa_interval is not None
    low, high = report.kappa_interval
    assert low < report.kappa < high
    # The target, >= 0.90 caught in every kind, is reached in four kinds of seven
    for kind in ("invented on-topic", "changed number or date", "over-generalisation"):
        assert kinds.loc[kind, "right"] == 1.0, kind
    assert kinds.loc["negation", "right"] >= 12 / 13
    # and missed in three: what this test reaches there (playbooks/evals.md says what it misses).
    assert kinds.loc["swapped entity", "right"] >= 8 / 13
    assert kinds.loc["dropped qualifier", "right"] >= 7 / 13
    assert kinds.loc["partly supported", "right"] >= 9 / 13
    assert report.accuracy >= 0.761 and report.kappa >= 0.43
    # Every unsupported kind: caught at least as often as before, and more in total.
    unsupported = [k for k in KINDS if k != "supported paraphrase"]
    assert all(kinds.loc[k, "right"] >= old.loc[k, "right"] for k in unsupported)
    assert kinds.loc[unsupported, "right"].mean() >= old.loc[unsupported, "right"].mean() + 0.3
    # The price, measured: 15 of 39 supported paraphrases flagged, far above the 0.10 target.
    kept = kinds.loc["supported paraphrase", "right"]
    assert 24 / 39 <= kept < old.loc["supported paraphrase", "right"]
    assert report.accuracy > before.accuracy


def test_the_judge_variant_on_the_test_split(judge_server: JudgeServer, capsys: Any) -> None:
    """The same split through a judge; on the test server the judge is a word-overlap rule
    (plumbing, not a model: playbooks/evals.md says why there is no hosted-model figure)."""
    judge = ev.judge("(the claim rubric replaces this)", model="judge-model")
    report = ev.claim_report(CLAIMS, split="test", judge=judge)
    with capsys.disabled():
        print(f"\njudge (word-overlap rule on the test server), test split:\n{report}")
    assert report.claims == 130 and report.unscored == 0
    assert len(judge_server.requests) == 130  # one verdict per claim
    prompt = judge_server.requests[0]["messages"][-1]["content"]
    assert "Claim: " in prompt and "[1] " in prompt
    kinds = report.kinds.set_index("kind")
    # Word overlap keeps paraphrases that reuse words and misses what reuses them wrongly.
    assert kinds.loc["negation", "right"] < 0.5 and kinds.loc["swapped entity", "right"] < 0.5


def test_the_judge_benchmark_replays_a_recorded_cassette(
    judge_server: JudgeServer, tmp_path: Path
) -> None:
    """The hosted-model hook of benchmarks/claims_judge.py: `--record` where the model answers,
    `--cassette` replays the same verdicts with no request, no key and no provider settings."""
    cassette = tmp_path / "hosted.jsonl"
    script = [sys.executable, str(ROOT / "benchmarks" / "claims_judge.py"), "--limit", "4"]
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=600)
    recorded = run([*script, "--record", str(cassette), "--model", "judge-model"])
    assert recorded.returncode == 0, recorded.stderr
    assert len(judge_server.requests) == 4 and "recorded 4 answers" in recorded.stdout
    assert API_KEY not in cassette.read_text()
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AIKIT_"))}
    bare["AIKIT_HOME"] = str(tmp_path / "fresh")
    replayed = run([*script, "--cassette", str(cassette)], env=bare)
    assert replayed.returncode == 0, replayed.stderr
    assert len(judge_server.requests) == 4  # nothing asked: every verdict from the cassette
    assert "judge judge-model (openai, cache replay) on 4 claims" in replayed.stdout

    def report(out: str) -> list[str]:
        return [line for line in out.splitlines() if "claims:" in line or "kept" in line]

    assert report(replayed.stdout) == report(recorded.stdout) and report(replayed.stdout)
    missing = run([*script, "--cassette", str(tmp_path / "none.jsonl")], env=bare)
    assert missing.returncode == 2 and "no cassette at" in missing.stderr


# The four kinds the similarity test scored as fully supported (issue 21's examples).
REGRESSIONS = {
    "invented on-topic": (
        "The Lindqvist museum stands at 8 Quay Road and opened in 1994.",
        "The Lindqvist museum is at 8 Quay Road. It opened in 1994.",
        "The museum's roof garden grows coffee.",
    ),
    "negation": (
        "Returns are accepted only with a receipt, within 14 days of purchase.",
        "Returns are accepted within 14 days of purchase.",
        "Returns are accepted without a receipt.",
    ),
    "swapped entity": (
        "Priya runs the billing team and Tom runs the payments team.",
        "Tom runs the payments team.",
        "Priya runs the payments team.",
    ),
    "dropped qualifier": (
        "Lunch in the canteen is free for staff on the late shift; it is served from 12:00.",
        "Lunch is served from 12:00.",
        "Lunch is free for everyone.",
    ),
}


@pytest.mark.parametrize("kind", list(REGRESSIONS))
def test_an_unsupported_claim_of_each_kind_lowers_faithfulness(cached: None, kind: str) -> None:
    passage, answer, unsupported = REGRESSIONS[kind]
    without = ev.faithfulness(answer, context=[passage])
    with_it = ev.faithfulness(f"{answer} {unsupported}", context=[passage])
    assert without == 1.0, ev.claim_checks(split_claims(answer), [passage])
    assert with_it is not None and with_it < without
    check = ev.claim_checks([unsupported], [passage])[0]
    assert not check.supported and check.failed, check


def test_judge_support_agrees_with_the_labels(judge_server: JudgeServer, capsys: Any) -> None:
    judge = ev.judge("(the claim rubric replaces this)", model="judge-model")
    human = [c["supported"] for p in PAIRS for c in p["claims"]]
    machine = [
        s
        for p in PAIRS
        for s in ev.claim_support(
            [c["text"] for c in p["claims"]], p["context"], question=p["question"], judge=judge
        )
    ]
    accuracy, kappa, n = agreement(human, machine)
    with capsys.disabled():
        print(
            f"\njudge (word-overlap rule on the test server) vs human labels: {n} claims:"
            f" accuracy {accuracy:.3f}, Cohen's kappa {kappa:.3f}"
        )
    assert n == len(human) and kappa is not None and accuracy >= 0.8
    prompt = judge_server.requests[0]["messages"][-1]["content"]
    assert "Claim: " in prompt and "[1] " in prompt and PAIRS[0]["question"] in prompt
    assert judge_server.requests[0]["model"] == "judge-model"
    assert judge_server.requests[0]["response_format"]["type"] == "json_schema"


def test_an_unsupported_sentence_lowers_faithfulness_on_every_pair(
    judge_server: JudgeServer,
) -> None:
    judge = ev.judge("claims", model="judge-model")
    zero = 0
    for pair in PAIRS:
        for variant in ({}, {"judge": judge}):
            score = functools.partial(ev.faithfulness, context=pair["context"], **variant)
            base, padded = score(pair["answer"]), score(f"{pair['answer']} {UNSUPPORTED}")
            assert base is not None and padded is not None
            # (an answer the offline test finds wholly unsupported stays at 0)
            assert padded < base or padded == base == 0.0, (pair["id"], variant, base, padded)
            zero += base == 0.0
            n = len(pair["claims"])
            assert padded == pytest.approx(base * n / (n + 1))  # one more claim, unsupported
    # The one answer whose every claim the offline test misses: f04 ("a week" for "five
    # days"; see playbooks/evals.md, what the claim test misses). Six before issue 21's rules.
    assert zero <= 1


def test_garbage_verdicts_are_unscored_not_zero(garbage_server: JudgeServer) -> None:
    judge = ev.judge("claims", model="judge-model")
    pair = PAIRS[0]
    assert ev.faithfulness(pair["answer"], context=pair["context"], judge=judge) is None
    assert ev.answer_relevance(pair["answer"], question=pair["question"], judge=judge) is None
    data = [
        {"id": p["id"], "input": p["question"], "expected": p["reference"], "answer": p["answer"]}
        for p in PAIRS[:4]
    ]
    by_question = {p["question"]: p for p in PAIRS[:4]}

    def task(question: str) -> dict[str, Any]:
        p = by_question[question]
        return {"output": p["answer"], "context": p["context"], "question": question}

    faithful = functools.partial(ev.faithfulness, judge=judge)
    result = ev.evaluate(task, data, {"faithfulness": faithful, "offline": ev.faithfulness})
    summary = result.summary.set_index("metric")
    assert (summary.loc["faithfulness", "n_unscored"], summary.loc["faithfulness", "n_scored"]) == (
        4,
        0,
    )
    assert summary.loc["offline", "n_scored"] == 4  # the offline variant still scores them
    assert np.isnan(summary.loc["faithfulness", "mean"])


def test_evaluate_passes_context_and_question_from_the_task(cached: None) -> None:
    pairs = PAIRS[:6]
    data = [{"id": p["id"], "input": p["question"], "expected": p["reference"]} for p in pairs]
    by_question = {p["question"]: p for p in pairs}

    class Answer:  # the shape of aikit.rag.Answer: text, found, question, context (hits)
        def __init__(self, p: dict[str, Any]) -> None:
            import pandas as pd

            self.text, self.found, self.question = p["answer"], True, p["question"]
            self.context = pd.DataFrame({"source": p["sources"], "text": p["context"]})
            self.reply = None

    def pipeline(question: str) -> Answer:
        return Answer(by_question[question])

    metrics = [ev.faithfulness, ev.context_recall, ev.context_precision, ev.answer_relevance]
    result = ev.evaluate(pipeline, data, metrics)
    samples = result.samples.set_index("id")
    for p in pairs:
        row = samples.loc[p["id"]]
        assert row.output == p["answer"] and row.context == p["context"]
        assert row.faithfulness == pytest.approx(ev.faithfulness(p["answer"], context=p["context"]))
        assert row.context_recall == pytest.approx(
            ev.context_recall(
                p["answer"], p["reference"], context=p["context"], question=p["question"]
            )
        )
        assert row.answer_relevance == pytest.approx(
            ev.answer_relevance(p["answer"], question=p["question"])
        )
    summary = result.summary.set_index("metric")
    assert (summary["n_scored"] == 6).all() and (summary["n_errors"] == 0).all()
    # The references are answered by the first passage, never by the distractor; the claim
    # test misses two of the six (f03 "illness" for "ill", f04 "a week" for "five days").
    assert summary.loc["context_recall", "mean"] == pytest.approx(4 / 6)
    # The distractor never supports the reference; the first passage does on two of six.
    assert summary.loc["context_precision", "mean"] == pytest.approx(1 / 3)
    # A template task has no context: the context metrics are unscored, not 0.
    plain = [{"id": "x", "input": "q", "expected": "a"}]
    no_ctx = ev.evaluate(lambda q: "an answer.", plain, [ev.faithfulness])
    assert no_ctx.summary.iloc[0].n_unscored == 1


def test_answer_relevance_prefers_an_answer_to_the_question(cached: None) -> None:
    for pair in PAIRS[:10]:
        on_topic = ev.answer_relevance(pair["answer"], question=pair["question"])
        off_topic = ev.answer_relevance(UNSUPPORTED, question=pair["question"])
        assert on_topic is not None and off_topic is not None
        assert 0.0 <= off_topic < on_topic <= 1.0, pair["id"]


def test_judge_repeats_agreement_is_a_summary_column(judge_server: JudgeServer) -> None:
    judge = ev.judge("The answer is correct.", model="judge-model", repeats=3)
    data = [{"id": "a", "input": "What is the capital?", "expected": "x"}]
    # Three verdicts that split 2:1, then the judge rule for nothing else.
    judge_server.enqueue(
        json.dumps({"reason": "r", "score": 1.0, "passed": True}),
        json.dumps({"reason": "r", "score": 0.0, "passed": False}),
        json.dumps({"reason": "r", "score": 1.0, "passed": True}),
    )
    result = ev.evaluate(lambda q: "the capital", data, [judge, ev.exact_match])
    summary = result.summary.set_index("metric")
    assert summary.loc["judge", "agreement"] == pytest.approx(2 / 3)
    assert np.isnan(summary.loc["exact_match", "agreement"])


def test_cohen_kappa_is_undefined_when_both_raters_use_one_label() -> None:
    from sklearn.metrics import cohen_kappa_score

    assert cohen_kappa([True] * 5, [True] * 5) is None
    with pytest.warns(Warning):  # sklearn: nan, with a warning
        assert np.isnan(cohen_kappa_score([1] * 5, [1] * 5))
    assert cohen_kappa([True, False], [True, False]) == 1.0
    assert cohen_kappa([True, True, False], [True, False, True]) == pytest.approx(
        cohen_kappa_score([1, 1, 0], [1, 0, 1])
    )
