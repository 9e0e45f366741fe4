"""Many calls at once: `batch` / `abatch` ask one question per input row and return a DataFrame.

Every row is an `aikit.llm` call, so each answer is committed to the response store as it
arrives: re-running a batch after a crash (even `kill -9`) sends only the rows that had no
answer yet (with `AIKIT_CACHE=on`, the default). Identical requests in one batch are sent once.

- Retries: a batch is a long unattended job, so each row retries 429s (waiting out
  Retry-After), 5xx, timeouts, dropped connections and malformed (cut short) bodies, with
  exponential backoff and jitter, up to `max_attempts` HTTP attempts per row and until the
  batch's `deadline_s` (the policy is `aikit._batch._retry`; the SDK's own retries are off
  there, so one loop sees every attempt). An httpx event hook sees every HTTP attempt: `attempts`
  counts them, and the progress bar shows the retries.
- Concurrency adapts (AIMD, see `aikit._batch._pacing`): halved when 429s make up most of the recent
  answers (a burst), once per round trip, not on every 429 (a steady random rate of 429s is
  retried, not a reason to crawl); after each window of `limit` successful rows doubled back
  up to the level of the last cut, then one more per window, up to the ceiling. 5xx errors and
  timeouts leave it alone: they are not a sign of load.
- Budget: before a call starts it reserves an upper bound of its cost (prompt tokens counted
  with the model's tokenizer, `max_tokens` of answer, a re-ask with `response_format`); the
  real cost is settled when it ends. A call that cannot fit is not started; its row says
  `skipped: budget` (unless the store already has its answer, which costs nothing). The
  budget is per run: re-running a batch spends up to it again, on the rows still unanswered.
- A row that still fails after its attempts keeps its error text in `error`.
- The store: each answer is committed as it arrives, so a crash repeats only the calls in
  flight. If the store cannot be written (corrupt, disk full), the batch stops at once with a
  `StoreError` naming the file; the answers received so far are in its `frame` attribute (a
  DataFrame like the one `batch` returns). Every error that stops a batch carries `frame`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aikit import tracing
from aikit._batch._pacing import Budget, Concurrency, completion_bound, upper_cost
from aikit._batch._retry import DEFAULT_MAX_ATTEMPTS
from aikit._structured import schema_format
from aikit._sync import sync_of
from aikit.costs import Usage, cost_of
from aikit.errors import AikitError, ConfigError
from aikit.provider import resolve_endpoint
from aikit.settings import get_settings

if TYPE_CHECKING:  # the machinery (openai, pandas, jinja2) loads on first use: see _job
    import openai
    import pandas as pd

    from aikit.prompts import Prompt, Template
    from aikit.settings import Settings

Inputs = Iterable[Any]  # prompt strings, message lists, a Series, or a DataFrame with template=


@dataclass(frozen=True)
class Estimate:
    """A batch's tokens and cost, predicted before it runs (`aikit.estimate`).

    `prompt_tokens` is the tokenizer's count (see `tokenizer`); `max_completion_tokens` and
    `max_cost_usd` are upper bounds (a re-ask included with `response_format`), None when
    `max_tokens` is not set or the model has no price. `max_cost_usd` is what a budget reserves.
    """

    model: str
    rows: int
    prompt_tokens: int
    max_completion_tokens: int | None
    prompt_cost_usd: float | None
    max_cost_usd: float | None
    tokenizer: str
    per_row: tuple[int, ...] = field(default=(), repr=False)


def estimate(
    inputs: Inputs,
    *,
    template: Prompt | Template | str | None = None,
    model: str | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    response_format: Any = None,
    client: openai.AsyncOpenAI | None = None,
    settings: Settings | None = None,
    **params: Any,
) -> Estimate:
    """Predict the tokens and cost of `batch(inputs, ...)` (same arguments) without a call.

    Example:
        >>> aikit.estimate(["Hi", "Hello"], model="gpt-4o-mini", max_tokens=50)  # doctest: +SKIP
        Estimate(model='gpt-4o-mini', rows=2, prompt_tokens=16, max_completion_tokens=100,
                 prompt_cost_usd=2.4e-06, max_cost_usd=6.5e-05, tokenizer='o200k_base')
    """
    from aikit._batch import _job  # pandas, openai
    from aikit.llm import check_params  # openai
    from aikit.prompts import variant_of  # jinja2

    settings = settings or get_settings()
    model = model or settings.model
    check_params(params, max_tokens=max_tokens)
    wire, _ = schema_format(response_format)
    endpoint = resolve_endpoint(settings, client)
    prepared = _job.prepare(inputs, variant_of(template, endpoint.families(model)), system)
    tokenizer, per_row = _job.count_prompts(prepared, endpoint, model, wire, params)
    bound = completion_bound(max_tokens, params)
    rows = sum(1 for m in prepared.messages if not isinstance(m, str))
    prompt_cost = cost_of(model, Usage(sum(per_row), 0))
    max_cost = None
    if prompt_cost is not None and bound is not None:
        max_cost = sum(upper_cost(model, p, bound, wire is not None) for p in per_row if p)
    calls = 2 if wire is not None else 1
    return Estimate(
        model=model,
        rows=rows,
        prompt_tokens=sum(per_row),
        max_completion_tokens=None if bound is None else bound * rows * calls,
        prompt_cost_usd=prompt_cost,
        max_cost_usd=max_cost,
        tokenizer=tokenizer,
        per_row=per_row,
    )


async def abatch(
    inputs: Inputs,
    *,
    template: Prompt | Template | str | None = None,
    model: str | None = None,
    concurrency: int | Literal["auto"] = "auto",
    budget_usd: float | None = None,
    progress: bool = True,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    response_format: Any = None,
    repeat: int = 0,
    max_attempts: int | None = None,
    deadline_s: float | None = None,
    max_retries: int | None = None,
    client: openai.AsyncOpenAI | None = None,
    settings: Settings | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Ask a model once per input; the async core of `batch` (see it for the arguments)."""
    from aikit._batch import _job  # pandas, openai
    from aikit.llm import check_params  # openai
    from aikit.prompts import variant_of  # jinja2

    settings = settings or get_settings()
    model = model or settings.model
    check_params(params, temperature=temperature, max_tokens=max_tokens)
    wire, _ = schema_format(response_format)
    endpoint = resolve_endpoint(settings, client)
    start, ceiling = _job.limits(concurrency, endpoint)
    if max_retries is not None:  # the older spelling: retries after the first attempt
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(
                f"max_retries={max_retries!r} is not valid; pass an int >= 0 such as 5"
            )
        if max_attempts is not None:
            raise ConfigError("pass max_attempts or max_retries, not both (max_attempts wins)")
        max_attempts = max_retries + 1
    if max_attempts is None:  # AIKIT_MAX_RETRIES=0 turns retries off here too
        max_attempts = DEFAULT_MAX_ATTEMPTS if settings.max_retries > 0 else 1
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigError(f"max_attempts={max_attempts!r} is not valid; pass an int >= 1 such as 8")
    if deadline_s is not None and (
        isinstance(deadline_s, bool) or not isinstance(deadline_s, int | float) or deadline_s <= 0
    ):
        raise ConfigError(f"deadline_s={deadline_s!r} is not valid; pass seconds > 0 such as 3600")
    prepared = _job.prepare(inputs, variant_of(template, endpoint.families(model)), system)
    reservations = None
    if budget_usd is not None:
        reservations = _job.reservations(
            prepared, endpoint, model, max_tokens, wire, budget_usd, params
        )
    job = _job.BatchJob(
        prepared,
        endpoint=endpoint,
        model=model,
        concurrency=Concurrency(start, ceiling),
        budget=Budget(budget_usd),
        reservations=reservations,
        max_attempts=max_attempts,
        deadline_s=deadline_s,
        call=dict(
            temperature=temperature,
            max_tokens=max_tokens,
            response_format=response_format,
            repeat=repeat,
            params=params,
        ),
        progress=progress,
    )
    attributes = {"gen_ai.request.model": model, "aikit.batch_rows": len(prepared.messages)}
    with tracing.span("aikit.batch", attributes) as current:  # over its rows' chat spans
        try:
            await job.run()
        except AikitError as exc:
            exc.frame = job.frame(structured=wire is not None)
            raise
        finally:
            tracing.annotate(current, {"aikit.batch_failed": job.failed,
                                       "aikit.batch_retries": job.retries})  # fmt: skip
    return job.frame(structured=wire is not None)


@sync_of(abatch)
def batch() -> None:
    """Ask a model once per input and get one DataFrame row per input, in input order.

    Args:
        inputs: prompt strings, message lists, or a DataFrame (with `template`).
        template: a `Template` or template string; its variables are the DataFrame's columns
            (or the keys of dict inputs, or the one variable a string fills). A `Prompt` (kept
            per model) gives the variant of the model the batch goes to.
        model: model name; default `Settings.model` (`AIKIT_MODEL`).
        concurrency: `"auto"` (adaptive, starts at 8, at most 64; 2 for the embedded model) or
            the most calls in flight (still halved on a 429, grown back after successes).
            Either way the endpoint's one limiter (`aikit._limit`) caps the requests in flight
            to its server from this process, shared with every other caller.
        budget_usd: the most this run may spend; needs `max_tokens` for a priced model. Rows
            that cannot fit are not sent and say `skipped: budget` in `error`. See `estimate`.
        progress: show a progress bar: rows done, failed, concurrency and spend (a widget in
            Jupyter, text on stderr elsewhere and under papermill).
        system, temperature, max_tokens, response_format, repeat, client, settings: as in
            `aikit.chat`.
        max_attempts: HTTP attempts per row over every transient failure (429, 5xx,
            timeouts, malformed bodies); default 8, or 1 when `AIKIT_MAX_RETRIES=0`.
        deadline_s: seconds for the whole batch: no retry waits past it, and rows not started
            by then fail with `not run: the batch deadline ...`; default none.
        max_retries: the older spelling of `max_attempts - 1`.
        **params: any other `chat.completions.create` argument.

    Returns:
        The input (or its columns), then `output`, `parsed` (with `response_format`),
        `prompt_tokens`, `completion_tokens`, `cost_usd`, `latency_s`, `cached`, `attempts`
        (HTTP attempts, the SDK's retries included) and `error` (None when all went well).
        `attrs` holds the model, the total `cost_usd`, `budget_usd`, the `concurrency`
        trace as (seconds, limit) pairs and the number of `retries`.

    Raises:
        AikitError: for a mistake every row would hit (bad arguments, no API key, a rejected
            key, nothing listening) or a store that cannot be written (`StoreError`); rows
            answered before it stay in the response store for the re-run, and are in the
            error's `frame` (a DataFrame like the return value).

    Example:
        >>> aikit.batch(["What is 2 + 2?", "Name a colour."])["output"]  # doctest: +SKIP
    """
