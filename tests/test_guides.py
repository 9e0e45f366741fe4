"""The guides are true: every path, `make` target, `aikit` command and option that the README
and the guides in `playbooks/` name exists (issue 14, item 8)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from aikit import cli

ROOT = Path(__file__).resolve().parents[1]
GUIDES = [ROOT / "README.md", *sorted((ROOT / "playbooks").glob("*.md"))]
TOP = ("aikit/", "notebooks/", "playbooks/", "benchmarks/", "tests/", "docs/images/", ".ci/")
# Paths a guide names as an example of what a user makes, or what a run writes: not in the repo.
NOT_IN_REPO = re.compile(r"(NAME|NN_|RUN_|<|\*|\.\.\.|runs/|report\.html|/$)")
CODE = re.compile(r"`([^`\n]+)`")
BLOCK = re.compile(r"```([a-z]*)\n(.*?)```", re.S)
SHELL = {"sh", "bash", "console", "shell"}  # a block without a language is program output


def _snippets(text: str, commands: bool = False) -> list[str]:
    blocks = [body for lang, body in BLOCK.findall(text) if not commands or lang in SHELL]
    inline = CODE.findall(BLOCK.sub("", text))
    return inline + [line for block in blocks for line in block.splitlines()]


def _paths(guide: Path) -> set[str]:
    found = set()
    for snippet in _snippets(guide.read_text(encoding="utf-8")):
        for word in re.split(r"[\s\"'(),=:\[\]]+", snippet):
            word = word.rstrip(".;")
            if word.startswith(TOP) and not NOT_IN_REPO.search(word):
                found.add(word)
    return found


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_path_a_guide_names_exists(guide: Path) -> None:
    paths = _paths(guide)
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"{guide.name} names paths that do not exist: {missing}"


def test_the_path_check_sees_paths() -> None:
    assert {"playbooks/onboarding.yaml", "notebooks/00_quickstart.ipynb"} <= _paths(
        ROOT / "README.md"
    )


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, re.M))


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def _commands(snippet: str) -> list[str]:
    """The shell commands in a snippet (split at && ; |), without env assignments or a path."""
    commands = []
    for part in re.split(r"&&|;|(?<!\\)\|", snippet):
        words = part.split()
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words:
            words[0] = words[0].rsplit("/", 1)[-1]
            commands.append(" ".join(words))
    return commands


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_make_target_and_aikit_command_a_guide_names_exists(guide: Path) -> None:
    text = guide.read_text(encoding="utf-8")
    targets, subcommands = _make_targets(), _subcommands()
    problems, seen = [], 0
    for snippet in _snippets(text, commands=True):
        for command in _commands(snippet):
            words = command.split()
            if not words:
                continue
            if words[0] == "make" and len(words) > 1 and words[1] not in targets:
                problems.append(command)
            if words[0] != "aikit" or len(words) < 2 or not re.fullmatch(r"[a-z-]+", words[1]):
                continue
            seen += 1
            if words[1] not in subcommands:
                problems.append(f"aikit {words[1]}")
                continue
            known = {o for a in subcommands[words[1]]._actions for o in a.option_strings}
            for option in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", " ".join(words[2:])):
                if option not in known:
                    problems.append(f"aikit {words[1]} {option}")
    assert not problems, f"{guide.name} names what does not exist: {sorted(set(problems))}"
    if guide == ROOT / "README.md":
        assert seen > 10  # the check sees the README's commands


def test_readme_says_what_to_do_first_before_the_reference() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = text.index("make lab")
    assert first < text.index("## Configuration")
    assert text.index("00_quickstart", first) < text.index("## Configuration")


def test_playbooks_readme_covers_every_notebook_and_make_lab() -> None:
    text = (ROOT / "playbooks" / "README.md").read_text(encoding="utf-8")
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert notebook.name in text, notebook.name
    assert "make lab" in text and "pip install jupyterlab" not in text
    assert "-p api_key" not in text  # no notebook has such a parameter


def test_the_readme_command_table_names_every_option_of_aikit_run() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `aikit run "))
    actions = [
        a
        for a in _subcommands()["run"]._actions
        if a.option_strings and "--help" not in a.option_strings
    ]
    missing = sorted(
        a.option_strings[-1] for a in actions if not any(o in row for o in a.option_strings)
    )
    assert not missing, f"the README's `aikit run` row misses {missing}"
