"""Prompts: templates (sandboxed Jinja2 with declared variables), prompts kept per model
(`Prompt`: a default template and overrides by model or family), few-shot builders, and the
message helpers every call uses (`to_messages`, `content_text`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from aikit.errors import ConfigError, TemplateError

if TYPE_CHECKING:
    import pandas as pd

    from aikit.settings import Settings

Messages = list[dict[str, Any]]

_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)


class Template:
    """A Jinja2 template rendered in a sandbox; its variables are declared up front.

    `variables` defaults to the names the template uses. Rendering with a missing or an unknown
    variable is a `TemplateError` naming it, so a typo never renders an empty string.

    Example:
        >>> Template("Translate {{ text }} into {{ lang }}.").render(text="hi", lang="French")
        'Translate hi into French.'
    """

    def __init__(
        self, source: str, *, variables: Iterable[str] | None = None, name: str = "<template>"
    ):
        self.source = source
        self.name = name
        try:
            used = meta.find_undeclared_variables(_ENV.parse(source))
            self._template = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {name} line {exc.lineno}: {exc.message}; fix the syntax"
            ) from exc
        self.variables: frozenset[str] = (
            frozenset(variables) if variables is not None else frozenset(used)
        )
        undeclared = sorted(set(used) - self.variables)
        if undeclared:
            raise TemplateError(
                f"template {name} uses {undeclared[0]!r}, which is not declared;"
                f" add it to variables= (declared: {', '.join(sorted(self.variables)) or 'none'})"
            )

    @classmethod
    def from_file(cls, path: str | Path, *, variables: Iterable[str] | None = None) -> Template:
        """Load a template from a text file (templates live in files, under version control)."""
        file = Path(path)
        try:
            source = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"cannot read template {str(file)!r}: {exc.strerror}") from exc
        return cls(source, variables=variables, name=str(file))

    def render(self, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> str:
        """Render with exactly the declared variables."""
        given = {**(values or {}), **kwargs}
        missing = sorted(self.variables - set(given))
        if missing:
            raise TemplateError(
                f"template {self.name} needs variable {missing[0]!r}; pass {missing[0]}=..."
            )
        unknown = sorted(set(given) - self.variables)
        if unknown:
            raise TemplateError(
                f"template {self.name} has no variable {unknown[0]!r};"
                f" it declares: {', '.join(sorted(self.variables)) or 'none'}"
            )
        try:
            return self._template.render(given)
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"template {self.name} tried an unsafe operation ({exc}); remove it"
            ) from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"template {self.name}: {exc.message}; check the values passed"
            ) from exc

    def __repr__(self) -> str:
        return f"Template({self.source!r:.60}, variables={sorted(self.variables)})"


class Prompt:
    """A prompt kept per model: a default template, and overrides for some models or families.

    The best prompt differs by model: a base model needs worked examples where an
    instruction-tuned one follows the instruction. `overrides` maps a model name or a family
    (`base`, `instruct`, `gemma`, `smollm2`, `hosted`: the model table's `families`, most
    specific first) to the template to use instead. `aikit.chat`, `aikit.batch` and
    `evals.evaluate` take a `Prompt` where they take a template and render the variant of the
    model the call goes to; `describe(model, ...)` shows which variant, what the model receives
    and its token count. Every variant declares the same variables.

    Example:
        >>> p = Prompt("Classify: {{ text }}", overrides={"base": "Text: {{ text }}\\nLabel:"})
        >>> p.choose(("gemma-3-270m", "gemma", "base"))[0]
        'base'
    """

    def __init__(
        self,
        default: Template | str,
        overrides: Mapping[str, Template | str] | None = None,
        *,
        name: str = "<prompt>",
    ) -> None:
        self.name = name
        self.default = Template(default, name=name) if isinstance(default, str) else default
        self.overrides: dict[str, Template] = {
            key: Template(tpl, name=f"{name}[{key}]") if isinstance(tpl, str) else tpl
            for key, tpl in (overrides or {}).items()
        }
        for key, tpl in self.overrides.items():
            if tpl.variables != self.default.variables:
                raise TemplateError(
                    f"prompt {name}: override {key!r} declares"
                    f" {', '.join(sorted(tpl.variables)) or 'no variables'}, the default"
                    f" {', '.join(sorted(self.default.variables)) or 'none'};"
                    " give every variant the same variables"
                )
        self.variables = self.default.variables

    def choose(self, families: Iterable[str]) -> tuple[str, Template]:
        """The variant for a model with these families: (its key or `default`, template)."""
        for family in families:
            if family in self.overrides:
                return family, self.overrides[family]
        return "default", self.default

    def for_model(
        self, model: str | None = None, *, settings: Settings | None = None
    ) -> tuple[str, Template]:
        """The variant for `model` (default: the settings' model) on the settings' endpoint."""
        endpoint, model = _endpoint_and_model(model, settings)
        return self.choose(endpoint.families(model))

    def render(
        self,
        values: Mapping[str, Any] | None = None,
        /,
        *,
        model: str | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> str:
        """Render the variant of `model` with exactly the declared variables."""
        return self.for_model(model, settings=settings)[1].render(values, **kwargs)

    def describe(
        self,
        values: Mapping[str, Any] | None = None,
        /,
        *,
        model: str | None = None,
        settings: Settings | None = None,
        system: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Which variant `model` gets, and what it receives (`describe_request`)."""
        variant, template = self.for_model(model, settings=settings)
        text = template.render(values, **kwargs)
        return {
            "variant": variant,
            **describe_request(text, model=model, settings=settings, system=system),
        }

    def __repr__(self) -> str:
        return f"Prompt({self.name!r}, default + overrides {sorted(self.overrides)})"


def variant_of(
    template: Prompt | Template | str | None, families: Iterable[str]
) -> Template | str | None:
    """A template as given, or a `Prompt`'s variant for a model with these families."""
    return template.choose(families)[1] if isinstance(template, Prompt) else template


def _endpoint_and_model(model: str | None, settings: Settings | None) -> tuple[Any, str]:
    from aikit.provider import resolve_endpoint  # the provider layer sits above prompts
    from aikit.settings import get_settings

    settings = settings or get_settings()
    return resolve_endpoint(settings), model or settings.model


def describe_request(
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    settings: Settings | None = None,
    system: str | None = None,
) -> dict[str, Any]:
    """What `model` (default: the settings' model) receives for a chat request: its messages,
    the prompt text its server renders from them (an embedded model's transcript or chat
    template; a hosted model's messages as JSON, which its server renders unseen) and the
    prompt tokens counted offline."""
    import json

    endpoint, model = _endpoint_and_model(model, settings)
    endpoint.families(model)  # an unknown embedded model is an error here, not a guess
    messages = to_messages(prompt_or_messages, system)
    counter = endpoint.counter(model)
    received = (
        counter.transcript(messages)
        if counter.transcript is not None
        else json.dumps(messages, ensure_ascii=False, indent=1)
    )
    return {
        "model": model,
        "messages": messages,
        "received": received,
        "prompt_tokens": counter.prompt_tokens(messages),
        "counted_with": counter.name,
    }


def few_shot(
    examples: Iterable[Mapping[str, Any]] | pd.DataFrame,
    query: str | None = None,
    *,
    input_key: str = "input",
    output_key: str = "output",
    system: str | None = None,
    template: Template | str | None = None,
) -> list[dict[str, str]]:
    """Chat messages that show `examples` as user/assistant turns, then ask `query`.

    `examples` is a list of mappings or a DataFrame with `input_key` and `output_key` columns.
    With `template`, each example's user turn (and the query) is the template rendered with the
    example's other fields; the query is then rendered from `{input_key: query}`.
    """
    pandas = sys.modules.get("pandas")  # a DataFrame can only exist if pandas is loaded
    rows: list[Mapping[str, Any]] = (
        cast(list[Mapping[str, Any]], examples.to_dict("records"))
        if pandas is not None and isinstance(examples, pandas.DataFrame)
        else list(cast(Iterable[Mapping[str, Any]], examples))
    )
    tpl = Template(template) if isinstance(template, str) else template
    messages: list[dict[str, str]] = (
        [] if system is None else [{"role": "system", "content": system}]
    )
    for number, row in enumerate(rows, start=1):
        for key in (input_key, output_key) if tpl is None else (output_key,):
            if key not in row:
                raise TemplateError(
                    f"few-shot example {number} has no {key!r} field; its fields are:"
                    f" {', '.join(map(str, row)) or 'none'}"
                )
        fields = {k: v for k, v in row.items() if k != output_key}
        user = tpl.render(fields) if tpl is not None else str(row[input_key])
        messages += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": str(row[output_key])},
        ]
    if query is not None:
        user = tpl.render({input_key: query}) if tpl is not None else query
        messages.append({"role": "user", "content": user})
    return messages


def to_messages(
    prompt_or_messages: str | Sequence[Mapping[str, Any]], system: str | None = None
) -> Messages:
    """Normalize a prompt string or a message list, prepending `system` when given."""
    if isinstance(prompt_or_messages, str):
        messages: Messages = [{"role": "user", "content": prompt_or_messages}]
    elif isinstance(prompt_or_messages, Sequence) and all(
        isinstance(m, Mapping) and "role" in m for m in prompt_or_messages
    ):
        messages = [dict(cast(Mapping[str, Any], m)) for m in prompt_or_messages]
    else:
        raise ConfigError(
            f"cannot send {type(prompt_or_messages).__name__} {prompt_or_messages!r:.60} to a"
            " model; pass a string or a list of {'role': ..., 'content': ...} messages"
        )
    if not messages:
        raise ConfigError("no messages to send; pass a prompt string or a non-empty message list")
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content list."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)
