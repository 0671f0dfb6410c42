"""One Prefect test server per session, a fresh devnet per test, and a node using both."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from fabstir.chain import ETH, ChainClient, Deployment, Devnet, Offer, load_artifact
from fabstir.settings import ANVIL_KEYS, ModelSpec
from fabstir.storage import ObjectStore, put_content

PRICE_PER_TOKEN_WEI = 1_000_000_007
STABLE_PRICE_PER_TOKEN = 3  # USDC base units
MAX_TOKENS = 16


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def prover_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the session so the circuit's keys are made once."""
    return tmp_path_factory.mktemp("prover")


@dataclass
class Node:
    host: ChainClient
    renter: ChainClient
    store: ObjectStore
    deployment: Deployment
    model: ModelSpec

    @property
    def w3(self) -> Web3:
        return Web3(HTTPProvider(self.deployment.rpc_url))

    def host_nonce(self) -> int:
        return self.w3.eth.get_transaction_count(self.host.address)

    def host_gas_wei(self, job_id: int) -> int:
        """Gas the host paid for the claim and settle transactions of ``job_id``."""
        marketplace = self.w3.eth.contract(
            address=self.deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi
        )
        claims = marketplace.events.JobClaimed().get_logs(
            from_block=0, argument_filters={"jobId": job_id}
        )
        receipt = self.host.find_settlement(job_id)
        assert len(claims) == 1 and receipt is not None
        return self.host.gas_cost_wei(
            claims[0]["transactionHash"].to_0x_hex()
        ) + self.host.gas_cost_wei(receipt.settle_tx)

    def post(
        self,
        prompt: str,
        *,
        max_tokens: int = MAX_TOKENS,
        deposit_wei: int | None = None,
        model_name: str | None = None,
        currency: str = "ETH",
    ) -> int:
        uri, digest = put_content(self.store, prompt.encode(), "prompts")
        price = PRICE_PER_TOKEN_WEI if currency == "ETH" else STABLE_PRICE_PER_TOKEN
        return self.renter.post_job(
            model_name or self.model.id,
            digest,
            uri,
            max_tokens,
            price,
            max_tokens * price if deposit_wei is None else deposit_wei,
            self.renter.chain_time() + 3600,
            payment_token=self.renter.token_address(currency),
        )


@pytest.fixture
def node(
    prefect_server: None,
    monkeypatch: pytest.MonkeyPatch,
    isolated_environment: Path,
    tiny_model: ModelSpec,
    embedding_model_path: Path,
    prover_dir: Path,
) -> Iterator[Node]:
    deployment_file = isolated_environment / "devnet.json"
    with Devnet(deployment_file=deployment_file, models=[tiny_model]) as deployment:
        monkeypatch.setenv("FABSTIR_HOST__MODELS", json.dumps([tiny_model.model_dump()]))
        monkeypatch.setenv("FABSTIR_HOST__PRICE_PER_TOKEN_WEI", str(PRICE_PER_TOKEN_WEI))
        monkeypatch.setenv("FABSTIR_CACHE__EMBEDDING_MODEL_PATH", str(embedding_model_path))
        monkeypatch.setenv("FABSTIR_PROVER__WORK_DIR", str(prover_dir))
        monkeypatch.setenv("FABSTIR_ENGINE__N_CTX", "512")
        host = ChainClient(deployment, ANVIL_KEYS[1])
        stable = host.token_address("USDC")
        offers = [
            Offer(tiny_model.id, PRICE_PER_TOKEN_WEI, ETH),
            Offer(tiny_model.id, STABLE_PRICE_PER_TOKEN, stable),
        ]
        host.register(offers, api_url="http://127.0.0.1:8000")
        yield Node(
            host=host,
            renter=ChainClient(deployment, ANVIL_KEYS[2]),
            store=ObjectStore(f"file://{isolated_environment.resolve() / 'storage'}"),
            deployment=deployment,
            model=tiny_model,
        )


def run_states_since(job_id: int, since: datetime, timeout_s: float = 60) -> list[str]:
    """Return the final states of the runs named ``job-<job_id>`` created after ``since`` (job
    ids repeat per devnet, the Prefect server is the session's), once none is still going."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"job-{job_id}"]))
            )
            states = [
                run.state
                for run in runs
                if run.created is not None and run.created >= since and run.state is not None
            ]
            if all(state.is_final() for state in states) or time.monotonic() > deadline:
                return sorted(state.type.value for state in states)
            time.sleep(0.2)


def artifact_written(
    key: str, since: datetime, done: Callable[[Any], bool] = lambda _: True, timeout_s: float = 10
) -> Any:
    """The latest artifact ``key`` updated after ``since`` for which ``done`` holds. A job writes
    its artifacts off its own thread (tasks/_progress.py), so one may land just after the run
    ends."""
    from prefect.artifacts import Artifact

    deadline = time.monotonic() + timeout_s
    while True:
        artifact = Artifact.get(key)
        fresh = artifact is not None and artifact.updated is not None and artifact.updated >= since
        if fresh and done(artifact):
            return artifact
        if time.monotonic() > deadline:
            raise AssertionError(f"artifact {key} not written since {since}: {artifact}")
        time.sleep(0.1)
