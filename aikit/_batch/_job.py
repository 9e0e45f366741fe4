"""The machinery of `aikit.batch`: inputs to messages, the job (client, hooks, pacing, retries,
progress bar) and the result frame. The public functions and their docs are in `aikit._batch`.

Retries: the batch's client has the SDK's own `max_retries=0`; the loop is
`BatchJob._retrying`, handed to `llm.ask` for each row as `CallPolicy.send`, with the policy of
`aikit._batch._retry`. This second retry loop is deliberate (DESIGN.md, key decision 1): a row
needs one attempt budget over every kind of failure, a batch a deadline, malformed 200 bodies
(which the SDK does not retry) are retried, and a row gives its concurrency slot back while it
waits; the SDK's loop can do none of these. Nowhere else in aikit are the SDK's retries off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import json
import math
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import openai
import pandas as pd

from aikit import llm
from aikit._batch._pacing import Budget, Concurrency, completion_bound, upper_cost
from aikit._batch._retry import retry_wait
from aikit._scrub import redact_urls
from aikit.costs import Usage, cost_of, sum_costs
from aikit.errors import (
    AikitError,
    CacheMissError,
    ConfigError,
    EndpointError,
    StoreError,
    StructuredOutputError,
    TemplateError,
)
from aikit.prompts import Messages, Template, to_messages
from aikit.provider import Endpoint
from aikit.settings import Settings

SKIPPED = "skipped: budget"
COLUMNS: dict[str, str] = {
    "output": "object",
    "parsed": "object",
    "prompt_tokens": "int64",
    "completion_tokens": "int64",
    "cost_usd": "float64",
    "latency_s": "float64",
    "cached": "bool",
    "attempts": "int64",
    "error": "object",
}
Inputs = pd.DataFrame | Iterable[Any]  # a DataFrame, a Series or a list


# -- inputs ----------------------------------------------------------------------------------
@dataclass
class Prepared:
    frame: pd.DataFrame  # the input columns of the result
    messages: list[Messages | str]  # each row's messages, or why it has none


def prepare(inputs: Inputs, template: Template | str | None, system: str | None) -> Prepared:
    tpl = Template(template) if isinstance(template, str) else template
    if isinstance(inputs, pd.DataFrame):
        if tpl is None:
            first = str(inputs.columns[0]) if len(inputs.columns) else "text"
            raise ConfigError(
                "a DataFrame needs template= to turn each row into a prompt, e.g."
                f" template='Summarize: {{{{ {first} }}}}' (its variables are column names)"
            )
        columns = [str(c) for c in inputs.columns]
        missing = sorted(tpl.variables - set(columns))
        if missing:
            raise TemplateError(
                f"template {tpl.name} uses {missing[0]!r}, which is not a column of the"
                f" DataFrame (columns: {', '.join(columns)}); rename the column or the variable"
            )
        taken = [c for c in COLUMNS if c in columns]
        if taken:
            raise ConfigError(
                f"the DataFrame already has a column {taken[0]!r}, which batch adds; rename it"
            )
        records = inputs.rename(columns=str).to_dict("records")
        messages = [_render(tpl, {v: r[v] for v in tpl.variables}, system) for r in records]
        return Prepared(inputs.copy(), messages)
    if isinstance(inputs, str | bytes | Mapping) or not isinstance(inputs, Iterable):
        raise ConfigError(
            f"inputs={inputs!r:.60} is not a batch; pass a list of prompts, a list of message"
            " lists, or a DataFrame with template="
        )
    index = inputs.index if isinstance(inputs, pd.Series) else None
    items = list(inputs)
    messages = []
    for number, item in enumerate(items):
        if tpl is not None:
            if isinstance(item, Mapping):  # a record: its other keys are not the prompt's
                values = {str(k): v for k, v in item.items() if str(k) in tpl.variables}
            elif len(tpl.variables) == 1:
                values = {next(iter(tpl.variables)): item}
            else:
                raise TemplateError(
                    f"row {number} is a {type(item).__name__}, but template {tpl.name} has"
                    f" {len(tpl.variables)} variables; pass a DataFrame or a list of dicts"
                )
            messages.append(_render(tpl, values, system))
        elif isinstance(item, str) or (
            isinstance(item, Sequence) and all(isinstance(m, Mapping) for m in item)
        ):
            messages.append(to_messages(item, system))
        else:
            raise ConfigError(
                f"row {number} is {type(item).__name__} {item!r:.40}; each input must be a prompt"
                " string or a list of {'role': ..., 'content': ...} messages"
            )
    frame = pd.DataFrame({"input": pd.Series(items, index=index, dtype=object)})
    return Prepared(frame, messages)


def _render(tpl: Template, values: dict[str, Any], system: str | None) -> Messages | str:
    """A row's messages, or (a string) why it has none: a missing value is not rendered."""
    empty = sorted(k for k, v in values.items() if _missing(v))
    if empty:
        return f"input: {empty[0]!r} is missing (None/NaN); fill or drop the row"
    try:
        return to_messages(tpl.render(values), system)
    except TemplateError as exc:
        return f"input: {exc}"


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def count_prompts(
    prepared: Prepared,
    endpoint: Endpoint,
    model: str,
    wire: dict[str, Any] | None,
    params: Mapping[str, Any],
) -> tuple[str, tuple[int, ...]]:
    """The tokenizer's name and each row's prompt tokens (0 for a row with no messages)."""
    counter = endpoint.counter(model)
    extra = [x for x in (wire, params.get("tools")) if x is not None] or None
    per_row = tuple(
        0 if isinstance(m, str) else counter.prompt_tokens(m, extra) for m in prepared.messages
    )
    return counter.name, per_row


def reservations(
    prepared: Prepared,
    endpoint: Endpoint,
    model: str,
    max_tokens: int | None,
    wire: dict[str, Any] | None,
    budget_usd: float,
    params: Mapping[str, Any],
) -> list[float]:
    """Each row's upper-bound cost, after checking that a budget can be kept at all."""
    bad = isinstance(budget_usd, bool) or not isinstance(budget_usd, int | float)
    if bad or not 0 <= budget_usd < float("inf"):  # nan and inf too
        raise ConfigError(f"budget_usd={budget_usd!r} is not valid; pass a number of USD >= 0")
    price = cost_of(model, Usage(1_000_000, 1_000_000))
    if price is None:
        raise ConfigError(
            f"model {model!r} has no price in aikit's price table, so budget_usd cannot be"
            " kept; drop budget_usd or use a priced model"
        )
    if price == 0:
        return [0.0] * len(prepared.messages)
    bound = completion_bound(max_tokens, params)
    if bound is None:
        raise ConfigError(
            "budget_usd needs max_tokens= to bound what each answer can cost; pass max_tokens=..."
        )
    _, per_row = count_prompts(prepared, endpoint, model, wire, params)
    return [upper_cost(model, p, bound, wire is not None) for p in per_row]


# -- the run ---------------------------------------------------------------------------------
@dataclass
class _Attempts:
    """One row's HTTP attempts, kept by `BatchJob._retrying` (passed to it, per row)."""

    count: int = 0
    sent_at: float = 0.0
    holding: bool = True  # holds a concurrency slot (given back while waiting to retry)


def _fatal(exc: Exception) -> bool:
    """Errors that every row would hit: they stop the batch instead of failing each row."""
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return True
    if isinstance(exc, EndpointError):  # a rejected key, or nothing listening at all
        cause = exc.__cause__
        return isinstance(cause, openai.AuthenticationError) or (
            isinstance(cause, openai.APIConnectionError)
            and not isinstance(cause, openai.APITimeoutError)
            and "connect" in type(cause.__cause__).__name__.lower()
        )
    return isinstance(exc, AikitError) and not isinstance(
        exc, CacheMissError | StructuredOutputError
    )


def _answered(exc: Exception) -> bool:
    """Whether an attempt that failed got an HTTP answer (a status, or a body that was bad)."""
    return isinstance(
        exc, openai.APIStatusError | openai.APIResponseValidationError | json.JSONDecodeError
    )


def _failed(error: str, attempts: int = 0, latency: float = 0.0) -> dict[str, Any]:
    return {
        "output": None,
        "parsed": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
        "latency_s": latency,
        "cached": False,
        "attempts": attempts,
        "error": error,
    }


class BatchJob:
    """One `abatch` call: its client, limiter, budget, progress bar and results."""

    def __init__(
        self,
        prepared: Prepared,
        *,
        endpoint: Endpoint,
        model: str,
        concurrency: Concurrency,
        budget: Budget,
        reservations: list[float] | None,
        max_attempts: int,
        deadline_s: float | None,
        call: dict[str, Any],
        progress: bool,
    ) -> None:
        self.prepared, self.endpoint, self.model = prepared, endpoint, model
        self.settings: Settings = endpoint.settings
        self.concurrency, self.budget, self.reservations = concurrency, budget, reservations
        self.max_attempts, self.call = max_attempts, call
        self.deadline_s = deadline_s
        self.deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self.retries = 0  # attempts after a row's first, over the whole batch
        self.results: list[dict[str, Any] | None] = [None] * len(prepared.messages)
        self.failed = 0
        self.unpriced = False  # some answer's cost is unknown: the spend shown is a floor
        self.fatal: Exception | None = None
        self._sdk: openai.AsyncOpenAI | None = None
        self._sdk_lock = asyncio.Lock()
        self._bar = _progress_bar(len(self.results), model) if progress else None

    # -- the client ------------------------------------------------------------------------
    async def client(self) -> openai.AsyncOpenAI:
        if self._sdk is not None:
            return self._sdk
        async with self._sdk_lock:
            if self._sdk is None:
                # max_retries=0: the retry loop is `_retrying` (see the module docstring)
                self._sdk = await self.endpoint.open(max_retries=0)
            return self._sdk

    # -- retries ---------------------------------------------------------------------------
    async def _retrying(self, row: _Attempts, send: llm.Send) -> Any:
        """Run one HTTP call of a row, retrying transient failures (module docstring). Each
        `send()` is one HTTP attempt (the SDK's retries are off), counted in `row`."""
        while True:
            row.count += 1
            row.sent_at = time.monotonic()
            try:
                completion = await send()
            except Exception as exc:
                if _answered(exc):  # the server answered: pacing sees its status
                    status = getattr(exc, "status_code", 200)
                    self.concurrency.observe(row.sent_at, status == 429)
                wait = self._wait_before_retry(exc, row)
                if wait is None:
                    raise
            else:
                self.concurrency.observe(row.sent_at, False)
                return completion
            self.retries += 1
            self._refresh(0)
            row.holding = False  # let answering rows use the slot meanwhile
            self.concurrency.release()
            await asyncio.sleep(wait)
            await self.concurrency.acquire()
            row.holding = True

    def _wait_before_retry(self, exc: Exception, row: _Attempts) -> float | None:
        if self.fatal is not None:
            return None
        return retry_wait(exc, row.count, self.max_attempts, self.deadline)

    # -- rows ------------------------------------------------------------------------------
    async def run(self) -> None:
        groups: dict[str, list[int]] = {}
        order: list[list[int]] = []
        for index, messages in enumerate(self.prepared.messages):
            if isinstance(messages, str) or self.settings.cache == "off":
                order.append([index])
                continue
            key = json.dumps(messages, sort_keys=True, default=str)
            if key not in groups:
                groups[key] = []
                order.append(groups[key])
            groups[key].append(index)
        tasks: set[asyncio.Task[None]] = set()
        try:
            for group in order:
                if self.fatal is not None:
                    break
                await self._dispatch(group, tasks)
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if self._sdk is not None:
                await self._sdk.close()
            if self._bar is not None:
                self._refresh(0)
                self._bar.refresh()
                self._bar.close()
        if self.fatal is not None:
            raise self.fatal

    async def _dispatch(self, group: list[int], tasks: set[asyncio.Task[None]]) -> None:
        messages = self.prepared.messages[group[0]]
        if isinstance(messages, str):
            self._finish(group, _failed(messages))
            return
        await self.concurrency.acquire()
        if self.fatal is not None:
            self.concurrency.release()
            return
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.concurrency.release()
            self._finish(
                group,
                _failed(
                    f"not run: the batch deadline of {self.deadline_s:g} s (deadline_s) passed"
                ),
            )
            return
        reserved: float | None = None if self.reservations is None else self.reservations[group[0]]
        endpoint = self.endpoint
        if reserved is not None and not await self.budget.reserve(reserved):
            if self.settings.cache != "on":
                self.concurrency.release()
                self._finish(group, _failed(SKIPPED))
                return
            reserved = None  # no room: only the store may answer, for free
            store_only = self.settings.replace(cache="replay", cassettes=())
            endpoint = dataclasses.replace(endpoint, settings=store_only)
        task = asyncio.create_task(self._one(group, messages, reserved, endpoint))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _one(
        self,
        group: list[int],
        messages: Messages,
        reserved: float | None,
        endpoint: Endpoint,
    ) -> None:
        attempts = _Attempts()
        failures: list[StoreError] = []
        policy = llm.CallPolicy(
            send=functools.partial(self._retrying, attempts), on_store_error=failures.append
        )
        started = time.perf_counter()
        cost = 0.0
        try:
            reply = await llm.ask(
                llm.Ask(messages, model=self.model, **self.call),
                endpoint=endpoint,
                get_client=self.client,
                policy=policy,
            )
        except Exception as exc:
            if isinstance(exc, CacheMissError) and endpoint is not self.endpoint:
                result = _failed(SKIPPED)  # over budget, and the store has no answer
            else:
                if _fatal(exc) and self.fatal is None:
                    self.fatal = exc
                text = redact_urls(" ".join(f"{type(exc).__name__}: {exc}".split()))
                result = _failed(text[:500], attempts.count, time.perf_counter() - started)
        else:
            cost = reply.cost or 0.0
            self.unpriced = self.unpriced or reply.cost is None
            if not reply.cached:
                self.concurrency.succeeded(attempts.sent_at)
            result = {
                "output": reply.text,
                "parsed": reply.parsed,
                "prompt_tokens": reply.usage.prompt_tokens,
                "completion_tokens": reply.usage.completion_tokens,
                "cost_usd": reply.cost,
                "latency_s": reply.latency_s,
                "cached": reply.cached,
                "attempts": attempts.count,
                "error": reply.error,
            }
        finally:
            if attempts.holding:
                self.concurrency.release()
            self.budget.settle(reserved, cost)
        if failures and self.fatal is None:  # the answer is kept; the batch stops here
            self.fatal = failures[0]
        self._finish(group, result)

    def _finish(self, group: list[int], result: dict[str, Any]) -> None:
        self.results[group[0]] = result
        for index in group[1:]:  # the same request again: answered by the first, for free
            same = dict(result, latency_s=0.0, attempts=0)
            if result["error"] is None or result["output"] is not None:
                same.update(cached=True, cost_usd=0.0)
            self.results[index] = same
        if result["output"] is None:
            self.failed += len(group)
        self._refresh(len(group))

    def _refresh(self, done: int) -> None:
        if self._bar is None:
            return
        spent = "unknown (unpriced model)" if self.unpriced else f"${self.budget.spent:.4f}"
        self._bar.set_postfix_str(
            f"failed={self.failed} retries={self.retries} concurrency={self.concurrency.limit}"
            f" spent={spent}",
            refresh=False,
        )
        self._bar.update(done)

    def frame(self, structured: bool) -> pd.DataFrame:
        frame = self.prepared.frame.copy()
        results = [r if r is not None else _failed("not run") for r in self.results]
        for name, dtype in COLUMNS.items():
            if name != "parsed" or structured:
                values = [r[name] for r in results]
                frame[name] = pd.Series(values, index=frame.index, dtype=dtype)
        frame.attrs.update(
            model=self.model,
            cost_usd=sum_costs(r["cost_usd"] for r in results),
            budget_usd=self.budget.limit,
            concurrency=list(self.concurrency.trace),
            retries=self.retries,
        )
        return frame


def _progress_bar(total: int, model: str) -> Any:
    """A widget in a Jupyter frontend (with ipywidgets), else text on stderr."""
    with warnings.catch_warnings():
        # tqdm.auto warns in a kernel without ipywidgets and then draws text, which is fine.
        warnings.simplefilter("ignore")
        module = importlib.import_module("tqdm.std" if _headless_kernel() else "tqdm.auto")
    return module.tqdm(total=total, desc=f"aikit.batch {model}", unit="row")


def _headless_kernel() -> bool:
    """Whether a kernel runs without a frontend (papermill, nbclient): no widget shows there.

    Such clients execute cells with `allow_stdin=False`; Jupyter and VS Code allow input.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    kernel = getattr(shell, "kernel", None)
    return kernel is not None and not getattr(kernel, "_allow_stdin", True)


def limits(concurrency: int | Literal["auto"], endpoint: Endpoint) -> tuple[int, int]:
    """Start and ceiling of calls in flight: the endpoint's own for "auto", else fixed."""
    if concurrency == "auto":
        return endpoint.concurrency
    if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1:
        return concurrency, concurrency
    raise ConfigError(
        f"concurrency={concurrency!r} is not valid; pass 'auto' or a positive int such as 16"
    )
