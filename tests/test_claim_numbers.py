"""The claim test's numbers (check 2): times, durations and simple arithmetic read as people
write them, and a changed number still caught. No model: `aikit.evals._quantities` is text."""

from __future__ import annotations

import pytest

from aikit.evals._quantities import numbers_in, unexplained, without_times

DESK = (
    "The service desk opens at 08:30 and closes at 17:30, with lunch from 12:00 to 13:00. VPN"
    " files expire after 90 days. Staff pay 55 kroner for a meal and visitors 85 kroner. The Pro"
    " plan holds 10 GB, the standard plan 2 GB. Birth parents get 16 weeks of leave, others 8"
    " weeks."
)


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("at 18:30", {"18:30"}),
        ("at 6.30pm", {"18:30"}),
        ("at 6:30 p.m.", {"18:30"}),
        ("at half past six in the evening", {"18:30"}),
        ("at quarter to nine in the morning", {"08:45"}),
        ("until ten at night", {"22:00"}),
        ("by quarter to one", {"00:45"}),
        ("at Noon or 6 PM", {"12:00", "18:00"}),
        ("ten meetings in 2025", {"10", "2025"}),  # no mark of a time: plain numbers
        ("from noon to midnight", {"12:00", "00:00"}),
        ("costs £66.50", {"66.50"}),  # a price with pence is no clock time
        ("one and a half litres", {"1.5"}),
        ("twenty-four hours", {"24"}),
        ("1,800 pounds", {"1800"}),
        ("half an hour", {"0.5"}),
        ("a half-hour call", {"0.5"}),
    ],
)
def test_numbers_are_read_as_written(text: str, numbers: set[str]) -> None:
    assert numbers_in(text) == numbers


def test_a_time_without_its_half_of_the_day_takes_the_passages_reading() -> None:
    assert numbers_in("It shuts at half past five.", against=DESK) == {"17:30"}
    assert numbers_in("It shuts at half past five.") == {"05:30"}
    assert numbers_in("It shuts at half past five in the morning.", against=DESK) == {"05:30"}


def test_the_words_of_a_time_are_not_content_words() -> None:
    assert without_times("It opens at half past eight in the morning.").split() == [
        "It",
        "opens",
        "at",
        ".",
    ]


@pytest.mark.parametrize(
    "claim",
    [
        "The desk opens at half past eight in the morning.",
        "The desk closes at 5:30pm.",
        "The desk opens at 8.30 am and closes at half past five.",
        "Lunch runs from noon until one o'clock.",
        "The desk opens at 08:30, and lunch is from 12 to 1.",
        "VPN files expire after three months.",
        "VPN files expire after 90 days (three months).",
        "Lunch is a one-hour break.",
        "Lunch lasts 60 minutes, from 12:00.",
        "Visitors pay 30 kroner more than staff.",
        "The Pro plan holds five times the standard plan's 2 GB.",
        "Other parents get half as many weeks of leave as birth parents.",
        "Birth parents get twice as much leave as other parents.",
        "Birth parents get eight weeks more leave than other parents.",
        "The desk is open for nine hours, with lunch an hour later than noon.",
    ],
)
def test_a_number_the_passage_states_another_way_is_supported(claim: str) -> None:
    assert unexplained(claim, DESK) == set(), claim


@pytest.mark.parametrize(
    ("claim", "missing"),
    [
        ("The desk opens at half past nine in the morning.", {"09:30"}),
        ("The desk closes at half past five in the morning.", {"05:30"}),
        ("The desk opens at nine.", {"9"}),  # no 09:00 on the passage's clock
        ("VPN files expire after three weeks.", {"3"}),
        ("Lunch lasts three hours.", {"3"}),
        ("VPN files expire after 90 weeks.", {"90 weeks"}),  # the number, of another unit
        ("The standard plan holds half as much as the Pro plan.", {"0.5"}),  # a fifth
        ("VPN files expire after 60 days.", {"60"}),
        ("Visitors pay 40 kroner more than staff.", {"40"}),
        ("Visitors pay 30 kroner.", {"30"}),  # a difference, but the claim does not compare
        ("The Pro plan holds three times as much.", {"3"}),
        ("Up to 1 guest may come.", {"1"}),  # not a time: 13:00 does not give it
    ],
)
def test_a_changed_number_is_still_caught(claim: str, missing: set[str]) -> None:
    assert unexplained(claim, DESK) == missing
