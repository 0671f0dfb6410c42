from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabstir.chain import Deployment
from fabstir.errors import ConfigError
from fabstir.settings import load_settings

DEPLOYMENT = Deployment(
    rpc_url="http://127.0.0.1:8545",
    chain_id=31337,
    model_registry="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    node_registry="0x5fbdb2315678afecb367f032d93f642f64180aa3",
    job_marketplace="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    staking_token="0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    payment_tokens={"USDC": "0xcf7ed3acca5a467e9e704c703e8d87f634fb0fc9"},
    deploy_block=1,
)


def test_addresses_are_checksummed() -> None:
    assert DEPLOYMENT.node_registry == "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "devnet.json"
    DEPLOYMENT.save(path)
    assert Deployment.load(path) == DEPLOYMENT


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Deployment.load(tmp_path / "absent.json")
    assert caught.value.code == "deployment_missing"
    assert "absent.json" in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[]",
        '{"rpc_url": "http://x"}',
        DEPLOYMENT.model_dump_json().replace("0xe7f1725E", "0xnothex0"),
        DEPLOYMENT.model_dump_json().replace('"deploy_block":1', '"deploy_block":-1'),
    ],
    ids=["empty", "bad-json", "not-object", "missing-fields", "bad-address", "negative-block"],
)
def test_corrupt_file_says_so(tmp_path: Path, content: str) -> None:
    path = tmp_path / "devnet.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        Deployment.load(path)
    assert caught.value.code == "deployment_corrupt"
    assert str(path) in str(caught.value)


def test_payment_token_addresses_are_checksummed_and_checked() -> None:
    assert DEPLOYMENT.payment_tokens == {"USDC": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"}
    with pytest.raises(ValueError, match="not an address"):
        Deployment(**{**DEPLOYMENT.model_dump(), "payment_tokens": {"USDC": "0x12"}})


def test_settings_pick_a_configured_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_CHAIN__NETWORK", "base-sepolia")
    monkeypatch.setenv(
        "FABSTIR_CHAIN__NETWORKS", json.dumps({"base-sepolia": DEPLOYMENT.model_dump()})
    )
    monkeypatch.setenv("FABSTIR_CHAIN__RPC_URL", "https://rpc.example")
    chosen = load_settings().chain.deployment()
    assert chosen == DEPLOYMENT.model_copy(update={"rpc_url": "https://rpc.example"})


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"FABSTIR_CHAIN__NETWORK": "mainnet"}, "unknown_network"),
        ({"FABSTIR_CHAIN__CHAIN_ID": "8453"}, "wrong_chain"),
    ],
)
def test_a_wrong_network_or_chain_id_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str], code: str
) -> None:
    DEPLOYMENT.save(tmp_path / "devnet.json")
    monkeypatch.setenv("FABSTIR_CHAIN__DEPLOYMENT_FILE", str(tmp_path / "devnet.json"))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings().chain.deployment()
    assert caught.value.code == code


def test_a_malformed_network_fails_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_CHAIN__NETWORKS", '{"x": {"rpc_url": "http://x"}}')
    with pytest.raises(ConfigError, match="FABSTIR_CHAIN__NETWORKS"):
        load_settings()
