"""LLM judges: `judge(rubric)` is a metric that asks a model for a schema-enforced verdict
{reason, score, passed}; `calibrate` measures how often it agrees with human labels.

An answer that cannot be parsed (after `aikit.chat`'s one re-ask) leaves the sample
*unscored*: it is never counted as a fail. With `repeats`, the judge asks several times
(each a separate cache entry) and reports the share of verdicts that agree with the majority.
Repeats sample at a temperature, each with its own seed (`seed + index`): without one,
llama.cpp seeds a request from the one before it, so a verdict would change with whatever the
server was asked earlier, and a lesson's live run would not match its recorded one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from aikit._sync import run_sync
from aikit.costs import sum_costs
from aikit.errors import EvalError
from aikit.evals.dataset import Dataset, as_dataset

if TYPE_CHECKING:
    import openai
    import pandas as pd

    from aikit.settings import Settings

PROMPT = """Grade the answer against the rubric.
Rubric: {rubric}
Question: {input}
Reference answer: {expected}
Answer to grade: {output}
Reply with a JSON object: "reason" (one sentence), "score" (a number from 0 to 1) and \
"passed" (true or false)."""


# The longest `reason` the schema admits. A tiny judge often repeats its reason until
# `max_tokens`, and the verdict never parses; with `maxLength` in the schema, a grammar (the
# embedded server's) closes the string and the score follows. Schema only, not validated: a
# hosted model that ignores it still parses. On the 130 test claims of
# benchmarks/claims_judge.py, with `aikit.local._grammar.unit_interval_numbers` keeping the
# score in 0..1: unscored 40 -> 0 (Gemma 3 270M) and 43 -> 0 (SmolLM2), about 3x faster.
REASON_CHARS = 200


class Verdict(BaseModel):
    """The judge's answer; the JSON schema the model must follow."""

    reason: str = Field(json_schema_extra={"maxLength": REASON_CHARS})
    score: float = Field(ge=0.0, le=1.0)
    passed: bool


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict on one sample, over its repeats. `score` is None when unscored."""

    score: float | None
    passed: bool | None
    reason: str
    agreement: float | None
    n_parsed: int
    n_asked: int
    cost_usd: float | None = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Judge:
    """A metric backed by a model. Call it like any metric (`judge(output, expected,
    input=...)` returns a score or None); `evaluate` also records its reason and agreement."""

    rubric: str
    model: str | None = None
    repeats: int = 1
    temperature: float | None = None
    max_tokens: int = 256
    seed: int | None = 0  # repeat i samples with seed + i (at temperature > 0); None: no seed
    name: str = "judge"
    prompt: str = PROMPT
    settings: Settings | None = field(default=None, repr=False)
    client: openai.AsyncOpenAI | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise EvalError(f"judge repeats={self.repeats!r}; pass an int >= 1, e.g. 3")
        if self.temperature is None:
            self.temperature = 0.0 if self.repeats == 1 else 0.7
        self.__name__ = self.name

    def messages(self, output: Any, expected: Any, input: Any) -> str:
        return self.prompt.format(
            rubric=self.rubric,
            input="(not given)" if input is None else input,
            expected="(none)" if expected is None else expected,
            output=output,
        )

    async def ajudge(self, output: Any, expected: Any = None, *, input: Any = None) -> Judgement:
        """Ask the model `repeats` times and combine the verdicts."""
        from aikit.llm import achat

        prompt = self.messages(output, expected, input)
        seed = self.seed if self.temperature else None  # greedy answers need no seed
        seeds: list[dict[str, Any]] = [
            {} if seed is None else {"seed": seed + index} for index in range(self.repeats)
        ]
        replies = await asyncio.gather(
            *(
                achat(
                    prompt,
                    model=self.model,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    response_format=Verdict,
                    repeat=index,
                    settings=self.settings,
                    client=self.client,
                    **seeds[index],
                )
                for index in range(self.repeats)
            )
        )
        verdicts = [r.parsed for r in replies if isinstance(r.parsed, Verdict)]
        cost = sum_costs(r.cost for r in replies)
        tokens = (
            sum(r.usage.prompt_tokens for r in replies),
            sum(r.usage.completion_tokens for r in replies),
        )
        if not verdicts:
            why = next((r.error for r in replies if r.error), "no parsable verdict")
            return Judgement(None, None, f"unscored: {why}", None, 0, len(replies), cost, *tokens)
        votes = sum(v.passed for v in verdicts)
        passed = votes * 2 > len(verdicts)
        agreement = sum(v.passed == passed for v in verdicts) / len(verdicts)
        score = sum(v.score for v in verdicts) / len(verdicts)
        reason = next(v.reason for v in verdicts if v.passed == passed)
        return Judgement(
            score, passed, reason, agreement, len(verdicts), len(replies), cost, *tokens
        )

    def judgement(self, output: Any, expected: Any = None, *, input: Any = None) -> Judgement:
        """`ajudge`, waited for."""
        return run_sync(self.ajudge(output, expected, input=input))

    def __call__(self, output: Any, expected: Any = None, *, input: Any = None) -> float | None:
        return self.judgement(output, expected, input=input).score


def judge(
    rubric: str,
    *,
    model: str | None = None,
    repeats: int = 1,
    temperature: float | None = None,
    name: str = "judge",
    **options: Any,
) -> Judge:
    """A metric that asks `model` whether an answer meets `rubric`.

    Example:
        >>> correct = judge("The answer states the same fact as the reference.")
        >>> correct("Paris", "Paris", input="Capital of France?")  # doctest: +SKIP
        1.0
    """
    return Judge(
        rubric, model=model, repeats=repeats, temperature=temperature, name=name, **options
    )


@dataclass(frozen=True)
class Calibration:
    """How a judge agrees with human pass/fail labels: accuracy and Cohen's kappa over the
    labelled samples it could score (`kappa` is None when undefined: every label the same);
    `table` has one row per sample."""

    accuracy: float
    kappa: float | None
    n: int
    n_unscored: int
    table: pd.DataFrame = field(repr=False)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's kappa of two raters' labels: (observed - chance agreement) / (1 - chance).

    None when chance agreement is 1 (both raters gave every item the same one label): kappa
    is then 0 / 0, undefined (scikit-learn returns nan), not perfect agreement.
    """
    if len(a) != len(b) or not a:
        raise ValueError("cohen_kappa needs two label lists of the same, non-zero length")
    n = len(a)
    observed = float(sum(x == y for x, y in zip(a, b, strict=True))) / n
    labels = set(a) | set(b)
    chance = sum((list(a).count(k) / n) * (list(b).count(k) / n) for k in labels)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def _label(value: Any, row: int) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "pass", "passed", "yes", "1.0"):
        return True
    if text in ("0", "false", "fail", "failed", "no", "0.0"):
        return False
    raise EvalError(f"calibrate: row {row} label {value!r}; use true/false, 1/0 or pass/fail")


def calibrate(
    judge: Judge,
    labelled: Dataset | pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    label: str = "label",
    output: str = "output",
    concurrency: int = 8,
) -> Calibration:
    """Run `judge` on human-labelled samples (`input`, `expected`, `output`, `label` pass/fail)
    and report its accuracy and Cohen's kappa against the labels; unscored samples are left
    out of both and counted in `n_unscored`. `concurrency`: judge calls in flight."""
    import pandas as pd

    ds = as_dataset(labelled)
    for number, item in enumerate(ds, start=1):
        missing = [k for k in (label, output) if k not in item.metadata]
        if missing:
            raise EvalError(f"calibrate: row {number} (id {item.id}) has no {missing[0]!r} field")

    async def all_verdicts() -> list[Judgement]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(item: Any) -> Judgement:
            async with gate:
                return await judge.ajudge(item.metadata[output], item.expected, input=item.input)

        return list(await asyncio.gather(*(one(i) for i in ds)))

    verdicts = run_sync(all_verdicts())
    rows = [
        {
            "id": item.id,
            "human": _label(item.metadata[label], number),
            "judge": v.passed,
            "score": v.score,
            "reason": v.reason,
        }
        for number, (item, v) in enumerate(zip(ds, verdicts, strict=True), start=1)
    ]
    table = pd.DataFrame(rows)
    scored = [r for r in rows if r["judge"] is not None]
    humans, judged = [r["human"] for r in scored], [r["judge"] for r in scored]
    if not scored:
        return Calibration(float("nan"), float("nan"), 0, len(rows), table)
    accuracy = sum(h == j for h, j in zip(humans, judged, strict=True)) / len(scored)
    return Calibration(
        accuracy, cohen_kappa(humans, judged), len(scored), len(rows) - len(scored), table
    )
