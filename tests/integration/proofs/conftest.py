"""One devnet per module serving the tiny model, with a registered host; jobs are fresh per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fabstir.chain import ETH, ChainClient, Deployment, Devnet, Offer
from fabstir.settings import ANVIL_KEYS, ModelSpec
from fabstir.storage import ObjectStore, put_content

PRICE_PER_TOKEN_WEI = 1_000_000_007
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: ModelSpec
) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp("proofs-devnet")
    with Devnet(deployment_file=directory / "devnet.json", models=[tiny_model]) as deployment:
        ChainClient(deployment, ANVIL_KEYS[1]).register(
            [Offer(tiny_model.id, PRICE_PER_TOKEN_WEI, ETH)], api_url="http://127.0.0.1:1"
        )
        yield deployment


@pytest.fixture
def host(deployment: Deployment) -> ChainClient:
    return ChainClient(deployment, ANVIL_KEYS[1])


@pytest.fixture
def renter(deployment: Deployment) -> ChainClient:
    return ChainClient(deployment, ANVIL_KEYS[2])


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(f"file://{tmp_path / 'storage'}")


@pytest.fixture
def post_job(renter: ChainClient, store: ObjectStore, tiny_model: ModelSpec) -> Callable[..., int]:
    """Post an ETH job for the tiny model with its prompt in ``store``; return its id."""

    def post(prompt: str = "hello", max_tokens: int = MAX_TOKENS) -> int:
        uri, digest = put_content(store, prompt.encode(), "prompts")
        return renter.post_job(
            tiny_model.id,
            digest,
            uri,
            max_tokens,
            PRICE_PER_TOKEN_WEI,
            max_tokens * PRICE_PER_TOKEN_WEI,
            renter.chain_time() + 3600,
        )

    return post
