"""Metrics: plain functions `(output, expected, **options) -> float` in [0, 1].

Any function of that shape is a metric (`evaluate` calls it with keyword options bound by
`functools.partial`). A metric returns None (or NaN) when it cannot score a sample: that sample
is *unscored*, counted apart from a wrong answer, never averaged in as 0.
"""

from __future__ import annotations

import collections
import json
import math
import re
import string
import unicodedata
from typing import Any, Literal

from aikit._structured import strip_fences

__all__ = [
    "contains",
    "edit_ratio",
    "embedding_similarity",
    "exact_match",
    "json_schema",
    "json_valid",
    "keywords",
    "normalize",
    "numeric_match",
    "regex_match",
    "token_f1",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def normalize(text: Any) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles (a, an, the), one space."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _expected_list(expected: Any) -> list[Any]:
    return list(expected) if isinstance(expected, list | tuple | set | frozenset) else [expected]


def exact_match(output: Any, expected: Any, *, normalized: bool = True) -> float:
    """1.0 if the output equals the expected answer (or any of a list of them), after
    `normalize` unless `normalized=False`."""
    prep = normalize if normalized else str
    return float(any(prep(output) == prep(e) for e in _expected_list(expected)))


def contains(
    output: Any,
    expected: Any,
    *,
    ignore_case: bool = True,
    mode: Literal["any", "all"] = "any",
) -> float:
    """1.0 if the output contains the expected string; with a list, any (default) or all."""
    if mode not in ("any", "all"):
        raise ValueError(f"mode={mode!r}; use 'any' or 'all'")
    text = str(output)
    needles = [str(e) for e in _expected_list(expected)]
    if ignore_case:
        text, needles = text.casefold(), [n.casefold() for n in needles]
    found = [n in text for n in needles]
    return float(any(found) if mode == "any" else all(found))


_NUMBER_WORDS = dict(
    zip(
        ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
        map(str, range(1, 11)),
        strict=True,
    )
) | {"first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th"}


def _words(text: Any) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", str(text).lower())  # 1,500 -> 1500
    return " ".join(_NUMBER_WORDS.get(w, w) for w in re.findall(r"[a-z0-9]+", text))


def keywords(output: Any, expected: Any) -> float | None:
    """1.0 if every expected keyword appears in the output as whole words, after lower-casing,
    dropping thousands separators and writing number words as digits ("two" is "2"); None
    (unscored) when there is no keyword to look for."""
    wanted = [_words(k) for k in _expected_list(expected) if _words(k)]
    if not wanted:
        return None
    said = _words(output)
    return float(all(re.search(rf"\b{re.escape(k)}\b", said) for k in wanted))


def regex_match(output: Any, expected: Any, *, flags: int = 0, full: bool = False) -> float:
    """1.0 if the regular expression `expected` matches somewhere in the output (the whole
    output with `full=True`)."""
    pattern = re.compile(str(expected), flags)
    found = pattern.fullmatch(str(output).strip()) if full else pattern.search(str(output))
    return float(found is not None)


def json_valid(output: Any, expected: Any = None) -> float:
    """1.0 if the output parses as JSON (a ```json fence around it is allowed)."""
    try:
        json.loads(strip_fences(str(output)))
    except ValueError:
        return 0.0
    return 1.0


def json_schema(output: Any, expected: Any = None, *, schema: Any = None) -> float:
    """1.0 if the output is JSON that validates against `schema` (a pydantic model class; or a
    JSON-schema dict, checked for required keys and top-level property types)."""
    schema = expected if schema is None else schema
    if schema is None:
        raise ValueError("json_schema needs schema= (a pydantic model or a JSON-schema dict)")
    text = strip_fences(str(output))
    if isinstance(schema, type):
        from pydantic import BaseModel, ValidationError

        if issubclass(schema, BaseModel):
            try:
                schema.model_validate_json(text)
            except ValidationError:
                return 0.0
            return 1.0
    try:
        value = json.loads(text)
    except ValueError:
        return 0.0
    return float(_fits(value, dict(schema)))


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        ok = any(
            isinstance(value, _TYPES[k]) and not (k in ("integer", "number") and value is True)
            for k in kinds
            if k in _TYPES
        )
        if not ok:
            return False
    if isinstance(value, dict):
        if any(key not in value for key in schema.get("required", [])):
            return False
        props = schema.get("properties", {})
        return all(_fits(value[k], props[k]) for k in props if k in value)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return all(_fits(v, schema["items"]) for v in value)
    if "enum" in schema:
        return value in schema["enum"]
    return True


def _first_number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    found = _NUMBER.search(str(value))
    if found is None:
        return None
    try:
        return float(found.group().replace(",", ""))
    except ValueError:
        return None


def numeric_match(
    output: Any, expected: Any, *, tolerance: float = 0.0, relative: bool = False
) -> float:
    """1.0 if the first number in the output is within `tolerance` of the expected number
    (absolute, or a fraction of |expected| with `relative=True`); 0.0 if there is no number."""
    got, want = _first_number(output), _first_number(expected)
    if want is None:
        raise ValueError(f"numeric_match: expected={expected!r} holds no number")
    if got is None:
        return 0.0
    allowed = tolerance * abs(want) if relative else tolerance
    return float(abs(got - want) <= allowed + 1e-12)


def token_f1(output: Any, expected: Any) -> float:
    """SQuAD token F1 between the normalised output and expected answer (best over a list)."""
    return max(
        _f1(normalize(output).split(), normalize(e).split()) for e in _expected_list(expected)
    )


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def edit_ratio(output: Any, expected: Any, *, normalized: bool = False) -> float:
    """Similarity of the two strings: 1 - Levenshtein distance / length of the longer one."""
    a, b = (normalize(output), normalize(expected)) if normalized else (str(output), str(expected))
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def embedding_similarity(output: Any, expected: Any, *, embedder: Any = "local") -> float:
    """Cosine similarity of the two texts' embeddings, clipped to [0, 1]. `embedder` is an
    `aikit.rag.get_embedder` spec (`local`, `openai:MODEL`) or any object with `.embed(texts)`;
    the specs need the `rag` extra (`pip install 'aikit[rag]'`)."""
    if not hasattr(embedder, "embed"):
        from aikit.rag import get_embedder

        embedder = get_embedder(embedder)
    vectors = embedder.embed([str(output), str(expected)])
    a, b = (list(map(float, v)) for v in vectors)
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    if norm == 0:
        return 0.0
    return max(0.0, min(1.0, sum(x * y for x, y in zip(a, b, strict=True)) / norm))


def passed(score: float, threshold: float = 0.5) -> bool:
    """Whether a score counts as a pass (`compare`'s regressions and the explorer's filter)."""
    return score >= threshold
