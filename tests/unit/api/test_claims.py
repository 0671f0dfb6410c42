"""Jobs claimed at their renter's handshake, and the price the API claims them at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fabstir.api import ApiServices, JobStreams
from fabstir.api.claims import JobClaims
from fabstir.api.limits import StreamSlots
from fabstir.domain import ZERO_ADDRESS, Job, JobState
from fabstir.errors import JobRejected, LimitExceeded
from fabstir.pipeline.claim import Headroom

NOW = 1_000_000
HOST = "0x" + "12" * 20
RENTER = "0x" + "3a" * 20


def job(job_id: int, state: JobState, deadline: int = NOW + 100, renter: str = RENTER) -> Job:
    return Job(
        job_id=job_id,
        renter=renter,
        host=ZERO_ADDRESS if state is JobState.POSTED else HOST,
        model_id="0x" + "11" * 32,
        prompt_hash="0x" + "22" * 32,
        prompt_uri="fabstir:direct",
        max_tokens=10,
        price_per_token_wei=1,
        deposit_wei=10,
        deadline=deadline,
        state=state,
        result_hash="0x" + "00" * 32,
        tokens_used=0,
    )


def test_a_claimed_jobs_record_serves_its_first_request_only() -> None:
    chain = Chain()
    chain.jobs[2] = job(2, JobState.SETTLED)
    claims = JobClaims(chain.claim, StreamSlots(4), clock=lambda: NOW)

    claimed = claims.claim(1, RENTER)
    assert claims.claim(1, RENTER) == claimed, "authenticating again claims nothing"
    assert claims.claim(2, RENTER).state is JobState.SETTLED

    assert claims.take(1) == claimed
    assert claims.take(1) is None, "later requests read the chain"
    assert claims.take(2) is None, "a settled job has nothing to answer"
    claims.claim(1, RENTER)  # e.g. to read the result: not a new promise
    assert claims.take(1) is None and chain.claimed == [1]


def test_records_of_jobs_never_used_are_dropped_after_their_deadline() -> None:
    clock = [float(NOW)]
    chain = Chain(deadlines={1: NOW + 10})
    claims = JobClaims(chain.claim, StreamSlots(4), clock=lambda: clock[0])
    claims.claim(1, RENTER)
    clock[0] = NOW + 11
    second = claims.claim(2, RENTER)

    assert claims.take(1) is None and claims.take(2) == second


class Chain:
    """Stands in for claim_for_renter's chain side: a posted job is checked, then claimed."""

    def __init__(
        self, renters: dict[int, str] | None = None, deadlines: dict[int, int] | None = None
    ) -> None:
        self.jobs: dict[int, Job] = {}
        self.claimed: list[int] = []
        self.renters = renters or {}
        self.deadlines = deadlines or {}

    def claim(self, job_id: int, headroom: Headroom) -> Job:
        renter = self.renters.get(job_id, RENTER)
        deadline = self.deadlines.get(job_id, NOW + 100)
        current = self.jobs.get(job_id, job(job_id, JobState.POSTED, deadline, renter))
        if current.state is JobState.POSTED:
            headroom.check(job_id)
            self.claimed.append(job_id)
            current = self.jobs[job_id] = job(job_id, JobState.CLAIMED, deadline, renter)
        return current


class FullMachine:
    def check(self, job_id: int) -> None:
        raise JobRejected("no memory", code="no_capacity", job_id=job_id)


def test_no_more_jobs_are_claimed_than_stream_slots_can_answer() -> None:
    chain, slots = Chain(), StreamSlots(2)
    claims = JobClaims(chain.claim, slots, clock=lambda: NOW)
    claims.claim(1, RENTER)
    claims.claim(2, RENTER)
    with pytest.raises(JobRejected) as full:
        claims.claim(3, RENTER)
    assert full.value.code == "no_capacity" and chain.claimed == [1, 2]
    assert claims.claim(1, RENTER).state is JobState.CLAIMED, "a job already ours needs no new slot"

    assert claims.take(1) is not None
    slots.acquire()  # job 1's answer in progress
    with pytest.raises(JobRejected):
        claims.claim(3, RENTER)
    slots.release()
    claims.claim(3, RENTER)
    assert chain.claimed == [1, 2, 3]


def test_one_renter_cannot_hold_more_than_its_share_of_unasked_claims() -> None:
    other = "0x" + "56" * 20
    chain = Chain(renters={3: other})
    claims = JobClaims(chain.claim, StreamSlots(8), clock=lambda: NOW, per_renter=2)
    claims.claim(1, RENTER)
    claims.claim(2, "0x" + "3A" * 20)  # the same address, checksum casing
    with pytest.raises(LimitExceeded) as held:
        claims.claim(4, RENTER)
    assert held.value.code == "too_many_claims" and held.value.context["retry_after_s"] == 100
    assert chain.claimed == [1, 2], "the refused job is left unclaimed"
    assert claims.claim(2, RENTER).state is JobState.CLAIMED, "a job it holds is no new claim"
    claims.claim(3, other)  # another renter is not held back

    assert claims.take(1) is not None  # the renter asks for job 1
    claims.claim(4, RENTER)
    assert chain.claimed == [1, 2, 3, 4]


def test_a_machine_without_headroom_claims_nothing() -> None:
    chain = Chain()
    claims = JobClaims(chain.claim, StreamSlots(4), machine=FullMachine(), clock=lambda: NOW)
    with pytest.raises(JobRejected) as refused:
        claims.claim(1, RENTER)
    assert refused.value.code == "no_capacity" and chain.claimed == []


@pytest.mark.parametrize("price", [0, -1, 1.5, "1000", True])
def test_the_api_needs_a_positive_integer_price(price: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="price_per_token_wei"):
        ApiServices(
            chain=None,  # type: ignore[arg-type]
            catalog=None,  # type: ignore[arg-type]
            engines=None,  # type: ignore[arg-type]
            store=None,  # type: ignore[arg-type]
            streams=JobStreams(),
            run_job=lambda job_id: None,  # type: ignore[arg-type,return-value]
            proofs_dir=tmp_path,
            host_private_key="0x" + "01" * 32,
            price_per_token_wei=price,
        )
