"""The node's API on a free loopback port, over anvil with our contracts and the tiny GGUF.

Each job runs the pipeline's seven steps in a thread of the test process, in the flow's order,
with the API's stream registry: the same core calls the Prefect flow's tasks make, without the
Prefect server (tests/e2e covers the flow itself).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fabstir import pipeline
from fabstir.api import ApiServer, ApiServices, JobStreams, create_app
from fabstir.cache import SemanticCache
from fabstir.chain import ETH, ChainClient, Deployment, Devnet, Offer
from fabstir.client import HostOffer, RenterClient
from fabstir.domain import Receipt
from fabstir.models import ChainModelRegistry, EnginePool, ModelDiskCache, ModelManager
from fabstir.proofs import BillingProver
from fabstir.settings import ANVIL_KEYS, ApiSettings, EngineSettings, ModelSpec
from fabstir.storage import ObjectStore

PRICE_PER_TOKEN_WEI = 1_000_000_007
STABLE_PRICE = 3
MAX_TOKENS = 24


@dataclass
class ApiNode:
    url: str
    deployment: Deployment
    host: ChainClient
    renter: RenterClient
    model: ModelSpec
    services: ApiServices
    settings: ApiSettings

    def offer(self, token: str = "ETH") -> HostOffer:
        (offer,) = self.renter.find_hosts(self.model.id, token=token)
        return offer

    def post_chat(
        self, messages: list[dict[str, str]], *, max_tokens: int = MAX_TOKENS, token: str = "ETH"
    ) -> int:
        return self.renter.post_chat_job(self.offer(token), messages, max_tokens=max_tokens)


def run_pipeline(
    services: ApiServices, prover: BillingProver, cache: SemanticCache | None, job_id: int
) -> Receipt:
    chain, catalog, store = services.chain, services.catalog, services.store
    claimed = pipeline.claim_job(chain, catalog, store, job_id, PRICE_PER_TOKEN_WEI)
    if claimed.receipt is not None:
        return claimed.receipt
    model = pipeline.fetch_model(catalog, claimed)
    cached = pipeline.look_up_cache(cache, store, model, claimed)
    result = pipeline.infer(services.engines, cache, model, claimed, cached, services.streams)
    stored = pipeline.store_result(store, claimed, model, result)
    proof = pipeline.prove_billing(prover, services.proofs_dir, claimed, stored, result)
    return pipeline.settle_job(chain, claimed, stored, result, proof)


@pytest.fixture(scope="session")
def api_prover_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-prover")


def start_node(
    root: Path,
    tiny_model: ModelSpec,
    prover_dir: Path,
    settings: ApiSettings,
    cache: SemanticCache | None = None,
) -> Iterator[ApiNode]:
    with Devnet(deployment_file=root / "devnet.json", models=[tiny_model]) as deployment:
        host = ChainClient(deployment, ANVIL_KEYS[1])
        stable = host.token_address("USDC")
        host.register(
            [
                Offer(tiny_model.id, PRICE_PER_TOKEN_WEI, ETH),
                Offer(tiny_model.id, STABLE_PRICE, stable),
            ],
            api_url="http://127.0.0.1:1",  # replaced below, once the port is known
            region="eu",
        )
        disk = ModelDiskCache(root / "models", 2**30)
        catalog = ModelManager(ChainModelRegistry(host), disk, [tiny_model.id])
        engines = EnginePool(EngineSettings(n_ctx=512, parallel_sequences=2), disk)
        prover = BillingProver(prover_dir)
        executor = ThreadPoolExecutor(4, thread_name_prefix="job")
        services_box: list[ApiServices] = []

        def run_job(job_id: int) -> Future[Receipt]:
            return executor.submit(run_pipeline, services_box[0], prover, cache, job_id)

        services = ApiServices(
            chain=host,
            catalog=catalog,
            engines=engines,
            store=ObjectStore(f"file://{root / 'storage'}"),
            streams=JobStreams(),
            run_job=run_job,
            proofs_dir=root / "proofs",
            host_private_key=ANVIL_KEYS[1],
            price_per_token_wei=PRICE_PER_TOKEN_WEI,
        )
        services_box.append(services)
        engines.engine_for(catalog.pull(tiny_model.id))
        server = ApiServer(create_app(settings, services), "127.0.0.1", 0)
        server.start()
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            _wait_until_up(server.url)
            host.update_info(region="eu", api_url=server.url, metadata_uri="")
            yield ApiNode(
                url=server.url,
                deployment=deployment,
                host=host,
                renter=RenterClient(deployment, ANVIL_KEYS[2], prover=prover),
                model=tiny_model,
                services=services,
                settings=settings,
            )
        finally:
            server.stop()
            thread.join(timeout=10)
            executor.shutdown(wait=True, cancel_futures=True)
            engines.close()


def _wait_until_up(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        threading.Event().wait(0.05)
    raise RuntimeError("API did not start")


@pytest.fixture(scope="module")
def api_node(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: ModelSpec, api_prover_dir: Path
) -> Iterator[ApiNode]:
    """One node for a test module; each test posts its own jobs."""
    yield from start_node(
        tmp_path_factory.mktemp("api-node"),
        tiny_model,
        api_prover_dir,
        # One renter posts every test's jobs; tests of refused requests leave theirs claimed
        # and never asked, which the per-renter share of claims would count.
        ApiSettings(
            rate_per_ip_per_min=100_000,
            rate_per_renter_per_min=100_000,
            max_claims_per_renter=1_000,
        ),
    )
