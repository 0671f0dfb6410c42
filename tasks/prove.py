from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import ProverBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob, InferenceResult, ProofBundle, StoredResult
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


@task(
    name="prove",
    task_run_name="prove-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=900,
)
def prove(claimed: ClaimedJob, stored: StoredResult, result: InferenceResult) -> ProofBundle:
    block = ProverBlock.from_settings(current_settings())
    return pipeline.prove_billing(block.get_client(), Path(block.work_dir), claimed, stored, result)
