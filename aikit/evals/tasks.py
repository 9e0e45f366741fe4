"""Tasks for `evaluate`: a prompt variant and a RAG pipeline, built from their parts.

`prompt_task` sends the messages of a prompt variant (a `Template`, an optional system
instruction, optional few-shot examples) through `aikit.chat`; `prompt_variants` gives the
three variants `01_prompting` scores (`zero_shot`, `instructed`, `few_shot`). Items of several
kinds can each get their own template, instruction and examples: pass mappings keyed by the
value of the metadata field `by` (`evaluate` hands a task the item's metadata when it declares
a `metadata` keyword). `rag_task` answers with `rag.answer` over an index, built on first use
when given a function that builds it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from aikit.errors import EvalError
from aikit.prompts import Template, few_shot

if TYPE_CHECKING:
    import pandas as pd

    from aikit.llm import Reply
    from aikit.rag import Answer, Index

T = TypeVar("T")
Examples = Any  # a list of mappings, or a DataFrame


class PromptTask(Protocol):
    """What `prompt_task` returns: call it like any task; `messages` shows what it sends."""

    def __call__(self, input: Any, *, metadata: Mapping[str, Any] | None = None) -> Reply: ...

    def messages(
        self, input: Any, metadata: Mapping[str, Any] | None = None
    ) -> list[dict[str, str]]: ...


def prompt_task(
    template: Template | str | Mapping[str, Template | str],
    *,
    system: str | Mapping[str, str] | None = None,
    examples: Examples | Mapping[str, Examples] | None = None,
    n_shots: int | None = None,
    by: str | None = None,
    input_key: str = "input",
    output_key: str = "output",
    **params: Any,
) -> PromptTask:
    """A task that asks the model with the messages of one prompt variant.

    The messages are `aikit.prompts.few_shot(examples, input, template=..., system=...)`: the
    system instruction (if any), each example as a user turn (the template rendered with the
    example's fields) and an assistant turn (its `output_key` field), then the item's input
    rendered as `{input_key: input}`. An example's fields that the template does not use (an
    id, a split) are left out.

    Args:
        template: the user turn, or a mapping kind -> template (with `by`).
        system: the system instruction, or a mapping kind -> instruction; None: none.
        examples: few-shot examples (a list of mappings or a DataFrame), or a mapping kind ->
            examples; with `by` and a flat list, an item gets the examples whose `by` field
            equals its own. None: zero-shot.
        n_shots: show only the first `n_shots` examples (per kind); None: all.
        by: the metadata field that names an item's kind (its value keys the mappings).
        input_key: the template variable that holds the item's input.
        output_key: the examples' field holding the answer.
        **params: passed to `aikit.chat` (`model`, `temperature`, `seed`, `max_tokens`, ...).

    Returns:
        A callable `(input, *, metadata=None) -> aikit.Reply` for `evaluate`.

    Example:
        >>> task = prompt_task("Review: {{ text }}\\nPositive or negative?", input_key="text")
        >>> task.messages("Great value.")  # doctest: +NORMALIZE_WHITESPACE
        [{'role': 'user', 'content': 'Review: Great value.\\nPositive or negative?'}]
    """
    if n_shots is not None and (isinstance(n_shots, bool) or n_shots < 0):
        raise EvalError(f"n_shots={n_shots!r}; pass an int >= 0 (or None for every example)")
    templates = _per_kind("template", template, by, _template)
    for tpl in [templates] if isinstance(templates, Template) else templates.values():
        if input_key not in tpl.variables:
            raise EvalError(
                f"template {tpl.source!r:.50} has no variable {input_key!r}; pass input_key= one"
                f" of {', '.join(sorted(tpl.variables)) or 'none'}"
            )
    systems = _per_kind("system", system, by, lambda s: s)
    shots = _examples(examples, by)

    def messages(input: Any, metadata: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
        """The messages this task sends for one item."""
        kind = _kind(by, metadata)
        tpl = cast(Template, _pick("template", templates, kind, by))
        pool = [] if shots is None else list(_pick("examples", shots, kind, by))
        pool = pool if n_shots is None else pool[:n_shots]
        rows = [{k: v for k, v in r.items() if k in tpl.variables or k == output_key} for r in pool]
        instruction = None if systems is None else _pick("system", systems, kind, by)
        return few_shot(
            rows, str(input), input_key=input_key, output_key=output_key, template=tpl,
            system=cast("str | None", instruction),
        )  # fmt: skip

    def run(input: Any, *, metadata: Mapping[str, Any] | None = None) -> Reply:
        from aikit.llm import chat

        return chat(messages(input, metadata), **params)

    run.messages = messages  # type: ignore[attr-defined]
    return cast(PromptTask, run)


def prompt_variants(
    template: Template | str | Mapping[str, Template | str],
    *,
    system: str | Mapping[str, str],
    examples: Examples | Mapping[str, Examples],
    n_shots: int = 3,
    by: str | None = None,
    input_key: str = "input",
    output_key: str = "output",
    **params: Any,
) -> dict[str, PromptTask]:
    """The three prompt variants of `01_prompting`, as tasks: `zero_shot` (the template
    alone), `instructed` (plus the system instruction) and `few_shot` (plus the first
    `n_shots` examples). The arguments are `prompt_task`'s."""
    common: dict[str, Any] = dict(by=by, input_key=input_key, output_key=output_key, **params)
    return {
        "zero_shot": prompt_task(template, **common),
        "instructed": prompt_task(template, system=system, **common),
        "few_shot": prompt_task(
            template, system=system, examples=examples, n_shots=n_shots, **common
        ),
    }


def rag_task(
    index: Index | Callable[[], Index],
    *,
    k: int = 4,
    mode: str = "hybrid",
    **params: Any,
) -> Callable[[str], Answer]:
    """A task that answers a question with `rag.answer(question, index, k=k, mode=mode)`.

    Args:
        index: a `rag.Index`, or a function that builds one: it is called once, on the first
            question (so a notebook that evaluates no RAG task builds no index), also when
            `evaluate` asks from several threads.
        k: passages shown to the model.
        mode: retrieval mode, `dense`, `bm25` or `hybrid`.
        **params: passed to `rag.answer` (`model`, `min_similarity`, `max_tokens`, ...).

    Returns:
        A callable question -> `rag.Answer`; `evaluate` hands its passages to the RAG metrics.
    """
    from aikit.rag import MODES

    if mode not in MODES:
        raise EvalError(f"rag mode {mode!r} is not known; use one of {', '.join(MODES)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise EvalError(f"k={k!r}; pass the number of passages to show, an int >= 1")
    built: list[Index] = []
    lock = threading.Lock()

    def get() -> Index:
        if hasattr(index, "search"):
            return cast("Index", index)
        with lock:
            if not built:
                built.append(index())
        return built[0]

    def run(question: str) -> Answer:
        from aikit.rag import answer

        return answer(question, get(), k=k, mode=mode, **params)  # type: ignore[arg-type]

    return run


def _template(value: Template | str) -> Template:
    return value if isinstance(value, Template) else Template(value)


def _per_kind(
    what: str, value: T | Mapping[str, T] | None, by: str | None, make: Callable[[Any], Any]
) -> Any:
    """`value` made ready (a mapping kind -> value when `by` is set), None stays None."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if by is None:
            raise EvalError(
                f"{what} is a mapping ({', '.join(map(str, value))}); pass by= the metadata"
                " field that names each item's kind"
            )
        return {str(k): make(v) for k, v in value.items()}
    return make(value)


def _examples(examples: Any, by: str | None) -> Any:
    """Examples as a list of dicts, or (with `by`) a dict kind -> list of dicts."""
    if examples is None:
        return None
    if isinstance(examples, Mapping):
        if by is None:
            raise EvalError(
                f"examples is a mapping ({', '.join(map(str, examples))}); pass by= the"
                " metadata field that names each item's kind"
            )
        return {str(k): _rows(v) for k, v in examples.items()}
    rows = _rows(examples)
    if by is None:
        return rows
    grouped: dict[str, list[dict[str, Any]]] = {}
    for number, row in enumerate(rows, start=1):
        if by not in row:
            raise EvalError(
                f"example {number} has no {by!r} field (fields: {', '.join(row)}); give each"
                f" example its kind, or pass a mapping kind -> examples"
            )
        grouped.setdefault(str(row[by]), []).append(row)
    return grouped


def _rows(examples: Any) -> list[dict[str, Any]]:
    pandas = sys.modules.get("pandas")  # a DataFrame can only exist if pandas is loaded
    if pandas is not None and isinstance(examples, pandas.DataFrame):
        frame: pd.DataFrame = examples
        return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
    return [dict(r) for r in examples]


def _kind(by: str | None, metadata: Mapping[str, Any] | None) -> str | None:
    if by is None:
        return None
    if metadata is None or by not in metadata:
        fields = ", ".join(metadata or {}) or "none"
        raise EvalError(
            f"this task picks its prompt by the item's {by!r} field, which the item lacks"
            f" (its metadata: {fields}); add it to the dataset"
        )
    return str(metadata[by])


def _pick(what: str, value: Any, kind: str | None, by: str | None) -> Any:
    if kind is None or not isinstance(value, dict):
        return value
    if kind in value:
        return value[kind]
    raise EvalError(
        f"no {what} for {by}={kind!r}; give one for each kind (given: {', '.join(value)})"
    )
