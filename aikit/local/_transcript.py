"""How chat messages become an embedded model's prompt, shared by its server (which renders
chat messages with it) and the token counter (which counts what the server will see):
`render_prompt(model, messages)` follows the model table's `prompt_format`.

Gemma 3 270M is a base model: in its own chat template it repeats itself, so chat messages are
rendered as a few-shot transcript ("User: ...\\nAssistant: ...") that stops at the next turn.
Default examples are added only when the conversation has no assistant turn of its own.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aikit.errors import LocalModelError
from aikit.local._models import get_model
from aikit.prompts import content_text

INTRO = (
    "The following is a conversation between a curious User and a helpful, knowledgeable"
    " Assistant. The Assistant answers briefly and correctly."
)
EXAMPLES = [
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Translate 'thank you' into French.", "Merci."),
]
STOP = ["\nUser:", "\n\n"]
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "tool": "Tool", "function": "Tool"}


def render_transcript(messages: list[dict[str, Any]]) -> str:
    """The prompt a base model continues: intro or system text, examples, the turns."""
    system = [
        content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    ]
    turns = [m for m in messages if m.get("role") not in ("system", "developer")]
    parts = ["\n".join(system) if system else INTRO, ""]
    if not any(m.get("role") == "assistant" for m in turns):
        for question, answer in EXAMPLES:
            parts += [f"User: {question}", f"Assistant: {answer}", ""]
    for message in turns:
        name = ROLE_NAMES.get(str(message.get("role")), "User")
        parts.append(f"{name}: {content_text(message.get('content')).strip()}")
        if name == "Assistant":
            parts.append("")
    parts.append("Assistant:")
    return "\n".join(parts)


def render_prompt(model: str, messages: list[dict[str, Any]]) -> str:
    """The prompt the embedded `model` receives for `messages` (what its server renders)."""
    if get_model(model).prompt_format == "transcript":
        return render_transcript(messages)
    return str(gguf_formatter(model)(messages=messages).prompt)


@cache
def gguf_formatter(model: str) -> Any:
    """llama-cpp-python's `Jinja2ChatFormatter` for the chat template in `model`'s GGUF
    metadata, built as `llama_cpp.Llama` builds it (its BOS and EOS texts, stop at EOS)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from aikit.local._vocab import gguf_vocab

    vocab = gguf_vocab(model)
    template = None if isinstance(vocab, str) else vocab.metadata("tokenizer.chat_template")
    if isinstance(vocab, str) or not template:
        why = vocab if isinstance(vocab, str) else "its GGUF has no tokenizer.chat_template"
        raise LocalModelError(f"cannot render a prompt for {model}: {why}")
    return Jinja2ChatFormatter(template=template, eos_token=vocab.eos, bos_token=vocab.bos)
