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
from fabstir.errors import JobRejected

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
    promise to answer before its deadline.
    """

    def __init__(
        self,
        claim: Claim,
        slots: StreamSlots,
        machine: Headroom | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._claim = claim
        self._slots = slots
        self._machine = machine
        self._clock = clock
        self._jobs: dict[int, Job] = {}
        # One claim at a time: a second handshake for a job must find it claimed, not race it,
        # and the count of waiting jobs must not be passed by two at once.
        self._lock = threading.Lock()

    def claim(self, job_id: int) -> Job:
        """Claim the job unless it is already ours; return it as it now stands on chain.

        Raises:
            JobRejected: the job is not one this host can serve (see
                ``pipeline.claim_for_renter``), or no slot is left for it (``no_capacity``); it
                is left unclaimed.
            ContractRevert: the contract refused the claim.
        """
        with self._lock:
            now = self._clock()
            # A record is dropped once used or past its deadline, so unused ones cannot pile up.
            self._jobs = {key: kept for key, kept in self._jobs.items() if kept.deadline > now}
            job = self._claim(job_id, self)
            if job.state is JobState.CLAIMED:
                self._jobs[job_id] = job
        return job

    def check(self, job_id: int) -> None:
        """Refuse a new claim while every stream slot is promised (called under the lock)."""
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
