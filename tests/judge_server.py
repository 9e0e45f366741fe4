"""A judge on 127.0.0.1 for tests: an OpenAI-compatible server (`openai_server.OpenAIServer`)
whose answers to aikit's judge prompts are verdicts decided by a fixed rule, so judge-backed
metrics can be tested end to end through the openai SDK without a model.

- A claim-support prompt (`Passages:` ... `Claim:`): supported when at least 3/4 of the claim's
  content words (crudely stemmed; and every number in it) appear in the passages. A
  word-overlap rule, not understanding: it stands in for a judge model, deterministically.
- Any other judge prompt (`Question:` ... `Answer to grade:`): score = the share of the
  question's content words found in the answer, passed when >= 0.5.
- `garbage=True`: every answer is text that is not a verdict (the judge is then unscored).
"""

from __future__ import annotations

import json
import re
from typing import Any

from openai_server import OpenAIServer

_STOPWORDS = (
    "a an and are as at be by can do does for from has have how i in is it its my of on or our"
    " per than that the their there these they this to up was we were what when where which who"
    " why will with within you your also all every each"
)
STOPWORDS = frozenset(_STOPWORDS.split())
_NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve"
NUMBER_WORDS = {w: str(n) for n, w in enumerate(_NUMBERS.split())}


def stem(word: str) -> str:
    """A crude stemmer: "completed", "complete" and "completes" all become "complet"."""
    for suffix in ("ing", "ed", "es", "s", "e"):
        if len(word) > 4 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def words(text: str) -> set[str]:
    """Content words, stemmed, lower case, number words as digits, no thousands separators."""
    tokens = re.findall(r"[a-z0-9]+(?:[.,:][0-9]+)*", text.lower())
    out = {NUMBER_WORDS.get(t, t.replace(",", "")) for t in tokens}
    return {stem(t) for t in out if t not in STOPWORDS and (len(t) > 2 or t.isdigit())}


def supported(claim: str, passages: str) -> bool:
    """The rule: >= 3/4 of the claim's content words, and all its numbers, in the passages."""
    wanted, found = words(claim), words(passages)
    if not wanted:
        return False
    numbers = {w for w in wanted if w[0].isdigit()}
    return numbers <= found and len(wanted & found) >= 0.75 * len(wanted)


def verdict(prompt: str) -> dict[str, Any]:
    """The verdict the rule gives for one of aikit's judge prompts."""
    if "\nClaim:" in prompt and "\nPassages:" in prompt:
        passages = prompt.split("\nPassages:", 1)[1].split("\nClaim:", 1)[0]
        claim = prompt.split("\nClaim:", 1)[1].split("\nReply with", 1)[0].strip()
        ok = supported(claim, passages)
        return {"reason": "word overlap", "score": float(ok), "passed": ok}
    question = re.search(r"\nQuestion: (.*)\n", prompt)
    answer = prompt.split("Answer to grade:", 1)[-1].split("\nReply with", 1)[0]
    asked = words(question.group(1)) if question else set()
    score = len(asked & words(answer)) / len(asked) if asked else 0.0
    return {"reason": "word overlap", "score": round(score, 3), "passed": score >= 0.5}


class JudgeServer(OpenAIServer):
    """`OpenAIServer` answering judge prompts by `verdict`, or with garbage."""

    def __init__(self, port: int = 0, *, garbage: bool = False) -> None:
        super().__init__(port)
        self.garbage = garbage

    def next_reply(self, request: dict[str, Any]) -> Any:
        with self.lock:
            if self.queue:
                return self.queue.popleft()
        users = [m for m in request.get("messages", []) if m.get("role") == "user"]
        prompt = str(users[-1]["content"]) if users else ""
        if self.garbage:
            return "I think it is mostly fine, probably."
        return json.dumps(verdict(prompt))
