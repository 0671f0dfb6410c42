from __future__ import annotations

import socket

import pytest

from fabstir.chain import ChainClient, Deployment
from fabstir.errors import TransientError
from fabstir.settings import ANVIL_KEYS


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_rpc_is_transient() -> None:
    rpc_url = f"http://127.0.0.1:{_closed_port()}"
    deployment = Deployment(
        rpc_url=rpc_url,
        chain_id=31337,
        model_registry="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        node_registry="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        job_marketplace="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        staking_token="0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    )
    with pytest.raises(TransientError) as caught:
        ChainClient(deployment, ANVIL_KEYS[1])
    assert caught.value.code == "rpc_unreachable"
