"""Tasks of the settle-batch flow: plan the batches due now, settle one, release its jobs."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from blocks import ChainBlock, ProverBlock, StorageBlock, current_settings
from fabstir import pipeline
from fabstir.pipeline import BatchSettlement
from fabstir.summary import job_summary_markdown
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


def _queue() -> pipeline.SettlementQueue:
    return pipeline.SettlementQueue(StorageBlock.from_settings(current_settings()).get_client())


@task(
    name="plan-settlement",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=120,
)
def plan_settlement(flush: bool) -> list[list[int]]:
    settings = current_settings()
    chain = ChainBlock.from_settings(settings).get_client()
    return pipeline.plan_batches(
        chain, _queue(), settings.settlement, chain.chain_time(), flush=flush
    )


# The core reads each job's chain state first, so a retry or a re-run never pays twice.
@task(
    name="settle-queued",
    task_run_name="settle-queued-{job_ids}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=900,
)
def settle_queued(job_ids: list[int]) -> BatchSettlement:
    settings = current_settings()
    prover = ProverBlock.from_settings(settings)
    settled = pipeline.settle_queued(
        ChainBlock.from_settings(settings).get_client(),
        prover.get_client(),
        Path(prover.work_dir),
        _queue(),
        job_ids,
    )
    together = ", ".join(str(ready.job_id) for ready, _ in settled.jobs)
    for ready, receipt in settled.jobs:
        summary = job_summary_markdown(
            ready.claimed,
            ready.result,
            settled.proof,
            receipt,
            settings.orchestration.explorer_tx_url,
        )
        create_markdown_artifact(
            f"{summary}\nSettled in batch tx `{receipt.settle_tx}` with jobs {together}.\n",
            key=f"job-{ready.job_id}",
            description="What the job ran on, what it cost and where its records are.",
        )
    return settled


@task(
    name="release-settled",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=60,
)
def release_settled(job_ids: list[int]) -> None:
    """Take settled jobs out of the settlement queue."""
    queue = _queue()
    for job_id in job_ids:
        queue.remove(job_id)
