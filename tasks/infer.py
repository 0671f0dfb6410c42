from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import CacheBlock, EngineBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob, InferenceResult, LocalModel
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


# The timeout fires between generated tokens; max_tokens bounds the work anyway.
@task(
    name="infer",
    task_run_name="infer-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=1800,
)
def infer(
    claimed: ClaimedJob, model: LocalModel, cached: InferenceResult | None
) -> InferenceResult:
    settings = current_settings()
    return pipeline.infer(
        EngineBlock.from_settings(settings).get_client(),
        CacheBlock.from_settings(settings).get_client(),
        model,
        claimed,
        cached,
    )
