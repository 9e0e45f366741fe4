"""`evaluate(task, dataset, metrics)`: run a task over a dataset, score every sample, and
summarise each metric with a bootstrap 95% interval.

`task` is a prompt template (`{{ input }}`, plus `expected` or metadata fields if it wants
them), sent through `aikit.abatch`; or any callable from input to output (a RAG pipeline, a
non-LLM baseline). A sample whose task failed is an *error*; a metric that returns None or NaN
leaves it *unscored*; neither is averaged in as 0, and each is counted apart.

A callable task may return a `rag.Answer` or a mapping with `output`, `context` (passage
texts) and `question`: the samples keep them, and a metric that declares a `context` or
`question` keyword (the RAG metrics of `aikit.evals.rag_metrics`) receives them. A metric or a
callable task that declares a `metadata` keyword receives the item's metadata (a dict: the
dataset's other fields); `aikit.evals.tasks` builds tasks that use it.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aikit import tracing
from aikit._sync import run_sync
from aikit.costs import sum_costs
from aikit.errors import EvalError
from aikit.evals.dataset import Dataset, Item, as_dataset
from aikit.evals.judge import Judge, Judgement
from aikit.evals.report import write_html
from aikit.prompts import Prompt, Template

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


Metric = Callable[..., Any]
Metrics = Sequence[Metric] | Mapping[str, Metric]
SUMMARY_COLUMNS = ["metric", "mean", "stderr", "ci_low", "ci_high", "n_scored", "n_unscored",
                   "n_errors", "agreement"]  # fmt: skip


@dataclass
class EvalResult:
    """What `evaluate` found.

    `samples`: one row per sample and repeat (`id`, `repeat`, `input`, `expected`, `output`,
    `context`, `question`, `error`, `latency_s`, `cost_usd`, tokens, a column per metric;
    judges add `NAME_passed`, `NAME_reason`, `NAME_agreement`; `metric_errors` holds a metric's
    exception text). `summary`: one row per metric (`mean`, `stderr`, `ci_low`, `ci_high`,
    `n_scored`, `n_unscored`, `n_errors`, and for a judge `agreement`: the mean share of its
    repeated verdicts that agree with their majority, 1.0 when it always agrees with itself).
    `usage`: cost and tokens of the task and of the judges, apart.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    metrics: list[str]
    usage: dict[str, Any] = field(default_factory=dict)
    name: str = "eval"
    threshold: float = 0.5

    def means(self) -> dict[str, float | None]:
        """metric -> mean (None when no sample was scored), ready for `aikit.record`."""
        out: dict[str, float | None] = {}
        for row in self.summary.itertuples():
            value = float(row.mean)  # type: ignore[arg-type]
            out[str(row.metric)] = None if math.isnan(value) else round(value, 6)
        return out

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML report (summary table, plots); see `aikit.evals.report`."""

        return write_html(self, Path(path))

    def __repr__(self) -> str:
        return f"EvalResult({self.name!r}, {len(self.samples)} samples, metrics={self.metrics})"


def _metric_names(metrics: Metrics) -> list[tuple[str, Metric]]:
    if isinstance(metrics, Mapping):
        pairs = [(str(k), v) for k, v in metrics.items()]
    else:
        if callable(metrics):
            metrics = [metrics]
        pairs = []
        for m in metrics:
            func = getattr(m, "func", m)  # functools.partial
            pairs.append((str(getattr(m, "name", None) or getattr(func, "__name__", "metric")), m))
    names = [n for n, _ in pairs]
    for name, metric in pairs:
        if not callable(metric):
            raise EvalError(f"metric {name!r} is a {type(metric).__name__}; pass a function")
        if names.count(name) > 1:
            raise EvalError(f"two metrics are named {name!r}; pass a dict of name -> metric")
    if not pairs:
        raise EvalError("evaluate needs at least one metric, e.g. metrics=[exact_match]")
    return pairs


def _as_score(value: Any) -> float:
    """A metric's value as a float in [0, 1], NaN for unscored (None or NaN)."""
    if value is None:
        return math.nan
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    score = float(value)
    if math.isnan(score):
        return score
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"returned {value!r}, outside [0, 1]")
    return score


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaN, NaN for no values)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def per_item(samples: pd.DataFrame, metric: str) -> pd.Series:
    """A metric's score per sample id: the mean over repeats of the scored ones (NaN if none)."""
    return samples.groupby("id", sort=False)[metric].mean()


def summarize(
    samples: pd.DataFrame, metrics: list[str], *, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rows = []
    for name in metrics:
        failed = samples["error"].notna() | samples["metric_errors"].map(
            lambda e, n=name: bool(e) and n in e
        )
        scored = samples[name].notna() & ~failed
        values = per_item(samples[scored], name).to_numpy(dtype=float)
        n = values.size
        low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
        agree = f"{name}_agreement"  # a judge's self-agreement over its repeats
        agreement = (
            pd.to_numeric(samples.loc[scored, agree], errors="coerce").mean()
            if agree in samples.columns
            else math.nan
        )
        rows.append(
            {
                "metric": name,
                "mean": float(values.mean()) if n else math.nan,
                "stderr": float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else math.nan,
                "ci_low": low,
                "ci_high": high,
                "n_scored": int(scored.sum()),
                "n_unscored": int((~scored & ~failed).sum()),
                "n_errors": int(failed.sum()),
                "agreement": float(agreement),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def evaluate(
    task: str | Template | Prompt | Callable[..., Any],
    dataset: Dataset | pd.DataFrame | Sequence[Any],
    metrics: Metrics,
    *,
    repeats: int = 1,
    concurrency: int | Literal["auto"] = "auto",
    name: str = "eval",
    threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = False,
    **params: Any,
) -> EvalResult:
    """Run `task` on every item of `dataset` (`repeats` times) and score it with `metrics`.

    Args:
        task: a template string, `aikit.prompts.Template` or `Prompt` (kept per model: the
            variant of the model asked; variables: `input`, `expected`, metadata fields), or a
            callable input -> output (an `aikit.Reply` counts its text; a `metadata` keyword,
            when declared, gets the item's metadata), e.g. a `prompt_task` or `rag_task`.
        dataset: a `Dataset`, a DataFrame with an `input` column, or a list of dicts.
        metrics: functions `(output, expected) -> float | None` (bind options with
            `functools.partial`; keywords `context`, `question`, `metadata` are filled when
            declared), `judge(...)`s, or a dict name -> metric.
        repeats: how many times each item runs (the model's answers are separate cache
            entries); the summary averages repeats per item before the interval.
        concurrency: calls in flight (`aikit.batch`'s), or worker threads for a callable task
            (`auto`: 4).
        threshold: the score at or above which a sample passes (explorer, `compare`).
        n_boot, seed: bootstrap resamples and its random seed (results are reproducible).
        **params: passed to `aikit.abatch` for a template task (`model`, `max_tokens`, ...).
    """

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise EvalError(f"repeats={repeats!r}; pass an int >= 1")
    ds = as_dataset(dataset)
    if not len(ds):
        raise EvalError(f"dataset {ds.name} is empty; add items with an 'input'")
    pairs = _metric_names(metrics)
    names = [n for n, _ in pairs]
    clash = [n for n in names if n in _BASE]
    if clash:
        raise EvalError(f"metric name {clash[0]!r} is a samples column; rename the metric")

    attributes = {"aikit.eval_name": name, "aikit.eval_dataset": ds.name,
                  "aikit.eval_items": len(ds), "aikit.eval_repeats": repeats}  # fmt: skip
    with tracing.span("evals.evaluate", attributes) as current:
        frame, judge_usage = _run_and_score(task, ds, repeats, concurrency, progress, params, pairs)
        summary = summarize(frame, names, n_boot=n_boot, seed=seed)
        result = _result(frame, summary, names, judge_usage, name, threshold)
        tracing.annotate(current, {f"aikit.eval_mean.{m}": v for m, v in result.means().items()})
    return result


def _run_and_score(
    task: Any,
    ds: Dataset,
    repeats: int,
    concurrency: int | Literal["auto"],
    progress: bool,
    params: dict[str, Any],
    pairs: list[tuple[str, Metric]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    if isinstance(task, str | Template | Prompt):
        frame = run_sync(_template_task(task, ds, repeats, concurrency, progress, params))
    elif callable(task):
        if params:
            raise EvalError(f"{sorted(params)[0]}= is for template tasks; bind it in your callable")
        frame = _callable_task(task, ds, repeats, concurrency)
    else:
        raise EvalError(f"task is a {type(task).__name__}; pass a template string or a callable")
    metadata = {item.id: item.metadata for item in ds}
    return frame, _score(frame, pairs, concurrency, metadata)


def _result(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    names: list[str],
    judge_usage: dict[str, Any],
    name: str,
    threshold: float,
) -> EvalResult:
    usage = {
        "task_cost_usd": _total(frame["cost_usd"]),
        "task_prompt_tokens": int(frame["prompt_tokens"].sum()),
        "task_completion_tokens": int(frame["completion_tokens"].sum()),
        **judge_usage,
    }
    frame.attrs = {}
    return EvalResult(frame, summary, names, usage, name=name, threshold=threshold)


_BASE = ["id", "repeat", "input", "expected", "output", "context", "question", "error",
         "latency_s", "cost_usd", "prompt_tokens", "completion_tokens",
         "metric_errors"]  # fmt: skip


def _total(costs: pd.Series) -> float | None:
    return sum_costs(None if c != c else float(c) for c in costs)  # NaN: an unpriced call


async def _template_task(
    task: str | Template | Prompt,
    ds: Dataset,
    repeats: int,
    concurrency: int | Literal["auto"],
    progress: bool,
    params: dict[str, Any],
) -> pd.DataFrame:
    import pandas as pd

    from aikit._batch import abatch

    tpl = Template(task) if isinstance(task, str) else task
    records = [{"input": i.input, "expected": i.expected, **i.metadata} for i in ds]
    unknown = sorted(tpl.variables - set(records[0]))
    if unknown:
        raise EvalError(
            f"template {tpl.name} uses {unknown[0]!r}, which is not a dataset field"
            f" (fields: {', '.join(records[0])}); use {{{{ input }}}}"
        )
    parts = []
    for repeat in range(repeats):
        out = await abatch(
            records, template=tpl, concurrency=concurrency, progress=progress, repeat=repeat,
            **params,
        )  # fmt: skip
        parts.append(
            pd.DataFrame(
                {
                    "id": [i.id for i in ds],
                    "repeat": repeat,
                    "input": [i.input for i in ds],
                    "expected": [i.expected for i in ds],
                    "output": out["output"].to_numpy(),
                    "context": None,
                    "question": [i.input for i in ds],
                    "error": out["error"].to_numpy(),
                    "latency_s": out["latency_s"].to_numpy(),
                    "cost_usd": out["cost_usd"].to_numpy(),
                    "prompt_tokens": out["prompt_tokens"].to_numpy(),
                    "completion_tokens": out["completion_tokens"].to_numpy(),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _run_one(
    task: Callable[..., Any], item: Item, repeat: int, with_metadata: bool
) -> dict[str, Any]:
    row: dict[str, Any] = {"id": item.id, "repeat": repeat, "input": item.input,
                           "expected": item.expected, "output": None, "context": None,
                           "question": item.input, "error": None, "cost_usd": 0.0,
                           "prompt_tokens": 0, "completion_tokens": 0}  # fmt: skip
    started = time.perf_counter()
    try:
        out = task(item.input, metadata=dict(item.metadata)) if with_metadata else task(item.input)
        if inspect.isawaitable(out):
            out = run_sync(_awaited(out))
    except Exception as exc:  # a failed sample is data, not a crash of the whole eval
        row["error"] = f"{type(exc).__name__}: {exc}"
        out = None
    row["latency_s"] = time.perf_counter() - started
    out = _unpack_rag(out, row)
    usage = getattr(out, "usage", None)
    if hasattr(out, "text") and usage is not None:  # an aikit Reply
        row.update(
            output=out.text,
            cost_usd=getattr(out, "cost", 0.0),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0)),
            completion_tokens=int(getattr(usage, "completion_tokens", 0)),
        )
    else:
        row["output"] = out
    return row


def _unpack_rag(out: Any, row: dict[str, Any]) -> Any:
    """A `rag.Answer` or a mapping with `output`: keep its context and question in `row` and
    return what counts as the output (the Answer's model reply, for its usage, or its text)."""
    if isinstance(out, Mapping) and "output" in out:
        row["context"] = _context_texts(out.get("context"))
        if out.get("question") is not None:
            row["question"] = out["question"]
        return out["output"]
    is_answer = all(hasattr(out, a) for a in ("question", "context", "text", "found"))
    if not is_answer:
        return out
    row["context"] = _context_texts(out.context)
    row["question"] = out.question
    reply = getattr(out, "reply", None)
    if reply is not None and hasattr(reply, "usage"):
        return dataclasses.replace(reply, text=out.text)  # the answer's text, the call's usage
    return out.text


def _context_texts(context: Any) -> list[str] | None:
    """Passage texts from a DataFrame with a `text` column (a `rag.Answer`'s hits) or a list."""
    if context is None:
        return None
    if isinstance(context, str):
        return [context]
    if hasattr(context, "columns"):
        return [str(t) for t in context["text"]] if "text" in context.columns else None
    return [str(p.get("text", "")) if isinstance(p, Mapping) else str(p) for p in context]


async def _awaited(value: Any) -> Any:
    return await value


def _callable_task(
    task: Callable[..., Any], ds: Dataset, repeats: int, concurrency: int | Literal["auto"]
) -> pd.DataFrame:
    import pandas as pd

    workers = 4 if concurrency == "auto" else max(1, int(concurrency))
    jobs = [(item, repeat) for repeat in range(repeats) for item in ds]
    with_metadata = "metadata" in _wanted_keywords(task)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = [(contextvars.copy_context(), job) for job in jobs]  # spans under evaluate's
        rows = list(pool.map(lambda r: r[0].run(_run_one, task, *r[1], with_metadata), runs))
    frame = pd.DataFrame(rows, columns=[c for c in _BASE if c != "metric_errors"])
    return frame.astype({"cost_usd": "float64", "latency_s": "float64"})


def _score(
    frame: pd.DataFrame,
    pairs: list[tuple[str, Metric]],
    concurrency: int | Literal["auto"],
    metadata: Mapping[Any, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Fill a column per metric (and the judges' extra columns); return the judges' usage.

    Plain metrics run here, in the caller's thread (a metric may itself call `aikit.chat`);
    judges run concurrently on aikit's loop.
    """
    import pandas as pd

    errors: list[dict[str, str]] = [{} for _ in range(len(frame))]
    ok = frame["error"].isna().to_numpy()
    outputs, expected, inputs = list(frame["output"]), list(frame["expected"]), list(frame["input"])
    contexts, questions = list(frame["context"]), list(frame["question"])
    metas = [dict((metadata or {}).get(i, {})) for i in frame["id"]]
    judge_costs: list[float | None] = []
    judge_tokens = [0, 0]
    limit = 8 if concurrency == "auto" else max(1, int(concurrency))
    for name, metric in pairs:
        scores = [math.nan] * len(frame)
        if isinstance(metric, Judge):
            verdicts = run_sync(_judge_all(metric, ok, outputs, expected, inputs, limit))
            for i, v in enumerate(verdicts):
                if isinstance(v, str):
                    errors[i][name] = v
                elif v is not None:
                    scores[i] = math.nan if v.score is None else v.score
                    judge_costs.append(v.cost_usd)
                    judge_tokens[0] += v.prompt_tokens
                    judge_tokens[1] += v.completion_tokens
            found = [v if isinstance(v, Judgement) else None for v in verdicts]
            frame[f"{name}_passed"] = [None if v is None else v.passed for v in found]
            frame[f"{name}_reason"] = [None if v is None else v.reason for v in found]
            frame[f"{name}_agreement"] = [None if v is None else v.agreement for v in found]
        else:
            wants = _wanted_keywords(metric)
            for i in range(len(frame)):
                if not ok[i]:
                    continue
                given = (("context", contexts[i]), ("question", questions[i]),
                         ("metadata", metas[i]))  # fmt: skip
                extra = {k: v for k, v in given if k in wants}
                try:
                    scores[i] = _as_score(metric(outputs[i], expected[i], **extra))
                except Exception as exc:  # a metric's bug on one sample is that sample's error
                    errors[i][name] = f"{type(exc).__name__}: {exc}"
        frame[name] = scores
    frame["metric_errors"] = pd.Series([e or None for e in errors], index=frame.index, dtype=object)
    return {
        "judge_cost_usd": sum_costs(judge_costs),
        "judge_prompt_tokens": judge_tokens[0],
        "judge_completion_tokens": judge_tokens[1],
    }


def _wanted_keywords(metric: Metric) -> set[str]:
    """Which of `context`, `question`, `metadata` a metric takes as a keyword (read once per
    metric)."""
    try:
        params = inspect.signature(metric).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return set()
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    wanted = ("context", "question", "metadata")
    return {n for n in wanted if n in params and params[n].kind in keyword}


async def _judge_all(
    judge: Judge,
    ok: Any,
    outputs: list[Any],
    expected: list[Any],
    inputs: list[Any],
    limit: int,
) -> list[Judgement | str | None]:
    """Each sample's verdict; None where the task failed, the error text where the judge did."""
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> Judgement | str | None:
        if not ok[i]:
            return None
        async with gate:
            try:
                return await judge.ajudge(outputs[i], expected[i], input=inputs[i])
            except Exception as exc:  # an endpoint error is this sample's error, not the run's
                return f"{type(exc).__name__}: {exc}"

    return list(await asyncio.gather(*(one(i) for i in range(len(outputs)))))
