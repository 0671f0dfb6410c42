from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.errors import JobRejected
from fabstir.monitoring import CapacityGuard, NodeMetrics, read_gpus, sample_resources
from fabstir.settings import MonitoringSettings, load_settings


def test_a_sample_reads_this_machine(tmp_path: Path) -> None:
    sample = sample_resources(tmp_path / "models-not-created-yet")
    assert 0 < sample.memory_available_bytes <= sample.memory_total_bytes
    assert 0 < sample.disk_free_bytes <= sample.disk_total_bytes


def test_gpus_are_reported_as_nvml_sees_them_and_absent_ones_say_why() -> None:
    gpus, reason = read_gpus()
    if gpus:  # a GPU machine
        assert reason is None and all(g.memory_total_bytes > 0 for g in gpus)
    else:
        assert reason and ("NVML" in reason or "nvidia-ml-py" in reason)


def test_the_gauges_export_the_sample(tmp_path: Path) -> None:
    metrics = NodeMetrics()
    sample = sample_resources(tmp_path)
    metrics.observe_resources(sample)
    text = metrics.render().decode()
    assert f"fabstir_gpus {float(len(sample.gpus))}" in text
    assert "fabstir_memory_available_bytes" in text


def test_the_guard_refuses_a_job_when_headroom_is_below_the_floor(tmp_path: Path) -> None:
    CapacityGuard(MonitoringSettings(min_free_memory_bytes=0), tmp_path).check(7)
    guard = CapacityGuard(MonitoringSettings(min_free_memory_bytes=2**60), tmp_path)
    with pytest.raises(JobRejected, match="available memory") as raised:
        guard.check(7)
    assert raised.value.code == "no_capacity" and raised.value.context == {"job_id": 7}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FABSTIR_MONITORING__SAMPLE_INTERVAL_S", "0"),
        ("FABSTIR_MONITORING__MIN_FREE_MEMORY_BYTES", "-1"),
        ("FABSTIR_MONITORING__MIN_UPTIME_RATIO", "1.5"),
        ("FABSTIR_MONITORING__PREFECT_API_URL", "localhost:4200"),
        ("FABSTIR_MONITORING__MAX_BLOCK_LAG", "many"),
    ],
)
def test_a_wrong_monitoring_setting_fails_fast(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from fabstir.errors import ConfigError

    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()
