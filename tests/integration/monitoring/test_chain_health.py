"""The chain readiness check against a real anvil, failing for each of its reasons."""

from __future__ import annotations

import http.server
import json
import socket
import time
from collections.abc import Iterator

import pytest
from web3 import HTTPProvider, Web3

from fabstir.chain import Deployment
from fabstir.monitoring import check_chain
from fabstir.settings import MonitoringSettings
from tests.support.loopback import send_json, serving

pytestmark = pytest.mark.integration

SETTINGS = MonitoringSettings(max_block_lag=5, max_block_age_s=600)


def test_a_live_devnet_is_ready(deployment: Deployment) -> None:
    assert check_chain(deployment.rpc_url, SETTINGS).ok


def test_a_stalled_chain_is_not_ready(deployment: Deployment) -> None:
    latest = Web3(HTTPProvider(deployment.rpc_url)).eth.get_block("latest")["timestamp"]
    check = check_chain(deployment.rpc_url, SETTINGS, now=latest + 3600)
    assert not check.ok and check.reason == "latest block is 3600 s old; the RPC looks stalled"


def test_a_watcher_behind_the_chain_is_not_ready(deployment: Deployment) -> None:
    w3 = Web3(HTTPProvider(deployment.rpc_url))
    w3.provider.make_request("anvil_mine", [hex(10)])
    head = w3.eth.block_number
    assert check_chain(deployment.rpc_url, SETTINGS, watcher_block=head - 5).ok
    check = check_chain(deployment.rpc_url, SETTINGS, watcher_block=head - 6)
    assert check.reason == "job watcher is 6 blocks behind the chain"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_rpc_is_not_ready() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    check = check_chain(url, SETTINGS)
    assert not check.ok and check.reason is not None and f"RPC {url} unreachable" in check.reason


@pytest.fixture
def syncing_rpc() -> Iterator[str]:
    """A JSON-RPC endpoint that reports syncing 100 blocks behind. A fake, because anvil never
    syncs from peers and so cannot produce this state."""
    answers = {
        "eth_blockNumber": "0x64",
        "eth_chainId": "0x7a69",
        "eth_syncing": {"startingBlock": "0x0", "currentBlock": "0x64", "highestBlock": "0xc8"},
        "eth_getBlockByNumber": None,
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            result = answers[request["method"]]
            if request["method"] == "eth_getBlockByNumber":
                result = {
                    "number": "0x64",
                    "timestamp": hex(int(time.time())),
                    "hash": "0x" + "0" * 64,
                }
            body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
            send_json(self, 200, body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


def test_an_rpc_syncing_beyond_the_lag_is_not_ready(syncing_rpc: str) -> None:
    check = check_chain(syncing_rpc, SETTINGS)
    assert check.reason == "RPC is syncing, 100 blocks behind"
    assert check_chain(syncing_rpc, MonitoringSettings(max_block_lag=100)).ok
