from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import StorageBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob, InferenceResult, LocalModel, StoredResult
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


@task(
    name="store-result",
    task_run_name="store-result-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=300,
)
def store_result(claimed: ClaimedJob, model: LocalModel, result: InferenceResult) -> StoredResult:
    store = StorageBlock.from_settings(current_settings()).get_client()
    return pipeline.store_result(store, claimed, model, result)
