"""Prompt text rules of the cache: normalisation for exact keys, and the near-miss guard.

Embeddings score a question and its negation, the same question about another number, entity or
direction, or with one word swapped for its opposite ("fitted"/"flat", "begin"/"end") about as
close as true paraphrases, so a semantic hit must also pass :func:`near_miss_reason`. The guard
compares the prompts' words, not their meaning: it refuses whatever differs in a way that often
changes the answer, and leaves rewordings to the similarity threshold.
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
_TOKEN = re.compile(r"[A-Za-z]+|\d+")
_CONTRACTION = re.compile(r"(?<=[a-z])'(s|d|ll|re|ve|m|t)\b")
# An operator between operands: "3x + 7" and "3x - 7" need different answers.
_OPERATOR = re.compile(r"(?<=[\w)\s])[-+*/^=<>](?=[\s\w(])")
# A capitalised word that does not start a sentence: a name, place, language or acronym.
_ENTITY = re.compile(r"(?<![.?!:]\s)(?<!^)\b[A-Z][A-Za-z]*")
# Words that only shape the question; a paraphrase adds, drops or swaps them freely.
_FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "done",
        "have",
        "has",
        "had",
        "i",
        "me",
        "my",
        "mine",
        "we",
        "us",
        "our",
        "you",
        "your",
        "yours",
        "he",
        "she",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "these",
        "those",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "of",
        "in",
        "on",
        "at",
        "by",
        "with",
        "about",
        "as",
        "and",
        "or",
        "so",
        "than",
        "then",
        "there",
        "here",
        "just",
        "also",
        "too",
        "very",
        "really",
        "please",
        "pls",
        "plz",
        "tell",
        "give",
        "show",
        "explain",
        "help",
        "want",
        "need",
        "get",
        "got",
        "some",
        "any",
        "thing",
        "things",
        "know",
        "let",
        "lets",
        "ok",
        "way",
        "ways",
    ]
)
# Words that narrow a question ("only", "even", "at least"): adding one changes the answer.
_RESTRICTIONS = frozenset({"only", "even", "odd", "least", "except", "both", "either"})
# Words whose object gives a direction: "from London to New York" is not the reverse trip.
_DIRECTIONS = frozenset({"to", "from", "for", "into", "than", "instead", "vs", "versus", "over"})
_SUFFIXES = ("ing", "ed", "es", "s", "ly", "er")


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

    Refused: other numbers or operators, other negation words, an added restriction ("only",
    "even"), a named entity replaced by another word, the same word after another direction
    word ("from X" against "to X"), and one content word swapped for one other while the rest
    stays the same. Typos, plurals and "-ing" forms count as the same word.
    """
    if prompt_numbers(prompt) != prompt_numbers(cached_prompt):
        return "numbers differ"
    if negation_words(prompt) != negation_words(cached_prompt):
        return "negation differs"
    if _operators(prompt) != _operators(cached_prompt):
        return "operators differ"
    words_a, words_b = _content_words(prompt), _content_words(cached_prompt)
    only_a, only_b = _unmatched(words_a, words_b), _unmatched(words_b, words_a)
    if (only_a | only_b) & _RESTRICTIONS:
        return "restriction differs"
    if (only_b and _lost_entities(prompt, cached_prompt)) or (
        only_a and _lost_entities(cached_prompt, prompt)
    ):
        return "entity differs"
    directions_a, directions_b = _direction_objects(prompt), _direction_objects(cached_prompt)
    for word in directions_a.keys() & directions_b.keys():
        if not directions_a[word] & directions_b[word]:
            return "direction differs"
    if len(only_a) == 1 and len(only_b) == 1 and len(words_a & words_b) >= 2:
        return "word swapped"
    return None


def _tokens(prompt: str) -> list[str]:
    text = unicodedata.normalize("NFKC", prompt).translate(_APOSTROPHES)
    text = _CONTRACTION.sub(lambda m: " not" if m.group(1) == "t" else "", text)
    return _TOKEN.findall(text)


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _content_words(prompt: str) -> set[str]:
    words = (token.lower() for token in _tokens(prompt))
    return {_stem(word) for word in words if word not in _FUNCTION_WORDS}


def _same_word(a: str, b: str) -> bool:
    """Say whether two stems are one word: equal, one a prefix of the other, or a typo apart."""
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    if len(shorter) >= 4 and longer.startswith(shorter) and len(longer) - len(shorter) <= 3:
        return True
    edits = _edit_distance(a, b)
    return (len(shorter) >= 5 and edits <= 1) or (len(shorter) >= 8 and edits <= 2)


def _unmatched(words: set[str], others: set[str]) -> set[str]:
    return {w for w in words - others if not any(_same_word(w, o) for o in others)}


def _lost_entities(prompt: str, other: str) -> bool:
    """Say whether a named entity of ``prompt`` is missing from ``other`` (case-insensitive)."""
    other_words = {token.lower() for token in _tokens(other)}
    found = _ENTITY.findall(unicodedata.normalize("NFKC", prompt).strip())
    entities = {e.lower() for e in found} - {"i"}
    return any(not any(_same_word(e, o) for o in other_words) for e in entities)


def _operators(prompt: str) -> str:
    if not any(char.isdigit() for char in prompt):
        return ""
    return "".join(sorted(_OPERATOR.findall(unicodedata.normalize("NFKC", prompt))))


def _direction_objects(prompt: str) -> dict[str, set[tuple[str, str]]]:
    """Map each word that follows a direction word to the (direction, phrase) pairs it is in."""
    words = [token.lower() for token in _tokens(prompt)]
    objects: dict[str, set[tuple[str, str]]] = {}
    for position, word in enumerate(words):
        if word in _DIRECTIONS:
            following = [
                w
                for w in words[position + 1 : position + 4]
                if w not in _FUNCTION_WORDS and w not in _DIRECTIONS
            ][:2]
            if following:
                objects.setdefault(_stem(following[0]), set()).add((word, " ".join(following)))
    return objects


def _edit_distance(a: str, b: str) -> int:
    if abs(len(a) - len(b)) > 2:
        return 3  # more than any rule accepts
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def _canonical_number(digits: str) -> str:
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits.lstrip("0") or "0"
