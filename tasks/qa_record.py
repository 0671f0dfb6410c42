from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import ChainBlock, StorageBlock, current_settings
from fabstir.domain import ClaimedJob, InferenceResult, Receipt
from fabstir.monitoring import QualityLog, job_quality, token_symbols
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


# Rewriting the job's row is idempotent, so a retry or a re-run of the flow is harmless.
@task(
    name="record-quality",
    task_run_name="record-quality-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=60,
)
def record_quality(claimed: ClaimedJob, result: InferenceResult, receipt: Receipt) -> None:
    settings = current_settings()
    symbols = token_symbols(ChainBlock.from_settings(settings).get_client())
    row = job_quality(claimed, result, receipt, symbols, finished_at=time.time())
    QualityLog(StorageBlock.from_settings(settings).get_client()).record(row)
