"""The cache-maintenance flow on the cache the node's settings name, with the real MiniLM model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from blocks import CacheBlock, current_settings
from fabstir.cache import SemanticCache
from tests.support.artifacts import latest_table_artifact

pytestmark = pytest.mark.integration

MODEL = "model"
PARAMS = "params"


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def cache_settings(minilm_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_CACHE__EMBEDDING_MODEL_PATH", str(minilm_gguf))
    monkeypatch.setenv("FABSTIR_CACHE__INDEX_MIN_ROWS", "256")


def _add_synthetic_rows(cache: SemanticCache, count: int, first: int) -> None:
    rng = np.random.default_rng(first)
    vectors = rng.normal(size=(count, cache.embedder.dimension)).astype(np.float32)
    cache._table.add(
        [
            {
                "key": f"synthetic-{first + n}",
                "model_id": MODEL,
                "params_key": PARAMS,
                "prompt": f"synthetic prompt {first + n}",
                "answer_text": "x",
                "completion_tokens": 1,
                "renter": "0xrenter",
                "created_at": 1e12,  # far in the future: never expired here
                "vector": vector / np.linalg.norm(vector),
            }
            for n, vector in enumerate(vectors)
        ]
    )


def test_the_flow_compacts_retrains_an_outgrown_index_and_reports_each_pass(
    prefect_api: None, cache_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cache_maintenance import cache_maintenance

    monkeypatch.setattr("fabstir.cache.semantic._ROWS_PER_PARTITION", 64)
    cache = CacheBlock.from_settings(current_settings()).get_client()
    assert cache is not None
    _add_synthetic_rows(cache, 300, first=0)
    prompts = [
        "What is the boiling point of water at sea level?",
        "Who wrote the novel Moby-Dick?",
    ]
    cache.store(MODEL, prompts[0], PARAMS, "100 degrees Celsius.", 4, renter="0xrenter")
    first = cache_maintenance()  # builds the index: trained now, nothing to retrain
    assert first is not None and (first.entries, first.index_retrained) == (301, False)
    stats = cache._latest_dataset().stats.index_stats("vector_idx")
    trained = sum(segment["num_partitions"] for segment in stats["indices"])
    _add_synthetic_rows(cache, 2 * 64 * trained, first=300)  # the partitions doubled
    cache.store(MODEL, prompts[1], PARAMS, "Herman Melville.", 3, renter="0xrenter")
    second = cache_maintenance()
    assert second is not None and second.index_retrained is True
    assert second.entries == 302 + 2 * 64 * trained and second.expired == second.evicted == 0
    assert latest_table_artifact("cache-maintenance") == [
        {
            "expired": 0,
            "evicted": 0,
            "entries": second.entries,
            "fragments": second.fragments,
            "index_retrained": True,
        }
    ]
    hit = cache.lookup(MODEL, "at sea level, what is the boiling point of water", PARAMS)
    assert hit is not None and (hit.kind, hit.cached_prompt) == ("semantic", prompts[0])
    hit = cache.lookup(MODEL, "who is the author of the novel Moby-Dick", PARAMS)
    assert hit is not None and (hit.kind, hit.cached_prompt) == ("semantic", prompts[1])


def test_the_flow_does_nothing_when_the_cache_is_disabled(
    prefect_api: None, cache_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cache_maintenance import cache_maintenance

    monkeypatch.setenv("FABSTIR_CACHE__ENABLED", "false")
    assert cache_maintenance() is None
    assert not (current_settings().home / "cache").exists()
