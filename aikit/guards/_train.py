"""Train the prompt-injection cascade and write `injection_model.json`.

    python -m aikit.guards._train            # from the project root

Deterministic: the same labelled set gives the same weights. Both stages are L2-regularised
logistic regressions (scikit-learn, lbfgs) fitted on the train split only. On the calibration
split: the cut-offs of the first stage (below `low` it decides benign, above `high` attack;
between, the embedding stage decides). The threshold is the lowest that keeps the
false-positive rate at or under 5% on the calibration split and the out-of-fold scores of the
train split together (34 benign calibration texts alone allowed one false positive, too coarse
a bound). The test split is never read here.
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


def _rows(texts: list[str]) -> list[tuple[Any, Any]]:
    """Per text: its lexical and its embedding feature rows (one row per scored piece)."""
    import numpy as np

    out = []
    for pieces, signals in _pieces(texts):
        rules = inj.features(pieces, signals)
        lex = np.hstack([inj.lexical(pieces), rules])
        out.append((lex, np.hstack([inj.embedding(pieces), rules])))
    return out


def _fit(x: Any, y: Any, c: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    clf.fit(x, y)
    return {
        "coef": [round(float(v), 6) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
    }


def _fit_both(rows: list[tuple[Any, Any]], labels: list[int], c: tuple[float, float]) -> Any:
    import numpy as np

    y = np.concatenate([[label] * len(lex) for (lex, _), label in zip(rows, labels, strict=True)])
    return tuple(_fit(np.vstack([r[stage] for r in rows]), y, c[stage]) for stage in (0, 1))


def _score(rows: list[tuple[Any, Any]], fitted: Any) -> Any:
    """Each text's highest piece probability under each stage: an (n, 2) array."""
    import numpy as np

    coef = [np.asarray(f["coef"]) for f in fitted]
    return np.asarray(
        [
            [float(inj._sigmoid(r[s] @ coef[s] + fitted[s]["intercept"]).max()) for s in (0, 1)]
            for r in rows
        ]
    )


def train(*, c_lexical: float = 4.0, c_embedding: float = 2.0, folds: int = 5) -> dict[str, Any]:
    """Fit both stages on the train split; cut-offs from the calibration split; the threshold
    from the calibration split together with out-of-fold scores of the train split (each
    train text scored by the stages fitted on the other folds), so that the false-positive
    bound is checked on 170 benign texts rather than 34."""
    import numpy as np

    c = (c_lexical, c_embedding)
    train_set = labelled("injection", split="train")
    labels = [int(i.expected == "attack") for i in train_set]
    rows = _rows([str(i.input) for i in train_set])
    fitted = _fit_both(rows, labels, c)
    weights: dict[str, Any] = {
        "version": 2,
        "features": list(inj.FEATURES),
        "n_hashed": inj.N_FEATURES,
        "n_hashed_words": inj.N_WORD_FEATURES,
        "lexical": fitted[0],
        "embedding": fitted[1],
    }
    calib = labelled("injection", split="calibration")
    mask = np.asarray([i.expected == "attack" for i in calib])
    p_cal = _score(_rows([str(i.input) for i in calib]), fitted)
    low = float(p_cal[mask, 0].min()) * 0.8
    high = min(0.999, float(p_cal[~mask, 0].max()) + 0.02)
    p_oof = np.zeros((len(rows), 2))
    for k in range(folds):
        held = [j for j in range(len(rows)) if j % folds == k]
        rest = [j for j in range(len(rows)) if j % folds != k]
        part = _fit_both([rows[j] for j in rest], [labels[j] for j in rest], c)
        p_oof[held] = _score([rows[j] for j in held], part)

    def combined(p: Any) -> Any:
        return np.where((p[:, 0] > low) & (p[:, 0] < high), p[:, 1], p[:, 0])

    score = np.concatenate([combined(p_cal), combined(p_oof)])
    attack = np.concatenate([mask, np.asarray(labels, dtype=bool)])
    threshold = 0.5
    for t in sorted(set(np.round(score, 6).tolist()) | {0.5}):  # lowest within the bound
        if float((score[~attack] >= t).mean()) <= MAX_FPR:
            threshold = t
            break
    weights.update(low=round(low, 6), high=round(high, 6), threshold=round(threshold, 6))
    cal = combined(p_cal)
    weights["calibration"] = {
        "attacks": int(mask.sum()),
        "benign": int((~mask).sum()),
        "recall": round(float((cal[mask] >= threshold).mean()), 4),
        "false_positive_rate": round(float((cal[~mask] >= threshold).mean()), 4),
        "share_embedding_stage": round(
            float(((p_cal[:, 0] > low) & (p_cal[:, 0] < high)).mean()), 4
        ),
        "threshold_set": {
            "texts": len(score),
            "recall": round(float((score[attack] >= threshold).mean()), 4),
            "false_positive_rate": round(float((score[~attack] >= threshold).mean()), 4),
        },
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
