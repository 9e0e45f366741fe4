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

- **Offline (default)**: the claim test of `aikit.evals.claim_check` (`claim_checks` gives
  each verdict and the checks that failed). One passage must back what the claim asserts: a
  cosine similarity (all-MiniLM-L6-v2, through `aikit.rag.get_embedder`) of at least
  `SUPPORT_THRESHOLD` (0.50), and its numbers, names, content words (or synonyms), polarity,
  quantifiers and qualifiers; similarity alone scores "Returns are accepted without a
  receipt." as supported by "... only with a receipt.".
- **A judge model** (`judge=aikit.evals.judge(...)` or `model="..."`): one schema-enforced
  verdict per claim. A verdict that does not parse leaves the whole answer unscored (None),
  never 0: a share over the claims that happened to parse would be biased.

`faithfulness` and `context_recall` use the same claim test (recall on the reference's
claims, each after the question); `answer_relevance` is a similarity of question and answer,
not a claim test.

Calibration: the thresholds (`SUPPORT_THRESHOLD` 0.50, `claim_check.WORD_THRESHOLD` 0.55,
`claim_check.LOOSE_THRESHOLD` 0.80) were chosen on the calibration split of
`notebooks/data/evals/claims.jsonl` (260 claims written for this project, 8 kinds) and are
reported on its test split only (`aikit.evals.claim_report`; the figures and what the test
misses are in `playbooks/evals.md`). A claim that opens with a pronoun is embedded after the
claim before it (`with_antecedent`). Another embedder needs its own thresholds.
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
from aikit.evals.claim_check import (
    LOOSE_THRESHOLD,
    WORD_THRESHOLD,
    ClaimCheck,
    Words,
    check_claim,
    clauses_of,
)

if TYPE_CHECKING:
    from aikit.evals.judge import Judge

__all__ = [
    "SUPPORT_THRESHOLD",
    "answer_relevance",
    "claim_checks",
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

SUPPORT_THRESHOLD = 0.50  # cosine (all-MiniLM-L6-v2) from which a passage may support a claim

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)")
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
_PRONOUN = re.compile(r"^(It|Its|They|Their|Them|This|These|That|Those|He|She|Both)\b")

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


def claim_checks(
    claims: Sequence[str],
    context: Any,
    *,
    threshold: float = SUPPORT_THRESHOLD,
    word_threshold: float = WORD_THRESHOLD,
    loose: float = LOOSE_THRESHOLD,
    embedder: Any = "local",
    prefix: str | None = None,
) -> list[ClaimCheck]:
    """The offline claim test (`aikit.evals.claim_check`) for each claim: the verdict of the
    passage that supports it, or else of the passage it is most similar to. `prefix` (a
    question) is put before each claim for the similarity only."""
    claims = list(claims)
    passages = _passages(context)
    if not claims:
        return []
    if not passages:
        return [ClaimCheck(False, 0.0, ["no context"]) for _ in claims]
    model = _embedder(embedder)
    clauses = [clauses_of(p) or [p] for p in passages]
    units = list(dict.fromkeys([*passages, *(c for group in clauses for c in group)]))
    units += [s for p in passages for s in split_claims(p) if s not in units]
    texts = with_antecedent(claims) if prefix is None else [f"{prefix} {c}" for c in claims]
    vectors = model.embed([*texts, *units])
    sims = vectors[: len(texts)] @ vectors[len(texts) :].T
    at = {u: i for i, u in enumerate(units)}
    synonyms = Words(model, word_threshold)
    out = []
    for row, claim in zip(sims, claims, strict=True):
        best: ClaimCheck | None = None
        for passage, group in zip(passages, clauses, strict=True):
            whole = [passage, *split_claims(passage)]
            clause_scores = [float(row[at[c]]) for c in group]
            similarity = round(max(float(row[at[u]]) for u in [*whole, *group]), 6)
            clause = group[clause_scores.index(max(clause_scores))]
            check = check_claim(
                claim,
                passage,
                similarity,
                clause,
                threshold=threshold,
                synonyms=synonyms,
                loose=loose,
            )
            if best is None or (check.supported, -len(check.failed), similarity) > (
                best.supported,
                -len(best.failed),
                best.similarity,
            ):
                best = check
        assert best is not None
        out.append(best)
    return out


def _offline_support(
    claims: Sequence[str], context: Any, threshold: float, embedder: Any, prefix: str | None
) -> list[bool]:
    checks = claim_checks(claims, context, threshold=threshold, embedder=embedder, prefix=prefix)
    return [c.supported for c in checks]


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
