from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.monitoring.uptime import DAY_S, Heartbeat, HeartbeatLog, up_seconds, uptime

INTERVAL_S = 10.0
GAP_S = 20.0


def beats(boot: str, start: float, count: int, every: float = INTERVAL_S) -> list[Heartbeat]:
    return [Heartbeat(start + i * every, boot) for i in range(count)]


def test_a_steady_run_is_up_from_its_first_beat_to_one_interval_after_its_last() -> None:
    # beats at 0, 10, ..., 90: up over [0, 100]
    assert up_seconds(beats("a", 0, 10), 0, 1000, interval_s=INTERVAL_S, max_gap_s=GAP_S) == 100


def test_a_restart_is_downtime_even_when_shorter_than_the_allowed_gap() -> None:
    # boot a beats 0..40 (up to 50); boot b starts at 55 and beats 55..95 (up to 105).
    samples = beats("a", 0, 5) + beats("b", 55, 5)
    up = up_seconds(samples, 0, 105, interval_s=INTERVAL_S, max_gap_s=GAP_S)
    assert up == 50 + 50  # the 5 s between the boots are down


def test_silence_longer_than_the_gap_is_downtime_within_one_boot() -> None:
    # beats at 0, 10, then a hang, then 100, 110: up [0, 20] and [100, 120]
    samples = [*beats("a", 0, 2), *beats("a", 100, 2)]
    assert up_seconds(samples, 0, 200, interval_s=INTERVAL_S, max_gap_s=GAP_S) == 40
    # a gap of exactly max_gap_s still counts as up
    assert up_seconds(beats("a", 0, 3, every=20), 0, 60, interval_s=10, max_gap_s=20) == 50


def test_the_window_clips_the_up_time() -> None:
    samples = beats("a", 0, 10)  # up [0, 100]
    assert up_seconds(samples, 25, 62, interval_s=INTERVAL_S, max_gap_s=GAP_S) == 37


def test_uptime_over_24h_7d_30d_across_restarts() -> None:
    now = 40 * DAY_S
    hour = 3600.0
    # Boot 1 ran for the first 10 days, then the machine was off for a day, boot 2 ran to now
    # except a 2-hour hang 3 hours ago. Beats every 600 s (interval_s=600, gap 1200).
    boot1 = beats("one", 0, int(10 * DAY_S / 600), every=600)
    boot2_start = 11 * DAY_S
    hang_start = now - 3 * hour
    boot2 = beats("two", boot2_start, int((hang_start - boot2_start) / 600), every=600)
    boot2 += beats("two", now - hour, 6, every=600)  # last beat at now - 600
    windows = {u.window: u for u in uptime(boot1 + boot2, now, interval_s=600)}
    # 24 h: down from hang_start (last beat hang_start - 600, credited to hang_start) to now - 1 h
    assert windows["24h"].observed_s == DAY_S
    assert windows["24h"].up_s == DAY_S - 2 * hour
    # 7 d: all of it inside boot 2, same 2 hours down
    assert windows["7d"].up_s == 7 * DAY_S - 2 * hour
    # 30 d: the window starts at day 10, where boot 1's last beat is credited up to; the day off
    # (day 10 to 11) and the hang are down.
    assert windows["30d"].observed_s == 30 * DAY_S
    assert windows["30d"].up_s == 30 * DAY_S - DAY_S - 2 * hour
    assert windows["30d"].ratio == pytest.approx((29 * DAY_S - 2 * hour) / (30 * DAY_S))


def test_a_new_node_is_judged_from_its_first_heartbeat() -> None:
    windows = {u.window: u for u in uptime(beats("a", 1000, 6), 1060, interval_s=INTERVAL_S)}
    assert windows["30d"].observed_s == 60 and windows["30d"].ratio == 1.0
    assert uptime([], 1000, interval_s=INTERVAL_S)[0].ratio is None


def test_the_log_survives_restarts_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "heartbeats.jsonl"
    first = HeartbeatLog(path)
    first.beat(at=0)
    first.beat(at=10)
    with path.open("a") as file:
        file.write('{"at": 15, "bo')  # a crash mid-write
    second = HeartbeatLog(path)
    path.write_text(path.read_text() + "\n")
    second.beat(at=30)
    read = HeartbeatLog(path).read()
    assert [b.at for b in read] == [0, 10, 30]
    assert read[0].boot == read[1].boot != read[2].boot
    # boot one is up [0, 20]; boot two [30, 40]
    assert up_seconds(read, 0, 40, interval_s=INTERVAL_S, max_gap_s=GAP_S) == 30


def test_prune_drops_samples_older_than_31_days(tmp_path: Path) -> None:
    log = HeartbeatLog(tmp_path / "hb.jsonl")
    log.beat(at=0)
    log.beat(at=32 * DAY_S)
    log.prune(now=32 * DAY_S)
    assert [b.at for b in log.read()] == [32 * DAY_S]


@pytest.mark.parametrize(("interval_s", "gap_s"), [(0, 10), (-1, 10), (10, 5)])
def test_a_wrong_interval_or_gap_is_refused(interval_s: float, gap_s: float) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        up_seconds([], 0, 1, interval_s=interval_s, max_gap_s=gap_s)
