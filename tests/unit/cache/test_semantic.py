from __future__ import annotations

import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fabstir.cache import CacheHit, SemanticCache
from fabstir.cache.semantic import exact_key, sql_string
from fabstir.errors import ConfigError, TransientError
from fabstir.pipeline.answer import cache_params_key, cut_answer_key

PARAMS = '{"max_tokens":64,"seed":42,"temperature":0.0,"top_p":1.0}'
MODEL = "smollm2-135m-instruct-q4_0"


@pytest.fixture
def cache(tmp_path: Path, fake_embedder: Any) -> SemanticCache:
    return SemanticCache(str(tmp_path / "cache"), fake_embedder, similarity_threshold=0.8)


def _store(cache: SemanticCache, prompt: str, answer: str, **scope: str) -> None:
    cache.store(
        scope.get("model_id", MODEL),
        prompt,
        scope.get("params_key", PARAMS),
        answer,
        completion_tokens=len(answer.split()),
        renter="0xrenter",
    )


def test_exact_hit_ignores_case_spacing_and_trailing_punctuation(cache: SemanticCache) -> None:
    _store(cache, "What is the capital of France?", "Paris.")
    hit = cache.lookup(MODEL, "  what IS the capital of   france!! ", PARAMS)
    assert hit == CacheHit(
        answer_text="Paris.",
        completion_tokens=1,
        similarity=1.0,
        kind="exact",
        cached_prompt="What is the capital of France?",
    )


def test_an_exact_hit_does_not_wait_for_the_prompts_embedding(
    cache: SemanticCache, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(cache, "What is the capital of France?", "Paris.")
    released = threading.Event()
    real_embed = fake_embedder.embed

    def held_embed(texts: list[str]) -> Any:
        released.wait(timeout=60)
        return real_embed(texts)

    monkeypatch.setattr(fake_embedder, "embed", held_embed)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        lookup = pool.submit(cache.lookup, MODEL, "what is the capital of France", PARAMS)
        # The embedding is held: a lookup that waited for it would time out here.
        hit = lookup.result(timeout=10)
    finally:
        released.set()
        pool.shutdown()
    assert hit is not None
    assert hit.kind == "exact"


def test_a_new_table_is_written_in_lance_file_format_2_1(
    cache: SemanticCache, tmp_path: Path
) -> None:
    """2.1, not the library's default 2.2, whose reads of a search's rows are slower."""
    _store(cache, "What is the capital of France?", "Paris.")
    data_files = list((tmp_path / "cache" / "semantic_cache.lance" / "data").glob("*.lance"))
    assert data_files
    for path in data_files:
        footer = path.read_bytes()[-8:]  # major and minor version (u16 each), then the magic
        assert footer[4:] == b"LANC"
        assert struct.unpack("<HH", footer[:4]) == (2, 1)


def test_semantic_hit_above_threshold(cache: SemanticCache) -> None:
    _store(cache, "What is the capital of France?", "Paris.")
    hit = cache.lookup(MODEL, "what is the capital city of France", PARAMS)
    assert hit is not None
    assert hit.kind == "semantic"
    assert 0.8 <= hit.similarity < 1.0
    assert hit.answer_text == "Paris."


def test_empty_cache_misses(cache: SemanticCache) -> None:
    assert cache.lookup(MODEL, "anything at all", PARAMS) is None


def test_unrelated_prompt_misses(cache: SemanticCache) -> None:
    _store(cache, "What is the capital of France?", "Paris.")
    assert cache.lookup(MODEL, "How do I bake sourdough bread", PARAMS) is None


def test_other_model_misses(cache: SemanticCache) -> None:
    _store(cache, "What is the capital of France?", "Paris.")
    assert cache.lookup("other-model", "What is the capital of France?", PARAMS) is None
    assert cache.lookup("other-model", "what is the capital city of France", PARAMS) is None


def test_other_params_miss(cache: SemanticCache) -> None:
    _store(cache, "What is the capital of France?", "Paris.")
    other = PARAMS.replace('"seed":42', '"seed":43')
    assert cache.lookup(MODEL, "What is the capital of France?", other) is None
    assert cache.lookup(MODEL, "what is the capital city of France", other) is None


def test_scopes_hold_separate_answers(cache: SemanticCache) -> None:
    _store(cache, "Say hi", "hi from a", model_id="model-a")
    _store(cache, "Say hi", "hi from b", model_id="model-b")
    assert cache.lookup("model-a", "Say hi", PARAMS).answer_text == "hi from a"  # type: ignore[union-attr]
    assert cache.lookup("model-b", "Say hi", PARAMS).answer_text == "hi from b"  # type: ignore[union-attr]


def test_a_scope_crowded_out_of_the_nearest_entries_still_hits(
    cache: SemanticCache, fake_embedder: Any
) -> None:
    # Other models hold the very prompt (similarity 1.0), so the nearest entries of the first,
    # unscoped search are all theirs; the lookup must search its own scope again.
    query, paraphrase = "please compute 15 percent of 90 now", "compute 15 percent of 90"
    vectors = fake_embedder.embed([query, paraphrase])
    assert 0.8 <= vectors[0] @ vectors[1] < 0.99
    for n in range(12):
        _store(cache, query, f"answer of model {n}", model_id=f"model-{n}")
    _store(cache, paraphrase, "13.5")
    hit = cache.lookup(MODEL, query, PARAMS)
    assert hit is not None
    assert (hit.kind, hit.cached_prompt, hit.answer_text) == ("semantic", paraphrase, "13.5")
    assert cache.lookup("model-99", query, PARAMS) is None


def test_number_near_miss_is_refused(cache: SemanticCache, fake_embedder: Any) -> None:
    _store(cache, "please compute 15 percent of 80 now", "12")
    assert cache.lookup(MODEL, "please compute 15 percent of 90 now", PARAMS) is None


def test_guard_skips_a_refused_neighbour_for_the_next_one(
    cache: SemanticCache, fake_embedder: Any
) -> None:
    query = "please compute 15 percent of 90 now"
    near_miss, paraphrase = "please compute 15 percent of 80 now", "compute 15 percent of 90"
    vectors = fake_embedder.embed([query, near_miss, paraphrase])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] >= 0.8
    _store(cache, near_miss, "12")
    _store(cache, paraphrase, "13.5")
    hit = cache.lookup(MODEL, query, PARAMS)
    assert hit is not None
    assert (hit.kind, hit.cached_prompt, hit.answer_text) == ("semantic", paraphrase, "13.5")


def test_negation_near_miss_is_refused(cache: SemanticCache) -> None:
    _store(cache, "should I take ibuprofen with food", "Yes.")
    assert cache.lookup(MODEL, "should I not take ibuprofen with food", PARAMS) is None


def test_store_is_idempotent_per_normalised_prompt(cache: SemanticCache) -> None:
    _store(cache, "What is the capital of France?", "Paris.")
    _store(cache, "what is the capital of france", "Lyon.")
    assert cache._table.count_rows() == 1
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS).answer_text == "Paris."  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "model_id",
    ["x' OR '1'='1", "x'; DROP TABLE semantic_cache; --", "a\\' OR 1=1 --", 'quote"d', "ünï'cödé"],
)
def test_hostile_model_ids_stay_in_their_scope(cache: SemanticCache, model_id: str) -> None:
    _store(cache, "What is the capital of France?", "Paris.")
    assert cache.lookup(model_id, "what is the capital city of France", PARAMS) is None
    _store(cache, "What is the capital of France?", "Paris, hostile.", model_id=model_id)
    hit = cache.lookup(model_id, "what is the capital city of France", PARAMS)
    assert hit is not None and hit.answer_text == "Paris, hostile."
    assert cache._table.count_rows() == 2


def test_sql_string_quotes_and_refuses_nul() -> None:
    assert sql_string("it's") == "'it''s'"
    with pytest.raises(ValueError):
        sql_string("a\x00b")


def test_exact_key_depends_on_model_and_params() -> None:
    base = exact_key(MODEL, "Hi?", PARAMS)
    assert base == exact_key(MODEL, "  hi ", PARAMS)
    assert base != exact_key("other", "Hi?", PARAMS)
    assert base != exact_key(MODEL, "Hi?", "{}")


def test_reopening_keeps_entries(tmp_path: Path, fake_embedder: Any) -> None:
    uri = str(tmp_path / "cache")
    first = SemanticCache(uri, fake_embedder, similarity_threshold=0.8)
    _store(first, "What is the capital of France?", "Paris.")
    again = SemanticCache(uri, fake_embedder, similarity_threshold=0.8)
    assert again.lookup(MODEL, "What is the capital of France?", PARAMS) is not None


def test_table_of_another_dimension_is_a_config_error(tmp_path: Path, fake_embedder: Any) -> None:
    uri = str(tmp_path / "cache")
    SemanticCache(uri, fake_embedder, similarity_threshold=0.8)
    fake_embedder.dimension = 32
    with pytest.raises(ConfigError):
        SemanticCache(uri, fake_embedder, similarity_threshold=0.8)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_threshold_out_of_range_is_a_config_error(
    tmp_path: Path, fake_embedder: Any, threshold: float
) -> None:
    with pytest.raises(ConfigError):
        SemanticCache(str(tmp_path / "cache"), fake_embedder, similarity_threshold=threshold)


def test_stores_compact_the_table_every_few_writes(
    cache: SemanticCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabstir.cache.semantic._SMALL_FRAGMENTS", 3)
    fragments = []
    for n in range(12):
        _store(cache, f"question number {n}", "answer")
        fragments.append(cache._table.stats()["fragment_stats"]["num_fragments"])
    # One fragment per store, merged into one by the store that finds three.
    assert max(fragments) <= 3
    assert cache._table.count_rows() == 12


def test_a_failed_write_is_a_transient_error_and_stores_nothing(
    cache: SemanticCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake: a full disk under the LanceDB directory cannot be made on demand.
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache._table, "merge_insert", disk_full)
    with pytest.raises(TransientError, match="No space left") as caught:
        _store(cache, "What is the capital of France?", "Paris.")
    assert caught.value.code == "cache_write_failed"
    monkeypatch.undo()
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is None


def test_upkeep_that_loses_a_race_keeps_the_answer_and_does_not_raise(
    cache: SemanticCache,
    tmp_path: Path,
    fake_embedder: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two writers (two jobs' processes) compacting after every store collide: one loses its
    # commit to the other's. Its job's answer is stored all the same, and its store returns.
    monkeypatch.setattr("fabstir.cache.semantic._SMALL_FRAGMENTS", 1)
    other = SemanticCache(str(tmp_path / "cache"), fake_embedder, similarity_threshold=0.8)
    stored: list[str] = []

    def store_until_a_compaction_fails(writer: SemanticCache, name: str) -> None:
        for n in range(100):
            if "cache upkeep after a store failed" in caplog.text:
                return
            _store(writer, f"{name} question number {n}", "answer")
            stored.append(f"{name} question number {n}")

    racer = threading.Thread(target=store_until_a_compaction_fails, args=(other, "second"))
    racer.start()
    store_until_a_compaction_fails(cache, "first")
    racer.join()
    assert "cache upkeep after a store failed" in caplog.text
    reader = SemanticCache(str(tmp_path / "cache"), fake_embedder, similarity_threshold=0.8)
    prompts = {row["prompt"] for row in reader._table.search().limit(None).to_list()}
    assert prompts == set(stored)


def test_a_lookup_takes_an_answer_from_any_of_its_params_scopes(cache: SemanticCache) -> None:
    plain, cut = cache_params_key(), cut_answer_key(cache_params_key(), 8)
    assert cut != plain
    _store(cache, "What is the capital of France?", "Paris is", params_key=cut)
    for prompt, kind in [
        ("what is the capital of france", "exact"),
        ("what is the capital city of France", "semantic"),
    ]:
        assert cache.lookup(MODEL, prompt, plain) is None
        hit = cache.lookup(MODEL, prompt, plain, cut)
        assert hit is not None and (hit.kind, hit.answer_text) == (kind, "Paris is")


@pytest.mark.parametrize("cut_first", [True, False])
def test_a_longer_answer_in_one_scope_does_not_hide_one_that_fits(
    cache: SemanticCache, cut_first: bool
) -> None:
    plain, cut = cache_params_key(), cut_answer_key(cache_params_key(), 8)
    finished = " ".join(["word"] * 20)
    stores = [(cut, "the first eight words of the whole answer"), (plain, finished)]
    for params_key, answer in stores if cut_first else stores[::-1]:
        _store(cache, "What is the capital of France?", answer, params_key=params_key)
    for prompt in ("what is the capital of france", "what is the capital city of France"):
        hit = cache.lookup(MODEL, prompt, plain, cut, max_completion_tokens=8)
        assert hit is not None and hit.answer_text.startswith("the first eight")
        assert cache.lookup(MODEL, prompt, plain, cut).completion_tokens in (8, 20)  # type: ignore[union-attr]
        assert cache.lookup(MODEL, prompt, plain, max_completion_tokens=19) is None
