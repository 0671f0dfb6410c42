from __future__ import annotations

import threading
from pathlib import Path

from fabstir.monitoring import (
    Health,
    HeartbeatLog,
    NodeMetrics,
    NodeMonitor,
    QualityLog,
    ResourceSample,
    quality_frame,
)
from fabstir.monitoring.health import failed, passed
from fabstir.settings import MonitoringSettings
from fabstir.storage import ObjectStore

from .test_report import HISTORY


def test_each_tick_beats_samples_and_publishes_readiness(tmp_path: Path) -> None:
    store = ObjectStore(f"file://{tmp_path / 'storage'}")
    quality = QualityLog(store)
    for row in HISTORY:
        quality.record(row)
    published: list[Health] = []
    three_published = threading.Event()

    def publish(health: Health) -> None:
        published.append(health)
        if len(published) >= 3:
            three_published.set()

    seen: list[ResourceSample] = []

    def health(sample: ResourceSample) -> Health:
        seen.append(sample)
        return Health(passed("live"), (failed("chain", "RPC down"),))

    heartbeats = HeartbeatLog(tmp_path / "hb.jsonl")
    metrics = NodeMetrics()
    monitor = NodeMonitor(
        MonitoringSettings(sample_interval_s=0.01),
        heartbeats,
        metrics,
        disk_path=tmp_path,
        check_health=health,
        quality=quality,
        on_health=publish,
    )
    health_now = monitor.tick()
    assert not health_now.ready and published == [health_now] and len(seen) == 1
    assert len(heartbeats.read()) == 1
    text = metrics.render().decode()
    assert "fabstir_ready 0.0" in text
    assert 'fabstir_health_check{check="chain"} 0.0' in text
    assert 'fabstir_jobs{model="m"} 6.0' in text
    assert 'fabstir_cache_hits{model="m"} 1.0' in text
    assert 'fabstir_earnings_base_units{token="USDC"} 1.5e+06' in text
    ttft_p50 = quality_frame(HISTORY)["ttft_ms"].dropna().median() / 1000
    assert f'fabstir_ttft_seconds{{quantile="0.5"}} {ttft_p50}' in text

    thread = threading.Thread(target=monitor.run)
    thread.start()
    assert three_published.wait(timeout=30)
    monitor.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and len(heartbeats.read()) >= 3
