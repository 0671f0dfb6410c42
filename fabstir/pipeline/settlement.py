"""Batch settlement: a job's result is stored, the job waits in a durable queue, and one proof and
one transaction later settle it with up to 15 others.

The queue is one object per job in the node's storage (``settlement/ready/<job_id>.json``), so a
crash loses no job; a job leaves it only after the chain shows it settled. Every step reads the
chain before acting, so running a step again never settles a job twice (the contract would
refuse it anyway: a settled job is no longer ``Claimed``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from fabstir.domain import (
    ClaimedJob,
    InferenceResult,
    ProofBundle,
    Receipt,
    SettlementQueued,
    StoredResult,
)
from fabstir.errors import ObjectMissing
from fabstir.pipeline.delivery import prove_billing_batch, settle_batch

if TYPE_CHECKING:
    from fabstir.chain import ChainClient
    from fabstir.proofs import BillingProver
    from fabstir.settings import SettlementSettings
    from fabstir.storage import ObjectStore

log = logging.getLogger(__name__)

READY_PREFIX = "settlement/ready"


class ReadySettlement(BaseModel):
    """A queued job with what proving and settling it later needs: the job as claimed, its
    stored result and its answer's token count, and when (chain time) it joined the queue."""

    model_config = ConfigDict(frozen=True)

    claimed: ClaimedJob
    stored: StoredResult
    result: InferenceResult
    queued_at: int

    @property
    def job_id(self) -> int:
        return self.claimed.job.job_id

    def settle_by(self, settings: SettlementSettings) -> int:
        """Return the chain time after which this job is settled without a full batch."""
        deadline_guard = self.claimed.job.deadline - int(settings.deadline_margin_s)
        return min(self.queued_at + int(settings.max_wait_s), deadline_guard)


class SettlementQueue:
    """The jobs waiting for batch settlement, one object per job in an object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def put(self, ready: ReadySettlement) -> None:
        self.store.put(_ready_key(ready.job_id), ready.model_dump_json().encode())

    def get(self, job_id: int) -> ReadySettlement | None:
        try:
            return ReadySettlement.model_validate_json(self.store.get(_ready_key(job_id)))
        except ObjectMissing:
            return None

    def job_ids(self) -> list[int]:
        return sorted(int(key.rsplit("/", 1)[-1].removesuffix(".json")) for key in self._keys())

    def remove(self, job_id: int) -> None:
        self.store.delete(_ready_key(job_id))

    def _keys(self) -> list[str]:
        return [key for key in self.store.list(READY_PREFIX) if key.endswith(".json")]


def _ready_key(job_id: int) -> str:
    return f"{READY_PREFIX}/{job_id}.json"


class BatchSettlement(BaseModel):
    """Queued jobs with their settlements, and the proof this run settled them with."""

    model_config = ConfigDict(frozen=True)

    jobs: list[tuple[ReadySettlement, Receipt]]
    proof: ProofBundle | None = Field(
        description="None when an earlier run settled every one of the jobs."
    )


def queue_settlement(
    queue: SettlementQueue,
    settings: SettlementSettings,
    claimed: ClaimedJob,
    stored: StoredResult,
    result: InferenceResult,
    now: int,
) -> SettlementQueued | None:
    """Queue the job for batch settlement, or return None when it must be settled now: batching
    is off (batch size 1) or its deadline is within ``deadline_margin_s`` of ``now`` (chain time).

    Queuing a job again keeps its place (its first ``queued_at``) and its latest result.
    """
    job = claimed.job
    if settings.batch_size == 1:
        return None
    if now >= job.deadline - settings.deadline_margin_s:
        log.info("deadline near: settling without a batch", extra={"job_id": job.job_id})
        return None
    earlier = queue.get(job.job_id)
    ready = ReadySettlement(
        claimed=claimed,
        stored=stored,
        result=result,
        queued_at=now if earlier is None else earlier.queued_at,
    )
    queue.put(ready)
    log.info("job queued for batch settlement", extra={"job_id": job.job_id})
    return SettlementQueued(
        job_id=job.job_id,
        tokens=result.completion_tokens,
        result_uri=stored.uri,
        result_hash=stored.sha256,
        queued_at=ready.queued_at,
        settle_by=ready.settle_by(settings),
    )


def plan_batches(
    chain: ChainClient,
    queue: SettlementQueue,
    settings: SettlementSettings,
    now: int,
    *,
    flush: bool = False,
) -> list[list[int]]:
    """Return the batches of queued jobs to settle now, oldest first: every full batch of
    ``batch_size``, then the rest as one padded batch if ``flush`` or if any of them is due
    (waited ``max_wait_s``, or its deadline is within ``deadline_margin_s``).

    A job past its deadline that the chain does not show settled can no longer be settled (the
    renter may take the deposit back): it leaves the queue with an error logged.
    """
    waiting: list[ReadySettlement] = []
    for job_id in queue.job_ids():
        ready = queue.get(job_id)
        if ready is None:
            continue  # released by another run since listing
        if now > ready.claimed.job.deadline and chain.find_settlement(job_id) is None:
            log.error("job missed its settlement deadline; dropped", extra={"job_id": job_id})
            queue.remove(job_id)
            continue
        waiting.append(ready)
    waiting.sort(key=lambda ready: (ready.queued_at, ready.job_id))
    size = settings.batch_size
    batches = [waiting[start : start + size] for start in range(0, len(waiting), size)]
    if batches and len(batches[-1]) < size:
        rest = batches[-1]
        if not (flush or any(now >= ready.settle_by(settings) for ready in rest)):
            batches.pop()
    return [[ready.job_id for ready in batch] for batch in batches]


def settle_queued(
    chain: ChainClient,
    prover: BillingProver,
    proofs_dir: Path,
    queue: SettlementQueue,
    job_ids: list[int],
) -> BatchSettlement:
    """Prove the queued jobs' bills with one proof and settle them in one transaction. Jobs the
    chain already shows settled (by a run that stopped before releasing them) are not proved or
    submitted again. The jobs stay queued: release them with ``SettlementQueue.remove`` once
    their settlement is recorded.

    Raises:
        ProofError: the batch proof could not be made or did not verify.
        ContractRevert: the contract refused the batch; none of its jobs is settled.
    """
    queued = [ready for ready in map(queue.get, job_ids) if ready is not None]
    found = {ready.job_id: chain.find_settlement(ready.job_id) for ready in queued}
    receipts = {job_id: receipt for job_id, receipt in found.items() if receipt is not None}
    unsettled = [
        (ready.claimed, ready.stored, ready.result)
        for ready in queued
        if ready.job_id not in receipts
    ]
    proof = None
    if unsettled:
        proof = prove_billing_batch(prover, proofs_dir, unsettled)
        for receipt in settle_batch(chain, unsettled, proof):
            receipts[receipt.job_id] = receipt
    return BatchSettlement(jobs=[(ready, receipts[ready.job_id]) for ready in queued], proof=proof)
