from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import ChainBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob, InferenceResult, ProofBundle, Receipt, StoredResult
from fabstir.summary import job_summary_markdown
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient
from tasks._progress import write_summary


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
    settings = current_settings()
    chain = ChainBlock.from_settings(settings).get_client()
    receipt = pipeline.settle_job(chain, claimed, stored, result, proof)
    write_summary(
        claimed.job.job_id,
        job_summary_markdown(
            claimed, result, proof, receipt, settings.orchestration.explorer_tx_url
        ),
        "What the job ran on, what it cost and where its records are.",
    )
    return receipt
