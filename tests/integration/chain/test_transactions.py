"""The per-account transaction queue on anvil: concurrency, gas ceiling, retries, confirmations."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import requests
from web3 import Web3

from fabstir.chain import ChainClient, Deployment, TxPolicy
from fabstir.errors import TransientError
from fabstir.settings import ANVIL_KEYS
from tests.support.loopback import serving

pytestmark = pytest.mark.integration


def test_concurrent_sends_from_one_account_get_distinct_nonces(
    renter: ChainClient, post_job: Callable[..., int], w3: Web3
) -> None:
    nonce = w3.eth.get_transaction_count(renter.address)
    with ThreadPoolExecutor(max_workers=8) as pool:
        job_ids = list(pool.map(lambda _: post_job(), range(8)))
    assert sorted(job_ids) == list(range(1, 9))
    assert w3.eth.get_transaction_count(renter.address) == nonce + 8


def test_gas_above_the_ceiling_is_not_sent(deployment: Deployment, w3: Web3) -> None:
    client = ChainClient(deployment, ANVIL_KEYS[0], policy=TxPolicy(max_gas_price_wei=1))
    nonce = w3.eth.get_transaction_count(client.address)
    with pytest.raises(TransientError) as caught:
        client.set_fee_bps(0)
    assert caught.value.code == "gas_price_above_ceiling"
    assert w3.eth.get_transaction_count(client.address) == nonce


def test_the_max_fee_is_capped_at_the_ceiling(
    deployment: Deployment, owner: ChainClient, w3: Web3
) -> None:
    base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
    ceiling = base_fee + 10**9 + 1  # above base fee + web3's 1 gwei tip, below 2×base + tip
    client = ChainClient(deployment, ANVIL_KEYS[0], policy=TxPolicy(max_gas_price_wei=ceiling))
    tx_hash = client.set_fee_bps(100)
    assert w3.eth.get_transaction(tx_hash)["maxFeePerGas"] == ceiling
    assert owner.fee_bps() == 100


class _FlakyProxy(BaseHTTPRequestHandler):
    """Forwards JSON-RPC to anvil but answers 503 to the first ``failures`` requests: a fault
    anvil itself cannot be made to produce. Notes the method of each request it forwards."""

    target = ""
    failures = 0
    methods: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        cls.methods.append(json.loads(body)["method"])
        if cls.failures > 0:
            cls.failures -= 1
            self.send_response(503)
            self.end_headers()
            return
        answer = requests.post(cls.target, data=body, headers={"Content-Type": "application/json"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky(deployment: Deployment) -> Iterator[tuple[type[_FlakyProxy], Deployment]]:
    handler = type(
        "Proxy", (_FlakyProxy,), {"target": deployment.rpc_url, "failures": 0, "methods": []}
    )
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield handler, deployment.model_copy(update={"rpc_url": url})


def test_transient_rpc_failures_are_retried_with_backoff(
    flaky: tuple[type[_FlakyProxy], Deployment], post_job: Callable[..., int]
) -> None:
    handler, via_proxy = flaky
    policy = TxPolicy(rpc_attempts=4, rpc_backoff_s=0.01)
    handler.failures = 3
    client = ChainClient(via_proxy, ANVIL_KEYS[2], policy=policy)
    handler.failures = 3
    job_id = post_job(client=client)
    handler.failures = 3
    assert client.get_job(job_id).job_id == job_id


def test_the_chain_id_is_asked_once_not_before_every_call(
    flaky: tuple[type[_FlakyProxy], Deployment], post_job: Callable[..., int]
) -> None:
    handler, via_proxy = flaky
    client = ChainClient(via_proxy, ANVIL_KEYS[2])
    job_id = post_job(client=client)
    handler.methods.clear()
    for _ in range(3):
        assert client.get_job(job_id).job_id == job_id
    assert handler.methods.count("eth_call") == 3
    assert "eth_chainId" not in handler.methods


def test_a_lasting_outage_is_a_transient_error(
    flaky: tuple[type[_FlakyProxy], Deployment],
) -> None:
    handler, via_proxy = flaky
    handler.failures = 10
    with pytest.raises(TransientError) as caught:
        ChainClient(via_proxy, ANVIL_KEYS[2], policy=TxPolicy(rpc_attempts=2, rpc_backoff_s=0))
    assert caught.value.code == "rpc_unavailable"


def test_a_send_waits_for_its_confirmations(deployment: Deployment, w3: Web3) -> None:
    client = ChainClient(deployment, ANVIL_KEYS[0], policy=TxPolicy(confirmations=2))
    stop = threading.Event()

    def mine() -> None:
        while not stop.wait(0.05):
            w3.provider.make_request("evm_mine", [])

    miner = threading.Thread(target=mine)
    miner.start()
    try:
        tx_hash = client.set_fee_bps(10)
    finally:
        stop.set()
        miner.join()
    mined_in = w3.eth.get_transaction_receipt(tx_hash)["blockNumber"]
    assert w3.eth.block_number >= mined_in + 2


@pytest.fixture
def manual_mining(w3: Web3) -> Iterator[None]:
    """Anvil mining only when told to, then back to mining each transaction as it comes."""
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        yield
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
        w3.provider.make_request("evm_mine", [])  # what a test left pending


def test_a_send_waits_for_its_transaction_to_be_mined(
    deployment: Deployment, w3: Web3, manual_mining: None
) -> None:
    client = ChainClient(deployment, ANVIL_KEYS[0])
    fee_bps = client.fee_bps()
    miner = threading.Timer(0.3, lambda: w3.provider.make_request("evm_mine", []))
    miner.start()
    mined_in = w3.eth.block_number + 1
    tx_hash = client.set_fee_bps(fee_bps)  # returns its receipt's hash, so once mined
    miner.join()
    assert w3.eth.get_transaction_receipt(tx_hash)["blockNumber"] == mined_in


def test_a_transaction_left_unmined_times_out(deployment: Deployment, manual_mining: None) -> None:
    policy = TxPolicy(receipt_timeout_s=0.3, rpc_attempts=1)
    client = ChainClient(deployment, ANVIL_KEYS[0], policy=policy)
    with pytest.raises(TransientError) as caught:
        client.set_fee_bps(client.fee_bps())
    assert caught.value.code == "receipt_timeout"


def test_missing_confirmations_time_out(deployment: Deployment) -> None:
    policy = TxPolicy(confirmations=5, receipt_timeout_s=0.3)
    client = ChainClient(deployment, ANVIL_KEYS[0], policy=policy)
    with pytest.raises(TransientError) as caught:
        client.set_fee_bps(10)
    assert caught.value.code == "confirmation_timeout"


@pytest.mark.parametrize(
    "kwargs",
    [{"confirmations": -1}, {"rpc_attempts": 0}, {"max_gas_price_wei": 0}, {"rpc_backoff_s": -1}],
)
def test_a_wrong_policy_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TxPolicy(**kwargs)


def test_a_nonce_used_by_another_client_of_the_same_key_is_resynced(
    deployment: Deployment, w3: Web3
) -> None:
    first = ChainClient(deployment, ANVIL_KEYS[0])
    second = ChainClient(deployment, ANVIL_KEYS[0])
    first.set_fee_bps(1)  # caches its next nonce
    second.set_fee_bps(2)  # takes that nonce
    first.set_fee_bps(3)
    assert first.fee_bps() == 3
