"""The shape of the package stays what the README's Layout says: one name, one thing; one
module per concept, none too long; no import cycle; one place that branches on the provider;
every error class in `errors.py`; sync wrappers that show every argument of their cores."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import ROOT

import aikit

PACKAGE = ROOT / "aikit"
MAX_LINES = 500  # split a module before it grows past that


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _top_level_imports(path: Path, name: str, typing: bool = False) -> set[str]:
    """aikit modules imported when `name` is imported (not inside functions; inside
    `if TYPE_CHECKING:` only with `typing`, where a type checker follows them)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in tree.body:
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        defs = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef  # run later, not at import
        for sub in ast.walk(node) if not isinstance(node, defs) else []:
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names if a.name.startswith("aikit")}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - sub.level + 1])
                    base = f"{base}.{sub.module}" if sub.module else base
                if base.startswith("aikit"):
                    found.add(base)
                    found |= {f"{base}.{a.name}" for a in sub.names}
    return found


def test_no_exported_name_is_also_a_module() -> None:
    for name in aikit.__all__:
        assert importlib.util.find_spec(f"aikit.{name}") is None, f"aikit.{name} is a module too"
        value = getattr(aikit, name)
        assert not isinstance(value, types.ModuleType)


def test_every_module_the_docs_name_imports_as_a_module() -> None:
    for name in sorted(aikit.MODULES):
        module = importlib.import_module(f"aikit.{name}")
        assert getattr(aikit, name) is module
    docs = [ROOT / "README.md", *sorted((ROOT / "playbooks").glob("*.md"))]
    text = "\n".join(p.read_text() for p in docs) + "\n" + (PACKAGE / "__init__.py").read_text()
    named = set(re.findall(r"\baikit\.([a-z][a-z_]*)\.([a-zA-Z_]+)", text))
    assert named, "the docs name no aikit.module.name"
    for module_name, attr in sorted(named):
        module = importlib.import_module(f"aikit.{module_name}")
        assert isinstance(module, types.ModuleType), f"aikit.{module_name} is not a module"
        assert hasattr(module, attr) or importlib.util.find_spec(f"aikit.{module_name}.{attr}"), (
            f"the docs name aikit.{module_name}.{attr}, which does not exist"
        )


def test_no_module_is_too_long() -> None:
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"


@pytest.mark.parametrize("typing", [False, True], ids=["runtime", "with-TYPE_CHECKING"])
def test_no_import_cycle(typing: bool) -> None:
    modules = _modules()

    def ancestors(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _top_level_imports(path, name, typing):
            # importing a.b.c runs a/__init__ and a/b/__init__ first (unless already running)
            targets |= {imported, *ancestors(imported)} - ancestors(name) - {name}
        graph[name] = {m for m in targets if m in modules}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_private_llm_name_is_used_outside_llm() -> None:
    for name, path in _modules().items():
        if name == "aikit.llm":
            continue
        text = path.read_text()
        assert not re.search(r"\bllm\._[a-z]", text), f"{path} uses a private name of llm"
        assert not re.search(r"from aikit\.llm import[^\n]*\b_[a-z]", text), path


def test_the_provider_is_branched_on_in_one_function() -> None:
    branches = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if not isinstance(node, ast.Compare):
                    continue
                sides = [node.left, *node.comparators]
                names = {ast.unparse(side) for side in sides}
                if any("provider" in n for n in names) and {"'local'", "'openai'"} & names:
                    branches.append(f"{name}.{func.name}")
    assert sorted(set(branches)) == ["aikit.provider.resolve_endpoint"]


def test_every_error_class_is_in_errors() -> None:
    for name, path in _modules().items():
        if name == "aikit.errors":
            continue
        defined = re.findall(r"^class (\w+(?:Error|Exception))\b", path.read_text(), re.M)
        assert defined == [], f"{path} defines {defined}; put error classes in aikit/errors.py"
    from aikit import errors

    for cls_name in errors.__all__:
        assert issubclass(getattr(errors, cls_name), errors.AikitError)


def test_sync_wrappers_show_every_argument_of_their_cores() -> None:
    from aikit import rag

    for sync, core in (
        (aikit.chat, aikit.achat),
        (aikit.batch, aikit.abatch),
        (rag.answer, rag.aanswer),
    ):
        assert inspect.signature(sync) == inspect.signature(core)
        assert sync.__doc__ and sync.__name__ == core.__name__.removeprefix("a")
    chat_args = set(inspect.signature(aikit.chat).parameters)
    assert {"repeat", "client", "settings", "raise_on_invalid"} <= chat_args
    batch_args = set(inspect.signature(aikit.batch).parameters)
    assert {"system", "temperature", "max_tokens", "max_retries", "client", "settings"} <= (
        batch_args
    )


def test_mypy_sees_the_wrappers_arguments(tmp_path: Path) -> None:
    snippet = tmp_path / "use.py"
    snippet.write_text(
        "import aikit\n"
        "from aikit import rag\n"
        "reply: aikit.Reply = aikit.chat('hi', repeat=1, raise_on_invalid=True)\n"
        "aikit.chat('hi', repeat='one')\n"
        "aikit.batch(['a'], max_retries='3')\n"
        "rag.answer('q', None, k='4')\n"
    )
    done = subprocess.run(
        # incremental: `make test` type-checks aikit just before, so its cache is warm
        [sys.executable, "-m", "mypy", str(snippet)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    errors = [ln for ln in done.stdout.splitlines() if ": error:" in ln]
    lines = sorted(int(ln.split(":")[1]) for ln in errors)
    assert lines == [4, 5, 6, 6], done.stdout


def test_importing_prompts_does_not_import_pandas() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, aikit.prompts; print('pandas' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"


def _calls_named(tree: ast.AST, names: set[str]) -> list[ast.Call]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in names:
                found.append(node)
    return found


def test_context_vars_are_only_the_listed_ambient_ones() -> None:
    from aikit._ambient import AMBIENT_CONTEXT

    made: dict[str, str] = {}
    for name, path in _modules().items():
        for call in _calls_named(ast.parse(path.read_text()), {"ContextVar"}):
            first = call.args[0] if call.args else None
            assert isinstance(first, ast.Constant), f"{path}:{call.lineno}: name the ContextVar"
            made[str(first.value)] = f"{name}:{call.lineno}"
    unlisted = {var: where for var, where in made.items() if var not in AMBIENT_CONTEXT}
    assert unlisted == {}, "control goes in parameters (llm.CallPolicy); see aikit/_ambient.py"
    assert sorted(made) == sorted(AMBIENT_CONTEXT), "aikit/_ambient.py lists a ContextVar gone"


def test_openai_clients_are_constructed_in_one_module() -> None:
    sdk_classes = {"OpenAI", "AsyncOpenAI", "AzureOpenAI", "AsyncAzureOpenAI"}
    places = sorted(
        f"{name}:{call.lineno}"
        for name, path in _modules().items()
        for call in _calls_named(ast.parse(path.read_text()), sdk_classes)
    )
    assert places and all(p.startswith("aikit._clients:") for p in places), places


def _imports_anywhere(path: Path, name: str) -> set[str]:
    """Every aikit module or name `name` imports, also inside functions and TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("aikit")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base.startswith("aikit"):
                found |= {base, *(f"{base}.{a.name}" for a in node.names)}
    return found


def test_no_private_name_is_imported_across_packages() -> None:
    """`aikit.pkg._name` (a private module or name of a subpackage) is only used inside
    `aikit.pkg`; aikit's own top-level `aikit._name` helpers are shared by every package."""
    crossings = []
    for name, path in _modules().items():
        if name == "aikit":  # the lazy loader of the public names
            continue
        for imported in _imports_anywhere(path, name):
            parts = imported.split(".")
            for depth in range(2, len(parts)):
                if parts[depth].startswith("_"):
                    owner = ".".join(parts[:depth])
                    if owner != "aikit" and not (name == owner or name.startswith(owner + ".")):
                        crossings.append(f"{name} imports {imported}")
                    break
    assert crossings == []


def test_ask_and_achat_take_their_arguments_from_one_definition() -> None:
    import dataclasses

    from aikit import llm

    fields = {f.name: f for f in dataclasses.fields(llm.Ask)}
    core = inspect.signature(llm.achat).parameters
    own = {"client", "settings", "stream", "guards", "params", "prompt_or_messages"}
    assert set(core) - own == set(fields) - {"params", "prompt"}
    for name in set(fields) - {"params", "prompt"}:
        assert core[name].default == fields[name].default, name
    assert core["params"].kind is inspect.Parameter.VAR_KEYWORD
