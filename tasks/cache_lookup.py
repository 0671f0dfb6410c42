from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import CacheBlock, StorageBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob, InferenceResult, LocalModel
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


@task(
    name="cache-lookup",
    task_run_name="cache-lookup-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=60,
)
def cache_lookup(model: LocalModel, claimed: ClaimedJob) -> InferenceResult | None:
    settings = current_settings()
    return pipeline.look_up_cache(
        CacheBlock.from_settings(settings).get_client(),
        StorageBlock.from_settings(settings).get_client(),
        model,
        claimed,
    )
