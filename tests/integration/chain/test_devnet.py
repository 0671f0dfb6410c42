from __future__ import annotations

import os
from pathlib import Path

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from fabstir.chain import ChainClient, Deployment, Devnet, MarketTerms, deploy_contracts
from fabstir.chain.devnet import FUNDED_STABLE, FUNDED_STAKE
from fabstir.errors import ContractRevert
from fabstir.settings import ANVIL_KEYS

pytestmark = pytest.mark.integration


def _anvil_children() -> list[int]:
    """Return the pids of anvil processes (live or zombie) whose parent is this test process."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent_pid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if command == "anvil" and parent_pid == os.getpid():
            pids.append(int(entry.name))
    return pids


def test_devnet_writes_its_deployment_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "devnet.json"
    with Devnet(deployment_file=path, fee_bps=100) as deployment:
        w3 = Web3(HTTPProvider(deployment.rpc_url))
        assert w3.eth.chain_id == deployment.chain_id == 31337
        for address in (
            deployment.model_registry,
            deployment.node_registry,
            deployment.job_marketplace,
            deployment.staking_token,
            *deployment.payment_tokens.values(),
        ):
            assert w3.eth.get_code(address)
        assert set(deployment.payment_tokens) == {"USDC"}
        owner = ChainClient(deployment, ANVIL_KEYS[0])
        assert owner.fee_bps() == 100
        for key in ANVIL_KEYS:
            account = Account.from_key(key).address
            assert owner.balance_of(account, deployment.staking_token) == FUNDED_STAKE
            assert owner.balance_of(account, deployment.payment_tokens["USDC"]) == FUNDED_STABLE
        assert Deployment.load(path) == deployment
        assert len(_anvil_children()) == 1
    assert not w3.is_connected()
    assert _anvil_children() == []


def test_failed_start_leaves_no_anvil_behind() -> None:
    with pytest.raises(ContractRevert) as caught:
        Devnet(fee_bps=5_000).start()
    assert caught.value.error_name == "FeeTooHigh"
    assert _anvil_children() == []


def test_two_devnets_run_side_by_side() -> None:
    with Devnet() as first, Devnet() as second:
        assert first.rpc_url != second.rpc_url


def test_fee_above_the_maximum_is_refused(devnet: Devnet) -> None:
    deployment = devnet.deployment
    terms = MarketTerms(treasury=deployment.staking_token, fee_bps=1_001)
    with pytest.raises(ContractRevert) as caught:
        deploy_contracts(
            deployment.rpc_url,
            ANVIL_KEYS[0],
            terms,
            staking_token=deployment.staking_token,
            payment_tokens={},
        )
    assert (caught.value.error_name, caught.value.error_args) == ("FeeTooHigh", (1_001, 1_000))
