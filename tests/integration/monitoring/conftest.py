"""A fresh devnet serving the tiny model, with a registered host, for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fabstir.chain import ETH, ChainClient, Deployment, Devnet, Offer
from fabstir.settings import ANVIL_KEYS, ModelSpec

PRICE_PER_TOKEN_WEI = 1_000_000_007


@pytest.fixture
def deployment(tmp_path: Path, tiny_model: ModelSpec) -> Iterator[Deployment]:
    with Devnet(deployment_file=tmp_path / "devnet.json", models=[tiny_model]) as deployment:
        yield deployment


@pytest.fixture
def host(deployment: Deployment, tiny_model: ModelSpec) -> ChainClient:
    client = ChainClient(deployment, ANVIL_KEYS[1])
    client.register([Offer(tiny_model.id, PRICE_PER_TOKEN_WEI, ETH)], api_url="http://127.0.0.1:1")
    return client


@pytest.fixture
def renter(deployment: Deployment) -> ChainClient:
    return ChainClient(deployment, ANVIL_KEYS[2])
