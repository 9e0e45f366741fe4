"""aikit.evals: datasets, metrics, evaluate with bootstrap intervals, compare, judges (through the
real openai SDK against the loopback server), the explorer, the HTML report."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openai_server import OpenAIServer
from pydantic import BaseModel

import aikit.evals as ev
from aikit.errors import AikitError
from aikit.evals.compare import paired_p_value
from aikit.evals.evaluate import bootstrap_ci


# -- datasets --------------------------------------------------------------------------------
def test_dataset_from_jsonl_csv_and_df(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        '{"id": "a", "input": "2+2?", "expected": "4", "topic": "math"}\n\n'
        '{"input": "Capital of France?", "expected": "Paris"}\n'
    )
    ds = ev.Dataset.from_jsonl(jsonl)
    assert [i.id for i in ds] == ["a", "3"]  # no id: the line number
    assert ds[0].metadata == {"topic": "math"} and ds[1].expected == "Paris"
    csv = tmp_path / "d.csv"
    csv.write_text('id,input,expected\nq1,"Hello, world",hi\nq2,Bye,\n')
    rows = ev.Dataset.from_csv(csv)
    assert [(i.id, i.input, i.expected) for i in rows] == [
        ("q1", "Hello, world", "hi"),
        ("q2", "Bye", None),
    ]
    frame = pd.DataFrame({"input": ["x", "y"], "expected": ["1", "2"], "lang": ["en", "fr"]})
    assert ev.Dataset.from_df(frame).to_df()["lang"].tolist() == ["en", "fr"]


@pytest.mark.parametrize(
    ("text", "row", "why"),
    [
        ('{"input": "ok"}\n{"expected": "no input"}\n', 2, "no 'input'"),
        ('{"input": "ok"}\n\n{"input": "x", oops}\n', 3, "not valid JSON"),
        ('{"id": 1, "input": "a"}\n{"id": "1", "input": "b"}\n', 2, "repeats row 1"),
        ('["a list"]\n', 1, "expected an object"),
    ],
)
def test_malformed_jsonl_row_names_file_and_row(
    tmp_path: Path, text: str, row: int, why: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ev.DatasetError, match=f"bad.jsonl row {row}: .*{why}") as err:
        ev.Dataset.from_jsonl(path)
    assert isinstance(err.value, AikitError)


def test_malformed_csv_row_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("input,expected\na,1\nb,2,extra\n")
    with pytest.raises(ev.DatasetError, match=r"bad.csv row 3: 3 fields, but the header has 2"):
        ev.Dataset.from_csv(path)
    path.write_text("input,expected\na,1\n,2\n")
    with pytest.raises(ev.DatasetError, match=r"bad.csv row 3: no 'input'"):
        ev.Dataset.from_csv(path)


# -- metrics ---------------------------------------------------------------------------------
def test_metrics_against_hand_computed_values() -> None:
    assert ev.exact_match("The Paris!", "paris") == 1.0
    assert ev.exact_match("Paris.", "Lyon") == 0.0
    assert ev.exact_match("Paris.", "paris", normalized=False) == 0.0
    assert ev.exact_match("lyon", ["Paris", "Lyon"]) == 1.0
    assert ev.contains("It is PARIS.", "paris") == 1.0
    assert ev.contains("It is PARIS.", "paris", ignore_case=False) == 0.0
    assert ev.contains("red and blue", ["red", "green"]) == 1.0
    assert ev.contains("red and blue", ["red", "green"], mode="all") == 0.0
    assert ev.contains("red and blue", ["red", "blue"], mode="all") == 1.0
    assert ev.regex_match("order #123 shipped", r"#\d+") == 1.0
    assert ev.regex_match("order #123 shipped", r"#\d+", full=True) == 0.0
    assert ev.json_valid('```json\n{"a": 1}\n```') == 1.0
    assert ev.json_valid("{a: 1}") == 0.0

    class Capital(BaseModel):
        country: str
        capital: str

    assert ev.json_schema('{"country": "FR", "capital": "Paris"}', schema=Capital) == 1.0
    assert ev.json_schema('{"country": "FR"}', schema=Capital) == 0.0
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    assert ev.json_schema('{"n": 3}', schema=schema) == 1.0
    assert ev.json_schema('{"n": "3"}', schema=schema) == 0.0
    assert ev.numeric_match("about 3.14", "3.1416", tolerance=0.01) == 1.0
    assert ev.numeric_match("about 3.14", "3.1416", tolerance=0.001) == 0.0
    assert ev.numeric_match("1,000 people", 1010, tolerance=0.01, relative=True) == 1.0
    assert ev.numeric_match("no number", "4") == 0.0
    # SQuAD F1: pred {cat, sat, on, mat} vs gold {cat, sat}: P = 2/4, R = 1, F1 = 2/3.
    assert ev.token_f1("The cat sat on the mat", "a cat sat") == pytest.approx(2 / 3)
    assert ev.token_f1("dog", "cat") == 0.0
    # Levenshtein(kitten, sitting) = 3, longer length 7.
    assert ev.edit_ratio("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert ev.edit_ratio("", "") == 1.0


def test_token_f1_matches_the_squad_reference_formula() -> None:
    # An independent count with collections.Counter over whitespace tokens (already normalised).
    from collections import Counter

    pairs = [("p b b c", "b b d"), ("x y z", "z y x w"), ("one", "one one")]
    for pred, gold in pairs:
        common = sum((Counter(pred.split()) & Counter(gold.split())).values())
        p, r = common / len(pred.split()), common / len(gold.split())
        assert ev.token_f1(pred, gold) == pytest.approx(2 * p * r / (p + r))


def test_embedding_similarity_with_a_given_embedder() -> None:
    class Fixed:
        def embed(self, texts: list[str]) -> list[list[float]]:
            return [[1.0, 0.0] if t == "a" else [0.6, 0.8] for t in texts]

    assert ev.embedding_similarity("a", "b", embedder=Fixed()) == pytest.approx(0.6)
    assert ev.embedding_similarity("a", "a", embedder=Fixed()) == pytest.approx(1.0)


# -- evaluate and its statistics -------------------------------------------------------------
def test_bootstrap_interval_covers_the_true_mean() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(100):
        data = rng.binomial(1, 0.7, size=200).astype(float)
        low, high = bootstrap_ci(data, n_boot=1000, seed=trial)
        covered += low <= 0.7 <= high
        assert low <= data.mean() <= high
    assert 88 <= covered <= 100  # a 95% interval: about 95 of 100


def test_evaluate_counts_errors_and_unscored_apart_from_wrong() -> None:
    data = [{"id": f"q{i}", "input": i, "expected": str(i * 2)} for i in range(10)]

    def task(x: int) -> str:
        if x == 9:
            raise RuntimeError("tool down")
        return "?" if x == 8 else str(x * 2 if x < 6 else 0)  # 6, 7 wrong

    def maybe(output: str, expected: str) -> float | None:
        return None if output == "?" else float(output == expected)

    result = ev.evaluate(task, data, [maybe, ev.exact_match])
    row = result.summary.set_index("metric").loc["maybe"]
    # q0..q5 right, q6 q7 wrong, q8 unscored, q9 errored: the mean is over the 8 scored only.
    assert (row.n_scored, row.n_unscored, row.n_errors) == (8, 1, 1)
    assert row["mean"] == pytest.approx(6 / 8)
    assert row.stderr == pytest.approx(np.std([1] * 6 + [0] * 2, ddof=1) / math.sqrt(8))
    assert row.ci_low <= 0.75 <= row.ci_high
    em = result.summary.set_index("metric").loc["exact_match"]
    assert (em.n_scored, em.n_unscored, em.n_errors) == (9, 0, 1)
    assert em["mean"] == pytest.approx(6 / 9)
    errored = result.samples.set_index("id").loc["q9"]
    assert errored.error == "RuntimeError: tool down" and math.isnan(errored.exact_match)
    assert result.means() == {"maybe": 0.75, "exact_match": round(6 / 9, 6)}


def test_keywords_match_whole_words_and_numbers_written_either_way() -> None:
    assert ev.keywords("You get two laptops for 1,500 EUR.", ["2", "1500"]) == 1.0
    assert ev.keywords("The 3rd floor", "third") == 1.0
    assert ev.keywords("Catalogue", "cat") == 0.0  # whole words only
    assert ev.keywords("25 days", ["25", "weeks"]) == 0.0  # every keyword
    assert ev.keywords("anything", []) is None  # nothing to look for: unscored


def test_a_metric_that_raises_is_an_error_of_that_sample_not_a_zero() -> None:
    def picky(output: str, expected: str) -> float:
        if output == "b":
            raise ValueError("cannot score b")
        return 1.0

    result = ev.evaluate(str, ["a", "b", "c"], {"picky": picky, "range": lambda o, e: 2.0})
    summary = result.summary.set_index("metric")
    assert (summary.loc["picky", "n_errors"], summary.loc["picky", "mean"]) == (1, 1.0)
    assert summary.loc["range", "n_errors"] == 3  # outside [0, 1] is a bug, not a score
    assert "outside [0, 1]" in result.samples.metric_errors[0]["range"]


def test_evaluate_with_options_and_repeats_averages_per_item() -> None:
    calls: dict[str, int] = {}

    def flaky(x: str) -> str:
        calls[x] = calls.get(x, 0) + 1
        return x if calls[x] % 2 else "wrong"  # right, wrong, right, ... per item

    tolerant = functools.partial(ev.numeric_match, tolerance=0.5)
    data = [{"input": "1", "expected": "1.2"}, {"input": "2", "expected": "2"}]
    result = ev.evaluate(flaky, data, [tolerant], repeats=2, concurrency=1)
    assert len(result.samples) == 4 and sorted(set(result.samples.repeat)) == [0, 1]
    row = result.summary.iloc[0]
    assert row.metric == "numeric_match" and row["mean"] == pytest.approx(0.5)
    assert row.n_scored == 4


def test_evaluate_a_template_through_the_openai_sdk(remote: OpenAIServer) -> None:
    data = pd.DataFrame(
        {"id": ["a", "b", "c"], "input": ["2+2", "3+3", "4+4"], "expected": ["4", "6", "9"]}
    )
    remote.enqueue("4", "six", {"status": 500})
    result = ev.evaluate(
        "Compute {{ input }}. Answer with a number.",
        data,
        [ev.exact_match, ev.numeric_match],
        concurrency=1,
        model="gpt-4o-mini",
    )
    prompts = [r["messages"][-1]["content"] for r in remote.requests]
    assert prompts == [f"Compute {x}. Answer with a number." for x in ["2+2", "3+3", "4+4"]]
    samples = result.samples.set_index("id")
    assert samples.output.tolist()[:2] == ["4", "six"] and samples.error.notna().tolist() == [
        False,
        False,
        True,
    ]
    summary = result.summary.set_index("metric")
    assert summary.loc["exact_match", "mean"] == 0.5
    assert summary.loc["numeric_match", "mean"] == 0.5  # "six" holds no digits
    assert summary.loc["exact_match", "n_errors"] == 1
    # The loopback server counts words as tokens: 6 words per prompt, 1 per answer.
    assert result.usage["task_prompt_tokens"] == 12 and result.usage["task_completion_tokens"] == 2
    assert result.usage["task_cost_usd"] == pytest.approx((12 * 0.15 + 2 * 0.6) / 1e6)
    assert result.usage["judge_cost_usd"] == 0.0


# -- judges ----------------------------------------------------------------------------------
def verdict(score: float, passed: bool, reason: str = "ok") -> str:
    return json.dumps({"reason": reason, "score": score, "passed": passed})


def test_judge_gives_a_schema_enforced_verdict(remote: OpenAIServer) -> None:
    correct = ev.judge("Same fact as the reference.", model="gpt-4o-mini")
    remote.enqueue(verdict(0.9, True, "both say Paris"))
    result = correct.judgement("Paris", "Paris", input="Capital of France?")
    assert (result.score, result.passed, result.reason) == (0.9, True, "both say Paris")
    request = remote.requests[-1]
    assert request["response_format"]["type"] == "json_schema"
    assert set(request["response_format"]["json_schema"]["schema"]["properties"]) == {
        "reason",
        "score",
        "passed",
    }
    assert "Capital of France?" in request["messages"][-1]["content"]


def test_an_unparsable_verdict_is_unscored_not_a_fail(remote: OpenAIServer) -> None:
    correct = ev.judge("Correct?", model="gpt-4o-mini")
    data = [
        {"id": "x", "input": "q1", "expected": "a"},
        {"id": "y", "input": "q2", "expected": "b"},
    ]
    # Task answers, then per sample a judge answer: y's judge answers garbage twice (re-ask).
    remote.enqueue("a", "c", verdict(1.0, True), "not json", '{"score": 7}')
    result = ev.evaluate("{{ input }}", data, [correct, ev.exact_match], concurrency=1)
    row = result.summary.set_index("metric").loc["judge"]
    assert (row.n_scored, row.n_unscored, row.n_errors, row["mean"]) == (1, 1, 0, 1.0)
    samples = result.samples.set_index("id")
    assert samples.loc["x", "judge_passed"] is True
    assert samples.loc["y", "judge_passed"] is None
    assert samples.loc["y", "judge_reason"].startswith("unscored:")
    # Task and judge tokens are counted apart (the server counts words).
    assert result.usage["task_completion_tokens"] == 2
    assert result.usage["judge_completion_tokens"] == sum(
        len(t.split()) for t in (verdict(1.0, True), "not json", '{"score": 7}')
    )


def test_judge_repeats_report_agreement(remote: OpenAIServer) -> None:
    noisy = ev.judge("Correct?", model="gpt-4o-mini", repeats=3)
    remote.enqueue(verdict(1.0, True), verdict(0.0, False), verdict(0.8, True))
    result = noisy.judgement("a", "a", input="q")
    assert result.passed is True and result.agreement == pytest.approx(2 / 3)
    assert result.score == pytest.approx(0.6) and result.n_asked == 3
    assert sorted(r["temperature"] for r in remote.requests) == [0.7] * 3
    # each repeat its own seed: a sampled verdict does not hang on what was asked before
    assert sorted(r["seed"] for r in remote.requests) == [0, 1, 2]


def test_judge_seeds_only_sampled_repeats(remote: OpenAIServer) -> None:
    remote.enqueue(verdict(1.0, True), verdict(1.0, True), verdict(1.0, True))
    ev.judge("Correct?", model="gpt-4o-mini").judgement("a", "a", input="q")  # greedy
    ev.judge("Correct?", model="gpt-4o-mini", repeats=2, seed=None).judgement("b", "b")
    assert ["seed" in r for r in remote.requests] == [False, False, False]


def test_calibrate_reports_accuracy_and_kappa(remote: OpenAIServer) -> None:
    from sklearn.metrics import cohen_kappa_score

    human = [True, True, True, False, False, True, False, False]
    judged = [True, True, False, False, True, True, False, False]
    labelled = [
        {"id": str(i), "input": f"q{i}", "expected": "e", "output": "o", "label": h}
        for i, h in enumerate(human)
    ]
    remote.enqueue(*(verdict(float(j), j) for j in judged))
    report = ev.calibrate(ev.judge("Correct?", model="gpt-4o-mini"), labelled, concurrency=1)
    assert report.n == 8 and report.n_unscored == 0
    assert report.accuracy == pytest.approx(6 / 8)
    assert report.kappa == pytest.approx(cohen_kappa_score(human, judged))
    assert report.kappa == pytest.approx(0.5)  # po = 0.75, pe = 0.5


# -- compare ---------------------------------------------------------------------------------
def _result(scores: dict[str, float], name: str) -> ev.EvalResult:
    data = [{"id": k, "input": k, "expected": "1"} for k in scores]
    return ev.evaluate(lambda k: scores[k], data, {"score": lambda o, e: o}, name=name)


def test_compare_pairs_by_id_and_finds_the_regression() -> None:
    rng = np.random.default_rng(7)
    ids = [f"s{i}" for i in range(60)]
    a = {i: 1.0 for i in ids}
    b = {i: float(rng.random() > 0.3) for i in ids}  # B loses about 30% of A's passes
    lost = sorted(i for i in ids if b[i] == 0.0)
    # Same ids in another order: pairing is by id, not by position.
    ca, cb = _result(a, "a"), _result(dict(reversed(b.items())), "b")
    comparison = ev.compare(ca, cb)
    row = comparison.summary.iloc[0]
    true_delta = -len(lost) / 60
    assert row.delta == pytest.approx(true_delta) and row.n_pairs == 60
    assert row.ci_low <= true_delta <= row.ci_high < 0
    assert row.p_value < 0.001
    assert sorted(comparison.regressions.id) == lost and row.n_regressions == len(lost)
    # No difference: a large p-value and an interval around 0.
    same = ev.compare(ca, _result(a, "a2")).summary.iloc[0]
    assert (same.delta, same.p_value, same.ci_low, same.ci_high) == (0.0, 1.0, 0.0, 0.0)


def test_paired_p_value_agrees_with_an_exact_enumeration() -> None:
    import itertools

    diffs = [0.5, 0.2, -0.1, 0.4, 0.3, 0.6]
    observed = abs(sum(diffs))
    flips = list(itertools.product([1, -1], repeat=len(diffs)))
    exact = sum(
        abs(sum(s * d for s, d in zip(f, diffs, strict=True))) >= observed - 1e-12 for f in flips
    )
    assert paired_p_value(diffs) == pytest.approx(exact / len(flips))


# -- report and explorer ---------------------------------------------------------------------
def test_to_html_is_one_self_contained_file(tmp_path: Path) -> None:
    result = _result({"a": 1.0, "b": 0.0, "c": 1.0}, "demo")
    page = result.to_html(tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "<h1>Eval: demo</h1>" in page and "n_unscored" in page
    assert 'src="http' not in page and "<script" not in page


def test_explorer_filters_and_pages() -> None:
    from aikit.widgets import explore

    scores = {f"s{i}": float(i % 3 != 0) for i in range(12)}  # s0, s3, s6, s9 fail
    view = explore(_result(scores, "demo"), page_size=5)
    assert len(view.rows()) == 12 and "12 samples · page 1 of 3" in view.caption.value
    view.status.value = "failed"
    assert sorted(view.rows().id) == ["s0", "s3", "s6", "s9"]
    assert "4 samples · page 1 of 1" in view.caption.value
    shown = [c.description for c in view.table.children if hasattr(c, "on_click")]
    assert shown == ["s0", "s3", "s6", "s9"]
    view.sample.value = "s3"
    assert "<b>input</b>" in view.detail.value and "<b>expected</b>" in view.detail.value
    assert view._repr_mimebundle_()["text/plain"] == (
        "Eval explorer: demo, 12 samples, metrics score; run this cell to filter by metric and"
        " status, page through and read samples"
    )


def test_explorer_over_a_comparison_shows_regressions() -> None:
    from aikit.widgets import explore

    a = _result({"x": 1.0, "y": 1.0, "z": 0.0}, "a")
    b = _result({"x": 0.0, "y": 1.0, "z": 1.0}, "b")
    view = explore(ev.compare(a, b))
    view.status.value = "regressed"
    assert view.rows().id.tolist() == ["x"]
    view.status.value = "improved"
    assert view.rows().id.tolist() == ["z"]
    header = [c.value for c in view.table.children[:6]]
    assert "<b>output_a</b>" in header and "<b>output_b</b>" in header


def test_a_failed_judge_call_is_an_error_and_a_metric_may_call_the_model(
    remote: OpenAIServer,
) -> None:
    import aikit

    def asks_the_model(output: str, expected: str) -> float:  # runs outside aikit's loop
        return float(aikit.chat(f"grade {output}", model="gpt-4o-mini").text == "yes")

    data = [{"id": "x", "input": "q1", "expected": "a"}, {"id": "y", "input": "q2"}]
    # task x, task y, judge x (a 500: no retries in these tests), judge y, metric x, metric y
    remote.enqueue("a", "b", {"status": 500}, verdict(0.0, False), "yes", "no")
    correct = ev.judge("Correct?", model="gpt-4o-mini")
    result = ev.evaluate(
        "{{ input }}", data, [correct, asks_the_model], concurrency=1, model="gpt-4o-mini"
    )
    summary = result.summary.set_index("metric")
    assert (summary.loc["judge", "n_errors"], summary.loc["judge", "n_scored"]) == (1, 1)
    assert summary.loc["judge", "mean"] == 0.0
    assert "500" in result.samples.metric_errors[0]["judge"]
    assert result.samples.asks_the_model.tolist() == [1.0, 0.0]


def test_evals_public_names_are_sorted_and_include_the_retrieval_metrics() -> None:
    assert ev.__all__ == sorted(ev.__all__)
    assert {"hit_at_k", "mrr", "ndcg_at_k", "evaluate", "compare", "judge"} <= set(ev.__all__)
    assert all(hasattr(ev, name) for name in ev.__all__)


def test_a_metric_that_declares_metadata_receives_the_items_metadata() -> None:
    data = [
        {"id": "a", "input": "2+2", "expected": "4", "unit": "apples", "strict": True},
        {"id": "b", "input": "3+3", "expected": "6", "unit": "pears", "strict": False},
    ]
    seen: dict[str, dict[str, object]] = {}

    def unit_named(output: str, expected: str, *, metadata: dict[str, object]) -> float:
        seen[output] = metadata
        return float(str(metadata["unit"]) in output)

    answers = {"2+2": "4 apples", "3+3": "6"}
    result = ev.evaluate(answers.__getitem__, data, [unit_named, ev.exact_match])
    assert seen == {
        "4 apples": {"unit": "apples", "strict": True},
        "6": {"unit": "pears", "strict": False},
    }
    samples = result.samples.set_index("id")
    assert list(samples["unit_named"]) == [1.0, 0.0]
    assert list(samples["exact_match"]) == [0.0, 1.0]  # a metric without it gets none


def test_wilson_and_kappa_intervals() -> None:
    from scipy.stats import binomtest

    # Wilson: what scipy computes for the same share.
    for k, n in [(13, 13), (7, 13), (0, 13), (18, 39)]:
        expected = binomtest(k, n).proportion_ci(method="wilson")
        low, high = ev.wilson_interval(k, n)
        assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-4)
    assert ev.wilson_interval(0, 0) == (0.0, 1.0)
    human = [True] * 20 + [False] * 20
    machine = [True] * 17 + [False] * 3 + [False] * 15 + [True] * 5
    kappa = ev.cohen_kappa(human, machine)
    interval = ev.kappa_interval(human, machine)
    assert kappa == pytest.approx(0.6) and interval is not None
    assert interval[0] < kappa < interval[1] and 0.2 < interval[1] - interval[0] < 0.8
    assert ev.kappa_interval(human, machine) == interval  # seeded: the same twice
    assert ev.kappa_interval([True] * 4, [True] * 4) is None  # kappa undefined
    with pytest.raises(ev.DatasetError, match="human has 2 labels and machine 1"):
        ev.kappa_interval([True, False], [True])


# -- tasks -----------------------------------------------------------------------------------
PROMPTS = {
    "sentiment": "Review: {{ text }}\nPositive or negative?",
    "city": "Sentence: {{ text }}\nWhich city?",
}
INSTRUCTIONS = {"sentiment": "Answer positive or negative.", "city": "Answer with the city."}
SHOTS = [
    {"id": "s1", "task": "sentiment", "text": "Lovely.", "gold": "positive"},
    {"id": "c1", "task": "city", "text": "We flew to Oslo.", "gold": "Oslo"},
    {"id": "s2", "task": "sentiment", "text": "Broke at once.", "gold": "negative"},
    {"id": "s3", "task": "sentiment", "text": "Fine.", "gold": "positive"},
]
ITEMS = [
    {"id": "a", "input": "Great value.", "expected": "positive", "task": "sentiment"},
    {"id": "b", "input": "Lunch in Rome.", "expected": "Rome", "task": "city"},
]


def test_prompt_variants_send_each_kind_its_own_messages(remote: OpenAIServer) -> None:
    variants = ev.prompt_variants(
        PROMPTS, system=INSTRUCTIONS, examples=pd.DataFrame(SHOTS), n_shots=2, by="task",
        input_key="text", output_key="gold", model="gpt-4o-mini", temperature=0.0, seed=1,
        max_tokens=12,
    )  # fmt: skip
    assert list(variants) == ["zero_shot", "instructed", "few_shot"]
    sent = {}
    for name, task in variants.items():
        remote.requests.clear()
        remote.enqueue("positive", "Rome")
        result = ev.evaluate(task, ITEMS, [ev.exact_match], concurrency=1)
        assert list(result.samples["output"]) == ["positive", "Rome"]
        assert result.summary.loc[0, "mean"] == 1.0
        assert {(r["temperature"], r["seed"], r["max_tokens"]) for r in remote.requests} == {
            (0.0, 1, 12)
        }
        sent[name] = [r["messages"] for r in remote.requests]
    user_a = {"role": "user", "content": "Review: Great value.\nPositive or negative?"}
    user_b = {"role": "user", "content": "Sentence: Lunch in Rome.\nWhich city?"}
    system_a = {"role": "system", "content": "Answer positive or negative."}
    system_b = {"role": "system", "content": "Answer with the city."}
    assert sent["zero_shot"] == [[user_a], [user_b]]
    assert sent["instructed"] == [[system_a, user_a], [system_b, user_b]]
    assert sent["few_shot"] == [
        [
            system_a,
            {"role": "user", "content": "Review: Lovely.\nPositive or negative?"},
            {"role": "assistant", "content": "positive"},
            {"role": "user", "content": "Review: Broke at once.\nPositive or negative?"},
            {"role": "assistant", "content": "negative"},  # n_shots=2: "Fine." is left out
            user_a,
        ],
        [
            system_b,
            {"role": "user", "content": "Sentence: We flew to Oslo.\nWhich city?"},
            {"role": "assistant", "content": "Oslo"},
            user_b,
        ],
    ]
    # The same messages as the task's own `messages`, and as aikit.prompts.few_shot builds.
    assert variants["few_shot"].messages("Lunch in Rome.", {"task": "city"}) == sent["few_shot"][1]


def test_a_task_that_declares_metadata_receives_the_items_metadata() -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    def labelled(text: str, *, metadata: dict[str, object]) -> str:
        seen.append((text, metadata))
        return str(metadata["task"])

    result = ev.evaluate(labelled, ITEMS, [ev.exact_match], concurrency=1)
    assert seen == [("Great value.", {"task": "sentiment"}), ("Lunch in Rome.", {"task": "city"})]
    assert list(result.samples["output"]) == ["sentiment", "city"]
    plain = ev.evaluate(str.upper, ITEMS, [ev.exact_match])  # a task without it gets none
    assert list(plain.samples["output"]) == ["GREAT VALUE.", "LUNCH IN ROME."]


def test_prompt_task_errors_name_the_bad_value_and_the_fix(remote: OpenAIServer) -> None:
    with pytest.raises(AikitError, match=r"template is a mapping .*pass by="):
        ev.prompt_task(PROMPTS, input_key="text")
    with pytest.raises(AikitError, match="has no variable 'input'; pass input_key= one of text"):
        ev.prompt_task("Review: {{ text }}")
    with pytest.raises(AikitError, match="n_shots=-1"):
        ev.prompt_task("{{ input }}", n_shots=-1)
    task = ev.prompt_task(PROMPTS, by="task", input_key="text", model="gpt-4o-mini")
    odd = [{"id": "x", "input": "Hi.", "task": "poem"}, {"id": "y", "input": "Hi."}]
    result = ev.evaluate(task, odd, [ev.exact_match])
    errors = list(result.samples["error"])
    assert (
        "no template for task='poem'; give one for each kind (given: sentiment, city)" in errors[0]
    )
    assert "picks its prompt by the item's 'task' field, which the item lacks" in errors[1]
    assert remote.requests == []  # nothing was sent for either


def test_rag_task_answers_over_an_index_built_once(tmp_path: Path, remote: OpenAIServer) -> None:
    from aikit import rag

    docs = tmp_path / "kb"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEmployees get 27 days of paid leave a year.\n")
    (docs / "vpn.md").write_text("# VPN\n\nInstall the WireGuard client to reach the VPN.\n")
    (docs / "food.md").write_text("# Canteen\n\nThe canteen serves lunch from noon to two.\n")
    built: list[rag.Index] = []

    def build() -> rag.Index:
        index = rag.Index(tmp_path / "index", embedder=rag.LocalEmbedder(cache=False))
        index.add(rag.load(docs))
        built.append(index)
        return index

    # min_similarity goes to rag.answer: every passage retrieved is shown.
    params = {"model": "gpt-4o-mini", "min_similarity": 0.0}
    task = ev.rag_task(build, k=2, mode="dense", **params)
    assert built == []  # nothing is built before the first question
    data = [
        {"id": "q1", "input": "How many days of paid leave do employees get?", "expected": "27"},
        {"id": "q2", "input": "Which client reaches the VPN?", "expected": "WireGuard"},
    ]
    remote.enqueue("27 days [1].", "WireGuard [1].")
    result = ev.evaluate(task, data, [ev.contains], concurrency=2)
    assert len(built) == 1  # once, although two threads asked
    assert sorted(result.samples["output"]) == ["27 days [1].", "WireGuard [1]."]
    want = []
    for question in (d["input"] for d in data):
        hits = built[0].search(question, 2, mode="dense")
        assert len(hits) == 2
        want.append(
            rag.build_messages(question, list(zip(hits["source"], hits["text"], strict=True)))
        )
    first = [r["messages"] for r in remote.requests]
    assert sorted(map(json.dumps, first)) == sorted(map(json.dumps, want))
    contexts = result.samples.set_index("id")["context"]
    assert len(contexts["q1"]) == 2 and any("27 days" in c for c in contexts["q1"])
    # An index itself works too: the same requests again, so the response store answers them.
    same = ev.rag_task(built[0], k=2, mode="dense", **params)
    again = ev.evaluate(same, data, [ev.contains], concurrency=1)
    assert len(remote.requests) == 2  # no new request: the store keys on the same messages
    assert list(again.samples["output"]) == list(result.samples["output"])  # by id, as before
    with pytest.raises(AikitError, match="rag mode 'sparse' is not known; use one of dense, bm25"):
        ev.rag_task(built[0], mode="sparse")
    with pytest.raises(AikitError, match="k=0; pass the number of passages"):
        ev.rag_task(built[0], k=0)
