from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import ChainBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob, InferenceResult, ProofBundle, Receipt, StoredResult
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


@task(
    name="settle",
    task_run_name="settle-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=300,
)
def settle(
    claimed: ClaimedJob, stored: StoredResult, result: InferenceResult, proof: ProofBundle
) -> Receipt:
    chain = ChainBlock.from_settings(current_settings()).get_client()
    return pipeline.settle_job(chain, claimed, stored, result, proof)
