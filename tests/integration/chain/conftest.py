"""A fresh anvil with our contracts for every test, and the accounts that use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from fabstir.chain import ChainClient, Deployment, Devnet
from fabstir.settings import ANVIL_KEYS

# Not one of anvil's prefunded accounts: a second host, funded by the fixture.
OTHER_HOST_KEY = "0x" + "42" * 32


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    net = Devnet(deployment_file=tmp_path / "devnet.json")
    net.start()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture
def deployment(devnet: Devnet) -> Deployment:
    return devnet.deployment


@pytest.fixture
def w3(deployment: Deployment) -> Web3:
    return Web3(HTTPProvider(deployment.rpc_url))


def _client(deployment: Deployment, key: str) -> ChainClient:
    return ChainClient(deployment.rpc_url, deployment, key)


@pytest.fixture
def host(deployment: Deployment) -> ChainClient:
    return _client(deployment, ANVIL_KEYS[1])


@pytest.fixture
def renter(deployment: Deployment) -> ChainClient:
    return _client(deployment, ANVIL_KEYS[2])


@pytest.fixture
def other_host(deployment: Deployment, w3: Web3) -> ChainClient:
    address = Account.from_key(OTHER_HOST_KEY).address
    w3.provider.make_request("anvil_setBalance", [address, hex(10**20)])
    return _client(deployment, OTHER_HOST_KEY)


@pytest.fixture
def chain_now(w3: Web3) -> Callable[[], int]:
    """Return the latest block's timestamp (anvil's clock, which tests move forward)."""
    return lambda: int(w3.eth.get_block("latest")["timestamp"])


@pytest.fixture
def advance_time(w3: Web3) -> Callable[[int], None]:
    """Move the chain's clock forward by some seconds and mine a block."""

    def advance(seconds: int) -> None:
        w3.provider.make_request("evm_increaseTime", [seconds])
        w3.provider.make_request("evm_mine", [])

    return advance
