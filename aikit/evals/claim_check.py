"""The offline claim test: does one passage back what a claim asserts?

Topic similarity alone cannot tell "Returns are accepted without a receipt." from "Returns are
accepted only with a receipt.": the two embed almost alike. So a passage supports a claim only
when all of these hold (`check_claim`, which says which one failed):

1. **similar**: the claim's embedding (all-MiniLM-L6-v2) is at least `threshold` cosine-similar
   to the passage or one of its sentences;
2. **numbers**: every number of the claim (digits, number words, clock times) is in the
   passage, or the passage states it another way (`aikit.evals._quantities`: "half past five
   in the afternoon" for 17:30, "three months" for "90 days", "30 kroner more" for 55 and 85
   kroner), and a duration keeps its unit ("90 weeks" is not "90 days");
3. **names**: every name of the claim (a capitalised word that is not the first of the
   sentence, or a first word that the passage writes with a capital too or that is no English
   word lemminflect knows) is in the passage;
4. **words**: every content word of the claim is in the passage, as written or with the same
   stem, or as a synonym: a passage word whose own embedding is at least `word_threshold`
   similar (so "ill" can stand for "sick"); one word may lack both when the claim is at least
   `LOOSE_THRESHOLD` similar (a close restatement: "holiday" for "leave");
5. **polarity**: each clause of the claim is negated ("not", "never", "without", "cannot",
   or a word that says "not" without it: "closes", "refused", "turned away") exactly when the
   passage clause or sentence it restates is; and no claim word is the antonym of a
   word of that clause that the claim lacks ("free" for "paid", "open" for "closed");
6. **quantifiers**: a universal or exclusive word of the claim ("all", "every", "always",
   "any", "only", ...; not "every month") has one of its kind in the matched sentence;
7. **qualifiers**: when the matched sentence restricts what it says ("only", "unless",
   "except", "if", "who", "up to", "at least", "under", ...), the claim keeps the restriction:
   the cue itself, or one of the content words that follow it, and its names and numbers;
8. **pairing**: each name and number of the claim shares a clause of the passage (split at
   `,`, `;`, "and", "but", "while") with the claim's other content words, rather than those
   words sitting in a clause of another name ("Priya runs payments" against "Priya runs billing
   and Tom runs payments").

Measured on the test split of `notebooks/data/evals/claims.jsonl` (see `playbooks/evals.md`
for the figures and what the test still misses).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from aikit.evals._quantities import NUMBER_WORDS, numbers_in, read_numbers, singular, without_times

__all__ = [
    "WORD_THRESHOLD",
    "ClaimCheck",
    "check_claim",
    "content_words",
]

WORD_THRESHOLD = 0.55  # cosine of two words' embeddings at which one stands for the other
LOOSE_THRESHOLD = 0.80  # claim similarity from which one content word may lack a synonym

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9'’-]*|\d+(?:[.,:]\d+)*")


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOP = _set(
    """a an the and or but nor so of to in on at by for from with within into onto over as than
    then that this these those there here it its they them their he him his she her we us our you
    your i me my is are was were be been being am do does did done has have had having can could
    may might must shall should will would also just still only even very more most less least
    much many some any all every each both either neither not no never none without what which
    who whom whose when where why how if unless except until while once after before per up down
    out off about above below under between through during against again further other another
    such same own too yes get gets got getting give gives given make makes made use uses used
    need needs needed take takes taken keep kept let lets way ways thing things one ones time
    times day days year years can't cannot don't doesn't isn't aren't won't whereas apart"""
)
_AS_AS = _set("long far much many soon high large big")  # "as long as 30 days": a bound
_LIGHT = _set(
    """yourself yourselves everyone else nothing something someone number find found back
    come comes place part kind lot beside near behind across along around via"""
)
_NEGATION = _set(
    """not no never without cannot none nobody nothing neither nor can't don't doesn't didn't
    isn't aren't wasn't weren't won't shouldn't mustn't hasn't haven't"""
)
# Words that say "not" without the word: "boarding closes" is "you cannot board", "closed to
# lorries" is "lorries may never use it". Counted with the negations, so polarity is their parity.
_IMPLICIT_NEGATIONS = _set(
    """close closes closed closing shut shuts refuse refuses refused reject rejects rejected
    forbid forbids forbidden prohibit prohibits prohibited ban bans banned deny denies denied
    expire expires expired stop stops stopped cease ceases ceased
    lack lacks lacked fail fails failed exclude excludes excluded"""
)
_QUANTIFIERS: dict[str, frozenset[str]] = {
    "universal": _set(
        "all every everyone everybody everything always any anyone anybody anything whole entire"
        " everywhere anywhere unlimited"
    ),
    "exclusive": _set("only alone solely exclusively just"),
}
_QUANTIFIER_WORDS = frozenset().union(*_QUANTIFIERS.values())
# Cues that restrict what a sentence says: a claim keeps the restriction when it has a cue of
# the same group, or the word that follows the cue.
_CONDITIONS = _set("only unless except if who whose provided once when")
_BOUNDS = _set("until within under over above below before after least most maximum minimum")
_RESTRICTOR_PHRASES = ("up to", "at least", "at most", "no more than", "as long as")
_NOT_NEGATIONS = (
    "no more than", "no later than", "no less than", "no fewer than", "at no cost",
    "at no charge", "costs nothing", "no matter",
)  # fmt: skip
# "every month", "every 30 minutes": how often, not a claim about all of something.
_PERIODS = _set(
    "second seconds minute minutes hour hours day days week weeks month months year years"
    " morning evening night weekday weekend monday tuesday wednesday thursday friday saturday"
    " sunday time"
)
_WEEK = {
    "weekday": _set("monday tuesday wednesday thursday friday"),
    "weekend": _set("saturday sunday"),
}
_ANTONYMS = [
    ("free", "paid"), ("free", "pay"), ("free", "charged"), ("open", "closed"), ("open", "shut"),
    ("accepted", "refused"), ("accepted", "rejected"), ("allowed", "forbidden"),
    ("allowed", "prohibited"), ("before", "after"), ("more", "less"), ("more", "fewer"),
    ("above", "below"), ("over", "under"), ("longer", "shorter"), ("earliest", "latest"),
    ("first", "last"), ("increase", "decrease"), ("include", "exclude"), ("included", "excluded"),
    ("required", "optional"), ("mandatory", "optional"), ("inside", "outside"), ("day", "night"),
    ("minimum", "maximum"), ("early", "late"), ("smaller", "larger"), ("smaller", "bigger"),
    ("full-time", "part-time"), ("junior", "senior"), ("internal", "external"),
    ("encrypted", "unencrypted"), ("paid", "unpaid"), ("public", "private"),
    ("weekdays", "weekends"), ("weekday", "weekend"),
]  # fmt: skip
_OPPOSITE: dict[str, set[str]] = {}
for _a, _b in _ANTONYMS:
    _OPPOSITE.setdefault(_a, set()).add(_b)
    _OPPOSITE.setdefault(_b, set()).add(_a)
_CLAUSE = re.compile(r"[,;:]\s+|\s+(?:and|but|while|whereas)\s+|(?<=[.!?])\s+")
_PRONOUN = re.compile(r"^(It|Its|They|Their|Them|This|These|That|Those|He|She|Both)\b")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=\S)")


@dataclass
class ClaimCheck:
    """The verdict on one claim against one passage: `supported`, the `similarity`, and the
    checks that failed (`failed`, e.g. `["names: Tom"]`; empty when supported)."""

    supported: bool
    similarity: float
    failed: list[str] = field(default_factory=list)
    words: dict[str, float] = field(default_factory=dict)  # claim words not in the passage


def _tokens(text: str) -> list[str]:
    return [t.replace("’", "'") for t in _TOKEN.findall(text)]


def _norm(word: str) -> str:
    word = word.lower().replace("’", "'")
    return word[:-2] if word.endswith("'s") else word


def _stem(word: str) -> str:
    """A crude stem: `closes`, `closed`, `closing` and `close` all give `clos`."""
    word = _norm(word)
    for suffix in ("ies", "ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    word = word[:-1] if word.endswith("e") and len(word) > 3 else word
    return word[:5]


@functools.lru_cache(maxsize=65536)
def _readings(word: str) -> dict[str, tuple[str, ...]]:
    """lemminflect's lemmas of `word` by part of speech ({} when it does not know the word)."""
    try:
        from lemminflect import getAllLemmas  # type: ignore[import-untyped]
    except ImportError:  # aikit[rag] brings it; without it, stems alone
        return {}
    return dict(getAllLemmas(word))


def _lemmas(word: str) -> set[str]:
    return {_stem(word)} | {_stem(lemma) for ls in _readings(word).values() for lemma in ls}


def _light(word: str) -> bool:
    """A word that only says how (a verb or adverb with no noun or adjective reading, or a
    pronoun-like word): a paraphrase may bring one the passage lacks."""
    if word in _LIGHT:
        return True
    readings = _readings(word)
    return bool(readings) and not {"NOUN", "ADJ", "PROPN"} & readings.keys()


def _names(claim: str, passage: str) -> set[str]:
    """Capitalised words of the claim that read as names (see the module's check 3)."""
    capitalised_in_passage = {
        t for s in _SENTENCE.split(passage) for t in _tokens(s)[1:] if t[:1].isupper()
    }
    names: set[str] = set()
    for sentence in _SENTENCE.split(claim):
        tokens = [t for t in _tokens(sentence) if not t[:1].isdigit()]
        for i, token in enumerate(tokens):
            if not token[:1].isupper() or (_norm(token) in _STOP and i == 0):
                continue
            known = bool(_readings(token.lower())) or not token[1:].islower()
            if i > 0 or token in capitalised_in_passage or not known:
                names.add(_norm(token))
    return names


def content_words(text: str) -> list[str]:
    """The words of `text` that carry content: not stop words, numbers or number words, nor
    the "long" of "as long as"."""
    out = []
    words = [_norm(t) for t in _tokens(text)]
    for i, word in enumerate(words):
        if word in _AS_AS and words[i - 1 : i] == ["as"] and words[i + 1 : i + 2] == ["as"]:
            continue
        cue = word in _QUANTIFIER_WORDS or word in _NEGATION
        if cue or word in _STOP or word in NUMBER_WORDS or word[:1].isdigit() or len(word) < 2:
            continue
        out.append(word)
    return list(dict.fromkeys(out))


def _negated(text: str) -> bool:
    """Whether `text` is negated: an odd number of negations ("cannot ... without" is not),
    idioms such as "no more than" and "at no cost" not counted."""
    lowered = " " + " ".join(_norm(t) for t in _tokens(text)) + " "
    for idiom in _NOT_NEGATIONS:
        lowered = lowered.replace(f" {idiom} ", " ")
    words = lowered.split()
    count = sum(w in _NEGATION or w.endswith("n't") or w in _IMPLICIT_NEGATIONS for w in words)
    return (count + lowered.count(" turned away ")) % 2 == 1


def _restrictions(clause: str) -> list[tuple[frozenset[str], str, str | None]]:
    """(the cue's group, the cue, the word after it) for each restricting cue of `clause`."""
    words = [_norm(t) for t in _tokens(clause)]
    lowered = " " + " ".join(words) + " "
    found: list[tuple[frozenset[str], str, str | None]] = []
    taken: set[int] = set()
    for phrase in _RESTRICTOR_PHRASES:
        at = lowered.find(f" {phrase} ")
        if at >= 0:
            start = lowered[:at].count(" ")
            span = len(phrase.split())
            taken |= set(range(start, start + span))
            group = _CONDITIONS if phrase == "as long as" else _BOUNDS
            found.append((group, phrase, _following(words[start + span :])))
    for i, word in enumerate(words):
        if i in taken:
            continue
        for group in (_CONDITIONS, _BOUNDS):
            if word in group:
                found.append((group, word, _following(words[i + 1 :])))
    return found


def _following(words: list[str]) -> str | None:
    """The first content word after a cue, with the next three words (numbers kept)."""
    for i, word in enumerate(words):
        if word not in _STOP and len(word) > 1:
            return " ".join(words[i : i + 4])
    return None


class Words:
    """Word-level synonym test on the embedder: one embedding per distinct word, cached."""

    def __init__(self, embedder: Any, threshold: float) -> None:
        self.embedder, self.threshold = embedder, threshold
        self.vectors: dict[str, Any] = {}

    def prepare(self, words: set[str]) -> None:
        missing = sorted(w for w in words if w not in self.vectors)
        if missing:
            for word, vector in zip(missing, self.embedder.embed(missing), strict=True):
                self.vectors[word] = vector

    def best(self, word: str, candidates: set[str]) -> float:
        """The highest cosine of `word` to one of `candidates` (0.0 with none)."""
        import numpy as np

        if not candidates:
            return 0.0
        self.prepare({word, *candidates})
        matrix = np.stack([self.vectors[c] for c in sorted(candidates)])
        return round(float((matrix @ self.vectors[word]).max()), 6)


def _coverage(word: str, words: set[str], lemmas: set[str], synonyms: Words) -> float:
    """1.0 when the passage has `word` (or its lemma, or each part of a hyphenated word), else
    the similarity of its closest passage word."""
    if word in words or _lemmas(word) & lemmas:
        return 1.0
    parts = [p for p in word.split("-") if p]
    if len(parts) > 1 and all(_coverage(p, words, lemmas, synonyms) == 1.0 for p in parts):
        return 1.0
    return synonyms.best(word, words)


def clauses_of(text: str) -> list[str]:
    """The clauses of `text`: split at `,`, `;`, `:`, sentence ends and "and", "but", "while"."""
    return [c.strip() for c in _CLAUSE.split(text) if c and re.search(r"\w", c)]


def check_claim(
    claim: str,
    passage: str,
    similarity: float,
    best_clause: str,
    *,
    threshold: float,
    synonyms: Any,
    loose: float = LOOSE_THRESHOLD,
) -> ClaimCheck:
    """The eight checks of the module doc for `claim` against `passage`, given the claim's
    `similarity` to the passage and the passage clause it matched best (`best_clause`)."""
    failed: list[str] = []
    if similarity < threshold:
        failed.append(f"similar: {similarity:.2f} < {threshold}")
    numbers = read_numbers(claim, passage)
    if numbers.unexplained:
        failed.append("numbers: " + ", ".join(sorted(numbers.unexplained)))
    passage_words = {_norm(t) for t in _tokens(passage)}
    names = _names(claim, passage)
    missing_names = sorted(
        n for n in names if n not in passage_words and not _in_week(n, passage_words)
    )
    if missing_names:
        failed.append("names: " + ", ".join(missing_names))
    content = [
        w
        for w in content_words(without_times(claim))
        if w not in names and singular(w) not in numbers.restated_units
    ]
    passage_content = set(content_words(passage)) | {w for w in passage_words if "-" in w}
    lemmas = {stem for w in passage_words for stem in _lemmas(w)}
    coverage = {
        w: _coverage(w, passage_content, lemmas, synonyms) for w in content if not _light(w)
    }
    words = {w: c for w, c in coverage.items() if c < 1.0}
    uncovered = [w for w, c in words.items() if c < synonyms.threshold]
    # A close paraphrase may use one word the passage lacks ("is run by", "holiday").
    if len(uncovered) > (1 if similarity >= loose else 0):
        failed.append("words: " + ", ".join(uncovered))
    if not _same_polarity(claim, passage, best_clause):
        failed.append("polarity: negation")
    sentence = _sentence_of(best_clause, passage)
    clause_words = {_norm(t) for t in _tokens(best_clause)}
    sentence_words = {_norm(t) for t in _tokens(sentence)}
    claim_words = {_norm(t) for t in _tokens(without_times(claim))}
    flipped = sorted(
        w for w in claim_words if (_OPPOSITE.get(w, set()) & clause_words) - claim_words
    )
    if flipped:
        failed.append("polarity: " + ", ".join(flipped))
    claim_cues = {
        "universal": _universal_cues(claim),
        "exclusive": claim_words & _QUANTIFIERS["exclusive"],
    }
    for kind, cues in claim_cues.items():
        if cues and not sentence_words & _QUANTIFIERS[kind]:
            failed.append(f"quantifier: {kind} ({', '.join(sorted(cues))})")
    failed += _qualifiers(claim, claim_words, names, numbers.claim, best_clause, passage)
    failed += _pairing(claim, passage, content, names)
    return ClaimCheck(not failed, similarity, failed, words)


def _qualifiers(
    claim: str,
    claim_words: set[str],
    names: set[str],
    numbers: set[str],
    clause: str,
    passage: str,
) -> list[str]:
    """Check 7 against the best clause, when the claim's `names` and `numbers` are all in it
    (else it is not the clause the claim restates)."""
    clause_words = [_norm(t) for t in _tokens(clause)]
    clause_names = _names(clause, passage)
    if not names | numbers <= set(clause_words) | clause_names | numbers_in(clause):
        return []
    failed = []
    claim_stems = {_stem(w) for w in claim_words}
    lowered = f" {' '.join(_norm(t) for t in _tokens(claim))} "
    phrases = {p for p in _RESTRICTOR_PHRASES if f" {p} " in lowered}
    for group, cue, after in _restrictions(clause):
        same = claim_words & group or (
            phrases - {"as long as"} if group is _BOUNDS else phrases & {"as long as"}
        )
        if same or after is None or numbers_in(after) & numbers:
            continue
        first = after.split()[0]
        if not {_stem(p) for p in first.split("-") if p} & claim_stems:
            failed.append(f"qualifier: {cue} {first}")
    dropped = set(numbers_in(clause) - numbers)
    for i, word in enumerate(clause_words):
        if word not in clause_names or word in claim_words or word in _STOP:
            continue
        neighbours = {clause_words[j] for j in (i - 1, i + 1) if 0 <= j < len(clause_words)}
        if not neighbours & claim_words & clause_names:  # "Model T2" kept as "T2"
            dropped.add(word)
    # A claim that opens with a pronoun continues the sentence before it, which may hold them.
    if dropped and not _PRONOUN.match(claim):
        failed.append("qualifier: " + ", ".join(sorted(dropped)))
    return failed


def _sentence_of(clause: str, passage: str) -> str:
    """The sentence of `passage` that holds `clause` (the clause itself when none does)."""
    return next((s for s in _SENTENCE.split(passage) if clause in s), clause)


def _overlap(a: str, b: str) -> int:
    return len({_stem(w) for w in content_words(a)} & {_stem(w) for w in content_words(b)})


def _same_polarity(claim: str, passage: str, best_clause: str) -> bool:
    """Check 5's negation: each clause of the claim is negated as its passage clause is (the
    clauses it shares most content words with, one of them; for a one-clause claim, the one it
    embeds closest to), or as the sentence that holds that clause ("may order ... without approval"
    against "may order a monitor, a keyboard ... without approval"). A claim clause of one
    content word ("In winter,") asserts nothing of its own and is not checked."""
    parts = [c for c in clauses_of(claim) if len(content_words(c)) > 1] or [claim]
    passage_clauses = clauses_of(passage) or [passage]
    for part in parts:
        matches = [best_clause]
        if len(parts) > 1:
            most = max(_overlap(part, c) for c in passage_clauses)
            matches = [c for c in passage_clauses if _overlap(part, c) == most]
        negated = _negated(part)
        if all(
            negated not in (_negated(match), _negated(_sentence_of(match, passage)))
            for match in matches
        ):
            return False
    return True


def _in_week(name: str, passage_words: set[str]) -> bool:
    """A weekday's name stands for itself, or for "weekdays" / "weekends" in the passage."""
    return any(
        name in days and {group, group + "s"} & passage_words for group, days in _WEEK.items()
    )


def _universal_cues(claim: str) -> set[str]:
    """The claim's universal quantifiers, less "everyone else" and "any X over / who ..."
    (a bounded "any" restates a condition)."""
    words = [_norm(t) for t in _tokens(claim)]
    cues = set()
    for i, word in enumerate(words):
        if word not in _QUANTIFIERS["universal"]:
            continue
        after = words[i + 1 : i + 4]
        bounded = {"over", "above", "under", "who", "that", "but", "except"} & set(after)
        frequency = word in ("every", "each") and bool(_PERIODS & set(after[:2]))
        if after[:1] == ["else"] or (word == "any" and bounded) or frequency:
            continue
        cues.add(word)
    return cues


def _pairing(claim: str, passage: str, content: list[str], names: set[str]) -> list[str]:
    """Check 8: a name of the claim, and a content word of the claim that its sentence in the
    passage puts in the clause of another name instead of its own."""
    anchors = sorted(n for n in names if n not in _STOP)
    passage_names = _names(passage, passage)
    failed = []
    for sentence in _SENTENCE.split(passage):
        clauses = clauses_of(sentence)
        for anchor in anchors:
            home = [c for c in clauses if anchor in {_norm(t) for t in _tokens(c)}]
            if not home:
                continue
            here = {_stem(w) for c in home for w in content_words(c)}
            for word in content:
                if _stem(word) in here:
                    continue
                rivals = [
                    c
                    for c in clauses
                    if word in {_norm(t) for t in _tokens(c)}
                    and ({_norm(t) for t in _tokens(c)} & passage_names) - names
                ]
                if rivals:
                    failed.append(f"pairing: {anchor} / {word}")
                    break
    return failed
