"""A notebook's `parameters` cell: read it, and check values against it before a kernel starts.

Each top-level assignment in the cell tagged `parameters` is a parameter: `name: type = default
# help`. The declared type (else the default's type) decides how a value converts: CLI strings
follow YAML rules (`[1, 2]`, `{a: 1}`, `true`), except for `str` parameters, which take the
string as it is. A value `secret:NAME` is resolved from the environment inside the kernel and
recorded as written; a plain value for a parameter named like a secret is refused.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import tokenize
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from aikit._scrub import SECRET_PREFIX as SECRET_PREFIX  # the reference helpers live in _scrub
from aikit._scrub import is_secret_ref as is_secret_ref
from aikit._scrub import secret_env
from aikit.errors import ParameterError

SECRET_NAME = re.compile(r"key|token|secret|password", re.I)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE_NAMES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "None": type(None),
    "Any": Any,
    **{name: getattr(typing, name) for name in ("Literal", "Optional", "Union", "List", "Dict")},
}


@dataclass(frozen=True)
class Parameter:
    """One parameter of a notebook: name, declared type (source text), default, help."""

    name: str
    type: str
    default: Any
    help: str

    @property
    def annotation(self) -> Any:
        """The declared type as a Python type (`Any` when it cannot be read)."""
        if not self.type:
            return Any if self.default is None else type(self.default)
        try:
            return eval(self.type, {"__builtins__": {}}, _TYPE_NAMES)  # names above only
        except Exception:
            return Any


def _parameters_cell(notebook: Path) -> str | None:
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read notebook {notebook}: {exc}; check the path") from exc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells", []), list):
        raise ParameterError(f"{notebook} is not a Jupyter notebook (no cells); check the path")
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
            "tags", []
        ):
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else str(source)
    return None


def read_parameters(notebook: str | Path) -> dict[str, Parameter]:
    """The parameters declared in `notebook`'s `parameters` cell, in order."""
    path = Path(notebook)
    source = _parameters_cell(path)
    if source is None:
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(
            f"{path}: the parameters cell has a syntax error on line {exc.lineno}; fix it"
        ) from exc
    comments = _comments(source)
    found: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, annotation, value = node.target.id, ast.unparse(node.annotation), node.value
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            name, annotation, value = node.targets[0].id, "", node.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            default = ast.unparse(value) if value is not None else None
        above = (
            comments.get(node.lineno - 1, "") if node.lineno - 1 not in _code_lines(tree) else ""
        )
        found[name] = Parameter(name, annotation, default, comments.get(node.lineno, above))
    return found


def _comments(source: str) -> dict[int, str]:
    found: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                found[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return found


def _code_lines(tree: ast.Module) -> set[int]:
    return {n.lineno for n in tree.body}


class CliValue(str):
    """A parameter value as typed on a command line (`-p NAME VALUE`): converted by YAML rules
    wherever it goes (a notebook, a playbook's steps), unless the parameter is a `str`."""


def cli_values(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """`-p NAME VALUE` pairs as a mapping; a name given twice is an error, not the last one."""
    values: dict[str, Any] = {}
    for name, value in pairs or []:
        if name in values:
            raise ParameterError(
                f"parameter {name!r} is given twice (-p {name} {values[name]}, then"
                f" -p {name} {value}); pass it once"
            )
        values[name] = CliValue(value)
    return values


def check_secrets(
    notebook: str | Path, values: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> None:
    """Every `secret:NAME` value names a variable set (non-empty) in `environ` (default
    `os.environ`): checked before a kernel starts, not inside it."""
    env = os.environ if environ is None else environ
    for name, value in values.items():
        if is_secret_ref(value):
            var = secret_env(value)
            if not env.get(var):
                raise ParameterError(
                    f"{notebook}: parameter {name!r} = {str(value)!r}, but {var} is not set"
                    f" {'(it is empty)' if var in env else 'in the environment'};"
                    f" export {var}=... before the run"
                )


def convert(
    notebook: str | Path, values: Mapping[str, Any], *, from_cli: bool = False
) -> dict[str, Any]:
    """Check and convert `values` against the notebook's parameters; raises ParameterError."""
    declared = read_parameters(notebook)
    converted: dict[str, Any] = {}
    for name, value in values.items():
        if name not in declared:
            known = ", ".join(declared) or "none (tag a cell `parameters`)"
            raise ParameterError(
                f"{notebook}: unknown parameter {name!r}; known parameters: {known}"
            )
        param = declared[name]
        if is_secret_ref(value):
            env_name = secret_env(value)
            if not _ENV_NAME.fullmatch(env_name):
                raise ParameterError(
                    f"{notebook}: parameter {name!r} = {value!r} is not a valid secret reference;"
                    " write secret:ENV_VAR_NAME"
                )
            converted[name] = value
            continue
        typed = _convert_one(notebook, param, value, from_cli)
        if isinstance(typed, str) and typed and SECRET_NAME.search(name):
            raise ParameterError(
                f"{notebook}: parameter {name!r} looks like a secret and got a plain value;"
                f" pass secret:NAME instead (e.g. -p {name} secret:OPENAI_API_KEY)"
            )
        converted[name] = typed
    return converted


def _convert_one(notebook: str | Path, param: Parameter, value: Any, from_cli: bool) -> Any:
    annotation = param.annotation
    if isinstance(value, CliValue):
        from_cli, value = True, str(value)
    if from_cli and isinstance(value, str) and not _wants_str(annotation):
        with contextlib.suppress(yaml.YAMLError):  # else validated as the string it is
            value = yaml.safe_load(value)
    try:
        adapter = TypeAdapter(annotation, config=_FINITE)
        return adapter.validate_python(value, strict=_strict(annotation))
    except ValidationError as exc:
        wanted = param.type or type(param.default).__name__
        raise ParameterError(
            f"{notebook}: parameter {param.name!r} expects {wanted}, got {value!r}"
            f" ({type(value).__name__}): {exc.errors()[0]['msg']}"
        ) from exc
    except Exception as exc:  # an annotation pydantic cannot check: accept as it is
        if isinstance(exc, ParameterError):
            raise
        return value


_FINITE = ConfigDict(allow_inf_nan=False)  # a float parameter is never nan or inf


def _wants_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return False
    args = typing.get_args(annotation)
    return str in args and all(a in (str, type(None)) for a in args)


def _strict(annotation: Any) -> bool:
    # Strict for plain scalars so "3" does not become 3 silently, but let int pass as float.
    return annotation in (int, bool, str)


def describe_parameters(notebook: str | Path) -> str:
    """A table of the notebook's parameters for `aikit params`."""
    params = read_parameters(notebook)
    if not params:
        return f"{notebook} has no parameters cell (tag a code cell `parameters`)"
    rows = [("name", "type", "default", "help")]
    rows += [
        (p.name, p.type or type(p.default).__name__, repr(p.default), p.help)
        for p in params.values()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()
        for r in rows
    )
