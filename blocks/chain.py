from __future__ import annotations

import json
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks._clients import client_once
from fabstir.chain import ChainClient, TxPolicy
from fabstir.settings import ChainSettings, Settings


class ChainBlock(Block):
    """The chain this host settles on: RPC, contract addresses and the host's key."""

    _block_type_name = "Fabstir Chain"

    deployment_file: str = Field(description="JSON with the RPC URL and contract addresses.")
    rpc_url: str | None = Field(default=None, description="Overrides the deployment's RPC URL.")
    host_private_key: SecretStr
    network: str = Field(default="devnet", description="Network name in `networks`, or devnet.")
    networks_json: str = Field(default="{}", description="Deployments by network name (JSON).")
    chain_id: int | None = None
    confirmations: int = 0
    receipt_timeout_s: float = 60.0
    max_gas_price_wei: int = 100 * 10**9
    rpc_attempts: int = 4
    rpc_backoff_s: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> ChainBlock:
        chain = settings.chain
        return cls(
            deployment_file=str(chain.deployment_file),
            rpc_url=chain.rpc_url,
            host_private_key=chain.host_private_key,
            network=chain.network,
            networks_json=json.dumps({k: v.model_dump() for k, v in chain.networks.items()}),
            chain_id=chain.chain_id,
            confirmations=chain.confirmations,
            receipt_timeout_s=chain.receipt_timeout_s,
            max_gas_price_wei=chain.max_gas_price_wei,
            rpc_attempts=chain.rpc_attempts,
            rpc_backoff_s=chain.rpc_backoff_s,
        )

    def get_client(self) -> ChainClient:
        config = self.model_dump_json() + self.host_private_key.get_secret_value()
        return client_once("chain", config, self._build)

    def _build(self) -> ChainClient:
        chain = ChainSettings(
            network=self.network,
            networks=json.loads(self.networks_json),
            rpc_url=self.rpc_url,
            chain_id=self.chain_id,
            deployment_file=Path(self.deployment_file),
        )
        policy = TxPolicy(
            confirmations=self.confirmations,
            receipt_timeout_s=self.receipt_timeout_s,
            max_gas_price_wei=self.max_gas_price_wei,
            rpc_attempts=self.rpc_attempts,
            rpc_backoff_s=self.rpc_backoff_s,
        )
        return ChainClient(
            chain.deployment(), self.host_private_key.get_secret_value(), policy=policy
        )
