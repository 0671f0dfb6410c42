"""README line 1: `fabstir-node demo --json` on the real demo model (SmolLM2-135M)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabstir.demo import DEMO_CURRENCIES, DEMO_MAX_TOKENS, DEMO_STABLE_PRICE
from fabstir.settings import load_settings

pytestmark = pytest.mark.e2e

KEYS = {
    "job_id",
    "currency",
    "cache_hit",
    "tokens",
    "paid_to_host",
    "fee",
    "refund",
    "settle_tx",
    "proof_verified",
    "result_uri",
    "answer",
}


def test_the_demo_runs_three_proven_jobs_paid_in_eth_and_stable_coin_with_one_cache_hit(
    isolated_environment: Path, embedding_model_path: Path
) -> None:
    prices = {"ETH": load_settings().host.price_per_token_wei, "USDC": DEMO_STABLE_PRICE}
    env = {**os.environ, "FABSTIR_CACHE__EMBEDDING_MODEL_PATH": str(embedding_model_path)}
    env.pop("PREFECT_HOME")  # the demo keeps its Prefect database under the node's home
    result = subprocess.run(
        [sys.executable, "-m", "fabstir.cli", "demo", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    output = json.loads(result.stdout.strip().splitlines()[-1])
    jobs = output["jobs"]
    assert [set(job) for job in jobs] == [KEYS] * 3
    assert [job["cache_hit"] for job in jobs] == [False, False, True]
    assert jobs[2]["answer"] == jobs[0]["answer"] and jobs[0]["answer"].strip()
    assert [job["currency"] for job in jobs] == list(DEMO_CURRENCIES) == ["ETH", "USDC", "ETH"]
    for job in jobs:
        price = prices[job["currency"]]
        payment = job["tokens"] * price
        assert 0 < job["tokens"] <= DEMO_MAX_TOKENS
        assert job["paid_to_host"] + job["fee"] == payment
        assert job["refund"] == DEMO_MAX_TOKENS * price - payment
        assert job["proof_verified"] is True
        assert job["settle_tx"].startswith("0x") and len(job["settle_tx"]) == 66
        assert job["result_uri"].startswith(f"file://{isolated_environment.resolve()}")
    # Pull payments: the host withdrew exactly what the settlements credited, per currency.
    assert output["withdrawn"] == {
        currency: sum(job["paid_to_host"] for job in jobs if job["currency"] == currency)
        for currency in ("ETH", "USDC")
    }
    assert (isolated_environment / "prefect").is_dir()
    # The QA report over these jobs: PNG plots and figures that agree with the rows above.
    report = output["report"]
    for plot in ("latency", "earnings", "cache_hits"):
        assert Path(report[plot].removeprefix("file://")).read_bytes().startswith(b"\x89PNG")
    figures = json.loads(Path(report["json"].removeprefix("file://")).read_text())
    assert figures["settled_jobs"] == 3 and figures["cache_hit_rate"] == 1 / 3
    assert figures["earnings"] == output["withdrawn"]
    assert figures["ttft_ms_p50"] > 0
