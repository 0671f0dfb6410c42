"""The QA report on a synthetic history, each figure checked against a hand computation."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.monitoring import (
    JobQuality,
    QualityLog,
    build_report,
    daily_table,
    key_figures,
    quality_frame,
    render_plots,
    report_markdown,
    save_report,
    summarize_ratings,
)
from fabstir.monitoring.uptime import DAY_S, Uptime
from fabstir.storage import ObjectStore

NOW = 100 * DAY_S  # 1970-04-11 00:00 UTC
BIG_WEI = 2**70  # beyond int64: must stay exact


def row(
    job_id: int,
    day: int,
    *,
    ttft: float | None,
    rate: float | None,
    token: str = "ETH",
    paid: int = 1000,
    fee: int = 10,
    hit: bool = False,
) -> JobQuality:
    finished = NOW - day * DAY_S + 3600
    return JobQuality(
        job_id=job_id,
        model="m",
        state="settled",
        started_at=finished - 2.0,
        finished_at=finished,
        claim_ms=100.0,
        ttft_ms=ttft,
        decode_tokens_per_s=rate,
        completion_tokens=10,
        cache_hit=hit,
        token=token,
        paid_to_host=paid,
        fee=fee,
    )


HISTORY = [
    row(1, 3, ttft=100.0, rate=10.0),
    row(2, 3, ttft=200.0, rate=20.0, paid=BIG_WEI, fee=BIG_WEI // 100),
    row(3, 2, ttft=300.0, rate=30.0, token="USDC", paid=1_500_000, fee=15_000),
    row(4, 2, ttft=None, rate=None, hit=True),  # a cache hit: no TTFT, excluded from percentiles
    row(5, 1, ttft=400.0, rate=40.0),
    row(6, 9, ttft=9999.0, rate=1.0, paid=7),  # outside a 7-day window
]


@pytest.fixture
def frame():
    return quality_frame(HISTORY)


def test_figures_match_a_hand_computation(frame) -> None:
    report = build_report(
        frame,
        now=NOW,
        days=7,
        uptime=[Uptime("24h", 0.9 * DAY_S, DAY_S)],
        ratings=summarize_ratings([5, 4, 4, 1]),
        job_states={"completed": 5, "failed": 2},
        spot_checks=[True, True, False, True],
        token_decimals={"ETH": 18, "USDC": 6},
    )
    assert report.jobs_by_state == {"completed": 5, "failed": 2}
    assert report.settled_jobs == 5
    assert report.earnings == {"ETH": 1000 + BIG_WEI + 1000 + 1000, "USDC": 1_500_000}
    assert report.fees == {"ETH": 10 + BIG_WEI // 100 + 10 + 10, "USDC": 15_000}
    assert report.earnings_in_tokens()["USDC"] == "1.5 USDC"
    # 2**70 + 3000 wei = 1180591620717411306424 wei, shown exactly (no float on the way)
    assert report.earnings_in_tokens()["ETH"] == "1180.591620717411306424 ETH"
    assert report.cache_hit_rate == 1 / 5
    # TTFT of generated jobs in the window: 100, 200, 300, 400. Linear interpolation:
    # p50 at rank 1.5 -> 250; p95 at rank 2.85 -> 300 + 0.85 * 100 = 385.
    assert report.ttft_ms_p50 == 250.0
    assert report.ttft_ms_p95 == pytest.approx(385.0)
    assert report.decode_tokens_per_s_p50 == 25.0
    assert report.decode_tokens_per_s_p95 == pytest.approx(38.5)
    assert report.uptime == {"24h": 0.9}
    assert report.ratings is not None and report.ratings.mean == 3.5
    assert report.ratings.distribution == {1: 1, 2: 0, 3: 0, 4: 2, 5: 1}
    assert report.spot_checks == 4 and report.spot_check_pass_rate == 0.75
    figures = dict(key_figures(report))
    assert figures["cache hit rate"] == "20.00 %"
    assert figures["TTFT p50 / p95"] == "250.0 ms / 385.0 ms"
    assert figures["spot checks passed"] == "75.00 % of 4"
    assert figures["rating"] == "3.50 / 5 (4)"
    assert "| uptime 24h | 90.00 % |" in report_markdown(report)


def test_without_prefect_states_jobs_are_counted_from_the_table(frame) -> None:
    report = build_report(frame, now=NOW, days=1)
    assert report.jobs_by_state == {"settled": 1}
    assert report.earnings == {"ETH": 1000}
    assert report.spot_check_pass_rate is None and report.ratings is None


def test_the_daily_table_has_one_row_per_day(frame) -> None:
    table = daily_table(frame, NOW, 7)
    assert [r["day"] for r in table] == ["1970-04-08", "1970-04-09", "1970-04-10"]
    assert table[0] == {
        "day": "1970-04-08",
        "jobs": 2,
        "cache_hits": 0,
        "ttft_ms_p50": 150.0,
        "earned_ETH": str(1000 + BIG_WEI),
    }
    assert table[1]["cache_hits"] == 1 and table[1]["earned_USDC"] == "1500000"


def test_plots_and_html_are_written_to_storage(frame, tmp_path: Path) -> None:
    store = ObjectStore(f"file://{tmp_path}")
    report = build_report(frame, now=NOW, days=7)
    plots = render_plots(frame, NOW, 7)
    assert set(plots) == {"latency", "earnings", "cache_hits"}
    assert all(png.startswith(b"\x89PNG") for png in plots.values())
    uris = save_report(store, report, plots, daily_table(frame, NOW, 7))
    html = store.get(store.key_of(uris["html"])).decode()
    assert "cache hit rate" in html and html.count("data:image/png;base64,") == 3
    assert store.get(store.key_of(uris["latency"])) == plots["latency"]


def test_an_empty_history_gives_an_empty_report(tmp_path: Path) -> None:
    frame = QualityLog(ObjectStore(f"file://{tmp_path}")).frame()
    report = build_report(frame, now=NOW, days=7)
    assert report.settled_jobs == 0 and report.cache_hit_rate is None
    assert report.ttft_ms_p50 is None and report.earnings == {}
    assert len(render_plots(frame, NOW, 7)) == 3


def test_a_wrong_window_is_refused(frame) -> None:
    with pytest.raises(ValueError, match="days"):
        build_report(frame, now=NOW, days=0)
