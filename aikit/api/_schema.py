"""Request and response schemas from a function's signature.

The request is a JSON object with one field per parameter (its type hint, its default). A
parameter whose name pydantic reserves (`model_config`, `schema`, `json`, `_private`) keeps its
name in the JSON through an alias. Requests are validated strictly (`true` is not a number,
`"1"` is not an integer) and without NaN or infinities (`NaN`, `Infinity`, `1e400`). A
parameter type with no JSON schema (a `Callable`, a DataFrame) is refused at start-up. The
response is the return type: JSON types, pydantic models, dataclasses (such as `rag.Answer`).
A dataclass field typed `Any`, or with `metadata={"api": False}`, is left out of the response:
it has no schema to publish (`rag.Answer.context` is a DataFrame; its prompt and raw reply are
marked out).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

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
    arguments: dict[str, str] = dataclasses.field(default_factory=dict)  # field -> parameter

    def kwargs(self, body: BaseModel) -> dict[str, Any]:
        """The function's keyword arguments from a validated request."""
        return {self.arguments.get(f, f): getattr(body, f) for f in type(body).model_fields}

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
    arguments: dict[str, str] = {}
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
        try:
            TypeAdapter(hints[param.name]).json_schema()
        except Exception as exc:
            raise ApiError(
                f"{where}: parameter {param.name!r} of type {hints[param.name]!r} has no JSON"
                " schema, so no request can carry it; type it with JSON types, a pydantic model"
                " or a dataclass (or leave it out of the signature)"
            ) from exc
        if _reserved(param.name):
            field_name = f"p{len(fields)}_{param.name.strip('_')}"
            arguments[field_name] = param.name
            title_text = param.name.strip("_").replace("_", " ").title()
            fields[field_name] = (
                hints[param.name],
                Field(default, alias=param.name, title=title_text),
            )
        else:
            fields[param.name] = (hints[param.name], default)
    title = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
    config = ConfigDict(extra="forbid", protected_namespaces=())
    request = create_model(f"{title}Request", __config__=config, **fields)
    response = _response_type(hints.get("return", Any), title)
    doc = inspect.getdoc(function) or ""
    return Schema(
        name=name,
        function=function,
        request=request,
        response=response,
        is_async=inspect.iscoroutinefunction(function),
        doc=doc,
        arguments=arguments,
    )


def _reserved(name: str) -> bool:
    """A name pydantic cannot use as a field (it is a `BaseModel` attribute, private, or in
    its `model_` namespace)."""
    return name.startswith(("_", "model_")) or hasattr(BaseModel, name)


class _NonFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


def _constant(text: str) -> Any:
    raise _NonFinite(text)


def non_finite(raw: bytes) -> str | None:
    """The first NaN, infinity or float overflow (`1e400`) in a JSON body, or None."""
    try:
        json.loads(raw, parse_float=_finite, parse_constant=_constant)
    except _NonFinite as exc:
        return str(exc)
    except ValueError:  # not JSON: the model's own validation says so
        return None
    return None


def validate(model: type[BaseModel], raw: bytes) -> BaseModel:
    """`raw` as a `model`, strictly (JSON types only) and with finite numbers only; raises
    `ValidationError`."""
    body = model.model_validate_json(raw, strict=True)
    bad = non_finite(raw)
    if bad is not None:
        raise ValidationError.from_exception_data(
            model.__name__,
            [
                {
                    "type": "finite_number",
                    "loc": (),
                    "input": bad,
                }
            ],
        )
    return body


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
