"""The job index: which result belongs to which job, and which jobs to which renter.

Results are content-addressed, so nothing in a result's key says whose it is. The index records
``jobs/<job_id>.json`` (job → renter, result key, hash; keys, not URIs, so the index stays
valid when the objects migrate to another base URL) and a pointer ``renters/<renter>/<job_id>``, so
that erasing a renter lists their jobs without scanning every job.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass

from fabstir.errors import ObjectMissing
from fabstir.storage.store import ObjectStore

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class JobEntry:
    """Where one job's result lives and who paid for it."""

    job_id: int
    renter: str
    result_key: str
    result_sha256: str


def _renter_key(renter: str) -> str:
    if not _ADDRESS.match(renter):
        raise ValueError(f"renter must be a 0x-prefixed 20-byte address, got {renter!r}")
    return renter.lower()


def _job_key(job_id: int) -> str:
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 0:
        raise ValueError(f"job id must be a non-negative integer, got {job_id!r}")
    return f"jobs/{job_id}.json"


class JobIndex:
    """Record and look up job → result entries in an object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def record(self, entry: JobEntry) -> None:
        """Record ``entry``; recording the same entry again rewrites the same bytes."""
        renter = _renter_key(entry.renter)
        data = json.dumps(asdict(entry), sort_keys=True, separators=(",", ":")).encode()
        # Pointer first: a crash between the two writes leaves a pointer erase can follow, never
        # an indexed job that erasure cannot find.
        self.store.put(f"renters/{renter}/{entry.job_id}", b"")
        self.store.put(_job_key(entry.job_id), data)

    def lookup(self, job_id: int) -> JobEntry | None:
        try:
            data = self.store.get(_job_key(job_id))
        except ObjectMissing:
            return None
        return JobEntry(**json.loads(data))

    def jobs_of(self, renter: str) -> list[int]:
        prefix = f"renters/{_renter_key(renter)}"
        return sorted(int(key.rsplit("/", 1)[-1]) for key in self.store.list(prefix))

    def erase_renter(self, renter: str) -> int:
        """Delete every result and index entry of ``renter``; return how many jobs were erased."""
        renter_key = _renter_key(renter)
        job_ids = self.jobs_of(renter)
        for job_id in job_ids:
            entry = self.lookup(job_id)
            if entry is not None:
                self.store.delete(entry.result_key)
                self.store.delete(_job_key(job_id))
            self.store.delete(f"renters/{renter_key}/{job_id}")
        log.info("erased renter results", extra={"jobs": len(job_ids)})
        return len(job_ids)
