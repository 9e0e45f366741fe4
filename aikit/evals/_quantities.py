"""The numbers a text asserts, read the way people write them, for the claim test's check 2.

- digits (`1,800` as `1800`) and number words ("fourteen", "twenty-four", "two and a half");
- clock times, all as 24-hour `HH:MM`: "18:30", "6.30pm", "6 p.m.", "half past six in the
  evening", "six o'clock", "noon", "midnight". A time that does not say which half of the day
  ("half past eight") reads as the one the passage has, if it has either;
- and, in `unexplained`, a claim number the passage does not write but does state: the same
  duration in other units ("two weeks" for "14 days", "three months" for "90 days"), an hour
  on the passage's clock ("opens at nine" for "09:00"), the hours between two of its times
  ("open nine hours" for 08:30 to 17:30), the difference of two of its numbers of one measure
  that the claim names when the claim compares ("30 kroner more" for 55 and 85 kroner), or
  their ratio when it multiplies ("five times the standard 2 GB" for 10 GB, "half as many weeks").

No other arithmetic is tried: a changed number is still a number the passage cannot give.
"""

from __future__ import annotations

import itertools
import re
from typing import NamedTuple

__all__ = ["Numbers", "numbers_in", "read_numbers", "singular", "unexplained", "without_times"]

_UNITS_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen"
_UNITS_WORDS += " fourteen fifteen sixteen seventeen eighteen nineteen"
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70}
_TENS |= {"eighty": 80, "ninety": 90}
_VALUES: dict[str, int] = {w: n for n, w in enumerate(_UNITS_WORDS.split())} | _TENS
NUMBER_WORDS: dict[str, str] = {w: str(n) for w, n in _VALUES.items()} | {
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5",
    "twice": "2", "hourly": "1", "daily": "1", "hundred": "100", "dozen": "12", "single": "1",
    "half": "0.5",
}  # fmt: skip

_WORD = "|".join(sorted(_VALUES, key=len, reverse=True))
_HOUR = rf"(?:\d{{1,2}}|{_WORD})"
_DIGITS = re.compile(r"\d+(?:[.,:]\d+)*")
_COMPOUND = re.compile(rf"\b({'|'.join(_TENS)})[- ]({_WORD})\b")
_AND_A_HALF = re.compile(rf"\b(\d+|{_WORD}) and a half\b")
_HALF_A = re.compile(r"\bhalf(?= an? | ?-)(?: an? )?")  # "half an hour", "half-hour": 0.5 hour
# A clock time: the hour with at least one mark of a time (minutes after a colon, "half past",
# "o'clock", am/pm, "in the morning"); the marks are checked in `_clock_times`.
_TIME = re.compile(
    rf"\b(?:(?P<frac>half|quarter)\s+(?P<rel>past|to)\s+)?(?P<h>{_HOUR})"
    r"(?:[:.](?P<m>\d\d)(?!\d))?(?:\s*(?P<oclock>o'clock|o’clock))?"
    r"(?:\s*(?P<ampm>[ap])\.?m\b\.?)?"
    r"(?:\s+(?:in\s+the\s+(?P<part>morning|afternoon|evening)|at\s+(?P<night>night)))?",
    re.IGNORECASE,
)
_CLOCK = re.compile(r"\d\d:\d\d")
_CURRENCY = frozenset("£$€¥")
_MEASURE_TOKEN = re.compile(r"[£$€¥%]|\d+(?:\.\d+)?|[a-z]+")
_NAMED = {"noon": (12, 0), "midday": (12, 0), "midnight": (0, 0)}
_NAMED_TIME = re.compile(r"\b(noon|midday|midnight)\b", re.IGNORECASE)
# Units of time, in minutes (a month as 30 days, a year as 365; see `_same_duration`).
_DURATION = {
    "minute": 1, "min": 1, "hour": 60, "hr": 60, "day": 1440, "night": 1440, "week": 10080,
    "fortnight": 20160, "month": 43200, "year": 525600,
}  # fmt: skip
_QUANTITY = re.compile(rf"\b(\d+(?:\.\d+)?|{_WORD})[- ]({'|'.join(_DURATION)})s?\b")
_COMPARING = frozenset(
    re.split(" ", "more less fewer longer shorter later earlier extra saves save saving cheaper")
)
_MULTIPLYING = frozenset(re.split(" ", "times twice double doubles triple treble half"))
# Words after which a bare hour reads as a clock time ("opens at nine", "from 9 to 5").
_CLOCK_BEFORE = frozenset(re.split(" ", "at from until till to by before after between and"))
_CLOCK_AFTER = frozenset(re.split(" ", "and to until till on each every daily sharp or , . ;"))


def singular(word: str) -> str:
    """A plural's singular, crudely ("weeks" -> "week", "kroner" kept; short words kept)."""
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _value(word: str) -> int:
    return int(word) if word.isdigit() else _VALUES[word.lower()]


def _clock_times(text: str) -> tuple[list[tuple[str, ...]], str]:
    """The clock times of `text` (each as its possible `HH:MM` readings, one or two) and the
    text with them blanked out."""
    times: list[tuple[str, ...]] = []

    def read(m: re.Match[str]) -> str:
        marks = m["m"] or m["oclock"] or m["ampm"] or m["part"] or m["night"] or m["frac"]
        if not marks or (m["m"] and ":" not in m[0] and not m["ampm"] and not m["part"]):
            return m[0]  # a plain number, or a decimal such as 66.50
        hour, minute = _value(m["h"]), int(m["m"] or 0)
        if m["frac"]:
            minute = 30 if m["frac"].lower() == "half" else 15
            if m["rel"].lower() == "to":
                hour, minute = (hour - 1) % 24, 45 if minute == 15 else 30
        if hour > 23 or minute > 59:
            return m[0]
        if m["ampm"] or m["part"] or m["night"]:
            part = (m["part"] or "").lower()
            evening = (m["ampm"] or "").lower() == "p" or part in ("afternoon", "evening")
            if m["night"]:
                evening = 6 <= hour < 12
            hour = hour % 12 + (12 if evening else 0)
            readings: tuple[int, ...] = (hour,)
        elif hour == 12:
            readings = (12, 0)
        elif hour < 12 and not (m["m"] and m["h"].startswith("0")):
            readings = (hour, hour + 12)  # "half past eight": 08:30 or 20:30
        else:
            readings = (hour,)
        times.append(tuple(f"{h:02d}:{minute:02d}" for h in readings))
        return " "

    text = _TIME.sub(read, text)

    def named(m: re.Match[str]) -> str:
        hour, minute = _NAMED[m[1].lower()]
        times.append((f"{hour:02d}:{minute:02d}",))
        return " "

    return times, _NAMED_TIME.sub(named, text)


def _normalised(text: str) -> str:
    """`text` lower-cased, with "two and a half" as 2.5 and "twenty-four" as 24."""
    lowered = _AND_A_HALF.sub(lambda m: f"{_value(m[1])}.5", text.lower())
    lowered = _HALF_A.sub(lambda m: "0.5" if m[0] == "half" else "0.5 ", lowered)
    return _COMPOUND.sub(lambda m: str(_TENS[m[1]] + _VALUES[m[2]]), lowered)


def without_times(text: str) -> str:
    """`text` with its clock times blanked out (their words, "half", "past", "evening", are
    part of the number, not content words)."""
    return _clock_times(text)[1]


def numbers_in(text: str, against: str | None = None) -> set[str]:
    """The numbers of `text`: digits, number words, clock times as `HH:MM`. A time that could be
    morning or evening takes the reading `against` (a passage) has, else the morning one."""
    times, rest = _clock_times(text)
    known = {t for group in _clock_times(against)[0] for t in group} if against else set()
    found = {next((t for t in group if t in known), group[0]) for group in times}
    lowered = _normalised(rest)
    found |= {m.replace(",", "") for m in _DIGITS.findall(lowered)}
    found |= {NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", lowered) if w in NUMBER_WORDS}
    return found


def _durations(text: str) -> list[tuple[float, str]]:
    """(number, unit) for each duration of `text` with its number ("two weeks", "14-day"; not
    "a year", which may be a price's period: "62 pounds a year")."""
    out = []
    for m in _QUANTITY.finditer(_normalised(without_times(text))):
        word = m[1].lower()
        number = float(word if word[0].isdigit() else _value(word))
        out.append((number, m[2].lower()))
    return out


def _measures(text: str) -> list[tuple[float, str]]:
    """(number, what it counts) for each number of `text` outside its clock times: the word
    after it ("55 kroner", "16 weeks", a plural as its singular) or the currency before it."""
    tokens = _MEASURE_TOKEN.findall(_normalised(without_times(text)).replace(",", ""))
    out = []
    for i, token in enumerate(tokens):
        if not (token[0].isdigit() or token in _VALUES):
            continue
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        before = tokens[i - 1] if i else ""
        if after[:1].isalpha() or after == "%":
            unit = singular(after)
        else:
            unit = before if before in _CURRENCY else ""
        out.append((float(token) if token[0].isdigit() else float(_VALUES[token]), unit))
    return out


def _same_duration(a: float, unit_a: str, b: float, unit_b: str) -> bool:
    """Whether two durations are the same length, within 2% (12 months for 365 days)."""
    x, y = a * _DURATION[unit_a], b * _DURATION[unit_b]
    return unit_a != unit_b and abs(x - y) <= 0.02 * max(x, y)


def _is_plain(number: str) -> bool:
    return re.fullmatch(r"\d+(?:\.\d+)?", number) is not None


class Numbers(NamedTuple):
    """A claim's numbers read against a passage (`read_numbers`)."""

    claim: set[str]  # numbers_in(claim, against=passage)
    unexplained: set[str]  # those the passage neither writes nor states (the module doc)
    restated_units: set[str]  # units of time the passage states otherwise ("hour" of "9 hours")


def unexplained(claim: str, passage: str) -> set[str]:
    """The numbers of `claim` that `passage` neither writes nor states (see the module doc)."""
    return read_numbers(claim, passage).unexplained


def read_numbers(claim: str, passage: str) -> Numbers:
    """The claim's numbers, those `passage` neither writes nor states, and the units of time of
    the claim's durations that the passage states in other units or as a span ("hour" of "nine
    hours" for 08:30 to 17:30): words the passage need not have."""
    claim_numbers, passage_numbers = numbers_in(claim, against=passage), numbers_in(passage)
    missing = claim_numbers - passage_numbers
    claim_durations, passage_durations = _durations(claim), _durations(passage)
    clocks = [int(t[:2]) * 60 + int(t[3:]) for t in passage_numbers if _CLOCK.fullmatch(t)]
    restated: set[str] = set()
    for value, unit in claim_durations:
        spans = (
            {abs(a - b) / _DURATION[unit] for a, b in itertools.combinations(clocks, 2)}
            if unit in ("hour", "minute")
            else set()
        )
        if any(_same_duration(value, unit, n, u) for n, u in passage_durations) or any(
            abs(g - value) < 1e-9 for g in spans
        ):
            restated.add(unit)
    words = set(re.findall(r"[a-z]+", claim.lower()))
    tokens = re.findall(r"[a-z0-9']+|[,.;]", claim.lower())
    # Arithmetic only between two numbers of one measure that the claim names: "30 kroner
    # more" from "55 kroner" and "85 kroner".
    named = {singular(w) for w in words} | set(claim)
    measures = sorted(set(_measures(passage)))
    pairs = [
        (a, b)
        for (a, unit_a), (b, unit_b) in itertools.combinations(measures, 2)
        if unit_a == unit_b and unit_a in named
    ]
    out = set()
    for number in missing:
        if not _is_plain(number):
            out.add(number)
            continue
        value = float(number)
        stated = any(n == value and u in restated for n, u in claim_durations)
        stated = stated or _clock_hour(number, tokens, clocks)
        if words & _COMPARING:
            stated = stated or any(abs(abs(a - b) - value) < 1e-9 for a, b in pairs)
        if words & _MULTIPLYING:
            ratios = {b / a for a, b in pairs if a} | {a / b for a, b in pairs if b}
            stated = stated or any(abs(r - value) < 1e-9 for r in ratios)
        if not stated:
            out.add(number)
    # A number the passage has, of another unit of time: "90 weeks" against "90 days".
    for value, unit in claim_durations:
        same = {u for n, u in passage_durations if n == value}
        if same and unit not in same and unit not in restated:
            out.add(f"{value:g} {unit}s")
    return Numbers(claim_numbers, out, restated)


def _clock_hour(number: str, tokens: list[str], clocks: list[int]) -> bool:
    """A bare hour of the claim ("at nine", "from 9 to 5") that is on the passage's clock."""
    value = float(number)
    if value != int(value) or not 1 <= value <= 12 or not clocks:
        return False
    spelled = {number} | {w for w, n in NUMBER_WORDS.items() if n == number and w in _VALUES}
    for i, token in enumerate(tokens):
        if token not in spelled:
            continue
        before = tokens[i - 1] if i else ""
        after = tokens[i + 1] if i + 1 < len(tokens) else "."
        if before in _CLOCK_BEFORE and after in _CLOCK_AFTER:
            return any(c in (int(value) % 12 * 60, int(value) % 12 * 60 + 720) for c in clocks)
    return False
