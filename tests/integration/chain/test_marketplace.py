"""Escrow, claim, settlement and refunds of JobMarketplace, with exact wei accounting."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fabstir.chain import ChainClient, Deployment
from fabstir.domain import JobState
from fabstir.errors import ContractRevert

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct-q4_1"
PRICE_PER_TOKEN_WEI = 1_000_000_007
RESULT_HASH = "0x" + "22" * 32
RESULT_URI = "file:///results/1.cbor"


@pytest.fixture
def registered_host(host: ChainClient) -> ChainClient:
    host.register([MODEL], PRICE_PER_TOKEN_WEI)
    return host


@pytest.fixture
def post_job(renter: ChainClient, chain_now: Callable[[], int]) -> Callable[..., int]:
    """Post a job as the renter: by default fully funded, at our price, due in an hour."""

    def post(
        *,
        model_name: str = MODEL,
        max_tokens: int = 100,
        price_per_token_wei: int = PRICE_PER_TOKEN_WEI,
        deposit_wei: int | None = None,
        ttl_s: int = 3600,
    ) -> int:
        return renter.post_job(
            model_name,
            "0x" + "11" * 32,
            "file:///prompts/1.json",
            max_tokens,
            price_per_token_wei,
            max_tokens * price_per_token_wei if deposit_wei is None else deposit_wei,
            chain_now() + ttl_s,
        )

    return post


def _revert_name(call: Callable[[], object]) -> str:
    with pytest.raises(ContractRevert) as caught:
        call()
    return caught.value.error_name


@pytest.mark.parametrize(
    ("max_tokens", "tokens", "extra_deposit_wei"),
    [(100, 37, 0), (100, 100, 0), (100, 0, 0), (50, 13, 123_456_789)],
    ids=["partial", "all-tokens", "no-tokens", "overfunded"],
)
def test_settlement_pays_host_fee_and_refund_to_the_wei(
    deployment: Deployment,
    registered_host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    max_tokens: int,
    tokens: int,
    extra_deposit_wei: int,
) -> None:
    host = registered_host
    deposit_wei = max_tokens * PRICE_PER_TOKEN_WEI + extra_deposit_wei
    job_id = post_job(max_tokens=max_tokens, deposit_wei=deposit_wei)
    market = deployment.job_marketplace
    assert renter.balance_of(market) == deposit_wei

    host_before = host.balance_of(host.address)
    treasury_before = host.balance_of(deployment.treasury)
    renter_before = renter.balance_of(renter.address)
    claim_tx = host.claim_job(job_id)
    settle_tx = host.submit_result(job_id, RESULT_HASH, RESULT_URI, tokens)

    payment_wei = tokens * PRICE_PER_TOKEN_WEI
    fee_wei = payment_wei * deployment.fee_bps // 10_000
    host_gas_wei = host.gas_cost_wei(claim_tx) + host.gas_cost_wei(settle_tx)
    assert host.balance_of(host.address) - host_before == payment_wei - fee_wei - host_gas_wei
    assert host.balance_of(deployment.treasury) - treasury_before == fee_wei
    assert renter.balance_of(renter.address) - renter_before == deposit_wei - payment_wei
    assert renter.balance_of(market) == 0

    job = renter.get_job(job_id)
    assert (job.state, job.host, job.tokens_used) == (JobState.SETTLED, host.address, tokens)
    assert (job.result_hash, job.result_uri) == (RESULT_HASH, RESULT_URI)

    receipt = renter.find_settlement(job_id)
    assert receipt is not None
    assert receipt.settle_tx == settle_tx
    assert receipt.tokens == tokens
    assert receipt.paid_to_host_wei == payment_wei - fee_wei
    assert receipt.fee_wei == fee_wei
    assert receipt.refund_wei == deposit_wei - payment_wei
    assert (receipt.result_hash, receipt.result_uri) == (RESULT_HASH, RESULT_URI)


def test_posted_job_reads_back_as_posted(
    renter: ChainClient, post_job: Callable[..., int], chain_now: Callable[[], int]
) -> None:
    first = post_job()
    job_id = post_job(max_tokens=10, deposit_wei=5)
    assert job_id == first + 1 == 2
    job = renter.get_job(job_id)
    assert job.state == JobState.POSTED
    assert (job.renter, job.max_tokens, job.deposit_wei) == (renter.address, 10, 5)
    assert job.price_per_token_wei == PRICE_PER_TOKEN_WEI
    assert job.prompt_hash == "0x" + "11" * 32
    assert job.deadline > chain_now()
    assert renter.find_settlement(job_id) is None


def test_posting_without_deposit_is_refused(post_job: Callable[..., int]) -> None:
    assert _revert_name(lambda: post_job(deposit_wei=0)) == "ZeroDeposit"


def test_posting_with_a_past_deadline_is_refused(post_job: Callable[..., int]) -> None:
    assert _revert_name(lambda: post_job(ttl_s=0)) == "DeadlineInPast"


def test_underfunded_job_cannot_be_claimed(
    registered_host: ChainClient, post_job: Callable[..., int]
) -> None:
    required_wei = 100 * PRICE_PER_TOKEN_WEI
    job_id = post_job(max_tokens=100, deposit_wei=required_wei - 1)
    with pytest.raises(ContractRevert) as caught:
        registered_host.claim_job(job_id)
    assert caught.value.error_name == "InsufficientDeposit"
    assert caught.value.error_args == (required_wei - 1, required_wei)
    assert caught.value.context["job_id"] == job_id


def test_job_for_a_model_the_host_does_not_serve_cannot_be_claimed(
    registered_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job(model_name="another-model")
    assert _revert_name(lambda: registered_host.claim_job(job_id)) == "ModelNotServed"


def test_job_priced_below_the_host_cannot_be_claimed(
    registered_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job(price_per_token_wei=PRICE_PER_TOKEN_WEI - 1)
    with pytest.raises(ContractRevert) as caught:
        registered_host.claim_job(job_id)
    assert caught.value.error_name == "PriceAboveJob"
    assert caught.value.error_args == (PRICE_PER_TOKEN_WEI, PRICE_PER_TOKEN_WEI - 1)


def test_job_priced_above_the_host_can_be_claimed(
    registered_host: ChainClient, renter: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job(price_per_token_wei=PRICE_PER_TOKEN_WEI + 1)
    registered_host.claim_job(job_id)
    assert renter.get_job(job_id).state == JobState.CLAIMED


def test_unregistered_host_cannot_claim(
    other_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job()
    assert _revert_name(lambda: other_host.claim_job(job_id)) == "HostNotRegistered"


def test_claimed_job_cannot_be_claimed_again(
    registered_host: ChainClient, other_host: ChainClient, post_job: Callable[..., int]
) -> None:
    other_host.register([MODEL], PRICE_PER_TOKEN_WEI)
    job_id = post_job()
    registered_host.claim_job(job_id)
    with pytest.raises(ContractRevert) as caught:
        other_host.claim_job(job_id)
    assert caught.value.error_name == "NotPosted"
    assert caught.value.error_args == (job_id, JobState.CLAIMED)


def test_expired_job_cannot_be_claimed(
    registered_host: ChainClient,
    post_job: Callable[..., int],
    advance_time: Callable[[int], None],
) -> None:
    job_id = post_job(ttl_s=60)
    advance_time(61)
    assert _revert_name(lambda: registered_host.claim_job(job_id)) == "DeadlinePassed"


def test_unknown_job_cannot_be_claimed(registered_host: ChainClient) -> None:
    assert _revert_name(lambda: registered_host.claim_job(99)) == "UnknownJob"


def test_refused_claim_costs_no_gas(
    registered_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job(deposit_wei=1)
    balance_wei = registered_host.balance_of(registered_host.address)
    with pytest.raises(ContractRevert):
        registered_host.claim_job(job_id)
    assert registered_host.balance_of(registered_host.address) == balance_wei


def test_only_the_claiming_host_can_submit(
    registered_host: ChainClient, other_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job()
    registered_host.claim_job(job_id)
    with pytest.raises(ContractRevert) as caught:
        other_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 1)
    assert caught.value.error_name == "NotJobHost"
    assert caught.value.error_args == (other_host.address, registered_host.address)


def test_unclaimed_job_cannot_be_submitted(
    registered_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job()
    with pytest.raises(ContractRevert) as caught:
        registered_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 1)
    assert (caught.value.error_name, caught.value.error_args) == (
        "NotClaimed",
        (job_id, JobState.POSTED),
    )


def test_more_tokens_than_the_maximum_are_refused(
    registered_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job(max_tokens=10)
    registered_host.claim_job(job_id)
    with pytest.raises(ContractRevert) as caught:
        registered_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 11)
    assert (caught.value.error_name, caught.value.error_args) == ("TokensAboveMax", (11, 10))


def test_a_job_settles_only_once(
    deployment: Deployment,
    registered_host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
) -> None:
    job_id = post_job()
    registered_host.claim_job(job_id)
    registered_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 5)
    with pytest.raises(ContractRevert) as caught:
        registered_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 5)
    assert caught.value.error_args == (job_id, JobState.SETTLED)
    assert caught.value.error_name == "NotClaimed"
    assert renter.balance_of(deployment.job_marketplace) == 0


def test_refund_before_the_deadline_is_refused(
    other_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job()
    assert _revert_name(lambda: other_host.refund_expired(job_id)) == "DeadlineNotReached"


@pytest.mark.parametrize("claimed", [False, True], ids=["posted", "claimed"])
def test_anyone_can_refund_an_expired_job_in_full(
    deployment: Deployment,
    registered_host: ChainClient,
    renter: ChainClient,
    other_host: ChainClient,
    post_job: Callable[..., int],
    advance_time: Callable[[int], None],
    claimed: bool,
) -> None:
    deposit_wei = 100 * PRICE_PER_TOKEN_WEI + 3
    job_id = post_job(max_tokens=100, deposit_wei=deposit_wei, ttl_s=60)
    if claimed:
        registered_host.claim_job(job_id)
    advance_time(61)
    renter_before = renter.balance_of(renter.address)
    other_host.refund_expired(job_id)
    assert renter.balance_of(renter.address) - renter_before == deposit_wei
    assert renter.balance_of(deployment.job_marketplace) == 0
    assert renter.get_job(job_id).state == JobState.REFUNDED
    assert _revert_name(lambda: other_host.refund_expired(job_id)) == "NotRefundable"
    assert _revert_name(lambda: registered_host.claim_job(job_id)) == "NotPosted"


def test_settled_job_cannot_be_refunded(
    registered_host: ChainClient,
    other_host: ChainClient,
    post_job: Callable[..., int],
    advance_time: Callable[[int], None],
) -> None:
    job_id = post_job(ttl_s=60)
    registered_host.claim_job(job_id)
    registered_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 5)
    advance_time(61)
    assert _revert_name(lambda: other_host.refund_expired(job_id)) == "NotRefundable"
