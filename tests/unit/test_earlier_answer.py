"""The answer an earlier run of a job stored is reused only for that same job."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.domain import ClaimedJob, InferenceResult, LocalModel
from fabstir.pipeline import earlier_answer, store_result
from fabstir.storage import ObjectStore
from tests.support.jobs import claimed_job


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(f"file://{tmp_path / 'storage'}")


def test_a_rerun_of_the_job_finds_its_stored_answer(store: ObjectStore) -> None:
    answer = InferenceResult(text="hi", prompt_tokens=2, completion_tokens=3, cache_hit=False)
    model = LocalModel(name="tiny", path="/models/tiny.gguf", sha256="cd" * 32)
    store_result(store, claimed_job(), model, answer)
    assert earlier_answer(store, claimed_job().job) == answer


@pytest.mark.parametrize(
    "other_job",
    [claimed_job(prompt_hash="0x" + "cd" * 32), claimed_job(renter="0x" + "33" * 20)],
    ids=["another prompt", "another renter"],
)
def test_another_jobs_answer_under_the_same_id_is_not_reused(
    store: ObjectStore, other_job: ClaimedJob
) -> None:
    # A devnet started again gives out job ids again; the index still has the old job's answer.
    answer = InferenceResult(text="hi", prompt_tokens=2, completion_tokens=3, cache_hit=False)
    model = LocalModel(name="tiny", path="/models/tiny.gguf", sha256="cd" * 32)
    store_result(store, claimed_job(), model, answer)
    assert earlier_answer(store, other_job.job) is None
