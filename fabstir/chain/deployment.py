"""Where our contracts live on a chain: deploying them, and the JSON file that records it."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from web3 import Web3

from fabstir.chain.contracts import load_artifact
from fabstir.chain.transactions import TransactionSender, connect, translate_errors
from fabstir.errors import ConfigError


class Deployment(BaseModel):
    """Addresses and parameters of one deployment of NodeRegistry + JobMarketplace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpc_url: str = Field(description="JSON-RPC URL the contracts were deployed through.")
    chain_id: int = Field(gt=0)
    node_registry: str
    job_marketplace: str
    treasury: str = Field(description="Receives the protocol fee.")
    fee_bps: int = Field(ge=0, le=10_000, description="Protocol fee, basis points of the payment.")
    deploy_block: int = Field(default=0, ge=0, description="First block worth scanning for events.")

    @field_validator("node_registry", "job_marketplace", "treasury")
    @classmethod
    def _checksum(cls, address: str) -> str:
        if not Web3.is_address(address):
            raise ValueError(f"not an address: {address!r}")
        return Web3.to_checksum_address(address)

    def save(self, path: Path) -> None:
        """Write this deployment as JSON to ``path``, creating parent directories."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a deployment written by :meth:`save`.

        Raises:
            ConfigError: the file is missing (``code="deployment_missing"``) or is not a valid
                deployment (``code="deployment_corrupt"``).
        """
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(
                "deployment file not found; start a devnet or deploy the contracts first",
                code="deployment_missing",
                path=str(path),
            ) from exc
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ConfigError(
                f"deployment file is not a valid deployment: {exc}",
                code="deployment_corrupt",
                path=str(path),
            ) from exc


def deploy_contracts(rpc_url: str, deployer_key: str, treasury: str, fee_bps: int) -> Deployment:
    """Deploy NodeRegistry and JobMarketplace from the committed artifacts.

    Raises:
        ContractRevert: the marketplace constructor refused its arguments (e.g. ``FeeTooHigh``).
        ChainError: a deployment transaction failed.
        TransientError: the node could not be reached.
    """
    w3 = connect(rpc_url)
    sender = TransactionSender(w3, deployer_key)
    with translate_errors(rpc_url=rpc_url):
        chain_id = w3.eth.chain_id
    registry, deploy_block = _deploy(w3, sender, "NodeRegistry")
    marketplace, _ = _deploy(w3, sender, "JobMarketplace", registry, treasury, fee_bps)
    return Deployment(
        rpc_url=rpc_url,
        chain_id=chain_id,
        node_registry=registry,
        job_marketplace=marketplace,
        treasury=treasury,
        fee_bps=fee_bps,
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
