from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import ChainBlock, StorageBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob, InferenceResult, SettlementQueued, StoredResult
from fabstir.summary import queued_summary_markdown
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient
from tasks._progress import write_summary


@task(
    name="queue-settlement",
    task_run_name="queue-settlement-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=60,
)
def queue_settlement(
    claimed: ClaimedJob, stored: StoredResult, result: InferenceResult
) -> SettlementQueued | None:
    """Queue the job for the settle-batch flow; None means settle it in this run."""
    settings = current_settings()
    now = ChainBlock.from_settings(settings).get_client().chain_time()
    queue = pipeline.SettlementQueue(StorageBlock.from_settings(settings).get_client())
    queued = pipeline.queue_settlement(queue, settings.settlement, claimed, stored, result, now)
    if queued is not None:
        write_summary(
            claimed.job.job_id,
            queued_summary_markdown(claimed, queued),
            "The job's result, queued for batch settlement.",
        )
    return queued
