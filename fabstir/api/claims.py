"""Jobs claimed when their renter authenticates, so a request finds its job already ours.

Claiming is a transaction (tens of ms) that would otherwise sit between a renter's request and
its first token; at the handshake it costs nothing the renter waits on while tokens stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fabstir.domain import Job, JobState
from fabstir.errors import JobRejected, LimitExceeded

if TYPE_CHECKING:
    from fabstir.api.limits import StreamSlots
    from fabstir.pipeline.claim import Headroom

Claim = Callable[[int, "Headroom"], Job]
"""Claim a job unless it is already ours, checking the headroom first; return its record."""


class JobClaims:
    """Claim each job once, at its renter's handshake, and keep the record read then for the
    renter's first request (its checks then need no chain read before the answer starts).

    A job is claimed only while the jobs waiting for their renter's request, plus the answers
    in progress, leave a stream slot for it (and the machine has headroom): a claimed job is a
    promise to answer before its deadline. One renter may hold at most ``per_renter`` such
    promises, so a renter who authenticates for many jobs and asks for none cannot take every
    slot from the others.
    """

    def __init__(
        self,
        claim: Claim,
        slots: StreamSlots,
        machine: Headroom | None = None,
        clock: Callable[[], float] = time.time,
        per_renter: int = 4,
    ) -> None:
        self._claim = claim
        self._slots = slots
        self._machine = machine
        self._clock = clock
        self._per_renter = per_renter
        self._jobs: dict[int, Job] = {}
        # One claim at a time: a second handshake for a job must find it claimed, not race it,
        # and the count of waiting jobs must not be passed by two at once.
        self._lock = threading.Lock()

    def claim(self, job_id: int, renter: str) -> Job:
        """Claim the job of ``renter`` unless it is already ours; return it as it now stands on
        chain.

        Raises:
            JobRejected: the job is not one this host can serve (see
                ``pipeline.claim_for_renter``), or no slot is left for it (``no_capacity``); it
                is left unclaimed.
            LimitExceeded: the renter already holds ``per_renter`` claimed jobs it has not asked
                for (``too_many_claims``); the job is left unclaimed.
            ContractRevert: the contract refused the claim.
        """
        with self._lock:
            now = self._clock()
            # A record is dropped once used or past its deadline, so unused ones cannot pile up.
            self._jobs = {key: kept for key, kept in self._jobs.items() if kept.deadline > now}
            headroom = _RenterHeadroom(self, renter)
            job = self._claim(job_id, headroom)
            # Only a claim made here is a promise to keep: a job already ours (a renter
            # authenticating again, e.g. to read its result) is not recorded once more.
            if headroom.claimed and job.state is JobState.CLAIMED:
                self._jobs[job_id] = job
        return job

    def _check(self, job_id: int, renter: str) -> None:
        """Refuse a new claim while every stream slot is promised, or ``renter`` holds its
        share of them (called under the lock)."""
        held = [key for key, kept in self._jobs.items() if _same(kept.renter, renter)]
        if len(held) >= self._per_renter:
            # Asking for a held job frees a place at once; else the soonest deadline does.
            soonest = min(self._jobs[key].deadline for key in held)
            raise LimitExceeded(
                "this renter holds its share of claimed jobs not yet asked for: ask for one",
                code="too_many_claims",
                job_id=job_id,
                held=len(held),
                retry_after_s=max(1, int(soonest - self._clock())),
            )
        promised = len(self._jobs) + self._slots.used
        if promised >= self._slots.limit:
            raise JobRejected(
                "every stream slot is promised to a claimed job or an answer in progress",
                code="no_capacity",
                job_id=job_id,
                promised=promised,
                retry_after_s=1,
            )
        if self._machine is not None:
            self._machine.check(job_id)

    def take(self, job_id: int) -> Job | None:
        """Return, once, the record of a job claimed at its handshake and not yet answered."""
        with self._lock:
            return self._jobs.pop(job_id, None)


class _RenterHeadroom:
    """The claims' headroom check for one renter's handshake; ``claimed`` once it passed (the
    check is made only before a new claim)."""

    def __init__(self, claims: JobClaims, renter: str) -> None:
        self._claims = claims
        self._renter = renter
        self.claimed = False

    def check(self, job_id: int) -> None:
        self._claims._check(job_id, self._renter)
        self.claimed = True


def _same(address: str, other: str) -> bool:
    return address.lower() == other.lower()
