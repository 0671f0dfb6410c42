"""JobMarketplace on anvil: escrow in ETH and ERC-20, claim rules, pull payments, refunds,
cancellation, ratings and owner settings, with exact balances before and after."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3
from web3.exceptions import ContractCustomError

from fabstir.chain import (
    ETH,
    ChainClient,
    Deployment,
    ResultSubmission,
    decode_revert,
    load_artifact,
)
from fabstir.domain import ZERO_ADDRESS, JobState
from fabstir.errors import ContractRevert, JobRejected
from fabstir.proofs import BillingProver, read_proof_bytes
from tests.integration.chain.conftest import (
    API_URL,
    MODEL,
    OTHER_MODEL,
    PRICE_PER_TOKEN_WEI,
    STABLE_PRICE,
    offers_for,
)
from tests.support.billing import statement_for

pytestmark = pytest.mark.integration

RESULT_HASH = "0x" + "22" * 32
RESULT_URI = "file:///results/1.cbor"


def revert(call: Callable[[], object]) -> tuple[str, tuple[Any, ...]]:
    with pytest.raises(ContractRevert) as caught:
        call()
    return caught.value.error_name, caught.value.error_args


def raw_revert(w3: Web3, deployment: Deployment, sender: str, fn: str, *args: Any, value: int = 0):
    """Simulate a call the client would not send, and decode its custom error."""
    market = w3.eth.contract(deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi)
    with pytest.raises(ContractCustomError) as caught:
        getattr(market.functions, fn)(*args).call({"from": sender, "value": value})
    error = decode_revert(str(caught.value.data))
    assert isinstance(error, ContractRevert)
    return error.error_name, error.error_args


def credits(client: ChainClient, token: str, *accounts: str) -> list[int]:
    return [client.credit_of(account, token) for account in accounts]


@pytest.mark.parametrize(
    ("currency", "price", "max_tokens", "tokens", "extra"),
    [
        ("ETH", PRICE_PER_TOKEN_WEI, 100, 37, 0),
        ("ETH", PRICE_PER_TOKEN_WEI, 100, 100, 0),
        ("ETH", PRICE_PER_TOKEN_WEI, 100, 0, 0),
        ("ETH", PRICE_PER_TOKEN_WEI, 50, 13, 123_456_789),
        ("USDC", STABLE_PRICE, 100, 37, 0),
        ("USDC", STABLE_PRICE, 50, 13, 7),
    ],
    ids=["eth-partial", "eth-all", "eth-none", "eth-overfunded", "usdc-partial", "usdc-over"],
)
def test_settlement_credits_host_fee_and_refund_then_each_withdraws_exactly(
    registered_host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    currency: str,
    price: int,
    max_tokens: int,
    tokens: int,
    extra: int,
    proof_for: Callable[[int, str, int], bytes],
) -> None:
    host, market = registered_host, registered_host.deployment.job_marketplace
    token = host.token_address(currency)
    treasury = host.treasury()
    deposit = max_tokens * price + extra
    renter_wallet = renter.balance_of(renter.address, token)
    job_id = post_job(max_tokens=max_tokens, price=price, deposit=deposit, token=token)
    posted_gas = 0 if token != ETH else None
    assert renter.balance_of(market, token) == deposit
    if posted_gas is not None:
        assert renter.balance_of(renter.address, token) == renter_wallet - deposit

    host.claim_job(job_id)
    host.submit_result(
        job_id, RESULT_HASH, RESULT_URI, tokens, proof_for(job_id, RESULT_HASH, tokens)
    )

    payment = tokens * price
    fee = payment * host.fee_bps() // 10_000
    assert credits(host, token, host.address, treasury, renter.address) == [
        payment - fee,
        fee,
        deposit - payment,
    ]
    assert renter.balance_of(market, token) == deposit
    receipt = renter.find_settlement(job_id)
    assert receipt is not None and receipt.payment_token == token
    assert (receipt.tokens, receipt.paid_to_host_wei, receipt.fee_wei, receipt.refund_wei) == (
        tokens,
        payment - fee,
        fee,
        deposit - payment,
    )
    job = renter.get_job(job_id)
    assert (job.state, job.host, job.tokens_used) == (JobState.SETTLED, host.address, tokens)
    assert (job.result_hash, job.payment_token) == (RESULT_HASH, token)
    assert renter.result_uri(job_id) == receipt.result_uri == RESULT_URI

    for client, owed in ((host, payment - fee), (renter, deposit - payment)):
        before = client.balance_of(client.address, token)
        withdrawal = client.withdraw(token)
        if owed == 0:
            assert withdrawal is None
            continue
        assert withdrawal is not None and withdrawal.amount == owed
        gas = client.gas_cost_wei(withdrawal.tx_hash) if token == ETH else 0
        assert client.balance_of(client.address, token) == before + owed - gas
        assert client.credit_of(client.address, token) == 0
    assert renter.balance_of(market, token) == fee


def test_posting_in_a_token_pulls_exactly_the_deposit(
    renter: ChainClient, post_job: Callable[..., int], stable: str
) -> None:
    eth_before = renter.balance_of(renter.address)
    usdc_before = renter.balance_of(renter.address, stable)
    job_id = post_job(token=stable, price=STABLE_PRICE, max_tokens=10)
    assert renter.balance_of(renter.address, stable) == usdc_before - 10 * STABLE_PRICE
    assert renter.balance_of(renter.address) < eth_before  # gas only: no ETH escrowed
    assert renter.balance_of(renter.deployment.job_marketplace) == 0
    job = renter.get_job(job_id)
    assert (job.payment_token, job.deposit_wei, job.host) == (stable, 50, ZERO_ADDRESS)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"deposit": 0}, "ZeroDeposit"),
        ({"max_tokens": 0, "deposit": 1}, "ZeroMaxTokens"),
        ({"price": 0, "deposit": 1}, "ZeroPrice"),
        ({"max_tokens": 2**256 - 1, "deposit": 1}, "MaxTokensTooHigh"),
        ({"max_tokens": 2, "price": 2**255, "deposit": 1}, "PriceTooHigh"),
        ({"ttl_s": 0}, "DeadlineInPast"),
        ({"token": "staking", "deposit": 1}, "TokenNotAccepted"),
    ],
)
def test_bad_posts_are_refused(
    deployment: Deployment, post_job: Callable[..., int], kwargs: dict, error: str
) -> None:
    if kwargs.get("token") == "staking":  # an ERC-20, but not one accepted for payment
        kwargs = {**kwargs, "token": deployment.staking_token}
    assert revert(lambda: post_job(**kwargs))[0] == error


def test_post_bounds_name_the_limit_and_the_largest_job_is_stored_exactly(
    renter: ChainClient, post_job: Callable[..., int]
) -> None:
    """A job's token count and price are packed into narrow storage fields: the limits are
    refused by name, and values at the limits read back unchanged."""
    assert revert(lambda: post_job(price=2**88, deposit=1)) == ("PriceTooHigh", (2**88, 2**88 - 1))
    assert revert(lambda: post_job(max_tokens=2**32, deposit=1)) == (
        "MaxTokensTooHigh",
        (2**32, 2**32 - 1),
    )
    job_id = post_job(max_tokens=2**32 - 1, price=2**88 - 1, deposit=1)
    job = renter.get_job(job_id)
    assert (job.max_tokens, job.price_per_token_wei, job.deposit_wei) == (2**32 - 1, 2**88 - 1, 1)
    assert (job.state, job.tokens_used, job.settled_block, job.renter) == (
        JobState.POSTED,
        0,
        0,
        renter.address,
    )


def test_posting_more_tokens_than_held_is_refused_by_the_token(
    other_host: ChainClient, post_job: Callable[..., int], stable: str
) -> None:
    name, args = revert(lambda: post_job(token=stable, price=1, client=other_host))
    assert (name, args) == ("InsufficientBalance", (other_host.address, 0, 100))


def test_value_must_match_the_deposit(
    w3: Web3, deployment: Deployment, renter: ChainClient, stable: str, chain_now: Callable[[], int]
) -> None:
    def request(token: str, deposit: int) -> tuple:
        model_id = bytes.fromhex(Web3.keccak(text=MODEL).hex().removeprefix("0x"))
        return (ZERO_ADDRESS, token, model_id, b"\x11" * 32, "u", 1, 1, deposit, chain_now() + 60)

    sender = renter.address
    assert raw_revert(w3, deployment, sender, "postJob", request(ETH, 5), value=4) == (
        "ValueMismatch",
        (4, 5),
    )
    assert raw_revert(w3, deployment, sender, "postJob", request(stable, 5), value=1) == (
        "ValueMismatch",
        (1, 0),
    )


def test_an_underfunded_job_cannot_be_claimed(
    registered_host: ChainClient, post_job: Callable[..., int]
) -> None:
    required = 100 * PRICE_PER_TOKEN_WEI
    job_id = post_job(max_tokens=100, deposit=required - 1)
    with pytest.raises(ContractRevert) as caught:
        registered_host.claim_job(job_id)
    assert (caught.value.error_name, caught.value.error_args) == (
        "InsufficientDeposit",
        (required - 1, required),
    )
    assert caught.value.context["job_id"] == job_id


def test_claim_checks_the_model_and_the_payment_token_offered(
    registered_host: ChainClient, post_job: Callable[..., int], owner: ChainClient, stable: str
) -> None:
    host = registered_host
    other = post_job(model_name=OTHER_MODEL)
    assert revert(lambda: host.claim_job(other))[0] == "ModelNotServed"
    host.update_offers(offers_for(stable)[:1])  # ETH only now
    in_stable = post_job(token=stable, price=STABLE_PRICE)
    assert revert(lambda: host.claim_job(in_stable)) == (
        "ModelNotServed",
        (host.address, Web3.keccak(text=MODEL).to_0x_hex(), stable),
    )
    owner.deactivate_model(MODEL)
    in_eth = post_job()
    assert revert(lambda: host.claim_job(in_eth))[0] == "ModelNotServed"


def test_a_job_priced_below_the_host_cannot_be_claimed_and_above_can(
    registered_host: ChainClient, renter: ChainClient, post_job: Callable[..., int]
) -> None:
    cheap = post_job(price=PRICE_PER_TOKEN_WEI - 1)
    assert revert(lambda: registered_host.claim_job(cheap)) == (
        "PriceAboveJob",
        (PRICE_PER_TOKEN_WEI, PRICE_PER_TOKEN_WEI - 1),
    )
    generous = post_job(price=PRICE_PER_TOKEN_WEI + 1)
    registered_host.claim_job(generous)
    assert renter.get_job(generous).state is JobState.CLAIMED


def test_an_unregistered_or_unregistering_host_cannot_claim(
    registered_host: ChainClient, other_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job()
    assert revert(lambda: other_host.claim_job(job_id)) == (
        "HostNotActive",
        (other_host.address,),
    )
    registered_host.unregister()
    assert revert(lambda: registered_host.claim_job(job_id))[0] == "HostNotActive"


def test_a_direct_job_is_claimed_only_by_its_named_host(
    registered_host: ChainClient,
    other_host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    stable: str,
) -> None:
    other_host.register(offers_for(stable), api_url=API_URL)
    job_id = post_job(host=registered_host.address)
    assert renter.get_job(job_id).host == registered_host.address
    assert revert(lambda: other_host.claim_job(job_id)) == (
        "NotNamedHost",
        (other_host.address, registered_host.address),
    )
    registered_host.claim_job(job_id)
    assert renter.get_job(job_id).state is JobState.CLAIMED


def test_a_job_is_claimed_once_and_not_after_its_deadline(
    registered_host: ChainClient,
    other_host: ChainClient,
    post_job: Callable[..., int],
    advance_time: Callable[[int], None],
    stable: str,
) -> None:
    other_host.register(offers_for(stable), api_url=API_URL)
    job_id = post_job()
    registered_host.claim_job(job_id)
    assert revert(lambda: other_host.claim_job(job_id)) == ("NotPosted", (job_id, JobState.CLAIMED))
    late = post_job(ttl_s=60)
    advance_time(61)
    assert revert(lambda: registered_host.claim_job(late))[0] == "DeadlinePassed"
    assert revert(lambda: registered_host.claim_job(99)) == ("UnknownJob", (99,))


def test_a_refused_claim_costs_no_gas(
    registered_host: ChainClient, post_job: Callable[..., int]
) -> None:
    job_id = post_job(deposit=1)
    balance = registered_host.balance_of(registered_host.address)
    with pytest.raises(ContractRevert):
        registered_host.claim_job(job_id)
    assert registered_host.balance_of(registered_host.address) == balance


def test_submit_rules(
    registered_host: ChainClient,
    other_host: ChainClient,
    post_job: Callable[..., int],
    advance_time: Callable[[int], None],
    proof_for: Callable[[int, str, int], bytes],
) -> None:
    host = registered_host
    job_id = post_job(max_tokens=10, ttl_s=120)
    # A valid proof of one token: each refusal below is for its stated reason, not the proof.
    proof = proof_for(job_id, RESULT_HASH, 1)
    assert revert(lambda: host.submit_result(job_id, RESULT_HASH, RESULT_URI, 1, proof)) == (
        "NotClaimed",
        (job_id, JobState.POSTED),
    )
    host.claim_job(job_id)
    assert revert(lambda: other_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 1, proof)) == (
        "NotJobHost",
        (other_host.address, host.address),
    )
    assert revert(lambda: host.submit_result(job_id, RESULT_HASH, RESULT_URI, 11, proof)) == (
        "TokensAboveMax",
        (11, 10),
    )
    assert revert(lambda: host.submit_result(job_id, "0x" + "00" * 32, RESULT_URI, 1, proof)) == (
        "ZeroResultHash",
        (),
    )
    advance_time(121)
    assert revert(lambda: host.submit_result(job_id, RESULT_HASH, RESULT_URI, 1, proof))[0] == (
        "DeadlinePassed"
    )


def test_a_job_settles_only_once(
    registered_host: ChainClient,
    post_job: Callable[..., int],
    proof_for: Callable[[int, str, int], bytes],
) -> None:
    job_id = post_job()
    registered_host.claim_job(job_id)
    proof = proof_for(job_id, RESULT_HASH, 5)
    registered_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 5, proof)
    owed = registered_host.credit_of(registered_host.address)
    assert revert(
        lambda: registered_host.submit_result(job_id, RESULT_HASH, RESULT_URI, 5, proof)
    ) == (
        "NotClaimed",
        (job_id, JobState.SETTLED),
    )
    assert registered_host.credit_of(registered_host.address) == owed


def test_the_result_uri_is_read_from_the_settlement_event(
    w3: Web3,
    registered_host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    proof_for: Callable[[int, str, int], bytes],
) -> None:
    """The chain keeps a result URI only in the job's JobSettled event; the job record names the
    block to read it from."""
    job_id = post_job()

    def not_settled(job: int) -> tuple[str | None, object]:
        with pytest.raises(JobRejected) as caught:
            renter.result_uri(job)
        return caught.value.code, caught.value.context.get("state")

    assert not_settled(job_id) == ("job_not_settled", "POSTED")
    assert not_settled(job_id + 1) == ("unknown_job", None)
    registered_host.claim_job(job_id)
    assert not_settled(job_id) == ("job_not_settled", "CLAIMED")
    uri = "s3://fabstir-results/results/1220" + "cd" * 22  # as long as the node's URIs
    proof = proof_for(job_id, RESULT_HASH, 5)
    tx = registered_host.submit_result(job_id, RESULT_HASH, uri, 5, proof)

    assert renter.get_job(job_id).settled_block == w3.eth.get_transaction_receipt(tx)["blockNumber"]
    assert renter.result_uri(job_id) == uri


def test_a_batch_credits_each_account_in_each_token_exactly(
    registered_host: ChainClient,
    renter: ChainClient,
    other_host: ChainClient,
    post_job: Callable[..., int],
    stable: str,
    billing_prover: BillingProver,
    tmp_path: Path,
) -> None:
    """A batch adds up consecutive credits before writing them; jobs of two renters in two
    tokens, interleaved, must still credit every account exactly what its jobs owe it."""
    host, second_renter = registered_host, other_host
    jobs = [  # (payer, token, price, tokens billed of 10)
        (renter, ETH, PRICE_PER_TOKEN_WEI, 3),
        (second_renter, ETH, PRICE_PER_TOKEN_WEI, 4),
        (renter, stable, STABLE_PRICE, 5),
        (renter, ETH, PRICE_PER_TOKEN_WEI, 6),
    ]
    job_ids = [
        post_job(max_tokens=10, price=price, token=token, client=payer)
        for payer, token, price, _ in jobs
    ]
    for job_id in job_ids:
        host.claim_job(job_id)
    statements = [
        statement_for(host, job_id, RESULT_HASH, billed)
        for job_id, (*_, billed) in zip(job_ids, jobs, strict=True)
    ]
    bundle = billing_prover.prove_batch(statements, tmp_path / "batch.proof")
    accounts = [host.address, host.treasury(), renter.address, second_renter.address]

    def all_credits() -> dict[tuple[str, str], int]:
        return {(a, t): host.credit_of(a, t) for a in accounts for t in (ETH, stable)}

    before = all_credits()

    host.submit_results(
        [ResultSubmission(s.job_id, s.result_hash, RESULT_URI, s.tokens) for s in statements],
        4,
        read_proof_bytes(Path(bundle.proof_path)),
    )

    owed = dict.fromkeys(before, 0)
    for payer, token, price, billed in jobs:
        payment = billed * price
        fee = payment * host.fee_bps() // 10_000
        owed[(host.address, token)] += payment - fee
        owed[(host.treasury(), token)] += fee
        owed[(payer.address, token)] += (10 - billed) * price
    after = all_credits()
    assert {key: after[key] - before[key] for key in before} == owed


def test_the_fee_is_fixed_when_the_job_is_claimed(
    registered_host: ChainClient,
    owner: ChainClient,
    post_job: Callable[..., int],
    proof_for: Callable[[int, str, int], bytes],
) -> None:
    job_id = post_job()
    registered_host.claim_job(job_id)
    claimed_fee = registered_host.get_job(job_id).fee_bps
    owner.set_fee_bps(1_000)
    registered_host.submit_result(
        job_id, RESULT_HASH, RESULT_URI, 10, proof_for(job_id, RESULT_HASH, 10)
    )
    receipt = registered_host.find_settlement(job_id)
    assert receipt is not None and claimed_fee == 250
    assert receipt.fee_wei == 10 * PRICE_PER_TOKEN_WEI * 250 // 10_000


@pytest.mark.parametrize("claimed", [False, True], ids=["posted", "claimed"])
def test_anyone_can_refund_an_expired_job_in_full_to_its_renter(
    registered_host: ChainClient,
    renter: ChainClient,
    other_host: ChainClient,
    post_job: Callable[..., int],
    advance_time: Callable[[int], None],
    claimed: bool,
) -> None:
    deposit = 100 * PRICE_PER_TOKEN_WEI + 3
    job_id = post_job(deposit=deposit, ttl_s=60)
    if claimed:
        registered_host.claim_job(job_id)
    assert revert(lambda: other_host.refund_expired(job_id))[0] == "DeadlineNotReached"
    advance_time(61)
    other_host.refund_expired(job_id)
    assert renter.credit_of(renter.address) == deposit
    assert renter.get_job(job_id).state is JobState.REFUNDED
    assert revert(lambda: other_host.refund_expired(job_id))[0] == "NotRefundable"
    before = renter.balance_of(renter.address)
    withdrawal = renter.withdraw()
    assert withdrawal is not None
    gas = renter.gas_cost_wei(withdrawal.tx_hash)
    assert renter.balance_of(renter.address) == before + deposit - gas
    assert renter.balance_of(renter.deployment.job_marketplace) == 0


def test_the_renter_cancels_an_unclaimed_job_only(
    registered_host: ChainClient,
    renter: ChainClient,
    other_host: ChainClient,
    post_job: Callable[..., int],
    stable: str,
) -> None:
    job_id = post_job(token=stable, price=STABLE_PRICE)
    assert revert(lambda: other_host.cancel_job(job_id)) == (
        "NotJobRenter",
        (other_host.address, renter.address),
    )
    renter.cancel_job(job_id)
    assert renter.get_job(job_id).state is JobState.CANCELLED
    assert renter.credit_of(renter.address, stable) == 100 * STABLE_PRICE
    assert revert(lambda: renter.cancel_job(job_id))[0] == "NotPosted"
    assert revert(lambda: registered_host.claim_job(job_id))[0] == "NotPosted"
    claimed = post_job()
    registered_host.claim_job(claimed)
    assert revert(lambda: renter.cancel_job(claimed))[0] == "NotPosted"


def test_nothing_to_withdraw(w3: Web3, deployment: Deployment, renter: ChainClient) -> None:
    assert renter.withdraw() is None
    assert raw_revert(w3, deployment, renter.address, "withdraw", ETH) == (
        "NothingToWithdraw",
        (renter.address, ETH),
    )


def test_the_renter_rates_the_host_of_a_settled_job_once(
    registered_host: ChainClient,
    renter: ChainClient,
    other_host: ChainClient,
    post_job: Callable[..., int],
    proof_for: Callable[[int, str, int], bytes],
) -> None:
    job_id = post_job()
    registered_host.claim_job(job_id)
    assert revert(lambda: renter.rate_host(job_id, 4)) == ("NotSettled", (job_id, 2))
    registered_host.submit_result(
        job_id, RESULT_HASH, RESULT_URI, 5, proof_for(job_id, RESULT_HASH, 5)
    )
    assert revert(lambda: other_host.rate_host(job_id, 4))[0] == "NotJobRenter"
    for score in (0, 6):
        assert revert(lambda score=score: renter.rate_host(job_id, score)) == (
            "ScoreOutOfRange",
            (score,),
        )
    renter.rate_host(job_id, 4)
    assert revert(lambda: renter.rate_host(job_id, 5)) == ("AlreadyRated", (job_id,))
    assert registered_host.rating_of(registered_host.address) == (1, 4)
    assert renter.get_host(registered_host.address).rating == (1, 4)
    with pytest.raises(ValueError):
        renter.rate_host(job_id, -1)


def test_owner_settings_are_owner_only_and_bounded(owner: ChainClient, renter: ChainClient) -> None:
    assert revert(lambda: renter.set_fee_bps(10)) == ("NotOwner", (renter.address,))
    assert revert(lambda: renter.set_treasury(renter.address)) == ("NotOwner", (renter.address,))
    assert revert(lambda: owner.set_fee_bps(1_001)) == ("FeeTooHigh", (1_001, 1_000))
    assert revert(lambda: owner.set_treasury(ZERO_ADDRESS)) == ("ZeroAddress", ())
    owner.set_fee_bps(0)
    owner.set_treasury(renter.address)
    assert (owner.fee_bps(), owner.treasury()) == (0, renter.address)
