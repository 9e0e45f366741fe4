"""RAG answer metrics: is the answer faithful to what was retrieved, does it answer the question,
was the retrieved context relevant and complete.

Each is a plain metric returning a float in [0, 1], or None (unscored); `evaluate` passes
`context` (the passage texts) and `question` from a task that returns a `rag.Answer` or a
mapping with `output`, `context`, `question`.

- `faithfulness(output, *, context)`: share of the answer's claims the context supports.
- `answer_relevance(output, *, question)`: how well the answer addresses the question.
- `context_precision(output, expected, *, context)`: share of passages that support the
  reference answer.
- `context_recall(output, expected, *, context)`: share of the reference answer's claims the
  context supports.

A *claim* is a sentence, or a clause ended by `;` (`split_claims`). Two ways to decide whether
the context supports a claim:

- **Offline (default)**: the embedded embedding model (all-MiniLM-L6-v2, through
  `aikit.rag.get_embedder`). A claim is supported when its cosine similarity to some passage
  or passage sentence is at least `SUPPORT_THRESHOLD` (0.65) *and* every number in the claim
  (digits, or number words one to twelve) appears in the context. The number check catches what
  embeddings miss: "27 days" and "25 days" embed almost alike.
- **A judge model** (`judge=aikit.evals.judge(...)` or `model="..."`): one schema-enforced
  verdict per claim. A verdict that does not parse leaves the whole answer unscored (None),
  never 0: a share over the claims that happened to parse would be biased.

Calibration of `SUPPORT_THRESHOLD` (0.65): on `notebooks/data/evals/faithfulness.jsonl`, 37
answer/context pairs written for this project on the RAG knowledge base with 82 claims
labelled by hand (58 supported, 24 not), 0.65 is the threshold with the best accuracy over a
grid of 0.30 to 0.90 in steps of 0.05 (0.93 accuracy; 0.88 to 0.90 from 0.35 to 0.60, falling
above 0.70). A claim that opens with a pronoun is embedded after the claim before it
(`with_antecedent`): without that, "It runs for 30 minutes." matches nothing and accuracy
peaks at 0.90. The threshold was chosen on the set it is measured on, so its figures are
optimistic; `tests/test_rag_metrics.py` also reports the accuracy on the even-numbered pairs
with the threshold chosen on the odd ones, and `playbooks/evals.md` lists them. Another
embedder needs its own threshold: pass `threshold=`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aikit._sync import run_sync
from aikit.errors import AikitError

if TYPE_CHECKING:
    from aikit.evals.judge import Judge

__all__ = [
    "SUPPORT_THRESHOLD",
    "answer_relevance",
    "claim_similarity",
    "claim_support",
    "context_precision",
    "context_recall",
    "faithfulness",
    "numbered",
    "split_claims",
    "support_judge",
    "with_antecedent",
]

SUPPORT_THRESHOLD = 0.65  # cosine (all-MiniLM-L6-v2) at which a passage supports a claim

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)")
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_PRONOUN = re.compile(r"^(It|Its|They|Their|Them|This|These|That|Those|He|She|Both)\b")
_NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve"
_NUMBER_WORDS = {w: str(n) for n, w in enumerate(_NUMBERS.split())} | {
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5",
}  # fmt: skip

CLAIM_PROMPT = """Decide whether the passages support the claim.
Rubric: {rubric}
Question: {input}
Passages:
{expected}
Claim: {output}
Reply with a JSON object: "reason" (one sentence), "score" (1 if the passages support the \
claim, else 0) and "passed" (true if they support it, else false)."""
SUPPORT_RUBRIC = (
    "The claim is supported when the passages state it or directly imply it; a claim that adds"
    " a fact, a number or a name the passages do not give is not supported."
)
RELEVANCE_RUBRIC = (
    "The answer responds to the question that was asked; an off-topic answer or one that does"
    " not address the question fails."
)


def split_claims(text: Any) -> list[str]:
    """The claims of an answer: its sentences (and `;` clauses), citation marks like `[1]`
    removed, empty pieces dropped."""
    cleaned = _CITATION.sub("", str(text or "")).strip()
    pieces = (p.strip().rstrip(";").strip() for p in _SENTENCE_END.split(cleaned))
    return [p for p in pieces if re.search(r"\w", p)]


def _numbers(text: str) -> set[str]:
    lowered = text.lower()
    found = {m.replace(",", "") for m in _NUMBER.findall(lowered)}
    found |= {_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", lowered) if w in _NUMBER_WORDS}
    return found


def _passages(context: Any) -> list[str]:
    """Passage texts from a list of strings, a DataFrame with a `text` column, or one string."""
    if context is None:
        return []
    if isinstance(context, str):
        return [context] if context.strip() else []
    if hasattr(context, "columns") and "text" in context.columns:
        return [str(t) for t in context["text"]]
    out = []
    for passage in context:
        text = passage.get("text") if isinstance(passage, dict) else passage
        if text is not None and str(text).strip():
            out.append(str(text))
    return out


_embedders: dict[tuple[str, str], Any] = {}


def _embedder(spec: Any) -> Any:
    if hasattr(spec, "embed"):
        return spec
    from aikit.rag import get_embedder
    from aikit.settings import get_settings

    key = (str(spec), str(get_settings().home))
    if key not in _embedders:
        _embedders[key] = get_embedder(spec)
    return _embedders[key]


def claim_similarity(
    claims: Sequence[str],
    context: Any,
    *,
    prefix: str | None = None,
    embedder: Any = "local",
) -> list[float]:
    """Per claim, the highest cosine similarity to a passage or one of its sentences (0.0 with
    no context). `prefix` (a question) is put before each claim before embedding."""
    passages = _passages(context)
    if not claims:
        return []
    if not passages:
        return [0.0] * len(claims)
    units = list(dict.fromkeys([*passages, *(s for p in passages for s in split_claims(p))]))
    texts = [f"{prefix} {c}" if prefix else c for c in claims]
    vectors = _embedder(embedder).embed([*texts, *units])
    sims = vectors[: len(texts)] @ vectors[len(texts) :].T
    return [round(float(row.max()), 6) for row in sims]


def with_antecedent(claims: Sequence[str]) -> list[str]:
    """Each claim, with the claim before it prepended when it opens with a pronoun ("It runs
    for 30 minutes."), so that its embedding knows what "it" is."""
    return [f"{claims[i - 1]} {c}" if i and _PRONOUN.match(c) else c for i, c in enumerate(claims)]


def _offline_support(
    claims: Sequence[str], context: Any, threshold: float, embedder: Any, prefix: str | None
) -> list[bool]:
    passages = _passages(context)
    known = _numbers(" ".join(passages))
    texts = with_antecedent(claims) if prefix is None else list(claims)
    sims = claim_similarity(texts, passages, prefix=prefix, embedder=embedder)
    return [s >= threshold and _numbers(c) <= known for c, s in zip(claims, sims, strict=True)]


def support_judge(
    judge: Judge | None = None, *, model: str | None = None, repeats: int = 1
) -> Judge:
    """The claim-support judge the metrics use: `judge`'s model and options (or a new judge of
    `model`) with the claim prompt. Its `output` is a claim, `expected` the numbered passages,
    `input` the question; so `aikit.evals.calibrate` can check it against labelled claims."""
    from aikit.evals.judge import Judge

    if judge is not None and not isinstance(judge, Judge):
        raise AikitError(
            f"judge={judge!r} is not an aikit judge; pass judge=aikit.evals.judge('...') or model="
        )
    base = judge or Judge(SUPPORT_RUBRIC, model=model, repeats=repeats, name="claim_support")
    return dataclasses.replace(base, rubric=SUPPORT_RUBRIC, prompt=CLAIM_PROMPT)


def numbered(passages: Any) -> str:
    """Passages as the claim judge sees them: `[1] text` lines."""
    return "\n".join(f"[{n}] {p}" for n, p in enumerate(_passages(passages), start=1))


def _claim_judge(judge: Judge | None, model: str | None) -> Judge | None:
    if judge is None and model is None:
        return None
    return support_judge(judge, model=model)


def claim_support(
    claims: Sequence[str],
    context: Any,
    *,
    question: str | None = None,
    judge: Judge | None = None,
    model: str | None = None,
    threshold: float = SUPPORT_THRESHOLD,
    embedder: Any = "local",
) -> list[bool | None]:
    """Whether `context` supports each claim: True, False, or None (a judge verdict that did not
    parse). Offline by default; with `judge` or `model`, a judge model decides each claim."""
    claims = list(claims)
    passages = _passages(context)
    checker = _claim_judge(judge, model)
    if checker is None or not claims:
        return list(_offline_support(claims, passages, threshold, embedder, None))
    if not passages:
        return [False] * len(claims)
    block = numbered(passages)

    async def all_claims() -> list[bool | None]:
        verdicts = await asyncio.gather(
            *(checker.ajudge(c, block, input=question or "(not given)") for c in claims)
        )
        return [v.passed for v in verdicts]

    return run_sync(all_claims())


def _share(flags: Sequence[bool | None]) -> float | None:
    if not flags or any(f is None for f in flags):
        return None
    return sum(bool(f) for f in flags) / len(flags)


def faithfulness(
    output: Any,
    expected: Any = None,
    *,
    context: Any,
    question: str | None = None,
    judge: Judge | None = None,
    model: str | None = None,
    threshold: float = SUPPORT_THRESHOLD,
    embedder: Any = "local",
) -> float | None:
    """The share of the answer's claims that the retrieved `context` supports.

    None (unscored) when there is no context, the answer has no claim, or a judge verdict did
    not parse. `context`: the passage texts (a list, or a DataFrame with `text`).

    Example:
        >>> faithfulness("Leave is 27 days. It is paid in cash.",
        ...              context=["Employees have 27 working days of leave."])  # doctest: +SKIP
        0.5
    """
    claims = split_claims(output)
    if not claims or not _passages(context):
        return None
    support = claim_support(
        claims,
        context,
        question=question,
        judge=judge,
        model=model,
        threshold=threshold,
        embedder=embedder,
    )
    return _share(support)


def _reference_support(
    expected: Any,
    passages: list[str],
    question: str | None,
    judge: Judge | None,
    model: str | None,
    threshold: float,
    embedder: Any,
) -> list[bool | None]:
    claims = split_claims(expected)
    if _claim_judge(judge, model) is not None:
        return claim_support(claims, passages, question=question, judge=judge, model=model)
    # A reference answer is often a fragment ("27 days"): embed it after the question.
    return list(_offline_support(claims, passages, threshold, embedder, question))


def context_recall(
    output: Any,
    expected: Any,
    *,
    context: Any,
    question: str | None = None,
    judge: Judge | None = None,
    model: str | None = None,
    threshold: float = SUPPORT_THRESHOLD,
    embedder: Any = "local",
) -> float | None:
    """The share of the reference answer's claims that the retrieved `context` supports: did
    retrieval bring what a right answer needs? None without a reference or a context."""
    passages = _passages(context)
    if expected is None or not split_claims(expected) or not passages:
        return None
    return _share(
        _reference_support(expected, passages, question, judge, model, threshold, embedder)
    )


def context_precision(
    output: Any,
    expected: Any,
    *,
    context: Any,
    question: str | None = None,
    judge: Judge | None = None,
    model: str | None = None,
    threshold: float = SUPPORT_THRESHOLD,
    embedder: Any = "local",
) -> float | None:
    """The share of retrieved passages that support some claim of the reference answer: how
    much of what the model was shown was relevant. None without a reference or a context."""
    passages = _passages(context)
    if expected is None or not split_claims(expected) or not passages:
        return None
    relevant = [
        _reference_support(expected, [p], question, judge, model, threshold, embedder)
        for p in passages
    ]
    flags: list[bool | None] = []
    for per_claim in relevant:
        flags.append(None if any(f is None for f in per_claim) else any(per_claim))
    return _share(flags)


def answer_relevance(
    output: Any,
    expected: Any = None,
    *,
    question: str | None,
    judge: Judge | None = None,
    model: str | None = None,
    embedder: Any = "local",
) -> float | None:
    """How well the answer addresses the question: offline, the cosine similarity of question
    and answer embeddings clipped to [0, 1]; with a judge, its score (None if unparsable)."""
    if question is None or not str(question).strip() or not str(output or "").strip():
        return None
    from aikit.evals.judge import Judge

    if judge is not None or model is not None:
        base = judge or Judge(RELEVANCE_RUBRIC, model=model, name="answer_relevance")
        checker = dataclasses.replace(base, rubric=RELEVANCE_RUBRIC)
        return checker.judgement(output, None, input=question).score
    vectors = _embedder(embedder).embed([str(question), str(output)])
    value = float(vectors[0] @ vectors[1])
    return max(0.0, min(1.0, round(value, 6))) if math.isfinite(value) else None
