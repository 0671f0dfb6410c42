"""The semantic cache with the real MiniLM GGUF and a LanceDB dir, at the default threshold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fabstir.cache import Embedder, SemanticCache, near_miss_reason
from fabstir.cache.prompts import ADDED_WORD_SIMILARITY
from fabstir.settings import CacheSettings

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct-q4_0"
PARAMS = json.dumps(
    {"max_tokens": 64, "seed": 42, "temperature": 0.0, "top_p": 1.0},
    sort_keys=True,
    separators=(",", ":"),
)
THRESHOLD = CacheSettings().similarity_threshold


@pytest.fixture
def cache(tmp_path: Path, embedder: Embedder) -> SemanticCache:
    cache = SemanticCache(str(tmp_path / "cache"), embedder, THRESHOLD)
    cache.store(MODEL, "What is the capital of France?", PARAMS, "Paris.", 2, renter="0xrenter")
    cache.store(MODEL, "What is 15% of 80?", PARAMS, "12", 1, renter="0xrenter")
    return cache


def _similarity(embedder: Embedder, a: str, b: str) -> float:
    vectors = embedder.embed([a, b])
    return float(vectors[0] @ vectors[1])


def test_exact_hit(cache: SemanticCache) -> None:
    hit = cache.lookup(MODEL, "what is the capital of france", PARAMS)
    assert hit is not None
    assert (hit.kind, hit.answer_text, hit.completion_tokens) == ("exact", "Paris.", 2)


def test_paraphrase_hit(cache: SemanticCache) -> None:
    hit = cache.lookup(MODEL, "Tell me the capital of France.", PARAMS)
    assert hit is not None
    assert hit.kind == "semantic"
    assert hit.answer_text == "Paris."
    assert hit.cached_prompt == "What is the capital of France?"
    assert THRESHOLD <= hit.similarity < 1.0


def test_unrelated_prompt_misses(cache: SemanticCache) -> None:
    assert cache.lookup(MODEL, "How do I bake sourdough bread at home?", PARAMS) is None


def test_number_near_miss_misses(cache: SemanticCache) -> None:
    assert cache.lookup(MODEL, "What is 15% of 90?", PARAMS) is None


def test_same_numbers_reworded_hit(cache: SemanticCache) -> None:
    hit = cache.lookup(MODEL, "what's 15 percent of 80", PARAMS)
    assert hit is not None
    assert (hit.kind, hit.answer_text) == ("semantic", "12")


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        (
            "How much is a 15 percent tip on a bill of 80 dollars?",
            "How much is a 15 percent tip on a bill of 90 dollars?",
        ),
        ("Should I take ibuprofen with food?", "Should I not take ibuprofen with food?"),
    ],
)
def test_guard_refuses_near_misses_the_embedding_accepts(
    cache: SemanticCache, embedder: Embedder, stored: str, asked: str
) -> None:
    assert _similarity(embedder, stored, asked) >= THRESHOLD
    cache.store(MODEL, stored, PARAMS, "stored answer", 2, renter="0xrenter")
    assert cache.lookup(MODEL, asked, PARAMS) is None


# Below ADDED_WORD_SIMILARITY, a word one prompt adds refuses the hit unless that prompt, embedded
# without the word, stays close to itself: "convert" leaves it so (0.938, just above
# REMOVED_WORD_SIMILARITY: another MiniLM conversion or llama.cpp build could move it), "root"
# (0.888) and "ended" (0.864) do not.
@pytest.mark.parametrize(
    ("stored", "asked", "hits"),
    [
        ("How many cups are in 200 g of flour?", "Convert 200 grams of flour to cups", True),
        ("What is the square of 144?", "What is the square root of 144?", False),
        ("What was the Cold War?", "What ended the Cold War?", False),
    ],
)
def test_an_added_word_is_weighed_with_the_embedder(
    cache: SemanticCache, embedder: Embedder, stored: str, asked: str, hits: bool
) -> None:
    assert THRESHOLD <= _similarity(embedder, stored, asked) < ADDED_WORD_SIMILARITY
    assert near_miss_reason(asked, stored, similarity=THRESHOLD) == "word added"
    cache.store(MODEL, stored, PARAMS, "stored answer", 2, renter="0xrenter")
    hit = cache.lookup(MODEL, asked, PARAMS)
    assert (hit is not None) == hits
    assert hit is None or hit.answer_text == "stored answer"


def test_a_prompt_in_another_script_hits_only_when_repeated(
    cache: SemanticCache, embedder: Embedder
) -> None:
    """MiniLM finds the capital of France and of Germany, asked in Russian, close; the guard
    cannot read Cyrillic, so only the prompt asked again is answered from the cache."""
    stored, asked = "Какая столица Франции?", "Какая столица Германии?"
    assert _similarity(embedder, stored, asked) >= THRESHOLD
    cache.store(MODEL, stored, PARAMS, "Париж.", 3, renter="0xrenter")
    assert cache.lookup(MODEL, asked, PARAMS) is None
    hit = cache.lookup(MODEL, "какая столица Франции", PARAMS)
    assert hit is not None and (hit.kind, hit.answer_text) == ("exact", "Париж.")


def test_another_model_misses(cache: SemanticCache) -> None:
    assert cache.lookup("other-model", "What is the capital of France?", PARAMS) is None
    assert cache.lookup("other-model", "what's the capital city of France", PARAMS) is None


def test_other_params_miss(cache: SemanticCache) -> None:
    other = PARAMS.replace('"seed":42', '"seed":7')
    assert cache.lookup(MODEL, "What is the capital of France?", other) is None
    assert cache.lookup(MODEL, "what's the capital city of France", other) is None


def test_the_guard_reuses_the_lookups_embedding_of_the_prompt(
    cache: SemanticCache, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored, asked = "How many cups are in 200 g of flour?", "Convert 200 grams of flour to cups"
    cache.store(MODEL, stored, PARAMS, "stored answer", 2, renter="0xrenter")
    embedded: list[list[str]] = []
    real_embed = embedder.embed

    def recording_embed(texts: list[str]) -> Any:
        embedded.append(list(texts))
        return real_embed(texts)

    monkeypatch.setattr(embedder, "embed", recording_embed)
    assert cache.lookup(MODEL, asked, PARAMS) is not None
    # The asked prompt once, for the search; then only its copy without "Convert".
    assert embedded == [[asked], ["200 grams of flour to cups"]]
