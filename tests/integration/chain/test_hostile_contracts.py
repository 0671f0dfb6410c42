"""Hostile counterparties on anvil: a renter contract that re-enters the marketplace when paid or
refuses payment, and an ERC-20 that takes a transfer fee, returns false, or calls back from
inside a transfer (tests/contracts/, compiled by the ``test_artifacts`` fixture). Each is refused
with its custom error and moves no wei or token unit; balances are checked before and after."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from web3 import Web3
from web3.contract import Contract

from fabstir.chain import ETH, ChainClient, Deployment, TxPolicy, decode_revert, load_artifact
from fabstir.chain.transactions import TransactionSender
from fabstir.domain import ZERO_ADDRESS, JobState
from fabstir.errors import ContractRevert
from fabstir.settings import ANVIL_KEYS
from tests.integration.chain.conftest import MODEL, PRICE_PER_TOKEN_WEI

pytestmark = pytest.mark.integration

# ReentrantRenter.Mode
REENTER_WITHDRAW, REENTER_POST_JOB, REFUSE = 0, 1, 2
DEPOSIT_WEI = 10**18 + 7
TOKEN_DEPOSIT = 1_000
STAKE = 500


def reverted(call: Callable[[], object]) -> tuple[str, tuple[object, ...]]:
    with pytest.raises(ContractRevert) as caught:
        call()
    return caught.value.error_name, caught.value.error_args


def job_request(now: int, *, token: str = ETH, deposit: int = DEPOSIT_WEI) -> tuple:
    model_id = Web3.keccak(text=MODEL)
    return (
        ZERO_ADDRESS,
        token,
        model_id,
        b"\x11" * 32,
        "file:///p",
        1,
        deposit,
        deposit,
        now + 600,
    )


@pytest.fixture
def market(w3: Web3, deployment: Deployment) -> Contract:
    return w3.eth.contract(deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi)


@pytest.fixture
def market_owner(w3: Web3) -> TransactionSender:
    """The devnet deployer, which owns the marketplace (a queue of its own for raw owner calls)."""
    return TransactionSender(w3, ANVIL_KEYS[0], TxPolicy())


@pytest.fixture
def reentrant_renter(
    deploy_test_contract: Callable[..., Contract],
    deployment: Deployment,
    attacker: TransactionSender,
    market: Contract,
    renter: ChainClient,
    chain_now: Callable[[], int],
) -> Contract:
    """A ReentrantRenter the marketplace owes DEPOSIT_WEI (from a job it posted and cancelled)."""
    hostile = deploy_test_contract("ReentrantRenter", deployment.job_marketplace)
    attacker.send(hostile.functions.postAndCancel(job_request(chain_now())), value_wei=DEPOSIT_WEI)
    assert market.functions.creditOf(hostile.address, ETH).call() == DEPOSIT_WEI
    assert renter.balance_of(hostile.address) == 0
    assert renter.balance_of(deployment.job_marketplace) == DEPOSIT_WEI
    return hostile


@pytest.fixture
def hostile_token(
    deploy_test_contract: Callable[..., Contract],
    attacker: TransactionSender,
    market_owner: TransactionSender,
    market: Contract,
    renter: ChainClient,
) -> Contract:
    """A HostileToken (behaving, for now) that the owner accepts and the renter holds."""
    token = deploy_test_contract("HostileToken")
    attacker.send(token.functions.mint(renter.address, TOKEN_DEPOSIT))
    market_owner.send(market.functions.setTokenAccepted(token.address, True))
    return token


@pytest.mark.parametrize("mode", [REENTER_WITHDRAW, REENTER_POST_JOB], ids=["withdraw", "postJob"])
def test_a_renter_re_entering_from_its_eth_payment_is_stopped_and_paid_exactly_once(
    reentrant_renter: Contract,
    attacker: TransactionSender,
    market: Contract,
    renter: ChainClient,
    mode: int,
) -> None:
    hostile, jobs_before = reentrant_renter, market.functions.jobCount().call()
    attacker.send(hostile.functions.withdrawAs(mode))

    assert hostile.functions.paymentsReceived().call() == 1
    assert hostile.functions.reentrySucceeded().call() is False
    error = decode_revert(hostile.functions.reentryRevertData().call())
    assert isinstance(error, ContractRevert)
    # Re-entering postJob with the ETH just paid would succeed but for the guard; re-entering
    # withdraw would otherwise meet a zeroed credit (NothingToWithdraw).
    assert (error.error_name, error.error_args) == ("Reentrancy", ())
    assert renter.balance_of(hostile.address) == DEPOSIT_WEI
    assert renter.balance_of(market.address) == 0
    assert market.functions.creditOf(hostile.address, ETH).call() == 0
    assert market.functions.jobCount().call() == jobs_before


def test_a_renter_refusing_its_eth_keeps_its_credit_and_can_withdraw_later(
    reentrant_renter: Contract, attacker: TransactionSender, market: Contract, renter: ChainClient
) -> None:
    hostile = reentrant_renter
    assert reverted(lambda: attacker.send(hostile.functions.withdrawAs(REFUSE))) == (
        "EthTransferFailed",
        (hostile.address, DEPOSIT_WEI),
    )
    assert market.functions.creditOf(hostile.address, ETH).call() == DEPOSIT_WEI
    assert renter.balance_of(market.address) == DEPOSIT_WEI
    assert renter.balance_of(hostile.address) == 0

    attacker.send(hostile.functions.withdrawAs(REENTER_WITHDRAW))
    assert renter.balance_of(hostile.address) == DEPOSIT_WEI
    assert renter.balance_of(market.address) == 0


def test_a_token_with_a_transfer_fee_cannot_fund_a_job(
    hostile_token: Contract,
    attacker: TransactionSender,
    market: Contract,
    renter: ChainClient,
    post_job: Callable[..., int],
) -> None:
    token = hostile_token.address
    attacker.send(hostile_token.functions.setFeeBps(100))  # 1 % burned per transfer
    jobs_before = market.functions.jobCount().call()

    assert reverted(lambda: post_job(token=token, price=1, max_tokens=TOKEN_DEPOSIT)) == (
        "TransferShortfall",
        (token, TOKEN_DEPOSIT - TOKEN_DEPOSIT // 100, TOKEN_DEPOSIT),
    )
    assert renter.balance_of(renter.address, token) == TOKEN_DEPOSIT
    assert renter.balance_of(market.address, token) == 0
    assert market.functions.jobCount().call() == jobs_before

    attacker.send(hostile_token.functions.setFeeBps(0))  # the same job without the fee is taken
    job_id = post_job(token=token, price=1, max_tokens=TOKEN_DEPOSIT)
    assert renter.get_job(job_id).deposit_wei == TOKEN_DEPOSIT
    assert renter.balance_of(market.address, token) == TOKEN_DEPOSIT
    assert renter.balance_of(renter.address, token) == 0


def test_a_token_returning_false_is_refused_on_deposit_and_withdrawal(
    hostile_token: Contract,
    attacker: TransactionSender,
    market: Contract,
    renter: ChainClient,
    post_job: Callable[..., int],
) -> None:
    token = hostile_token.address
    attacker.send(hostile_token.functions.setFailTransfers(True))
    assert reverted(lambda: post_job(token=token, price=1, max_tokens=TOKEN_DEPOSIT)) == (
        "TokenTransferFailed",
        (token, market.address, TOKEN_DEPOSIT),
    )
    assert renter.balance_of(market.address, token) == 0

    attacker.send(hostile_token.functions.setFailTransfers(False))
    renter.cancel_job(post_job(token=token, price=1, max_tokens=TOKEN_DEPOSIT))
    attacker.send(hostile_token.functions.setFailTransfers(True))
    assert reverted(lambda: renter.withdraw(token)) == (
        "TokenTransferFailed",
        (token, renter.address, TOKEN_DEPOSIT),
    )
    assert renter.credit_of(renter.address, token) == TOKEN_DEPOSIT
    assert renter.balance_of(market.address, token) == TOKEN_DEPOSIT
    assert renter.balance_of(renter.address, token) == 0

    attacker.send(hostile_token.functions.setFailTransfers(False))
    renter.withdraw(token)
    assert renter.balance_of(renter.address, token) == TOKEN_DEPOSIT
    assert renter.balance_of(market.address, token) == 0


def test_a_token_calling_back_into_the_marketplace_mid_deposit_hits_the_guard(
    hostile_token: Contract,
    attacker: TransactionSender,
    market: Contract,
    renter: ChainClient,
    post_job: Callable[..., int],
) -> None:
    token = hostile_token.address
    reentry = market.encode_abi("withdraw", [token])
    attacker.send(hostile_token.functions.setHook(market.address, reentry))
    job_id = post_job(token=token, price=1, max_tokens=TOKEN_DEPOSIT)

    assert hostile_token.functions.hookSucceeded().call() is False
    error = decode_revert(hostile_token.functions.hookReturnData().call())
    assert isinstance(error, ContractRevert) and error.error_name == "Reentrancy"
    assert renter.get_job(job_id).state is JobState.POSTED
    assert renter.balance_of(market.address, token) == TOKEN_DEPOSIT
    assert renter.balance_of(renter.address, token) == 0


@pytest.fixture
def hostile_stake_registry(
    w3: Web3,
    deployment: Deployment,
    attacker: TransactionSender,
    deploy_test_contract: Callable[..., Contract],
) -> tuple[ChainClient, Contract, Contract]:
    """A NodeRegistry of our own whose staking token is a HostileToken, and a host client for it
    holding STAKE of that token: (host, registry, token)."""
    token = deploy_test_contract("HostileToken")
    nodes = load_artifact("NodeRegistry")
    receipt = attacker.send(
        w3.eth.contract(abi=nodes.abi, bytecode=nodes.bytecode).constructor(
            token.address, deployment.model_registry, STAKE, 0
        )
    )
    registry = w3.eth.contract(receipt["contractAddress"], abi=nodes.abi)
    host_deployment = deployment.model_copy(
        update={"node_registry": registry.address, "staking_token": token.address}
    )
    host = ChainClient(host_deployment, ANVIL_KEYS[1])
    attacker.send(token.functions.mint(host.address, STAKE))
    return host, registry, token


def test_a_staking_token_returning_false_or_re_entering_cannot_move_a_stake(
    hostile_stake_registry: tuple[ChainClient, Contract, Contract],
    attacker: TransactionSender,
) -> None:
    host, registry, token = hostile_stake_registry
    offers = [(Web3.keccak(text=MODEL), ETH, PRICE_PER_TOKEN_WEI)]
    register = registry.functions.register(STAKE, offers, "eu", "http://127.0.0.1:8000", "")
    host_sender = TransactionSender(registry.w3, ANVIL_KEYS[1], TxPolicy())
    host_sender.send(token.functions.approve(registry.address, 2**256 - 1))

    attacker.send(token.functions.setFailTransfers(True))
    assert reverted(lambda: host_sender.send(register)) == (
        "TokenTransferFailed",
        (token.address, host.address, registry.address, STAKE),
    )
    assert host.balance_of(host.address, token.address) == STAKE

    attacker.send(token.functions.setFailTransfers(False))
    attacker.send(token.functions.setHook(registry.address, registry.encode_abi("withdrawStake")))
    host_sender.send(register)
    error = decode_revert(token.functions.hookReturnData().call())
    assert isinstance(error, ContractRevert) and error.error_name == "Reentrancy"
    assert host.balance_of(registry.address, token.address) == STAKE
    assert registry.functions.getNode(host.address).call()[0] == STAKE  # (stake, unlockAt, …)

    host_sender.send(registry.functions.unregister())
    attacker.send(token.functions.setFailTransfers(True))
    assert reverted(lambda: host_sender.send(registry.functions.withdrawStake())) == (
        "TokenTransferFailed",
        (token.address, registry.address, host.address, STAKE),
    )
    assert host.balance_of(registry.address, token.address) == STAKE
    attacker.send(token.functions.setFailTransfers(False))
    host_sender.send(registry.functions.withdrawStake())
    assert host.balance_of(host.address, token.address) == STAKE
    assert host.balance_of(registry.address, token.address) == 0
