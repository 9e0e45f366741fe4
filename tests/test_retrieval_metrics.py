"""Retrieval metrics: hand-worked cases, edge cases, and random cases checked against
independent references (scikit-learn's ranking metrics and plain set arithmetic)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import label_ranking_average_precision_score, ndcg_score

from aikit import evals
from aikit.evals import hit_at_k, mrr, ndcg_at_k, precision_at_k, recall_at_k


def test_hand_worked_binary_case() -> None:
    retrieved = ["d3", "d1", "d7", "d2", "d9"]
    relevant = {"d1", "d2", "d5"}
    assert hit_at_k(retrieved, relevant, 1) == 0.0
    assert hit_at_k(retrieved, relevant, 2) == 1.0
    assert recall_at_k(retrieved, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(retrieved, relevant, 5) == pytest.approx(2 / 3)
    assert precision_at_k(retrieved, relevant, 4) == pytest.approx(2 / 4)
    assert precision_at_k(retrieved, relevant, 10) == pytest.approx(2 / 10)  # divided by k
    assert mrr(retrieved, relevant) == pytest.approx(1 / 2)
    # DCG@5 = 1/log2(3) + 1/log2(5); ideal over min(3, 5) = 3 relevant: 1 + 1/log2(3) + 1/2
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5)
    assert ndcg_at_k(retrieved, relevant, 5) == pytest.approx(expected)


def test_hand_worked_graded_case() -> None:
    retrieved = ["a", "b", "c"]
    relevant = {"a": 1, "c": 3, "z": 2, "n": 0}
    # DCG@2 = 1/1 + 0; ideal@2 = 3/1 + 2/log2(3)
    assert ndcg_at_k(retrieved, relevant, 2) == pytest.approx(1 / (3 + 2 / math.log2(3)))
    assert recall_at_k(retrieved, relevant, 3) == pytest.approx(2 / 3)  # grade 0 is not relevant
    assert mrr(retrieved, {"c": 2}) == pytest.approx(1 / 3)


def test_ideal_dcg_runs_over_min_of_relevant_and_k() -> None:
    # One relevant id found at rank 1 is a perfect ranking, however large k is.
    assert ndcg_at_k(["x", "y", "z"], {"x"}, 3) == 1.0
    # Five relevant but k = 2: both top ranks relevant is perfect.
    assert ndcg_at_k(["a", "b", "q"], {"a", "b", "c", "d", "e"}, 2) == 1.0


def test_edge_cases() -> None:
    assert recall_at_k(["a"], set(), 5) == 0.0
    assert ndcg_at_k(["a"], {}, 5) == 0.0
    assert mrr([], {"a"}) == 0.0
    assert hit_at_k([], {"a"}, 3) == 0.0
    assert recall_at_k(["a", "b"], {"a", "b"}, 10) == 1.0  # k beyond the list
    # A repeated id counts once and still takes up its rank.
    assert precision_at_k(["a", "a", "b"], {"a", "b"}, 2) == 0.5
    assert recall_at_k(["a", "a", "b"], {"a", "b"}, 2) == 0.5
    assert ndcg_at_k(["a", "a"], {"a", "b"}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_bad_k_is_an_error_naming_it(k: object) -> None:
    with pytest.raises(ValueError, match=r"k=.* must be a positive int"):
        recall_at_k(["a"], {"a"}, k)  # type: ignore[arg-type]


def test_bad_relevant_and_retrieved_are_errors() -> None:
    with pytest.raises(ValueError, match="is a string"):
        recall_at_k(["a"], "a", 1)
    with pytest.raises(ValueError, match="is a string"):
        mrr("abc", {"a"})
    with pytest.raises(ValueError, match="grades must be numbers"):
        ndcg_at_k(["a"], {"a": "high"}, 1)  # type: ignore[dict-item]


def _random_case(rng: random.Random) -> tuple[list[str], dict[str, int], int]:
    """A ranking of every candidate (so references that score all items agree) and grades."""
    n = rng.randint(2, 30)
    ids = [f"doc{i}" for i in range(n)]
    rng.shuffle(ids)
    grades = {d: rng.choice([0, 0, 0, 1, 2, 3]) for d in ids}
    return ids, grades, rng.randint(1, n + 3)


def test_ndcg_matches_sklearn_on_random_graded_cases() -> None:
    rng = random.Random(20240611)
    checked = 0
    for _ in range(300):
        retrieved, grades, k = _random_case(rng)
        if not any(grades.values()):
            assert ndcg_at_k(retrieved, grades, k) == 0.0
            continue
        y_true = np.array([[grades[d] for d in retrieved]], dtype=float)
        y_score = np.array([[len(retrieved) - i for i in range(len(retrieved))]], dtype=float)
        assert ndcg_at_k(retrieved, grades, k) == pytest.approx(
            ndcg_score(y_true, y_score, k=k), abs=1e-12
        )
        binary = {d for d, g in grades.items() if g > 0}
        assert ndcg_at_k(retrieved, binary, k) == pytest.approx(
            ndcg_score((y_true > 0).astype(float), y_score, k=k), abs=1e-12
        )
        checked += 1
    assert checked > 200


def test_set_metrics_match_set_arithmetic_on_random_cases() -> None:
    rng = random.Random(7)
    for _ in range(300):
        retrieved, grades, k = _random_case(rng)
        retrieved = retrieved[: rng.randint(0, len(retrieved))]  # a cut-off ranking
        relevant = {d for d, g in grades.items() if g > 0}
        found = set(retrieved[:k]) & relevant
        assert recall_at_k(retrieved, relevant, k) == (
            len(found) / len(relevant) if relevant else 0.0
        )
        assert precision_at_k(retrieved, relevant, k) == len(found) / k
        assert hit_at_k(retrieved, relevant, k) == float(bool(found))


def test_mrr_matches_sklearn_lrap_with_one_relevant_id() -> None:
    # With exactly one relevant label, label ranking average precision is 1 / its rank.
    rng = random.Random(3)
    for _ in range(200):
        retrieved, _, _ = _random_case(rng)
        target = rng.choice(retrieved)
        y_true = np.array([[d == target for d in retrieved]], dtype=int)
        y_score = np.array([[len(retrieved) - i for i in range(len(retrieved))]], dtype=float)
        assert mrr(retrieved, {target}) == pytest.approx(
            label_ranking_average_precision_score(y_true, y_score)
        )


def test_metrics_are_re_exported_from_aikit_evals() -> None:
    import aikit

    assert aikit.evals.recall_at_k is evals.retrieval.recall_at_k
    assert sorted(evals.__all__) == evals.__all__
