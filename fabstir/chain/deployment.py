"""Deploying our contracts from the committed artifacts; the record of where they live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from web3 import Web3

from fabstir.chain.contracts import load_artifact
from fabstir.chain.transactions import TransactionSender, TxPolicy, connect, with_retries
from fabstir.proofs.circuit import BATCH_CAPACITIES
from fabstir.settings import Deployment

__all__ = ["Deployment", "MarketTerms", "deploy_contracts", "deploy_token"]


@dataclass(frozen=True)
class MarketTerms:
    """The owner's settings a deployment starts with (all changeable later by the owner)."""

    treasury: str
    fee_bps: int = 250
    min_stake: int = 100 * 10**18
    unstake_cooldown_s: int = 3600


def deploy_token(rpc_url: str, deployer_key: str, name: str, symbol: str, decimals: int) -> str:
    """Deploy our ERC20Token (the deployer may mint); return its address.

    Raises:
        ChainError: the deployment transaction failed.
        TransientError: the node could not be reached.
    """
    w3 = connect(rpc_url)
    address, _ = _deploy(
        w3, TransactionSender(w3, deployer_key, TxPolicy()), "ERC20Token", name, symbol, decimals
    )
    return address


def deploy_contracts(
    rpc_url: str,
    deployer_key: str,
    terms: MarketTerms,
    *,
    staking_token: str,
    payment_tokens: Mapping[str, str],
) -> Deployment:
    """Deploy ModelRegistry, NodeRegistry, JobMarketplace and one billing verifier per circuit
    capacity (``BillingVerifier<capacity>``), and accept ``payment_tokens``.

    The deployer becomes the owner of the marketplace and the registries. The verifiers are the
    committed ones, made with the development SRS; see docs/proofs.md for production.

    Raises:
        ContractRevert: a constructor refused its arguments (e.g. ``FeeTooHigh``).
        ChainError: a deployment transaction failed.
        TransientError: the node could not be reached.
    """
    policy = TxPolicy()
    w3 = connect(rpc_url)
    sender = TransactionSender(w3, deployer_key, policy)
    chain_id = with_retries(policy, lambda: w3.eth.chain_id, rpc_url=rpc_url)
    models, deploy_block = _deploy(w3, sender, "ModelRegistry")
    nodes, _ = _deploy(
        w3, sender, "NodeRegistry", staking_token, models, terms.min_stake, terms.unstake_cooldown_s
    )
    market, _ = _deploy(w3, sender, "JobMarketplace", nodes, terms.treasury, terms.fee_bps)
    marketplace = w3.eth.contract(address=market, abi=load_artifact("JobMarketplace").abi)
    for token in payment_tokens.values():
        sender.send(marketplace.functions.setTokenAccepted(token, True), token=token)
    for capacity in BATCH_CAPACITIES:
        verifier, _ = _deploy(w3, sender, f"BillingVerifier{capacity}")
        sender.send(marketplace.functions.setVerifier(capacity, verifier), capacity=capacity)
    return Deployment(
        rpc_url=rpc_url,
        chain_id=chain_id,
        model_registry=models,
        node_registry=nodes,
        job_marketplace=market,
        staking_token=staking_token,
        payment_tokens=dict(payment_tokens),
        deploy_block=deploy_block,
    )


def _deploy(
    w3: Web3, sender: TransactionSender, contract_name: str, *args: object
) -> tuple[str, int]:
    """Deploy one contract; return its address and the block it was mined in."""
    artifact = load_artifact(contract_name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = sender.send(factory.constructor(*args), contract=contract_name)
    return str(receipt["contractAddress"]), receipt["blockNumber"]
