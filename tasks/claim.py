from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import ChainBlock, EngineBlock, StorageBlock, current_settings
from fabstir import pipeline
from fabstir.domain import ClaimedJob
from fabstir.monitoring import CapacityGuard
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


# Idempotency comes from the chain state the core reads before acting, not from Prefect's cache,
# because Prefect records a task only after its side effect.
@task(
    name="claim",
    task_run_name="claim-{job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=120,
)
def claim(job_id: int, requested: bool = False) -> ClaimedJob:
    settings = current_settings()
    engine = EngineBlock.from_settings(settings)
    if requested:
        return pipeline.claim_requested_job(
            ChainBlock.from_settings(settings).get_client(),
            engine.get_catalog(),
            job_id,
            engine.price_per_token_wei,
        )
    return pipeline.claim_job(
        ChainBlock.from_settings(settings).get_client(),
        engine.get_catalog(),
        StorageBlock.from_settings(settings).get_client(),
        job_id,
        engine.price_per_token_wei,
        capacity=CapacityGuard(settings.monitoring, Path(str(settings.models.dir))),
    )
