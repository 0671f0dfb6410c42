"""The owner-only settings no other test reaches (ownership transfer, cool-down, token acceptance,
verifiers), refusals the client makes before the contract could (empty offers), and our ERC-20's
own refusals, on anvil: each revert is decoded by name and changes
nothing, and each success path is shown to take effect."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from web3 import Web3
from web3.contract import Contract

from fabstir.chain import ChainClient, Deployment, ResultSubmission, TxPolicy, load_artifact
from fabstir.chain.transactions import TransactionSender
from fabstir.domain import ZERO_ADDRESS, JobState
from fabstir.errors import ContractRevert
from fabstir.settings import ANVIL_KEYS
from tests.integration.chain.conftest import API_URL, MODEL, STABLE_PRICE, offers_for

pytestmark = pytest.mark.integration

MAX_COOLDOWN_S = 90 * 24 * 3600
RESULT_HASH = "0x" + "22" * 32


def reverted(call: Callable[[], object]) -> tuple[str, tuple[object, ...]]:
    with pytest.raises(ContractRevert) as caught:
        call()
    return caught.value.error_name, caught.value.error_args


@pytest.fixture
def contract(w3: Web3, deployment: Deployment) -> Callable[[str], Contract]:
    addresses = {
        "JobMarketplace": deployment.job_marketplace,
        "NodeRegistry": deployment.node_registry,
        "ModelRegistry": deployment.model_registry,
    }
    return lambda name: w3.eth.contract(addresses[name], abi=load_artifact(name).abi)


@pytest.fixture
def owner_sender(w3: Web3) -> TransactionSender:
    """The devnet deployer, which owns every contract (a queue of its own for raw owner calls)."""
    return TransactionSender(w3, ANVIL_KEYS[0], TxPolicy())


@pytest.mark.parametrize(
    ("name", "owner_only"),
    [
        ("JobMarketplace", lambda c: c.functions.setFee(0)),
        ("NodeRegistry", lambda c: c.functions.setMinStake(1)),
        ("ModelRegistry", lambda c: c.functions.deactivateModel(Web3.keccak(text=MODEL))),
    ],
)
def test_ownership_moves_only_by_the_owner_and_only_to_a_real_address(
    contract: Callable[[str], Contract],
    owner_sender: TransactionSender,
    attacker: TransactionSender,
    name: str,
    owner_only: Callable[[Contract], object],
) -> None:
    target = contract(name)
    stranger = attacker.address
    assert reverted(lambda: attacker.send(target.functions.transferOwnership(stranger))) == (
        "NotOwner",
        (stranger,),
    )
    assert reverted(
        lambda: owner_sender.send(target.functions.transferOwnership(ZERO_ADDRESS))
    ) == (
        "ZeroAddress",
        (),
    )
    assert target.functions.owner().call() == owner_sender.address

    owner_sender.send(target.functions.transferOwnership(stranger))
    assert target.functions.owner().call() == stranger
    assert reverted(lambda: owner_sender.send(owner_only(target))) == (
        "NotOwner",
        (owner_sender.address,),
    )
    attacker.send(owner_only(target))


def test_the_unstake_cooldown_is_owner_only_and_bounded(
    contract: Callable[[str], Contract],
    owner_sender: TransactionSender,
    attacker: TransactionSender,
) -> None:
    nodes = contract("NodeRegistry")
    before = nodes.functions.cooldown().call()
    assert reverted(lambda: attacker.send(nodes.functions.setCooldown(60)))[0] == "NotOwner"
    too_long = MAX_COOLDOWN_S + 1
    assert reverted(lambda: owner_sender.send(nodes.functions.setCooldown(too_long))) == (
        "CooldownTooLong",
        (too_long, MAX_COOLDOWN_S),
    )
    assert nodes.functions.cooldown().call() == before
    owner_sender.send(nodes.functions.setCooldown(MAX_COOLDOWN_S))
    assert nodes.functions.cooldown().call() == MAX_COOLDOWN_S


def test_a_payment_token_can_be_withdrawn_from_acceptance_but_eth_is_no_token(
    contract: Callable[[str], Contract],
    owner_sender: TransactionSender,
    attacker: TransactionSender,
    renter: ChainClient,
    post_job: Callable[..., int],
    stable: str,
) -> None:
    market = contract("JobMarketplace")
    set_accepted = market.functions.setTokenAccepted
    assert reverted(lambda: owner_sender.send(set_accepted(ZERO_ADDRESS, True))) == (
        "ZeroAddress",
        (),
    )
    assert reverted(lambda: attacker.send(set_accepted(stable, False)))[0] == "NotOwner"
    owner_sender.send(set_accepted(stable, False))
    assert market.functions.acceptedTokens(stable).call() is False
    wallet = renter.balance_of(renter.address, stable)
    assert reverted(lambda: post_job(token=stable, price=STABLE_PRICE)) == (
        "TokenNotAccepted",
        (stable,),
    )
    assert renter.balance_of(renter.address, stable) == wallet
    assert renter.balance_of(market.address, stable) == 0


def test_a_result_without_a_verifier_for_its_circuit_size_is_not_paid(
    contract: Callable[[str], Contract],
    owner_sender: TransactionSender,
    attacker: TransactionSender,
    registered_host: ChainClient,
    post_job: Callable[..., int],
) -> None:
    market, host = contract("JobMarketplace"), registered_host
    job_id = post_job()
    host.claim_job(job_id)
    batch = [ResultSubmission(job_id, RESULT_HASH, "file:///r", 3)]
    # Circuits exist for 1, 4 and 16 jobs; none for 3.
    assert reverted(lambda: host.submit_results(batch, 3, b"")) == ("NoVerifier", (3,))

    assert market.functions.verifiers(1).call() != ZERO_ADDRESS
    verifier = market.functions.setVerifier(1, ZERO_ADDRESS)
    assert reverted(lambda: attacker.send(verifier))[0] == "NotOwner"
    owner_sender.send(verifier)
    assert market.functions.verifiers(1).call() == ZERO_ADDRESS
    assert reverted(lambda: host.submit_result(job_id, RESULT_HASH, "file:///r", 3, b"")) == (
        "NoVerifier",
        (1,),
    )
    assert host.get_job(job_id).state is JobState.CLAIMED
    assert host.credit_of(host.address) == 0


def test_our_erc20_refuses_strangers_minting_zero_addresses_and_spending_without_allowance(
    w3: Web3,
    renter: ChainClient,
    owner_sender: TransactionSender,
    attacker: TransactionSender,
    stable: str,
) -> None:
    token = w3.eth.contract(stable, abi=load_artifact("ERC20Token").abi)
    supply = token.functions.totalSupply().call()
    held = renter.balance_of(renter.address, stable)
    assert reverted(lambda: attacker.send(token.functions.mint(attacker.address, 1))) == (
        "NotMinter",
        (attacker.address,),
    )
    assert reverted(lambda: owner_sender.send(token.functions.mint(ZERO_ADDRESS, 1))) == (
        "ZeroAddress",
        (),
    )
    assert reverted(lambda: attacker.send(token.functions.approve(ZERO_ADDRESS, 1))) == (
        "ZeroAddress",
        (),
    )
    spend = token.functions.transferFrom(renter.address, attacker.address, 1)
    assert reverted(lambda: attacker.send(spend)) == (
        "InsufficientAllowance",
        (attacker.address, 0, 1),
    )
    renter_sender = TransactionSender(w3, ANVIL_KEYS[2], TxPolicy())
    assert reverted(lambda: renter_sender.send(token.functions.transfer(ZERO_ADDRESS, 1))) == (
        "ZeroAddress",
        (),
    )
    assert token.functions.totalSupply().call() == supply
    assert renter.balance_of(renter.address, stable) == held

    renter_sender.send(token.functions.approve(attacker.address, 7))
    attacker.send(token.functions.transferFrom(renter.address, attacker.address, 7))
    assert renter.balance_of(renter.address, stable) == held - 7
    assert renter.balance_of(attacker.address, stable) == 7
    assert token.functions.allowance(renter.address, attacker.address).call() == 0


def test_the_registry_itself_refuses_an_empty_offer_list(
    contract: Callable[[str], Contract], w3: Web3, host: ChainClient, stable: str
) -> None:
    """The client raises ValueError first (test_registry); this is the contract's own check."""
    nodes, host_sender = contract("NodeRegistry"), TransactionSender(w3, ANVIL_KEYS[1], TxPolicy())
    stake = nodes.functions.minStake().call()
    register = nodes.functions.register(stake, [], "eu", API_URL, "")
    assert reverted(lambda: host_sender.send(register)) == ("EmptyOffers", ())
    host.register(offers_for(stable), api_url=API_URL)
    assert reverted(lambda: host_sender.send(nodes.functions.updateOffers([]))) == (
        "EmptyOffers",
        (),
    )
    assert len(host.get_host(host.address).offers) == 2
