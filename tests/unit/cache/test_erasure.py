"""Right to erasure: a renter's results, job index entries and cache entries all go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fabstir import pipeline
from fabstir.cache import SemanticCache
from fabstir.domain import ClaimedJob, InferenceResult, LocalModel
from fabstir.storage import JobIndex, ObjectStore
from tests.support.jobs import claimed_job

RENTER = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
PARAMS = '{"temperature":0.0}'


def _claimed(job_id: int, renter: str) -> ClaimedJob:
    return claimed_job(job_id, renter=renter, prompt=f"prompt {job_id}", max_tokens=8)


def test_erasure_removes_results_index_and_cache_entries(
    tmp_path: Path, fake_embedder: Any
) -> None:
    store = ObjectStore(f"file://{tmp_path / 'storage'}")
    cache = SemanticCache(str(tmp_path / "cache"), fake_embedder, similarity_threshold=0.8)
    model = LocalModel(name="m", path="/m.gguf", sha256="a" * 64)
    stored = {}
    for job_id, renter in ((1, RENTER), (2, OTHER), (3, RENTER)):
        claimed = _claimed(job_id, renter)
        result = InferenceResult(
            text=f"answer {job_id}", prompt_tokens=1, completion_tokens=2, cache_hit=False
        )
        stored[job_id] = pipeline.store_result(store, claimed, model, result)
        cache.store(model.sha256, claimed.prompt, PARAMS, result.text, 2, renter=renter)
    assert JobIndex(store).jobs_of(RENTER) == [1, 3]

    assert pipeline.erase_renter_data(store, cache, RENTER) == {"jobs": 2, "cache_entries": 2}

    for job_id in (1, 3):
        assert not store.exists(store.key_of(stored[job_id].uri))
        assert cache.lookup(model.sha256, f"prompt {job_id}", PARAMS) is None
    assert store.exists(store.key_of(stored[2].uri))
    assert cache.lookup(model.sha256, "prompt 2", PARAMS) is not None
    assert set(store.list()) == {
        store.key_of(stored[2].uri),
        "jobs/2.json",
        f"renters/{OTHER}/2",
    }
