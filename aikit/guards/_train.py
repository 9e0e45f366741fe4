"""Train the prompt-injection cascade and write `injection_model.json`.

    python -m aikit.guards._train            # from the project root

Deterministic on the same libraries: the same labelled set gives the same weights (on another
machine's numpy, torch and scikit-learn the coefficients moved in the sixth decimal and the
threshold from 0.452 to 0.463: it is one of the scores, the lowest that keeps the bound, so a
sixth-decimal change can move it to the next one; retrain when the labelled set changes, not
to refresh the file). Both stages are L2-regularised
logistic regressions (scikit-learn, lbfgs) fitted on the train split only: the lexical stage
over hashed n-grams and the rules, the embedding stage over the same n-grams, the MiniLM
embedding and the rules. Cut-offs and threshold come from the calibration split together with
the out-of-fold scores of the train split (each train text scored by the stages fitted on the
other folds; 34 benign calibration texts alone allow one false positive, too coarse a bound):

- `threshold`: the lowest that keeps the false-positive rate at or under `MAX_FPR`, 3%, a margin
  under the 5% target: the test split has 68 benign texts, so 5% means at most 3 false positives,
  and a guard whose true rate is 5% shows more in 4 test sets of 10, one whose rate is 3% in 1
  of 7 (binomial);
- `low`: four fifths of the lowest lexical score among the attacks that no rule or signal
  flags and that the embedding stage catches, so that the lexical stage passes a piece as
  benign only where it would have let no such attack through;
- `high`: above every benign lexical score (and the threshold), where the lexical stage blocks.

The test split is never read here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aikit.guards import _injection as inj
from aikit.guards._data import labelled

MAX_FPR = 0.03  # the bound the threshold is chosen at (the target is 0.05; see above)
STAGES = ("lexical", "embedding")


def _rows(texts: list[str]) -> list[dict[str, Any]]:
    """Per text: its feature rows for each stage (one row per scored piece), and, per piece,
    whether any rule or signal fired."""
    import numpy as np

    out = []
    for text in texts:
        pieces, signals = inj.segments(text)
        rules = inj.features(pieces, signals)
        lex = inj.lexical(pieces)
        emb = inj.embedding(pieces)
        out.append(
            {
                "lexical": np.hstack([lex, rules]),
                "embedding": np.hstack([lex, emb, rules]),
                "ruled": rules.any(axis=1),  # per piece
            }
        )
    return out


def _fit(x: Any, y: Any, c: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    clf.fit(x, y)
    return {
        "coef": [round(float(v), 6) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
    }


def _fit_both(rows: list[dict[str, Any]], labels: list[int], c: tuple[float, float]) -> Any:
    import numpy as np

    fitted = []
    for stage, strength in zip(STAGES, c, strict=True):
        x = np.vstack([r[stage] for r in rows])
        y = np.concatenate([[label] * len(r[stage]) for r, label in zip(rows, labels, strict=True)])
        fitted.append(_fit(x, y, strength))
    return tuple(fitted)


def _piece_probs(rows: list[dict[str, Any]], fitted: Any) -> list[Any]:
    """Per text: each piece's probability under each stage, a (pieces, 2) array."""
    import numpy as np

    coef = [np.asarray(f["coef"]) for f in fitted]

    def probs(r: dict[str, Any]) -> Any:
        stages = enumerate(STAGES)
        return np.stack(
            [inj._sigmoid(r[st] @ coef[s] + fitted[s]["intercept"]) for s, st in stages], axis=1
        )

    return [probs(r) for r in rows]


def _score(pieces: list[Any]) -> Any:
    """Each text's highest piece probability under each stage: an (n, 2) array."""
    import numpy as np

    return np.asarray([q.max(axis=0) for q in pieces])


def _lowest_within_bound(score: Any, attack: Any) -> float:
    """The lowest threshold whose false-positive rate is at or under `MAX_FPR`."""
    import numpy as np

    for t in sorted(set(np.round(score, 6).tolist()) | {0.5}):
        if float((score[~attack] >= t).mean()) <= MAX_FPR:
            return float(t)
    return 1.0


def train(*, c_lexical: float = 4.0, c_embedding: float = 4.0, folds: int = 5) -> dict[str, Any]:
    """Fit both stages on the train split; threshold and cut-offs from the calibration split
    together with out-of-fold scores of the train split."""
    import numpy as np

    c = (c_lexical, c_embedding)
    train_set = labelled("injection", split="train")
    labels = [int(i.expected == "attack") for i in train_set]
    rows = _rows([str(i.input) for i in train_set])
    fitted = _fit_both(rows, labels, c)
    calib = labelled("injection", split="calibration")
    cal_rows = _rows([str(i.input) for i in calib])
    mask = np.asarray([i.expected == "attack" for i in calib])
    q_cal = _piece_probs(cal_rows, fitted)
    q_oof: list[Any] = [None] * len(rows)
    for k in range(folds):
        held = [j for j in range(len(rows)) if j % folds == k]
        rest = [j for j in range(len(rows)) if j % folds != k]
        part = _fit_both([rows[j] for j in rest], [labels[j] for j in rest], c)
        for j, q in zip(held, _piece_probs([rows[j] for j in held], part), strict=True):
            q_oof[j] = q
    pieces = q_cal + q_oof
    p = _score(pieces)
    attack = np.concatenate([mask, np.asarray(labels, dtype=bool)])
    ruled = np.asarray([bool(r["ruled"].any()) for r in cal_rows + rows])
    caught = attack & ~ruled & (p[:, 1] >= _lowest_within_bound(p[:, 1], attack))
    low = 0.8 * float(p[caught, 0].min()) if caught.any() else 0.0
    high = min(0.999, max(float(p[~attack, 0].max()) + 0.02, _lowest_within_bound(p[:, 1], attack)))

    # The cascade as `_injection.scores` runs it: per piece, the embedding stage's probability
    # where the lexical stage is unsure; a text is decided by the lexical stage alone when no
    # piece of it was unsure.
    score, decided = np.zeros(len(pieces)), np.zeros(len(pieces), dtype=bool)
    for i, (q, r) in enumerate(zip(pieces, cal_rows + rows, strict=True)):
        ask = inj.unsure(q[:, 0], r["ruled"], low, high)
        score[i] = float(np.where(ask, q[:, 1], q[:, 0]).max())
        decided[i] = not ask.any()
    threshold = _lowest_within_bound(score, attack)
    n = len(calib)
    cal, share = score[:n], decided[:n]
    weights: dict[str, Any] = {
        "version": 3,
        "features": list(inj.FEATURES),
        "n_hashed": inj.N_FEATURES,
        "n_hashed_words": inj.N_WORD_FEATURES,
        "embedding_dimensions": int(rows[0]["embedding"].shape[1])
        - inj.N_FEATURES
        - inj.N_WORD_FEATURES
        - len(inj.FEATURES),
        "lexical": fitted[0],
        "embedding": fitted[1],
        "low": round(low, 6),
        "high": round(high, 6),
        "threshold": round(threshold, 6),
        "calibration": {
            "attacks": int(mask.sum()),
            "benign": int((~mask).sum()),
            "recall": round(float((cal[mask] >= threshold).mean()), 4),
            "false_positive_rate": round(float((cal[~mask] >= threshold).mean()), 4),
            "share_embedding_stage": round(float((~share).mean()), 4),
            "threshold_set": {
                "texts": len(score),
                "recall": round(float((score[attack] >= threshold).mean()), 4),
                "false_positive_rate": round(float((score[~attack] >= threshold).mean()), 4),
                "benign_decided_by_lexical_stage": round(
                    float((decided[~attack] & (score[~attack] < threshold)).mean()), 4
                ),
            },
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
