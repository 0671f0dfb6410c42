from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.domain import ZERO_ADDRESS, ClaimedJob, InferenceResult, Receipt
from fabstir.monitoring import QualityLog, job_quality, summarize_ratings
from fabstir.storage import ObjectStore
from tests.support.jobs import claimed_job

USDC = "0x" + "11" * 20


def claimed(job_id: int) -> ClaimedJob:
    return claimed_job(
        job_id,
        prompt="hi",
        max_tokens=8,
        price_per_token_wei=5,
        deposit_wei=40,
        claim_tx="0xaa",
        claim_started_at=100.0,
        claim_ms=250.0,
    )


def receipt(job_id: int, token: str, paid: int) -> Receipt:
    return Receipt(
        job_id=job_id,
        settle_tx="0xbb",
        payment_token=token,
        tokens=4,
        paid_to_host_wei=paid,
        fee_wei=1,
        refund_wei=0,
        result_uri="file:///r",
        result_hash="0x03",
    )


RESULT = InferenceResult(
    text="x",
    prompt_tokens=3,
    completion_tokens=4,
    cache_hit=False,
    ttft_ms=12.5,
    decode_tokens_per_s=80.0,
)


def test_a_row_records_timings_and_names_the_token() -> None:
    row = job_quality(claimed(1), RESULT, receipt(1, USDC, 19), {USDC.upper(): "USDC"}, 103.0)
    assert (row.token, row.paid_to_host, row.claim_ms, row.ttft_ms) == ("USDC", 19, 250.0, 12.5)
    assert row.total_ms == 3000.0
    eth = job_quality(claimed(2), RESULT, receipt(2, ZERO_ADDRESS, 19), {}, 103.0)
    assert eth.token == "ETH"


def test_rows_are_kept_once_per_job_with_exact_amounts(tmp_path: Path) -> None:
    log = QualityLog(ObjectStore(f"file://{tmp_path}"))
    huge = 2**80 + 1
    row = job_quality(claimed(1), RESULT, receipt(1, ZERO_ADDRESS, huge), {}, 103.0)
    log.record(row)
    log.record(row)  # a re-run of the flow rewrites the same row
    log.record(job_quality(claimed(2), RESULT, receipt(2, ZERO_ADDRESS, 1), {}, 104.0))
    frame = log.frame()
    assert list(frame["job_id"]) == [1, 2]
    assert frame["paid_to_host"][0] == huge and sum(frame["paid_to_host"]) == huge + 1


def test_ratings_are_summarised() -> None:
    summary = summarize_ratings([5, 5, 3])
    assert summary.count == 3 and summary.mean == pytest.approx(13 / 3)
    assert summary.distribution == {1: 0, 2: 0, 3: 1, 4: 0, 5: 2}
    assert summarize_ratings([]).mean is None


@pytest.mark.parametrize("score", [0, 6, 2.5, True, "5"])
def test_a_score_outside_1_to_5_is_refused(score: object) -> None:
    with pytest.raises(ValueError, match="1 to 5"):
        summarize_ratings([4, score])  # type: ignore[list-item]
