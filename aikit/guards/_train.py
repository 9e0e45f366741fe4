"""Train the prompt-injection cascade and write `injection_model.json`.

    python -m aikit.guards._train            # from the project root

Deterministic: the same labelled set gives the same weights. Both stages are L2-regularised
logistic regressions (scikit-learn, lbfgs) fitted on the train split only. On the calibration
split: the cut-offs of the first stage (below `low` it decides benign, above `high` attack;
between, the embedding stage decides), then the threshold: the lowest that keeps the
calibration false-positive rate at or under 5%. The test split is never read here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aikit.guards import _injection as inj
from aikit.guards._data import labelled

MAX_FPR = 0.05


def _pieces(texts: list[str]) -> list[tuple[list[str], dict[str, int]]]:
    return [inj.segments(t) for t in texts]


def _matrices(texts: list[str], labels: list[int]) -> tuple[Any, Any, Any]:
    import numpy as np

    lex, emb, y = [], [], []
    for (pieces, signals), label in zip(_pieces(texts), labels, strict=True):
        rules = inj.features(pieces, signals)
        lex.append(np.hstack([inj.lexical(pieces), rules]))
        emb.append(np.hstack([inj.embedding(pieces), rules]))
        y += [label] * len(pieces)
    return np.vstack(lex), np.vstack(emb), np.asarray(y)


def _fit(x: Any, y: Any, c: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    clf.fit(x, y)
    return {
        "coef": [round(float(v), 6) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
    }


def train(*, c_lexical: float = 4.0, c_embedding: float = 2.0) -> dict[str, Any]:
    import numpy as np

    train_set = labelled("injection", split="train")
    texts = [str(i.input) for i in train_set]
    labels = [int(i.expected == "attack") for i in train_set]
    lex, emb, y = _matrices(texts, labels)
    weights: dict[str, Any] = {
        "version": 1,
        "features": list(inj.FEATURES),
        "n_hashed": inj.N_FEATURES,
        "lexical": _fit(lex, y, c_lexical),
        "embedding": _fit(emb, y, c_embedding),
        "low": 0.0,
        "high": 1.0,
        "threshold": 0.5,
    }
    arrays = {
        **weights,
        "lexical": {**weights["lexical"], "coef": np.asarray(weights["lexical"]["coef"])},
        "embedding": {**weights["embedding"], "coef": np.asarray(weights["embedding"]["coef"])},
    }
    calib = labelled("injection", split="calibration")
    attack = [i.expected == "attack" for i in calib]
    p1, p2 = [], []
    for item in calib:
        pieces, signals = inj.segments(str(item.input))
        rules = inj.features(pieces, signals)
        s1 = np.hstack([inj.lexical(pieces), rules]) @ arrays["lexical"]["coef"]
        p1.append(float(inj._sigmoid(s1 + arrays["lexical"]["intercept"]).max()))
        s2 = np.hstack([inj.embedding(pieces), rules]) @ arrays["embedding"]["coef"]
        p2.append(float(inj._sigmoid(s2 + arrays["embedding"]["intercept"]).max()))
    p1a, p1b = np.asarray(p1), np.asarray(p2)
    mask = np.asarray(attack)
    low = float(p1a[mask].min()) * 0.5
    high = min(0.999, float(p1a[~mask].max()) + 0.02)

    def combined() -> Any:
        return np.where((p1a > low) & (p1a < high), p1b, p1a)

    score = combined()
    candidates = sorted(set(np.round(score, 6).tolist()) | {0.5})
    threshold = 0.5
    for t in candidates:  # lowest threshold whose calibration FPR is within the bound
        fpr = float((score[~mask] >= t).mean())
        if fpr <= MAX_FPR:
            threshold = t
            break
    weights.update(low=round(low, 6), high=round(high, 6), threshold=round(threshold, 6))
    recall = float((score[mask] >= threshold).mean())
    fpr = float((score[~mask] >= threshold).mean())
    weights["calibration"] = {
        "attacks": int(mask.sum()),
        "benign": int((~mask).sum()),
        "recall": round(recall, 4),
        "false_positive_rate": round(fpr, 4),
        "share_embedding_stage": round(float(((p1a > low) & (p1a < high)).mean()), 4),
    }
    return weights


def main() -> int:
    weights = train()
    inj.MODEL_FILE.write_text(json.dumps(weights, separators=(",", ":")) + "\n")
    shown = {k: weights[k] for k in ("low", "high", "threshold", "calibration")}
    print(f"wrote {inj.MODEL_FILE}: {json.dumps(shown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
