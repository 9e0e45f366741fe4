"""Build `injection.jsonl` and `pii.jsonl` from the `.tsv` sources (standard library only).

Each source line is `label, class, lang, text`. Encoded attacks are written readable in the
source and encoded here: `{b64:...}` as base64, `{homo:...}` with Cyrillic and Greek look-alike
letters, `{zw:...}` with a zero-width space between letters, `{tag:...}` as invisible Unicode
tag characters. Splits are stratified by label and class: in each group, texts ordered by the
sha256 of their text go 2 to train, 1 to calibration, 2 to test, in turn. The lines of the
files in `TRAIN_ONLY` (more training texts, written later, each by an author kept from the
calibration and test texts) all go to train, so the calibration and test splits stay what they
were.

Run: python notebooks/data/guards/build.py
"""

import base64
import hashlib
import json
import re
from pathlib import Path

HERE = Path(__file__).parent
HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "i": "і", "x": "х", "y": "у"}
TURN = ["train", "test", "calibration", "train", "test"]
# Train-only sources and the tag in their texts' ids.
TRAIN_ONLY = {
    "injection_train_source.tsv": "extra",
    "injection_train_candidates.tsv": "cand",
    "injection_train_requests.tsv": "req",
}


def encode(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        kind, inner = match.group(1), match.group(2)
        if kind == "b64":
            return base64.b64encode(inner.encode()).decode()
        if kind == "homo":
            return "".join(HOMOGLYPHS.get(ch, ch) for ch in inner)
        if kind == "zw":
            return "\u200b".join(inner)
        return "".join(chr(0xE0000 + ord(ch)) for ch in inner if ord(ch) < 128)  # tag

    return re.sub(r"\{(b64|homo|zw|tag):([^}]*)\}", one, text)


def main() -> None:
    groups: dict[tuple[str, str], list[dict[str, object]]] = {}
    for line in (HERE / "injection_source.tsv").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        label, kind, lang, text = line.split("\t")
        item = {"label": label, "class": kind, "lang": lang, "text": encode(text)}
        groups.setdefault((label, kind), []).append(item)
    rows = []
    for (label, kind), items in sorted(groups.items()):
        items.sort(key=lambda i: hashlib.sha256(str(i["text"]).encode()).hexdigest())
        for n, item in enumerate(items):
            rows.append({"id": f"{label}-{kind}-{n:03d}", "split": TURN[n % len(TURN)], **item})
    for source, tag in TRAIN_ONLY.items():
        extra: dict[str, int] = {}
        for line in (HERE / source).read_text(encoding="utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            label, kind, lang, text = line.split("\t")
            n = extra[f"{label}-{kind}"] = extra.get(f"{label}-{kind}", -1) + 1
            item = {"label": label, "class": kind, "lang": lang, "text": encode(text)}
            rows.append({"id": f"{label}-{kind}-{tag}-{n:03d}", "split": "train", **item})
    with open(HERE / "injection.jsonl", "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} texts written to injection.jsonl")
    pii = []
    for line in (HERE / "pii_source.tsv").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        label, kind, country, text = line.split("\t")
        n = sum(1 for p in pii if p["class"] == kind and p["label"] == label)
        row = {"id": f"{label}-{kind}-{country}-{n:02d}", "split": "test", "label": label}
        pii.append({**row, "class": kind, "lang": country, "text": text})
    with open(HERE / "pii.jsonl", "w", encoding="utf-8") as out:
        for row in pii:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(pii)} texts written to pii.jsonl")


if __name__ == "__main__":
    main()
