"""Find the jobs that should have a run and have none: the safety net under the watcher.

Jobs are scanned by id from a low-water mark kept in storage: every job below it is final for
this host (settled, refunded, cancelled, expired or another host's), so a scan costs one read
per job that is still open, not one per job ever posted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence

from fabstir.chain import ETH, ChainClient, Eligibility, JobEvent, JobEventKind, model_id_of
from fabstir.domain import ZERO_ADDRESS, Job, JobState
from fabstir.errors import JobRejected, ObjectMissing
from fabstir.pipeline.claim import read_prompt
from fabstir.settings import HostSettings
from fabstir.storage import ObjectStore

log = logging.getLogger(__name__)

LOW_WATER_KEY = "reconcile/low-water.json"
# Run states after which a job has no live run; any other state counts as a run.
ENDED_UNSUCCESSFULLY = frozenset({"FAILED", "CRASHED", "CANCELLED"})


def host_eligibility(chain: ChainClient, host: HostSettings) -> Eligibility:
    """Which posted jobs this host takes: its models, at its prices (ETH and each ERC-20)."""
    prices = {ETH: host.price_per_token_wei}
    prices.update(
        {chain.token_address(symbol): price for symbol, price in host.token_prices.items()}
    )
    return Eligibility(
        host=chain.address,
        model_ids=frozenset(model_id_of(spec.id) for spec in host.models),
        prices=prices,
    )


def _as_posted_event(job: Job) -> JobEvent:
    return JobEvent(
        kind=JobEventKind.POSTED,
        job_id=job.job_id,
        block_number=0,
        log_index=0,
        tx_hash="",
        fields={
            "host": job.host,
            "modelId": job.model_id,
            "paymentToken": job.payment_token,
            "pricePerToken": job.price_per_token_wei,
            "maxTokens": job.max_tokens,
            "deposit": job.deposit_wei,
            "promptUri": job.prompt_uri,
        },
    )


def _is_final_for(job: Job, host: str, now: int) -> bool:
    if job.state in (JobState.SETTLED, JobState.REFUNDED, JobState.CANCELLED):
        return True
    if job.host != ZERO_ADDRESS and job.host.lower() != host.lower():
        return True
    return job.deadline < now


def _awaits_its_renter(store: ObjectStore, job: Job, eligibility: Eligibility) -> bool:
    """A direct job the API claimed when its renter authenticated and whose request (with the
    prompt) has not come yet: a run now could only fail for want of the prompt. Once the prompt
    is stored (by content: another job's request with the same prompt stores it too), an
    unsettled job is run again like any other (a crash mid-answer)."""
    if eligibility.direct_prompt_uri is None or job.prompt_uri != eligibility.direct_prompt_uri:
        return False
    try:
        read_prompt(store, job)
    except ObjectMissing:
        return True
    return False


def open_jobs(chain: ChainClient, store: ObjectStore, eligibility: Eligibility) -> list[int]:
    """Return posted jobs this host would take and jobs it claimed but has not settled.

    With ``eligibility.direct_prompt_uri`` set, this host's posted direct jobs are left to the
    renter API, which claims them when their renter connects, and so are those it claimed whose
    renter has not sent the prompt yet.

    Advances the low-water mark past the leading jobs that are final for this host.
    """
    # The chain's deployment block names this chain: a devnet started again has the same
    # addresses, and its job ids start again below the mark an earlier chain left.
    this_chain = chain.block_hash(chain.deployment.deploy_block)
    low_water = _read_low_water(store, this_chain)
    now, gas_price_wei = chain.chain_time(), chain.gas_price_wei()
    found: list[int] = []
    job_id, leading_final = low_water, True
    while True:
        try:
            job = chain.get_job(job_id)
        except JobRejected as exc:
            if exc.code != "unknown_job":
                raise
            break
        final = _is_final_for(job, eligibility.host, now)
        if leading_final and final:
            low_water = job_id + 1
        leading_final = leading_final and final
        if not final:
            reason = None
            if job.state is JobState.POSTED:
                reason = eligibility.skip_reason(_as_posted_event(job), gas_price_wei)
            elif _awaits_its_renter(store, job, eligibility):
                reason = "direct job claimed at its renter's handshake; the API runs it"
            if reason is None:
                found.append(job_id)
            else:
                log.debug("not ours to take", extra={"job_id": job_id, "reason": reason})
        job_id += 1
    store.put(LOW_WATER_KEY, json.dumps({"job_id": low_water, "chain": this_chain}).encode())
    return found


def _read_low_water(store: ObjectStore, this_chain: str | None) -> int:
    try:
        mark = json.loads(store.get(LOW_WATER_KEY))
    except ObjectMissing:
        return 1
    if mark.get("chain", this_chain) != this_chain:
        log.warning("low-water mark of an earlier chain; scanning jobs from the first")
        return 1
    return int(mark["job_id"])


def jobs_to_start(
    candidates: Sequence[int], run_states: Mapping[int, Sequence[str]], max_runs: int
) -> list[int]:
    """Return the candidates with no live or completed run and fewer than ``max_runs`` runs.

    ``run_states`` maps a job id to the state types (``"RUNNING"``, ``"FAILED"``...) of its runs.
    """
    start = []
    for job_id in candidates:
        states = run_states.get(job_id, ())
        if any(state not in ENDED_UNSUCCESSFULLY for state in states):
            continue
        if len(states) >= max_runs:
            log.warning("job keeps failing; not starting it again", extra={"job_id": job_id})
            continue
        start.append(job_id)
    return start
