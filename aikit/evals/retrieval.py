"""Retrieval metrics for one query: `hit_at_k`, `recall_at_k`, `precision_at_k`, `mrr`,
`ndcg_at_k`. Average them over queries yourself (`statistics.fmean`, pandas).

Every metric takes `retrieved`, the ids in ranked order (best first), and `relevant`, either a
collection of relevant ids or a mapping id -> graded relevance (0 or less: not relevant). An id
retrieved twice counts once, at its first position; the repeat still takes up its rank. A query
with no relevant ids scores 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence

Relevant = Collection[Hashable] | Mapping[Hashable, float]


def _gains(relevant: Relevant) -> dict[Hashable, float]:
    if isinstance(relevant, Mapping):
        gains = {}
        for key, value in relevant.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(
                    f"relevance of {key!r} is {value!r}; grades must be numbers (e.g. 0, 1, 2)"
                )
            if value > 0:
                gains[key] = float(value)
        return gains
    if isinstance(relevant, (str, bytes)):
        raise ValueError(
            f"relevant={relevant!r} is a string; pass a set of ids, e.g. {{{relevant!r}}}"
        )
    return {key: 1.0 for key in relevant}


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be a positive int, e.g. 5")


def _ranked_gains(retrieved: Sequence[Hashable], gains: Mapping[Hashable, float]) -> list[float]:
    """The gain at each rank; a repeated id gains nothing the second time."""
    if isinstance(retrieved, (str, bytes)):
        raise ValueError(f"retrieved={retrieved!r} is a string; pass a ranked list of ids")
    seen: set[Hashable] = set()
    out = []
    for item in retrieved:
        out.append(0.0 if item in seen else gains.get(item, 0.0))
        seen.add(item)
    return out


def hit_at_k(retrieved: Sequence[Hashable], relevant: Relevant, k: int) -> float:
    """1.0 if any relevant id is in the top `k`, else 0.0."""
    _check_k(k)
    return 1.0 if any(g > 0 for g in _ranked_gains(retrieved, _gains(relevant))[:k]) else 0.0


def recall_at_k(retrieved: Sequence[Hashable], relevant: Relevant, k: int) -> float:
    """The share of relevant ids found in the top `k`."""
    _check_k(k)
    gains = _gains(relevant)
    if not gains:
        return 0.0
    return sum(1 for g in _ranked_gains(retrieved, gains)[:k] if g > 0) / len(gains)


def precision_at_k(retrieved: Sequence[Hashable], relevant: Relevant, k: int) -> float:
    """The share of the top `k` ranks that hold a relevant id (divided by `k`, not by how
    many were retrieved)."""
    _check_k(k)
    return sum(1 for g in _ranked_gains(retrieved, _gains(relevant))[:k] if g > 0) / k


def mrr(retrieved: Sequence[Hashable], relevant: Relevant) -> float:
    """Reciprocal rank of the first relevant id (1.0 at rank 1, 0.5 at rank 2, 0.0 if none);
    the mean over queries is the mean reciprocal rank."""
    for rank, gain in enumerate(_ranked_gains(retrieved, _gains(relevant)), start=1):
        if gain > 0:
            return 1.0 / rank
    return 0.0


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: sum of gain / log2(rank + 1) (linear gains)."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(retrieved: Sequence[Hashable], relevant: Relevant, k: int) -> float:
    """Normalised DCG of the top `k`: DCG over the ideal DCG of the best min(relevant, k)."""
    _check_k(k)
    gains = _gains(relevant)
    ideal = dcg(sorted(gains.values(), reverse=True)[: min(len(gains), k)])
    if ideal == 0:
        return 0.0
    return dcg(_ranked_gains(retrieved, gains)[:k]) / ideal


__all__ = ["dcg", "hit_at_k", "mrr", "ndcg_at_k", "precision_at_k", "recall_at_k"]
