"""Request and response schemas from a function's signature.

The request is a JSON object with one field per parameter (its type hint, its default); the
response is the return type: JSON types, pydantic models, dataclasses (such as `rag.Answer`).
A dataclass field typed `Any`, or with `metadata={"api": False}`, is left out of the response:
it has no schema to publish (`rag.Answer.context` is a DataFrame; its prompt and raw reply are
marked out).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from aikit.errors import ApiError


@dataclass(frozen=True)
class Schema:
    """One endpoint's models and how to turn the function's result into the response."""

    name: str
    function: Callable[..., Any]
    request: type[BaseModel]
    response: Any
    is_async: bool
    doc: str

    def to_response(self, value: Any) -> Any:
        """The function's result as the response type (dataclass fields picked by name)."""
        model = self.response
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        if is_model and dataclasses.is_dataclass(value) and not isinstance(value, type):
            return model.model_validate({f: getattr(value, f) for f in model.model_fields})
        return value


def build(name: str, function: Callable[..., Any]) -> Schema:
    """The schema of `function` served as endpoint `name`; an `ApiError` names what cannot be
    served (a parameter with no type hint, `*args`)."""
    where = f"endpoint {name!r} ({getattr(function, '__qualname__', function)})"
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:
        raise ApiError(f"{where}: cannot read its type hints ({exc}); fix the annotations") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ApiError(
                f"{where}: parameter {param.name!r} is {param.kind.description}; an endpoint"
                " takes named parameters only"
            )
        if param.name not in hints:
            raise ApiError(
                f"{where}: parameter {param.name!r} has no type hint; annotate it"
                f" (e.g. {param.name}: str) so requests can be checked"
            )
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], default)
    title = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
    request = create_model(f"{title}Request", __config__=ConfigDict(extra="forbid"), **fields)
    response = _response_type(hints.get("return", Any), title)
    doc = inspect.getdoc(function) or ""
    return Schema(
        name=name,
        function=function,
        request=request,
        response=response,
        is_async=inspect.iscoroutinefunction(function),
        doc=doc,
    )


def _field_hints(cls: type) -> dict[str, Any]:
    """A dataclass's field types; one that cannot be resolved (a name imported only for type
    checking, like `rag.Answer.reply`'s `Reply`) counts as `Any`."""
    try:
        return typing.get_type_hints(cls)
    except NameError:
        pass
    namespace = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
    hints: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        try:
            # the class's own annotation text, in its own module's namespace
            hints[f.name] = eval(f.type, dict(namespace)) if isinstance(f.type, str) else f.type
        except Exception:
            hints[f.name] = Any
    return hints


def _response_type(annotation: Any, title: str) -> Any:
    if annotation is None or annotation is type(None):
        return None
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        hints = _field_hints(annotation)
        fields = {
            f.name: (hints[f.name], ...)  # always filled from the result
            for f in dataclasses.fields(annotation)
            if hints.get(f.name, Any) is not Any and f.metadata.get("api", True)
        }
        return create_model(annotation.__name__, **fields)  # type: ignore[call-overload]
    try:
        TypeAdapter(annotation).json_schema()
    except Exception as exc:
        raise ApiError(
            f"endpoint {title}: its return type {annotation!r} has no JSON schema ({exc});"
            " return JSON types, a pydantic model or a dataclass"
        ) from exc
    return annotation
