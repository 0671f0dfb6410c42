"""Reconcile's choice of jobs on anvil: the renter API's direct jobs are not its to run."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fabstir.chain import ChainClient
from fabstir.client import DIRECT_PROMPT_URI
from fabstir.reconcile import LOW_WATER_KEY, host_eligibility, open_jobs
from fabstir.settings import HostSettings
from fabstir.storage import ObjectStore
from tests.integration.chain.conftest import MODEL, MODELS, PRICE_PER_TOKEN_WEI

pytestmark = pytest.mark.integration

# 100 tokens at this price pay more than serving costs in gas at anvil's ~1 gwei.
PRICE_WEI = 10**13
MAX_TOKENS = 100


def test_reconcile_leaves_posted_direct_jobs_to_the_renter_api(
    registered_host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    chain_now: Callable[[], int],
    tmp_path: Path,
) -> None:
    market = post_job(price=PRICE_WEI)
    named = post_job(price=PRICE_WEI, host=registered_host.address)
    direct = renter.post_job(
        MODEL,
        "0x" + "11" * 32,
        DIRECT_PROMPT_URI,
        MAX_TOKENS,
        PRICE_WEI,
        MAX_TOKENS * PRICE_WEI,
        chain_now() + 3600,
        host=registered_host.address,
    )
    host = HostSettings(price_per_token_wei=PRICE_PER_TOKEN_WEI, models=MODELS[:1])
    eligibility = host_eligibility(registered_host, host)
    store = ObjectStore(f"file://{tmp_path / 'storage'}")

    with_marker = replace(eligibility, direct_prompt_uri=DIRECT_PROMPT_URI)
    assert open_jobs(registered_host, store, with_marker) == [market, named]
    # Without the marker the direct job looks like any other job naming this host.
    assert open_jobs(registered_host, store, eligibility) == [market, named, direct]


def test_a_low_water_mark_of_an_earlier_chain_is_not_followed(
    registered_host: ChainClient, post_job: Callable[..., int], tmp_path: Path
) -> None:
    jobs = [post_job(price=PRICE_WEI) for _ in range(2)]
    host = HostSettings(price_per_token_wei=PRICE_PER_TOKEN_WEI, models=MODELS[:1])
    eligibility = host_eligibility(registered_host, host)
    store = ObjectStore(f"file://{tmp_path / 'storage'}")
    this_chain = registered_host.block_hash(registered_host.deployment.deploy_block)

    # A devnet started again: same addresses, and its job ids are below the old chain's mark.
    store.put(LOW_WATER_KEY, json.dumps({"job_id": 10_000, "chain": "0x" + "ab" * 32}).encode())
    assert open_jobs(registered_host, store, eligibility) == jobs
    assert json.loads(store.get(LOW_WATER_KEY))["chain"] == this_chain

    # This chain's mark, and a mark written before marks named their chain, are followed.
    for mark in ({"job_id": 10_000, "chain": this_chain}, {"job_id": 10_000}):
        store.put(LOW_WATER_KEY, json.dumps(mark).encode())
        assert open_jobs(registered_host, store, eligibility) == []
