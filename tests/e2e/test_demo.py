"""README line 1: `fabstir-node demo --json` on the real demo model (SmolLM2-135M)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabstir.demo import DEMO_MAX_TOKENS
from fabstir.settings import load_settings

pytestmark = pytest.mark.e2e

KEYS = {
    "job_id",
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


def test_the_demo_runs_three_paid_proven_jobs_with_one_cache_hit(
    isolated_environment: Path, embedding_model_path: Path
) -> None:
    price = load_settings().host.price_per_token_wei
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

    jobs = json.loads(result.stdout.strip().splitlines()[-1])["jobs"]
    assert [set(job) for job in jobs] == [KEYS] * 3
    assert [job["cache_hit"] for job in jobs] == [False, False, True]
    assert jobs[2]["answer"] == jobs[0]["answer"] and jobs[0]["answer"].strip()
    for job in jobs:
        payment = job["tokens"] * price
        assert 0 < job["tokens"] <= DEMO_MAX_TOKENS
        assert job["paid_to_host"] + job["fee"] == payment
        assert job["refund"] == DEMO_MAX_TOKENS * price - payment
        assert job["proof_verified"] is True
        assert job["settle_tx"].startswith("0x") and len(job["settle_tx"]) == 66
        assert job["result_uri"].startswith(f"file://{isolated_environment.resolve()}")
    assert (isolated_environment / "prefect").is_dir()
