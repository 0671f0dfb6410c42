"""Prompt text rules of the cache: normalisation for exact keys, and the near-miss guard.

Embeddings score a question and its negation, or the same question about another number, about
as close as true paraphrases, so a semantic hit must also pass :func:`near_miss_reason`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

# ASCII, ellipsis, and the CJK full stop, comma, question and exclamation marks.
_TRAILING_PUNCTUATION = "?!.,;:\u2026\u3002\u3001\uff1f\uff01"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without"}
)


def normalise_prompt(prompt: str) -> str:
    """Return the prompt case-folded, whitespace collapsed, trailing punctuation stripped."""
    text = unicodedata.normalize("NFKC", prompt).casefold()
    return " ".join(text.split()).rstrip(_TRAILING_PUNCTUATION + " ")


def prompt_numbers(prompt: str) -> Counter[str]:
    """Return the multiset of numbers written with digits ("1,000" and "1000" are the same)."""
    text = _THOUSANDS_SEPARATOR.sub("", unicodedata.normalize("NFKC", prompt))
    return Counter(_canonical_number(match) for match in _NUMBER.findall(text))


def negation_words(prompt: str) -> frozenset[str]:
    """Return the negation words in the prompt; contractions ("don't", "can't") count as "not"."""
    text = unicodedata.normalize("NFKC", prompt).casefold().translate(_APOSTROPHES)
    words = set()
    for word in _WORD.findall(text):
        if word.endswith("n't") or word == "cannot":
            words.add("not")
        elif word in _NEGATIONS:
            words.add(word)
    return frozenset(words)


def near_miss_reason(prompt: str, cached_prompt: str) -> str | None:
    """Say why two similar prompts may need different answers, or return None if none is seen.

    The rules are deliberately small: the numbers must be equal as multisets, and both prompts must
    use the same negation words.
    """
    if prompt_numbers(prompt) != prompt_numbers(cached_prompt):
        return "numbers differ"
    if negation_words(prompt) != negation_words(cached_prompt):
        return "negation differs"
    return None


def _canonical_number(digits: str) -> str:
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits.lstrip("0") or "0"
