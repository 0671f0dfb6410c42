from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir.cache.prompts import (
    near_miss_reason,
    negation_words,
    normalise_prompt,
    prompt_numbers,
)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is the capital of France?", "what is the capital of france"),
        ("  WHAT   is\tthe capital\nof France ?!  ", "what is the capital of france"),
        ("Explain recursion...", "explain recursion"),
        ("Is 3.5 > 3?", "is 3.5 > 3"),
        ("\uff1f", ""),
        ("Straße", "strasse"),
        ("\uff46\uff55\uff4c\uff4c", "full"),
    ],
)
def test_normalise_prompt(prompt: str, expected: str) -> None:
    assert normalise_prompt(prompt) == expected


def test_normalise_keeps_inner_punctuation() -> None:
    assert normalise_prompt("What's 2+2, really?") == "what's 2+2, really"


@given(st.text())
def test_normalise_is_idempotent(prompt: str) -> None:
    once = normalise_prompt(prompt)
    assert normalise_prompt(once) == once


@pytest.mark.parametrize(
    ("prompt", "numbers"),
    [
        ("What is 15% of 80?", {"15": 1, "80": 1}),
        ("Add 1,000 and 1000", {"1000": 2}),
        ("pi is 3.140 or 3.14", {"3.14": 2}),
        ("007 and 7.0", {"7": 2}),
        ("no numbers here", {}),
    ],
)
def test_prompt_numbers(prompt: str, numbers: dict[str, int]) -> None:
    assert prompt_numbers(prompt) == numbers


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("Why doesn't my code compile?", {"not"}),
        ("Why doesn\u2019t my code compile?", {"not"}),
        ("I cannot log in", {"not"}),
        ("bread without yeast", {"without"}),
        ("Is there no way?", {"no"}),
        ("Notable novels of 1920", set()),
    ],
)
def test_negation_words(prompt: str, words: set[str]) -> None:
    assert negation_words(prompt) == words


@pytest.mark.parametrize(
    ("prompt", "cached", "reason"),
    [
        ("What is 15% of 80?", "What is 15% of 90?", "numbers differ"),
        ("3 eggs and 2 cups", "2 cups and 3 eggs", None),
        ("3 eggs", "3 eggs and 3 cups", "numbers differ"),
        ("Should I take ibuprofen?", "Should I not take ibuprofen?", "negation differs"),
        ("Why won't it start?", "Why does it not start?", None),
        ("What is the capital of France?", "what's the capital city of France", None),
    ],
)
def test_near_miss_reason(prompt: str, cached: str, reason: str | None) -> None:
    assert near_miss_reason(prompt, cached) == reason
    assert near_miss_reason(cached, prompt) == reason


@pytest.mark.parametrize(
    ("prompt", "cached", "reason"),
    [
        ("Solve for x: 3x + 7 = 22", "Solve for x: 3x - 7 = 22", "operators differ"),
        (
            "Sum of the first 100 even integers",
            "Sum of the first 100 integers",
            "restriction differs",
        ),
        ("How much should I tip in Japan?", "How much should I tip in the US?", "entity differs"),
        (
            "Avoid jet lag flying from New York to London",
            "Avoid jet lag flying from London to New York",
            "direction differs",
        ),
        ("How do I fold a fitted sheet?", "How do I fold a flat sheet?", "word swapped"),
        ("When did World War II end?", "When did World War II begin?", "word swapped"),
        ("How do I fold a fitted sheet?", "fitted sheet folding instructions pls", None),
        (
            "whats the diffrence between a latte and a capuccino",
            "latte vs cappuccino difference?",
            None,
        ),
        ("How do I reverse a string in Python?", "python reverse a string", None),
    ],
)
def test_near_miss_rules(prompt: str, cached: str, reason: str | None) -> None:
    assert near_miss_reason(prompt, cached) == reason
    assert near_miss_reason(cached, prompt) == reason
