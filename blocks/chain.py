from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks._clients import client_once
from fabstir.chain import ChainClient, Deployment
from fabstir.settings import Settings


class ChainBlock(Block):
    """The chain this host settles on: RPC, contract addresses and the host's key."""

    _block_type_name = "Fabstir Chain"

    deployment_file: str = Field(description="JSON with the RPC URL and contract addresses.")
    rpc_url: str | None = Field(default=None, description="Overrides the deployment's RPC URL.")
    host_private_key: SecretStr
    confirmations: int = 0
    receipt_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ChainBlock:
        chain = settings.chain
        return cls(
            deployment_file=str(chain.deployment_file),
            rpc_url=chain.rpc_url,
            host_private_key=chain.host_private_key,
            confirmations=chain.confirmations,
            receipt_timeout_s=chain.receipt_timeout_s,
        )

    def get_client(self) -> ChainClient:
        config = self.model_dump_json() + self.host_private_key.get_secret_value()
        return client_once("chain", config, self._build)

    def _build(self) -> ChainClient:
        deployment = Deployment.load(Path(self.deployment_file))
        return ChainClient(
            self.rpc_url or deployment.rpc_url,
            deployment,
            self.host_private_key.get_secret_value(),
            confirmations=self.confirmations,
            receipt_timeout_s=self.receipt_timeout_s,
        )
