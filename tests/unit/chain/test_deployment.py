from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.chain import Deployment
from fabstir.errors import ConfigError

DEPLOYMENT = Deployment(
    rpc_url="http://127.0.0.1:8545",
    chain_id=31337,
    node_registry="0x5fbdb2315678afecb367f032d93f642f64180aa3",
    job_marketplace="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    treasury="0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    fee_bps=250,
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
        DEPLOYMENT.model_dump_json().replace('"fee_bps":250', '"fee_bps":-1'),
    ],
    ids=["empty", "bad-json", "not-object", "missing-fields", "bad-address", "negative-fee"],
)
def test_corrupt_file_says_so(tmp_path: Path, content: str) -> None:
    path = tmp_path / "devnet.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        Deployment.load(path)
    assert caught.value.code == "deployment_corrupt"
    assert str(path) in str(caught.value)
