from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from blocks import ChainBlock, EngineBlock, StorageBlock, current_settings
from fabstir import spotcheck
from fabstir.monitoring import SPOT_CHECK_FAILED
from fabstir.spotcheck import SpotCheck
from tasks._events import job_resource
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


def emit_spot_check_failed(outcome: SpotCheck) -> None:
    """Announce a failed spot check (deployments/automations/alert-spot-check-failed.yaml)."""
    emit_event(SPOT_CHECK_FAILED, resource=job_resource(outcome.job_id), payload=asdict(outcome))


@task(
    name="spot-check-pending",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=300,
)
def pending_spot_checks() -> list[int]:
    settings = current_settings()
    return spotcheck.pending_spot_checks(
        ChainBlock.from_settings(settings).get_client(),
        StorageBlock.from_settings(settings).get_client(),
        settings.prover.spot_check_rate,
        settings.prover.spot_check_seed,
    )


@task(
    name="spot-check",
    task_run_name="spot-check-{job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=1800,
)
def spot_check(job_id: int) -> SpotCheck:
    settings = current_settings()
    engine = EngineBlock.from_settings(settings)
    return spotcheck.spot_check(
        ChainBlock.from_settings(settings).get_client(),
        StorageBlock.from_settings(settings).get_client(),
        engine.get_catalog(),
        engine.get_client(),
        job_id,
        on_failure=emit_spot_check_failed,
    )
