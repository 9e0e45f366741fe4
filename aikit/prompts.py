"""Prompts: templates (sandboxed Jinja2 with declared variables), few-shot builders, and the
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
