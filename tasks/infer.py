from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from blocks import CacheBlock, EngineBlock, current_settings, job_streams
from fabstir import pipeline
from fabstir.domain import ClaimedJob, InferenceResult, LocalModel
from fabstir.settings import OrchestrationSettings
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient
from tasks._progress import GenerationProgress


def gpu_slot(
    orchestration: OrchestrationSettings, generating: bool
) -> AbstractContextManager[object]:
    """Hold this GPU's global concurrency slot while generating, so the other steps of other
    jobs overlap with inference; strict, because a pinned worker without its limit is a
    misconfiguration (`fabstir-node bootstrap` creates it)."""
    if orchestration.gpu is None or not generating:
        return nullcontext()
    return concurrency(
        orchestration.gpu_limit_name(orchestration.gpu),
        occupy=1,
        strict=True,
        raise_on_lease_renewal_failure=False,
    )


# The timeout fires between generated tokens, in a worker's flow process and in `fabstir-node
# run`'s threads alike (tasks/_policy.py); max_tokens bounds the work anyway.
@task(
    name="infer",
    task_run_name="infer-{claimed.job.job_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=1800,
)
def infer(
    claimed: ClaimedJob,
    model: LocalModel,
    cached: InferenceResult | None,
    await_request_s: float = 0.0,
) -> InferenceResult | None:
    settings = current_settings()
    cache = CacheBlock.from_settings(settings).get_client()
    job_id = claimed.job.job_id
    if claimed.prompt is None:
        # A run started at the renter's handshake waits here, its earlier steps done, so none of
        # their start-up lies between the request and its first token. No request in time: the
        # run ends, answering nothing.
        asked = pipeline.take_request(
            cache,
            model,
            claimed,
            cached,
            partial(job_streams().await_request, job_id, await_request_s),
        )
        if asked is None:
            return None
        claimed, cached = asked
    progress = None if cached is not None else GenerationProgress(job_id, claimed.job.max_tokens)
    cache_fills: list[Callable[[], None]] = []
    try:
        with gpu_slot(settings.orchestration, generating=cached is None):
            result = pipeline.infer(
                EngineBlock.from_settings(settings).get_client(),
                cache,
                model,
                claimed,
                cached,
                streams=job_streams(),
                progress=progress.report if progress is not None else None,
                cache_fills=cache_fills,
            )
        if progress is not None:
            progress.complete()
    finally:
        # Once the slot is free (the next job's generation starts meanwhile), and also when a
        # later turn of a streamed session failed: the answers made before it stand.
        for fill in cache_fills:
            fill()
    return result
