"""A fresh anvil with our contracts for every test, and the accounts that use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from fabstir.chain import ETH, ChainClient, Deployment, Devnet, Offer
from fabstir.proofs import BillingProver
from fabstir.settings import ANVIL_KEYS, ModelSpec
from tests.support.billing import billing_proof

# Not one of anvil's prefunded accounts: a second host, funded by the fixture.
OTHER_HOST_KEY = "0x" + "42" * 32
MODEL = "smollm2-135m-instruct-q4_1"
OTHER_MODEL = "another-model"
PRICE_PER_TOKEN_WEI = 1_000_000_007
STABLE_PRICE = 5
API_URL = "http://127.0.0.1:8000"
MODELS = [
    ModelSpec(id=name, uri=f"s3://models/{name}.gguf", sha256=digest * 32)
    for name, digest in ((MODEL, "ab"), (OTHER_MODEL, "cd"))
]


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    net = Devnet(deployment_file=tmp_path / "devnet.json", models=MODELS)
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


@pytest.fixture
def owner(devnet: Devnet) -> ChainClient:
    return devnet.owner()


@pytest.fixture
def host(deployment: Deployment) -> ChainClient:
    return ChainClient(deployment, ANVIL_KEYS[1])


@pytest.fixture
def renter(deployment: Deployment) -> ChainClient:
    return ChainClient(deployment, ANVIL_KEYS[2])


@pytest.fixture
def stable(deployment: Deployment) -> str:
    return deployment.payment_tokens["USDC"]


@pytest.fixture
def other_host(deployment: Deployment, w3: Web3, owner: ChainClient) -> ChainClient:
    """A host with ETH and staking tokens but not registered."""
    address = Account.from_key(OTHER_HOST_KEY).address
    w3.provider.make_request("anvil_setBalance", [address, hex(10**20)])
    owner.mint(deployment.staking_token, address, 1_000 * 10**18)
    return ChainClient(deployment, OTHER_HOST_KEY)


def offers_for(stable: str, model: str = MODEL) -> list[Offer]:
    return [Offer(model, PRICE_PER_TOKEN_WEI, ETH), Offer(model, STABLE_PRICE, stable)]


@pytest.fixture
def registered_host(host: ChainClient, stable: str) -> ChainClient:
    host.register(offers_for(stable), api_url=API_URL, region="eu")
    return host


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


@pytest.fixture
def post_job(renter: ChainClient, chain_now: Callable[[], int]) -> Callable[..., int]:
    """Post a job as the renter: by default open, in ETH, fully funded, due in an hour."""

    def post(
        *,
        model_name: str = MODEL,
        max_tokens: int = 100,
        price: int = PRICE_PER_TOKEN_WEI,
        deposit: int | None = None,
        ttl_s: int = 3600,
        token: str = ETH,
        host: str | None = None,
        client: ChainClient | None = None,
    ) -> int:
        return (client or renter).post_job(
            model_name,
            "0x" + "11" * 32,
            "file:///prompts/1.json",
            max_tokens,
            price,
            max_tokens * price if deposit is None else deposit,
            chain_now() + ttl_s,
            payment_token=token,
            **({} if host is None else {"host": host}),
        )

    return post


@pytest.fixture
def proof_for(
    billing_prover: BillingProver, renter: ChainClient
) -> Callable[[int, str, int], bytes]:
    """Prove a job's billing for a result hash and token count: (job_id, result_hash, tokens)."""
    return lambda job_id, result_hash, tokens: billing_proof(
        billing_prover, renter, job_id, result_hash, tokens
    )
