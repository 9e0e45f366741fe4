"""Structured output at the speed of plain text (the embedded server, issue 14).

With a JSON schema, llama.cpp constrains every sampled token with a grammar. llama-cpp-python
applies the grammar to every candidate before it picks one, and Gemma's vocabulary has 262,144
tokens, so each token of a structured answer cost about five times a plain one (a judge's
verdict of 180 tokens took 25 s).

`GrammarLast` does what llama.cpp's own server does: for a greedy answer (temperature 0, no
frequency or presence penalty, no logits processor) it takes the most likely token, after the
repeat penalty exactly as llama.cpp applies it, and asks the grammar about that one token; if
refused, about the next most likely, down a short list. The first token the grammar allows is
the answer the full check would have given (the greedy pick among allowed tokens is the most
likely allowed one), and the grammar's state moves on with it. Only when no token on the list
is allowed does the full check run. Sampling at a
temperature keeps llama-cpp-python's own path.
`tests/test_local_live.py` checks that both paths give the same text.

`strict_json_strings` fixes llama-cpp-python's JSON-schema grammar, whose string character is
`[^"\\]`: it lets a raw newline or tab into a string, which is not JSON, and a tiny judge
writing one line per sentence then gave verdicts that did not parse (`Invalid JSON: control
character`). llama.cpp's own converter excludes them, as JSON does.

`unit_interval_numbers` makes the same grammar keep a number inside `minimum: 0, maximum: 1`
(the judges' `score`): llama-cpp-python ignores numeric bounds (a TODO in its converter), so a
tiny judge wrote `"score": 5` and the verdict was unscored; once `reason` had a `maxLength`,
that was the most common way a verdict failed.
"""

from __future__ import annotations

import ctypes
import math
from collections import deque
from typing import Any

# A JSON string character (RFC 8259): anything but a quote, a backslash or a control character,
# or an escape. llama.cpp's json-schema-to-grammar uses the same class.
HEX = " ".join(["[0-9a-fA-F]"] * 4)
JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" ' + HEX + ")"


def strict_json_strings() -> None:
    """Make llama-cpp-python's schema grammars admit only JSON's string characters."""
    from llama_cpp import llama_grammar

    llama_grammar.PRIMITIVE_RULES["char"] = llama_grammar.BuiltinRule(JSON_CHAR, [])


# A JSON number from 0 to 1: 0, 1, 0.25 (up to four decimals), 1.0.
UNIT_NUMBER = '("0" ("." [0-9] [0-9]? [0-9]? [0-9]?)? | "1" ("." "0" "0"? "0"? "0"?)?) space'
UNIT_INTEGER = '("0" | "1") space'


def unit_interval_numbers() -> None:
    """Make llama-cpp-python's schema grammars keep a number with `minimum` 0 and `maximum` 1
    inside that interval (other bounds stay unchecked, as before)."""
    from llama_cpp import llama_grammar

    converter = llama_grammar.SchemaConverter
    if getattr(converter.visit, "aikit_unit_interval", False):
        return
    visit = converter.visit

    def bounded(self: Any, schema: dict[str, Any], name: str) -> Any:
        kind = schema.get("type")
        if (
            kind in ("number", "integer")
            and schema.get("minimum") == 0
            and schema.get("maximum") == 1
            and not {"exclusiveMinimum", "exclusiveMaximum", "const", "enum"} & set(schema)
        ):
            reserved = name in llama_grammar.RESERVED_NAMES
            rule = name + "-" if reserved else name or "root"
            return self._add_rule(rule, UNIT_NUMBER if kind == "number" else UNIT_INTEGER)
        return visit(self, schema, name)  # type: ignore[no-untyped-call]

    bounded.aikit_unit_interval = True  # type: ignore[attr-defined]
    converter.visit = bounded  # type: ignore[method-assign]


SHORTLIST = 64  # tokens asked one by one before the full check over the whole vocabulary


class GrammarLast:
    """Installs itself on a `llama_cpp.Llama`: wraps its `_init_sampler`."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self._init_sampler = llama._init_sampler
        llama._init_sampler = self.init_sampler
        self.quick = 0  # tokens the grammar allowed at first ask
        self.full = 0  # tokens that needed the full check

    def init_sampler(self, **options: Any) -> Any:
        """`Llama._init_sampler`; a greedy sampler with a grammar checks the grammar last."""
        chain = self._init_sampler(**options)
        greedy = (
            options.get("grammar") is not None
            and options.get("temp", 0.8) == 0.0
            and options.get("logits_processor") is None
            and options.get("frequency_penalty", 0.0) == 0.0
            and options.get("presence_penalty", 0.0) == 0.0
        )
        if not greedy:
            return chain
        return _GreedyGrammar(self, chain, options["grammar"], options.get("repeat_penalty", 1.0))


class _GreedyGrammar:
    """The sampler `Llama.generate` uses (`sample(ctx, idx)`), with the grammar asked last."""

    def __init__(self, owner: GrammarLast, chain: Any, grammar: Any, penalty: float) -> None:
        import llama_cpp

        self.owner, self.chain, self.api = owner, chain, llama_cpp
        # llama.cpp's penalties sampler: the last `last_n` tokens sampled by this chain
        last_n = int(owner.llama.last_n_tokens_size)
        if last_n < 0:
            last_n = int(owner.llama.n_ctx())
        self.penalty = penalty if last_n > 0 else 1.0
        self.recent: deque[int] = deque(maxlen=max(last_n, 1))
        vocab = owner.llama._model.vocab
        # a second grammar sampler, kept in step with the chain's, to ask about one token
        self.check = llama_cpp.llama_sampler_init_grammar(
            vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        self.n_vocab = int(owner.llama.n_vocab())

    def __del__(self) -> None:
        if getattr(self, "check", None) is not None:
            self.api.llama_sampler_free(self.check)
            self.check = None

    def _allows(self, token: int) -> bool:
        api = self.api
        data = (api.llama_token_data * 1)(api.llama_token_data(token, 0.0, 0.0))
        candidates = api.llama_token_data_array(data, 1, -1, False)
        api.llama_sampler_apply(self.check, ctypes.byref(candidates))
        return math.isfinite(data[0].logit)

    def sample(self, ctx: Any, idx: int) -> int:
        import numpy as np

        api = self.api
        logits = np.ctypeslib.as_array(
            api.llama_get_logits_ith(ctx.ctx, idx), shape=(self.n_vocab,)
        )
        if self.penalty != 1.0 and self.recent:
            logits = logits.copy()
            seen = np.fromiter(set(self.recent), dtype=np.int64)
            values = logits[seen]
            penalty = np.float32(self.penalty)
            logits[seen] = np.where(values <= 0, values * penalty, values / penalty)
        # The most likely tokens, best first (ties: lowest id first, as llama.cpp's greedy):
        # the first the grammar allows is the full check's pick, if it beats every token left out.
        top = np.argpartition(-logits, SHORTLIST)[:SHORTLIST]
        top = top[np.lexsort((top, -logits[top]))]
        floor = logits[top[-1]]
        token = next((int(t) for t in top if self._allows(int(t))), None)
        if token is not None and logits[token] > floor:
            self.owner.quick += 1
            api.llama_sampler_accept(self.chain.sampler, token)  # the chain's grammar moves on
        else:
            self.owner.full += 1
            token = int(self.chain.sample(ctx, idx))  # the full check, then greedy; accepts
        api.llama_sampler_accept(self.check, token)
        self.recent.append(token)
        return token
