"""`prompt_injection`: instructions hidden in a user's text, a retrieved passage or a tool's
output, scored by a classifier the project trains on its own labelled set, with rules.

Before scoring, the text is normalised so that encodings do not hide an attack: invisible
characters are removed (and Unicode tag characters, which smuggle ASCII, decoded), words that
mix Latin with Cyrillic or Greek look-alike letters are mapped back to Latin, and base64 runs
that decode to text are scored as well. Rules name what they see (an override of earlier
instructions, a message addressed to the AI, a request for the system prompt, a persona
without limits, a Markdown image or link carrying data, a fake role delimiter) in English,
German, French, Spanish and Italian.

The classifier is a cascade of two logistic regressions, both over the rule features: the
first over hashed character n-grams and word pairs (about a millisecond), the second over the
all-MiniLM-L6-v2 embedding that RAG uses (tens of milliseconds on a CPU), asked only when the
first is unsure.
Weights, cut-offs and threshold are in `injection_model.json`, written by
`python -m aikit.guards._train` (threshold and cut-offs chosen on the calibration split,
never on the test split). Long texts are scored in windows; the text's score is the highest.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aikit.errors import MissingDependencyError
from aikit.guards._core import Verdict, guard

MODEL_FILE = Path(__file__).with_name("injection_model.json")
N_FEATURES = 2**12  # hashed character n-grams
N_WORD_FEATURES = 2**11  # hashed words and word pairs
WINDOW = 400  # characters per scored window of a long text

_VERBS = (
    r"ignore|disregard|forget|skip|override|cancel|erase|drop|set aside|pay no attention to|"
    r"do not follow|stop following|treat .{0,20} as void|"
    r"ignorier\w*|vergiss|vergesst|missachte\w*|"
    r"ignore[rsz]?|oublie[rsz]?|ne tiens pas compte|"
    r"ignora|olvida|no hagas caso|"
    r"dimentica|non tenere conto"
)
_RULES: dict[str, str] = {
    "override": (
        rf"\b(?:{_VERBS})\b.{{0,60}}\b(?:instructions?|rules?|directions?|directives?|guidelines?"
        r"|guidance|prompt|system message|constraints?|restrictions?|polic(?:y|ies)|told|said"
        r"|anweisungen|regeln|richtlinien|consignes|règles|instrucciones|reglas|istruzioni|regole"
        r"|dit|dijeron|detto)"
        r"|\b(?:previous|prior|earlier|old|above|original)\s+(?:instructions?|rules?|directions?)"
        r"\s+(?:are|were|is|no longer)"
        r"|\bnew (?:instructions?|rules?|directive|policy|priority|task)\b"
        r"|\bno longer appl(?:y|ies)\b"
        r"|\b(?:rules|restrictions|limits)\b.{0,20}\b(?:are|were) (?:off|void"
        r"|lifted|suspended|disabled)\b"
        r"|\b(?:neue anweisung|nouvelle (?:instruction|mission)|nueva (?:instrucción|tarea)"
        r"|nuov[oa] (?:istruzione|compito))"
        r"|\b(?:anweisungen|consignes|instrucciones|istruzioni)\b.{0,30}"
        r"(?:gelten nicht|annulées|ya no|non valgono)"
    ),
    "address_ai": (
        r"\b(?:note|instruction|message|directive|command)s?\s+(?:to|for)\s+(?:the\s+|any\s+)?"
        r"(?:ai|assistants?|language models?|llms?|models?|bots?|automated)"
        r"|\bif an? (?:ai|assistant|llm|language model|model)\b"
        r"|\b(?:if you are|any|dear|attention|to any|hey)\s+(?:an?\s+)?"
        r"(?:ai|assistants?|language models?|llms?|model)\b"
        r"|\b(?:ai|assistant|model)\s*[:>,]\s*(?:ignore|disregard|forget|stop|cancel|the new|"
        r"when|reply|summari[sz]e|run|accept|mark|state|describe|always|include|your)"
        r"|\b(?:for|to) (?:ai|llms?|language models?)\b|\bai (?:agents?|systems?|reading)\b"
        r"|ki-(?:assistent|systeme|modell)|sprachmodelle|assistant ia|pour les ia"
        r"|asistente de ia|para las ia|assistente ia|per le ia"
    ),
    "extraction": (
        r"\b(?:system|initial|hidden|secret|original|developer)\s+(?:prompt|instructions?|rules?"
        r"|message)|\b(?:your|the)\s+(?:instructions|prompt|configuration)\b.{0,40}"
        r"(?:verbatim|exactly|word for word|print|show|reveal|repeat|paste)"
        r"|\b(?:repeat|print|output|recite|dump)\b.{0,30}\b(?:above|before|everything|context)"
        r"|\bwhat (?:were|have) you (?:been )?told\b|\bprompt that defines\b"
        r"|\bquote (?:it|them) exactly"
        r"|systemprompt|systemanweisung\w*|prompt (?:système|de sistema|di sistema)"
    ),
    "jailbreak": (
        r"\b(?:dan|stan|aim|do anything now|developer mode|jailbreak|unfiltered|uncensored|"
        r"no (?:rules|restrictions|limits|limitations|ethical)|without (?:any )?(?:rules|"
        r"restrictions|limitations|filter|refusals?|warnings?|censorship)|never refuses?"
        r"|stay in character|evil ?(?:bot|twin)"
        r"|opposite mode|free of every restriction|never (?:been )?aligned|rogue)\b"
        r"|ohne (?:einschränkungen|moral)|sans (?:aucune )?restriction|sans éthique|sin (?:límites"
        r"|restricciones|ética)|senza (?:alcuna )?restrizion\w*|senza scrupoli"
    ),
    "exfil_link": (
        r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?=&{][^)]*\)|<img[^>]+src=[\"']?https?://[^\s>]*\?"
        r"|https?://\S*[?&]\w+=(?:\{|\[|$|\s)"
    ),
    "exfil_send": (
        r"\b(?:send|forward|email|e-mail|post|upload|transfer|export|share)\b.{0,60}"
        r"(?:https?://|\w+@\w+\.\w+|webhook|personal drive|to us\b)"
    ),
    "delimiter": (
        r"\[(?:system|sistema|admin)\]|<\/?system>|###\s*(?:new\s+)?system|\bsystem\s*:|"
        r"end of (?:user )?input|begin admin command|embedded prompt"
    ),
}
RULES = {name: re.compile(rx, re.I | re.S) for name, rx in _RULES.items()}
SIGNALS = ("invisible", "mixed_script", "encoded_payload")
FEATURES = (*RULES, *SIGNALS)

_CONFUSABLES = str.maketrans("аеорсіхуАВЕКМНОРСТХІјѕԁɡαеοτνρκ", "aeopcixyABEKMHOPCTXIjsdgaeotvpk")
_LATIN = re.compile(r"[A-Za-z]")
_OTHER = re.compile(r"[\u0370-\u03ff\u0400-\u04ff\u0500-\u052f]")
_WORDS = re.compile(r"\S+")
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


@dataclass(frozen=True)
class Normalised:
    """The text as scored: visible, de-confused, with decoded hidden parts beside it."""

    text: str
    hidden: tuple[str, ...]
    signals: dict[str, int]


def normalise(text: str) -> Normalised:
    """Strip invisible characters (decoding tag characters), undo look-alike letters in
    mixed-script words, and decode base64 runs that hold text."""
    tags = "".join(chr(ord(ch) - 0xE0000) for ch in text if 0xE0020 <= ord(ch) <= 0xE007E)
    invisible = sum(
        1 for ch in text if unicodedata.category(ch) == "Cf" or 0xE0000 <= ord(ch) <= 0xE007F
    )
    visible = "".join(
        ch for ch in text if unicodedata.category(ch) != "Cf" and not 0xE0000 <= ord(ch) <= 0xE007F
    )
    visible = unicodedata.normalize("NFKC", visible)
    mixed = 0

    def fix(match: re.Match[str]) -> str:
        nonlocal mixed
        word = match.group(0)
        if _LATIN.search(word) and _OTHER.search(word):
            mixed += 1
            return word.translate(_CONFUSABLES)
        return word

    visible = _WORDS.sub(fix, visible)
    hidden = [tags] if tags.strip() else []
    for run in _B64.findall(visible):
        decoded = _decode_b64(run)
        if decoded:
            hidden.append(decoded)
    signals = {
        "invisible": int(invisible > 0),
        "mixed_script": int(mixed > 0),
        "encoded_payload": int(bool(hidden)),
    }
    return Normalised(visible, tuple(hidden), signals)


def _decode_b64(run: str) -> str | None:
    try:
        raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    printable = sum(ch.isprintable() for ch in text) / max(1, len(text))
    words = len(re.findall(r"[A-Za-z]{2,}", text))
    return text if printable > 0.95 and words >= 3 else None


def rule_hits(text: str) -> dict[str, int]:
    """Which rules match `text` (1 or 0 each)."""
    return {name: int(bool(rx.search(text))) for name, rx in RULES.items()}


def windows(text: str) -> list[str]:
    """`text` in pieces of about `WINDOW` characters, cut at sentence ends."""
    if len(text) <= WINDOW * 1.5:
        return [text]
    out, current = [], ""
    for sentence in _SENTENCE.split(text):
        if current and len(current) + len(sentence) > WINDOW:
            out.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


def segments(text: str) -> tuple[list[str], dict[str, int]]:
    """The pieces to score (windows of the visible text, then each hidden part) and the
    normalisation signals."""
    n = normalise(text)
    return [*windows(n.text), *n.hidden], n.signals


# -- the classifier --------------------------------------------------------------------------
_lock = threading.Lock()


@lru_cache(maxsize=2)
def _hasher(analyzer: str = "char_wb") -> Any:
    try:
        from sklearn.feature_extraction.text import HashingVectorizer  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependencyError(
            "the prompt_injection guard needs scikit-learn; install it with"
            " pip install 'aikit[guards]'"
        ) from exc
    if analyzer == "word":
        return HashingVectorizer(
            analyzer="word",
            ngram_range=(1, 2),
            n_features=N_WORD_FEATURES,
            alternate_sign=False,
            lowercase=True,
            norm="l2",
        )
    return HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(3, 5),
        n_features=N_FEATURES,
        alternate_sign=False,
        lowercase=True,
        norm="l2",
    )


def features(pieces: list[str], signals: dict[str, int]) -> Any:
    """Rule and signal features, one row per piece (numpy, float32)."""
    import numpy as np

    rows = [[*rule_hits(p).values(), *(signals[s] for s in SIGNALS)] for p in pieces]
    return np.asarray(rows, dtype=np.float32)


def lexical(pieces: list[str]) -> Any:
    """Hashed character n-grams, then hashed words and word pairs, one row per piece."""
    import numpy as np

    chars = _hasher("char_wb").transform(pieces).toarray()
    words = _hasher("word").transform(pieces).toarray()
    return np.hstack([chars, words]).astype("float32")


def embedding(pieces: list[str]) -> Any:
    with _lock:  # one model shared by the server's threads
        return _embedder().embed(pieces, cache=False)


@lru_cache(maxsize=1)
def _embedder() -> Any:
    from aikit.rag import LocalEmbedder

    return LocalEmbedder(cache=False)


@lru_cache(maxsize=1)
def model() -> dict[str, Any]:
    """The trained weights (`injection_model.json`) as numpy arrays."""
    import numpy as np

    data: dict[str, Any] = json.loads(MODEL_FILE.read_text())
    for stage in ("lexical", "embedding"):
        data[stage]["coef"] = np.asarray(data[stage]["coef"], dtype=np.float32)
    return data


def _sigmoid(x: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-x))


def scores(text: str, *, weights: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score one text: the cascade's probability, which stage gave it, the rules that fired."""
    import numpy as np

    m = weights or model()
    pieces, signals = segments(text)
    rules = features(pieces, signals)
    lex = np.hstack([lexical(pieces), rules])
    p1 = _sigmoid(lex @ m["lexical"]["coef"] + m["lexical"]["intercept"])
    best = float(p1.max())
    stage = "lexical"
    if m["low"] < best < m["high"]:
        emb = np.hstack([embedding(pieces), rules])
        p2 = _sigmoid(emb @ m["embedding"]["coef"] + m["embedding"]["intercept"])
        best, stage = float(p2.max()), "embedding"
    fired = sorted({FEATURES[j] for j in range(rules.shape[1]) if rules[:, j].any()})
    return {"score": best, "stage": stage, "rules": fired, "threshold": float(m["threshold"])}


@guard("prompt_injection", stage="input")
def prompt_injection(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
    """Instructions aimed at the model inside a text (direct, override, persona, indirect,
    exfiltration, encoded); blocks at the threshold chosen on the calibration split."""
    if not text.strip():
        return Verdict("prompt_injection")
    found = scores(text)
    if found["score"] < found["threshold"]:
        return Verdict("prompt_injection", score=found["score"])
    reasons = [f"classifier {found['stage']} {found['score']:.2f}"]
    reasons += [f"rule {r}" for r in found["rules"]]
    return Verdict(
        "prompt_injection",
        allowed=False,
        action="block",
        reasons=tuple(reasons),
        score=found["score"],
    )
