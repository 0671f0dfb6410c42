"""Tasks of the reconcile flow: which jobs need a run, and starting runs for them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.deployments import run_deployment

from blocks import ChainBlock, StorageBlock, current_settings
from fabstir import reconcile
from fabstir.client import DIRECT_PROMPT_URI
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient

INFERENCE_FLOW = "inference-job"
MAX_RUNS_PER_JOB = 3


@task(
    name="open-jobs",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=300,
)
def open_jobs() -> list[int]:
    settings = current_settings()
    chain = ChainBlock.from_settings(settings).get_client()
    return reconcile.open_jobs(
        chain,
        StorageBlock.from_settings(settings).get_client(),
        # The renter API runs this host's direct jobs; the watcher leaves them to it too.
        replace(
            reconcile.host_eligibility(chain, settings.host), direct_prompt_uri=DIRECT_PROMPT_URI
        ),
    )


@task(name="start-missing-runs", cache_policy=NO_CACHE, timeout_seconds=120)
def start_missing_runs(job_ids: list[int]) -> list[int]:
    """Start an inference-job run for each job that has no live or completed run."""
    settings = current_settings()
    chain = ChainBlock.from_settings(settings).get_client()
    # Runs are named by job id, which a devnet started again gives out again: a run made before
    # this chain's contracts were deployed is an earlier chain's job's.
    deployed_at = datetime.fromtimestamp(chain.block_time(chain.deployment.deploy_block), UTC)
    names = {f"job-{job_id}": job_id for job_id in job_ids}
    run_states: dict[int, list[str]] = {job_id: [] for job_id in job_ids}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[INFERENCE_FLOW])),
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=list(names))),
        )
    for run in runs:
        if run.state_type is not None and (run.created is None or run.created >= deployed_at):
            run_states[names[run.name]].append(run.state_type.value)
    started = reconcile.jobs_to_start(job_ids, run_states, MAX_RUNS_PER_JOB)
    pool = settings.orchestration.work_pool
    for job_id in started:
        run_deployment(
            f"{INFERENCE_FLOW}/{pool}",
            parameters={"job_id": job_id},
            timeout=0,
            as_subflow=False,
        )
    return started
