"""The transcript format of the embedded model, shared by its server (which renders chat
messages with it) and the token counter (which counts what the server will see).

Gemma 3 270M is a base model: in its own chat template it repeats itself, so chat messages are
rendered as a few-shot transcript ("User: ...\\nAssistant: ...") that stops at the next turn.
Default examples are added only when the conversation has no assistant turn of its own.
"""

from __future__ import annotations

from typing import Any

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
