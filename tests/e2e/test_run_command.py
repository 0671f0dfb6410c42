"""`fabstir-node run` as operators start it: one process serving market jobs and the renter API.

The node runs against the test's devnet and the session's Prefect server; its own workers, job
runner, API and watcher start and stop with it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from prefect.settings import PREFECT_API_URL

from fabstir.client import RenterClient
from fabstir.domain import JobState
from fabstir.proofs import BillingProver
from fabstir.settings import ANVIL_KEYS
from fabstir.storage import put_content
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import MAX_TOKENS, Node, run_states_since

pytestmark = pytest.mark.e2e

# Above the watcher's gas floor (210k gas at anvil's ~1 gwei), which the fixture's price is not.
WATCHED_PRICE_WEI = 10**14


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def running_node(
    node: Node, prover_dir: Path, isolated_environment: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`fabstir-node run` in a subprocess; yields it and its API's URL once the API answers."""
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "FABSTIR_API__PORT": str(port),
        "FABSTIR_CHAIN__WATCH_POLL_S": "0.2",
    }
    log_path = isolated_environment.parent / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fabstir.cli", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the node did not serve its API:\n{log_path.read_text()[-3000:]}")
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_settled(node: Node, job_id: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while node.renter.get_job(job_id).state is not JobState.SETTLED:
        assert time.monotonic() < deadline, f"job {job_id} did not settle"
        time.sleep(0.2)


def test_run_settles_a_market_job_serves_the_api_and_stops_cleanly_on_sigint(
    node: Node, prover_dir: Path, running_node: tuple[subprocess.Popen[bytes], str]
) -> None:
    process, url = running_node
    since = datetime.now(UTC)
    renter = RenterClient(node.deployment, ANVIL_KEYS[2], prover=BillingProver(prover_dir))
    (offer,) = renter.find_hosts(node.model.id)
    messages = [{"role": "user", "content": "the cat sat on"}]
    # Eligible for the watcher in every other way: it names us and pays above the gas floor.
    direct_job = renter.post_chat_job(
        dataclasses.replace(offer, price_per_token=WATCHED_PRICE_WEI), messages, max_tokens=8
    )
    uri, digest = put_content(node.store, b"the dog ran far", "prompts")
    market_job = node.renter.post_job(
        node.model.id,
        digest,
        uri,
        MAX_TOKENS,
        WATCHED_PRICE_WEI,
        MAX_TOKENS * WATCHED_PRICE_WEI,
        node.renter.chain_time() + 3600,
    )

    _wait_settled(node, market_job)
    # The watcher has read both jobs by now and left the direct one to the API.
    assert node.renter.get_job(direct_job).state is JobState.POSTED
    client = OpenAI(
        base_url=url + "/v1", api_key=renter.authenticate(url, direct_job), max_retries=0
    )
    stream = client.chat.completions.create(
        model=node.model.id, messages=messages, max_tokens=8, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    _wait_settled(node, direct_job)
    delivery = renter.fetch_result(url, renter.authenticate(url, direct_job), direct_job)
    assert delivery.record.output == text and delivery.proof.tokens > 0

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert run_states_since(market_job, since) == ["COMPLETED"]
    assert run_states_since(direct_job, since) == ["COMPLETED"]
    assert node.renter.get_job(market_job).tokens_used > 0
