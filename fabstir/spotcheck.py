"""Re-execution spot checks: re-run a sample of settled jobs and compare with what was delivered.

Jobs decode greedily (temperature 0), so the same model on the same prompt and token budget gives
the same text. For each sampled job the check reads the delivered result record at the job's
on-chain URI, requires its bytes to hash to the on-chain result hash (``result_altered``
otherwise), re-runs the model and compares the SHA-256 of the text and the token count with the
record (``output_differs`` / ``tokens_differ``). A job answered from the semantic cache is
``skipped``: a paraphrase's cached answer is not what the model says to this prompt.

Every outcome is written to ``spot-checks/job-<id>.json`` in storage; a failure is also handed
to ``on_failure`` (the Prefect flow turns it into a ``fabstir.spot-check.failed`` event). The
scheduled flow checks the jobs this node delivered (its job index) that are settled on chain and
not checked yet; the QA report reads the stored outcomes back for its pass rate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from fabstir.domain import JobState
from fabstir.errors import JobRejected, ObjectMissing
from fabstir.pipeline import DETERMINISTIC_TEMPERATURE, read_prompt
from fabstir.storage import decode_record

if TYPE_CHECKING:
    from fabstir.chain import ChainClient
    from fabstir.domain import Job
    from fabstir.models import EnginePool, ModelManager
    from fabstir.storage import ObjectStore

log = logging.getLogger(__name__)

SpotCheckStatus = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class SpotCheck:
    """The outcome of re-running one settled job.

    ``reason`` is ``reproduced``, ``result_missing``, ``result_altered``, ``output_differs``,
    ``tokens_differ`` or ``cache_hit``. ``expected``/``actual`` are what was compared: the
    on-chain result hash and the stored bytes' hash, or the delivered and re-executed text hashes
    (0x SHA-256), or token counts as decimal strings.
    """

    job_id: int
    status: SpotCheckStatus
    reason: str
    expected: str
    actual: str
    checked_at: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


JOBS_PREFIX = "jobs/"
SPOT_CHECKS_PREFIX = "spot-checks/"


def spot_check_key(job_id: int) -> str:
    return f"{SPOT_CHECKS_PREFIX}job-{job_id}.json"


def _indexed_job_ids(store: ObjectStore) -> list[int]:
    # The job index (fabstir.storage.job_index) writes one ``jobs/<id>.json`` per delivered job.
    names = (key.rsplit("/", 1)[-1] for key in store.list(JOBS_PREFIX))
    return sorted(int(name.removesuffix(".json")) for name in names if name.endswith(".json"))


def pending_spot_checks(
    chain: ChainClient, store: ObjectStore, rate: float, seed: str
) -> list[int]:
    """Return the jobs to spot-check now: those this node delivered (its job index), picked by
    :func:`select_for_spot_check`, without a stored outcome yet and settled on chain. A picked job
    that is not settled yet is picked again on a later run.

    Raises:
        ValueError: ``rate`` is outside [0, 1].
        TransientError: storage or the RPC stayed unreachable.
    """
    picked = select_for_spot_check(_indexed_job_ids(store), rate, seed)
    return [
        job_id
        for job_id in picked
        if not store.exists(spot_check_key(job_id))
        and chain.get_job(job_id).state is JobState.SETTLED
    ]


def read_spot_checks(store: ObjectStore, since: float = 0.0) -> list[SpotCheck]:
    """Return the stored spot-check outcomes checked after ``since`` (unix seconds), by job id."""
    outcomes = (SpotCheck(**json.loads(store.get(key))) for key in store.list(SPOT_CHECKS_PREFIX))
    return sorted(
        (outcome for outcome in outcomes if outcome.checked_at > since), key=lambda o: o.job_id
    )


def select_for_spot_check(job_ids: Iterable[int], rate: float, seed: str) -> list[int]:
    """Return the jobs of ``job_ids`` to re-run: each is picked when SHA-256 of ``seed:job_id``,
    read as a fraction of 2**256, is below ``rate``. The same seed always picks the same jobs, and
    about ``rate`` of any set of jobs.

    Raises:
        ValueError: ``rate`` is outside [0, 1].
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    threshold = int(rate * 2**256)
    return [
        job_id
        for job_id in job_ids
        if int.from_bytes(hashlib.sha256(f"{seed}:{job_id}".encode()).digest(), "big") < threshold
    ]


def spot_check(
    chain: ChainClient,
    store: ObjectStore,
    catalog: ModelManager,
    engines: EnginePool,
    job_id: int,
    on_failure: Callable[[SpotCheck], None] | None = None,
) -> SpotCheck:
    """Re-run one settled job and compare with its delivered result; record the outcome.

    Raises:
        JobRejected: the job is not settled (``code="job_not_settled"``) or unknown.
        ModelIntegrityError: the model file does not match its registered hash.
    """
    job = chain.get_job(job_id)
    if job.state is not JobState.SETTLED:
        raise JobRejected(
            "only settled jobs are spot-checked",
            code="job_not_settled",
            job_id=job_id,
            state=job.state.name,
        )
    outcome = _compare(store, catalog, engines, job, chain.result_uri(job_id))
    store.put(spot_check_key(job_id), outcome.to_json())
    log_level = logging.WARNING if outcome.status == "failed" else logging.INFO
    log.log(log_level, "spot check done", extra=asdict(outcome))
    if outcome.status == "failed" and on_failure is not None:
        on_failure(outcome)
    return outcome


def _compare(
    store: ObjectStore, catalog: ModelManager, engines: EnginePool, job: Job, result_uri: str
) -> SpotCheck:
    def outcome(status: SpotCheckStatus, reason: str, expected: str, actual: str) -> SpotCheck:
        return SpotCheck(job.job_id, status, reason, expected, actual, time.time())

    try:
        delivered = store.get(store.key_of(result_uri))
    except ObjectMissing:
        return outcome("failed", "result_missing", job.result_hash, "")
    delivered_hash = _sha256(delivered)
    if delivered_hash != job.result_hash:
        return outcome("failed", "result_altered", job.result_hash, delivered_hash)
    record = decode_record(delivered)
    if record.cache_hit:
        return outcome("skipped", "cache_hit", "", "")
    prompt = read_prompt(store, job).decode("utf-8")
    model = catalog.fetch(catalog.resolve(job.model_id))
    rerun = engines.engine_for(model).generate(
        prompt, job.max_tokens, temperature=DETERMINISTIC_TEMPERATURE
    )
    expected_text, actual_text = _sha256(record.output.encode()), _sha256(rerun.text.encode())
    if expected_text != actual_text:
        return outcome("failed", "output_differs", expected_text, actual_text)
    if rerun.completion_tokens != job.tokens_used:
        return outcome(
            "failed", "tokens_differ", str(job.tokens_used), str(rerun.completion_tokens)
        )
    return outcome("passed", "reproduced", expected_text, actual_text)


def _sha256(data: bytes) -> str:
    return "0x" + hashlib.sha256(data).hexdigest()
