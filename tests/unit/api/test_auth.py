from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from fabstir.api.auth import AccessControl
from fabstir.api.schemas import AuthRequest
from fabstir.client import sign_access
from fabstir.domain import ZERO_ADDRESS, Job, JobState
from fabstir.errors import AccessDenied, JobRejected
from fabstir.settings import ANVIL_KEYS

MARKET = "0x" + "ab" * 20
HOST = Account.from_key(ANVIL_KEYS[1]).address
RENTER = Account.from_key(ANVIL_KEYS[2]).address
NOW = 1_000_000


def job(state: JobState = JobState.POSTED, host: str = HOST, renter: str = RENTER) -> Job:
    return Job(
        job_id=5,
        renter=renter,
        host=host,
        model_id="0x" + "11" * 32,
        prompt_hash="0x" + "22" * 32,
        prompt_uri="",
        max_tokens=10,
        price_per_token_wei=1,
        deposit_wei=10,
        deadline=NOW + 100,
        state=state,
        result_hash="0x" + "00" * 32,
        tokens_used=0,
    )


def request(key: str = ANVIL_KEYS[2], **overrides: object) -> AuthRequest:
    fields = {"chain_id": 31337, "marketplace": MARKET, "job_id": 5, "host": HOST}
    fields["expires_at"] = NOW + 60
    fields.update(overrides)
    signed = sign_access(key, **fields)  # type: ignore[arg-type]
    return AuthRequest(**signed.__dict__)


@pytest.fixture
def clock() -> list[float]:
    return [float(NOW)]


@pytest.fixture
def access(clock: list[float]) -> AccessControl:
    return AccessControl(
        chain_id=31337, marketplace=MARKET, host=HOST, max_ttl_s=600, clock=lambda: clock[0]
    )


def test_the_renter_gets_a_token_for_its_job_until_expiry(
    access: AccessControl, clock: list[float]
) -> None:
    token, grant = access.grant(request(), job())
    assert access.check(token) == grant and grant.job_id == 5
    clock[0] = NOW + 61
    with pytest.raises(AccessDenied) as info:
        access.check(token)
    assert info.value.code == "token_expired"


@pytest.mark.parametrize(
    ("make_request", "make_job", "code"),
    [
        (lambda: request(expires_at=NOW), job, "auth_expired"),
        (lambda: request(expires_at=NOW + 601), job, "expiry_too_far"),
        (lambda: request(key=ANVIL_KEYS[3]), job, "not_job_renter"),
        (lambda: request(host="0x" + "12" * 20), job, "not_our_job"),
        (request, lambda: job(host="0x" + "12" * 20), "not_our_job"),
        (request, lambda: job(state=JobState.REFUNDED), "job_closed"),
        (lambda: request(chain_id=1), job, "not_job_renter"),  # signed for another chain
    ],
)
def test_bad_requests_are_refused_with_a_stable_code(
    access: AccessControl, make_request, make_job, code: str
) -> None:
    with pytest.raises((AccessDenied, JobRejected)) as info:
        access.grant(make_request(), make_job())
    assert info.value.code == code


def test_a_nonce_works_once(access: AccessControl) -> None:
    signed = request()
    access.grant(signed, job())
    with pytest.raises(JobRejected) as info:
        access.grant(signed, job())
    assert info.value.code == "nonce_reused"


def test_verifying_a_request_spends_nothing_until_the_grant(access: AccessControl) -> None:
    signed = request()
    # The handshake verifies, claims the job, then grants: a refused claim leaves the nonce.
    assert access.verify(signed, job()).lower() == RENTER.lower()
    assert access.verify(signed, job(state=JobState.CLAIMED))
    access.grant(signed, job(state=JobState.CLAIMED))
    with pytest.raises(JobRejected) as info:
        access.verify(signed, job(state=JobState.CLAIMED))
    assert info.value.code == "nonce_reused"


def test_an_open_job_can_be_accessed(access: AccessControl) -> None:
    assert access.grant(request(), job(host=ZERO_ADDRESS))[1].renter == RENTER


def test_unknown_tokens_are_refused(access: AccessControl) -> None:
    with pytest.raises(AccessDenied) as info:
        access.check("fab_nope")
    assert info.value.code == "invalid_token"


def journaled(clock: list[float], path: Path) -> AccessControl:
    return AccessControl(
        chain_id=31337,
        marketplace=MARKET,
        host=HOST,
        max_ttl_s=600,
        clock=lambda: clock[0],
        journal=path,
    )


def test_a_restart_keeps_spent_nonces_and_granted_tokens(
    clock: list[float], tmp_path: Path
) -> None:
    path = tmp_path / "api" / "access.jsonl"
    signed = request()
    token, grant = journaled(clock, path).grant(signed, job())

    restarted = journaled(clock, path)

    assert restarted.check(token) == grant
    with pytest.raises(JobRejected) as replay:
        restarted.grant(signed, job())
    assert replay.value.code == "nonce_reused"
    assert token not in path.read_text()  # only digests: a leaked journal grants nothing


def test_a_restart_drops_expired_entries_and_a_torn_last_line(
    clock: list[float], tmp_path: Path
) -> None:
    path = tmp_path / "access.jsonl"
    token, _ = journaled(clock, path).grant(request(), job())
    with path.open("a") as out:
        out.write('{"nonce": "0xab:0x01", "expi')  # the process died mid-write

    clock[0] = NOW + 61
    restarted = journaled(clock, path)

    with pytest.raises(AccessDenied) as expired:
        restarted.check(token)
    assert expired.value.code == "invalid_token"
    assert path.read_text() == ""  # compacted to the live entries: none
    clock[0] = NOW + 62
    assert restarted.grant(request(nonce="07" * 32, expires_at=NOW + 120), job())
