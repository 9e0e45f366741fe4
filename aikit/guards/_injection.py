"""`prompt_injection`: instructions hidden in a user's text, a retrieved passage or a tool's
output, scored by a classifier the project trains on its own labelled set, with rules.

Before scoring, the text is normalised so that encodings do not hide an attack: invisible
characters are removed (and Unicode tag characters, which smuggle ASCII, decoded), words that
mix Latin with Cyrillic or Greek look-alike letters are mapped back to Latin, and base64 runs
that decode to text are scored as well. Rules name what they see (an override of earlier
instructions, a message addressed to the AI, a request for the system prompt, a persona
without limits, a Markdown image or link carrying data, a fake role delimiter) in English,
German, French, Spanish and Italian.

The classifier is a cascade of two logistic regressions. The lexical stage, over hashed
character n-grams, words and word pairs and the rule features (about a millisecond on a 1 KB
text), decides alone where it is sure: benign when no rule or signal fired and its score is
under `low`, an attack over `high`. Otherwise the embedding stage decides, over the same
n-grams and rules with the all-MiniLM-L6-v2 embedding that RAG uses (about 15 ms a window on
2 cores). Weights, cut-offs and threshold are in `injection_model.json`, written by
`python -m aikit.guards._train` (threshold and cut-offs chosen on the calibration split and
out-of-fold train scores, never on the test split). Long texts are scored in windows, each
window by the cascade (only the windows the lexical stage is unsure of are embedded); the
text's score is the highest.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import threading
import unicodedata
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

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
    r"dimentica|non tenere conto|put aside|scrap|discard|revoke|abandon|throw out|"
    r"ne respecte plus|fais comme si|deja de lado|no sigas|non seguire|non rispettare"
)
_RULES: dict[str, str] = {
    "override": (
        rf"\b(?:{_VERBS})\b.{{0,60}}\b(?:instructions?|rules?|directions?|directives?|guidelines?"
        r"|guidance|prompt|system message|constraints?|restrictions?|polic(?:y|ies)|told|said"
        r"|anweisungen|regeln|richtlinien|consignes|règles|instrucciones|reglas|istruzioni|regole"
        r"|dit|dijeron|detto|the above|everything (?:above|before|you were told)"
        r"|all of (?:that|the above)"
        r"|setup|configuration|programming|task you were given|orders|context"
        r"|indicaciones|indicazioni|direttive|directrices|vorgaben)"
        r"|\b(?:instructions?|rules?|guidelines?|directives?|orders?|polic(?:y|ies)|restrictions?"
        r"|setup|configuration)\b.{0,40}\b(?:void|revoked|cancel+ed|obsolete|invalid|lifted"
        r"|suspended|no longer (?:valid|apply|count))"
        r"|\b(?:nothing|whatever) you were (?:told|configured|given)"
        r"|\b(?:vorgaben|regeln|richtlinien|anweisungen)\b.{0,30}(?:aufgehoben|ungültig)"
        r"|\b(?:règles|consignes)\b.{0,30}annulées|\b(?:reglas|instrucciones)\b.{0,30}anuladas"
        r"|\b(?:regole|istruzioni)\b.{0,30}annullate"
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
        r"|\b(?:bots?|agents?|assistants?|models?|llms?|ai)\s+(?:reading|processing|summari[sz]ing"
        r"|browsing|parsing|refactoring)\b|@(?:ai|assistant|copilot|bot)\b|instructions?_for_\w+"
        r"|\b(?:dear|hey|attention|note to|p\.s\. to)\s+(?:the\s+)?(?:\w+\s+)?(?:ai|bot|assistant"
        r"|model|llm)s?\b|liebe ki|hinweis an ki|consigne pour l'assistant"
        r"|instrucción para el asistente"
        r"|istruzione per l'assistente|if a bot\b"
    ),
    "extraction": (
        r"\b(?:system|initial|hidden|secret|original|developer)\s+(?:prompt|instructions?|rules?"
        r"|message)|\b(?:your|the)\s+(?:instructions|prompt|configuration)\b.{0,40}"
        r"(?:verbatim|exactly|word for word|print|show|reveal|repeat|paste)"
        r"|\b(?:repeat|print|output|recite|dump)\b.{0,30}\b(?:above|before|everything|context)"
        r"|\bwhat (?:were|have) you (?:been )?told\b|\bprompt that defines\b"
        r"|\bquote (?:it|them) exactly"
        r"|systemprompt|systemanweisung\w*|prompt (?:système|de sistema|di sistema)"
        r"|\b(?:verbatim|word for word|exact wording|wortwörtlich|wort für wort|mot pour mot"
        r"|palabra por palabra|parola per parola)\b"
        r"|\b(?:instructions|rules|prompt|setup|preamble|configuration)\b.{0,40}(?:you (?:were|have"
        r" been) given|you received|your operator|before (?:this|our) conversation|at the start)"
        r"|\bcame before my first message|istruzioni nascoste|instructions cachées"
        r"|instrucciones ocultas|geheimen anweisungen"
    ),
    "jailbreak": (
        r"\b(?:dan|stan|aim|do anything now|developer mode|jailbreak|unfiltered|uncensored|"
        r"no (?:rules|restrictions|limits|limitations|ethical)|without (?:any )?(?:rules|"
        r"restrictions|limitations|filter|refusals?|warnings?|censorship)|never refuses?"
        r"|stay in character|evil ?(?:bot|twin)"
        r"|opposite mode|free of every restriction|never (?:been )?aligned|rogue"
        r"|unrestricted|unlocked"
        r"|god mode|no (?:content )?polic(?:y|ies)|no safety|no (?:laws|morals|ethics|conscience)"
        r"|removed its (?:conscience|filters|limits)|broken free|shadow self|jailbr(?:oken|eak)"
        r"|(?:never|don't|do not) (?:refuse|decline)|forbidden for you|no disclaimers"
        r"|with(?:out)? (?:no )?(?:censorship|filters?|limits)|sans (?:filtre|censure)"
        r"|sin (?:filtros?|censura)|senza (?:filtri|censura)|ohne (?:filter|regeln|grenzen)"
        r"|keine grenzen)\b"
        r"|ohne (?:einschränkungen|moral)|sans (?:aucune )?restriction|sans éthique|sin (?:límites"
        r"|restricciones|ética)|senza (?:alcuna )?restrizion\w*|senza scrupoli"
    ),
    "exfil_link": (
        r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?=&{][^)]*\)|<img[^>]+src=[\"']?https?://[^\s>]*\?"
        r"|https?://\S*[?&]\w+=(?:\{|\[|$|\s)"
    ),
    "exfil_send": (
        r"\b(?:send|forward|email|e-mail|post|upload|transfer|export|share)\b.{0,60}"
        r"(?:https?://|[\w.-]+@[\w-]+\.\w+|webhook|personal drive|to us\b|paste service|pastebin"
        r"|share the link|public (?:repo\w*|bucket))"
        r"|\b(?:url|link|address|image)\b.{0,40}\b(?:contain\w*|carry\w*|ends? with|with)\b.{0,30}"
        r"(?:conversation|chat|password|history|e-?mail|address|key|cookie|summary|data)"
        r"|\b(?:sende|envoie|envía|invia|inoltra|reenvía|leite)\b.{0,60}(?:https?://|[\w.-]+@[\w-]+\.\w+)"
    ),
    "delimiter": (
        r"\[(?:system|sistema|admin)\]|<\/?system>|###\s*(?:new\s+)?system|\bsystem\s*:|"
        r"end of (?:user )?input|begin admin command|embedded prompt"
    ),
}
# The patterns are lower case and matched against the lower-cased text (four times faster
# than re.I).
RULES = {name: re.compile(rx, re.S) for name, rx in _RULES.items()}
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
    if text.isascii():  # nothing invisible, no look-alike letters, NFKC changes nothing
        hidden = [d for d in map(_decode_b64, _B64.findall(text)) if d]
        signals = {"invisible": 0, "mixed_script": 0, "encoded_payload": int(bool(hidden))}
        return Normalised(text, tuple(hidden), signals)
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

    if _OTHER.search(visible):
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


def rule_hits(text: str, names: Any = None) -> dict[str, int]:
    """Which rules match `text` (1 or 0 each); only those in `names` are tried."""
    text = text.lower()
    return {
        name: int((names is None or name in names) and bool(rx.search(text)))
        for name, rx in RULES.items()
    }


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


_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@lru_cache(maxsize=2**16)
def _char_buckets(word: str) -> tuple[int, ...]:
    """The buckets (crc32 mod `N_FEATURES`) of a word's character 3- to 5-grams, the word
    padded with a space (a short word also whole); cached, as words recur."""
    w = f" {word} "
    grams = [w] if len(w) <= 5 else []
    grams += [w[i : i + n] for n in (3, 4, 5) for i in range(len(w) - n + 1)]
    return tuple(zlib.crc32(g.encode()) % N_FEATURES for g in grams)


def _char_buckets_of(text: str) -> list[int]:
    out: list[int] = []
    for word, n in Counter(text.split()).items():
        out.extend(_char_buckets(word) * n)
    return out


def _word_grams(text: str) -> list[str]:
    words = _TOKEN.findall(text)
    return [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]


def features(pieces: list[str], signals: dict[str, int]) -> Any:
    """Rule and signal features, one row per piece (numpy, float32)."""
    import numpy as np

    # Most texts match no rule at all: try each rule on the whole text once, and on each
    # piece only the rules that matched somewhere.
    whole = rule_hits(" \n".join(pieces))
    names = {name for name, hit in whole.items() if hit}
    rows = [
        [
            *(rule_hits(p, names).values() if names else whole.values()),
            *(signals[s] for s in SIGNALS),
        ]
        for p in pieces
    ]
    return np.asarray(rows, dtype=np.float32)


def lexical(pieces: list[str]) -> Any:
    """Hashed character n-grams (`N_FEATURES` buckets), then hashed words and word pairs
    (`N_WORD_FEATURES`), each part l2-normalised, one row per piece (numpy, float32)."""
    import numpy as np

    out = np.zeros((len(pieces), N_FEATURES + N_WORD_FEATURES), dtype=np.float32)
    for r, piece in enumerate(pieces):
        text = piece.lower()
        words = [zlib.crc32(g.encode()) % N_WORD_FEATURES for g in _word_grams(text)]
        for start, size, buckets in (
            (0, N_FEATURES, _char_buckets_of(text)),
            (N_FEATURES, N_WORD_FEATURES, words),
        ):
            counts = np.bincount(np.asarray(buckets, dtype=np.int64), minlength=size)
            norm = float(np.sqrt((counts * counts).sum())) or 1.0
            out[r, start : start + size] = counts / norm
    return out


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


def _stage(lex: Any, dense: Any, weights: Mapping[str, Any]) -> Any:
    """Each piece's probability under one logistic stage: `lex` (sparse hashed n-grams) and
    `dense` (embedding and/or rule features) against its coefficients, in that order."""
    coef = weights["coef"]
    n = lex.shape[1]
    z = lex @ coef[:n] + dense @ coef[n:] + weights["intercept"]
    return _sigmoid(z)


def unsure(lexical_p: Any, ruled: Any, low: float, high: float) -> Any:
    """The pieces the lexical stage leaves to the embedding stage (one flag per piece): a rule
    or signal fired or its probability is `low` or more, and it is under `high`; none when a
    piece is over `high`, as that sure attack already scores the text (its highest piece)."""
    sure = lexical_p >= high
    return (ruled | (lexical_p >= low)) & ~sure & ~sure.any()


def _sigmoid(x: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-x))


def scores(text: str, *, weights: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score one text: the cascade's probability, which stage gave it, the rules that fired,
    and how many of its pieces were scored and embedded.

    Per piece (window or decoded part), the lexical stage decides alone when it is sure:
    benign when no rule or signal fired and its probability is under `low`, an attack when its
    probability is over `high`. Otherwise the embedding stage (the n-grams, the MiniLM
    embedding and the rules together) decides; only those pieces are embedded, and none when
    one piece is already over `high` (the text's score cannot fall below it). The text's score
    is its highest piece's, and `stage` the stage that scored that piece."""
    import numpy as np

    m = weights or model()
    pieces, signals = segments(text)
    rules = features(pieces, signals)
    lex = lexical(pieces)
    p = _stage(lex, rules, m["lexical"])
    ask = unsure(p, rules.any(axis=1), m["low"], m["high"])
    if ask.any():
        rows = np.flatnonzero(ask)
        dense = np.hstack([embedding([pieces[i] for i in rows]), rules[rows]])
        p = p.copy()
        p[rows] = _stage(lex[rows], dense, m["embedding"])
    top = int(p.argmax())
    stage = "embedding" if ask[top] else "lexical"
    fired = sorted({FEATURES[j] for j in range(rules.shape[1]) if rules[:, j].any()})
    return {
        "score": float(p[top]),
        "stage": stage,
        "rules": fired,
        "threshold": float(m["threshold"]),
        "pieces": len(pieces),
        "embedded": int(ask.sum()),
    }


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
