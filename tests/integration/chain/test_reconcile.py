"""Reconcile's choice of jobs on anvil: the renter API's direct jobs are not its to run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fabstir.chain import ChainClient
from fabstir.client import DIRECT_PROMPT_URI
from fabstir.reconcile import host_eligibility, open_jobs
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
