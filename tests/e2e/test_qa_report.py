"""The `qa-report` flow on the shared Prefect test harness and a devnet, over a synthetic history
written to the node's storage: its artifacts carry the hand-computed figures, including the pass
rate of the stored spot checks, and its HTML and PNG copies land in storage."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID

import pytest

from fabstir.monitoring import JobQuality, QualityLog
from fabstir.monitoring.uptime import DAY_S
from fabstir.spotcheck import SpotCheck, spot_check_key

from .conftest import Node

pytestmark = pytest.mark.e2e
HOUR_S = 3600.0


def quality(job_id: int, finished_at: float, **fields: object) -> JobQuality:
    row = {
        "job_id": job_id,
        "model": "tiny",
        "state": "settled",
        "started_at": finished_at - 2,
        "finished_at": finished_at,
        "claim_ms": 50.0,
        "completion_tokens": 8,
        "cache_hit": False,
        "token": "ETH",
        "fee": 0,
    }
    return JobQuality.model_validate(row | fields)


def write_history(node: Node, now: float) -> None:
    """Three jobs in the last 7 days (one from the cache), one older; spot checks likewise."""
    log = QualityLog(node.store)
    log.record(
        quality(1, now - 1 * HOUR_S, ttft_ms=100.0, decode_tokens_per_s=20.0, paid_to_host=1_000)
    )
    log.record(
        quality(2, now - 2 * HOUR_S, ttft_ms=300.0, decode_tokens_per_s=40.0, paid_to_host=2_000)
    )
    log.record(quality(3, now - 3 * HOUR_S, cache_hit=True, paid_to_host=500))
    log.record(
        quality(4, now - 10 * DAY_S, ttft_ms=9_000.0, decode_tokens_per_s=1.0, paid_to_host=7)
    )
    for job_id, status, checked_at in [
        (1, "passed", now - HOUR_S),
        (2, "failed", now - HOUR_S),
        (3, "skipped", now - HOUR_S),
        (4, "passed", now - 10 * DAY_S),  # outside the window
    ]:
        outcome = SpotCheck(job_id, status, "synthetic", "0x00", "0x00", checked_at)
        node.store.put(spot_check_key(job_id), outcome.to_json())


async def artifacts_of(flow_run_id: UUID) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {artifact.key: artifact for artifact in found}


def test_the_qa_report_flow_publishes_the_figures_and_stores_html_and_plots(node: Node) -> None:
    from flows.qa_report import qa_report

    write_history(node, time.time())

    state = qa_report(days=7, return_state=True)

    assert state.is_completed(), state
    output = state.result()
    artifacts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    assert {"qa-report", "qa-report-daily"} <= set(artifacts)
    markdown = artifacts["qa-report"].data
    # Hand-computed over jobs 1-3: p50/p95 interpolate between 100 and 300 ms (20 and 40 tok/s),
    # the cache hit generated nothing; spot checks: job 1 passed, 2 failed, 3 skipped, 4 too old.
    for line in [
        "| settled jobs | 3 |",
        "| earned (ETH) | 0.0000000000000035 ETH (3500 base units) |",
        "| cache hit rate | 33.33 % |",
        "| TTFT p50 / p95 | 200.0 ms / 290.0 ms |",
        "| decode p50 / p95 | 30.0 tok/s / 39.0 tok/s |",
        "| rating | no ratings |",
        "| spot checks passed | 50.00 % of 2 |",
    ]:
        assert line in markdown
    daily = json.loads(artifacts["qa-report-daily"].data)
    assert sum(day["jobs"] for day in daily) == 3
    assert sum(int(day["earned_ETH"]) for day in daily) == 3_500
    stored = {name: node.store.get(node.store.key_of(uri)) for name, uri in output.uris.items()}
    assert all(node.store.key_of(uri).startswith("reports/qa/") for uri in output.uris.values())
    for plot in ("latency", "earnings", "cache_hits"):
        assert stored[plot].startswith(b"\x89PNG\r\n\x1a\n")
    page = stored["html"].decode()
    assert "<td>50.00 % of 2</td>" in page and page.count("data:image/png;base64,") == 3
