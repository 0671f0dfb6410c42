from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import EngineBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob, LocalModel
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


@task(
    name="fetch-model",
    task_run_name="fetch-model-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=3600,
)
def fetch_model(claimed: ClaimedJob) -> LocalModel:
    return pipeline.fetch_model(
        EngineBlock.from_settings(current_settings()).get_catalog(), claimed
    )
