from __future__ import annotations

from functools import partial
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import ChainBlock, EngineBlock, StorageBlock, current_settings, job_streams
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
def claim(job_id: int, await_request_s: float = 0.0) -> ClaimedJob | None:
    settings = current_settings()
    engine = EngineBlock.from_settings(settings)
    if await_request_s > 0:
        return pipeline.claim_requested_job(
            ChainBlock.from_settings(settings).get_client(),
            engine.get_catalog(),
            job_id,
            engine.price_per_token_wei,
            partial(job_streams().await_request, job_id, await_request_s),
        )
    return pipeline.claim_job(
        ChainBlock.from_settings(settings).get_client(),
        engine.get_catalog(),
        StorageBlock.from_settings(settings).get_client(),
        job_id,
        engine.price_per_token_wei,
        capacity=CapacityGuard(settings.monitoring, Path(str(settings.models.dir))),
    )
