"""Prometheus gauges of the node, in a registry of their own that the API's /metrics serves.

Jobs run in worker processes, so job figures are not counted in this process: they are set from
the quality table in storage (the same rows the QA report reads) each time the monitor samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from fabstir.monitoring.health import Health
from fabstir.monitoring.resources import ResourceSample

if TYPE_CHECKING:
    import pandas as pd

QUANTILES = (0.5, 0.95)


class NodeMetrics:
    """The node's gauges; ``render()`` is the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cpu = Gauge("fabstir_cpu_percent", "CPU use, percent.", registry=r)
        self.memory_total = Gauge("fabstir_memory_total_bytes", "RAM.", registry=r)
        self.memory_available = Gauge(
            "fabstir_memory_available_bytes", "RAM available to new work.", registry=r
        )
        self.disk_free = Gauge(
            "fabstir_model_disk_free_bytes", "Free disk where models are cached.", registry=r
        )
        self.gpus = Gauge("fabstir_gpus", "GPUs NVML reports (0 when none).", registry=r)
        gpu = ("gpu", "name")
        self.gpu_memory_total = Gauge(
            "fabstir_gpu_memory_total_bytes", "GPU memory.", gpu, registry=r
        )
        self.gpu_memory_used = Gauge(
            "fabstir_gpu_memory_used_bytes", "GPU memory in use.", gpu, registry=r
        )
        self.gpu_utilization = Gauge(
            "fabstir_gpu_utilization_percent", "GPU busy time, percent.", gpu, registry=r
        )
        self.gpu_temperature = Gauge(
            "fabstir_gpu_temperature_celsius", "GPU temperature.", gpu, registry=r
        )
        self.ready = Gauge("fabstir_ready", "1 when every readiness check passes.", registry=r)
        self.check = Gauge(
            "fabstir_health_check", "1 when the named check passes.", ("check",), registry=r
        )
        self.jobs = Gauge("fabstir_jobs", "Settled jobs recorded.", ("model",), registry=r)
        self.cache_hits = Gauge(
            "fabstir_cache_hits", "Settled jobs answered from the cache.", ("model",), registry=r
        )
        self.earnings = Gauge(
            "fabstir_earnings_base_units",
            "Paid to this host, in base units of the token (wei for ETH).",
            ("token",),
            registry=r,
        )
        self.ttft = Gauge(
            "fabstir_ttft_seconds",
            "Time to first token of generated answers.",
            ("quantile",),
            registry=r,
        )
        self.decode_rate = Gauge(
            "fabstir_decode_tokens_per_second",
            "Decode speed of generated answers.",
            ("quantile",),
            registry=r,
        )

    def observe_resources(self, sample: ResourceSample) -> None:
        self.cpu.set(sample.cpu_percent)
        self.memory_total.set(sample.memory_total_bytes)
        self.memory_available.set(sample.memory_available_bytes)
        self.disk_free.set(sample.disk_free_bytes)
        self.gpus.set(len(sample.gpus))
        for gpu in sample.gpus:
            labels = (str(gpu.index), gpu.name)
            self.gpu_memory_total.labels(*labels).set(gpu.memory_total_bytes)
            self.gpu_memory_used.labels(*labels).set(gpu.memory_used_bytes)
            self.gpu_utilization.labels(*labels).set(gpu.utilization_percent)
            self.gpu_temperature.labels(*labels).set(gpu.temperature_c)

    def observe_health(self, health: Health) -> None:
        self.ready.set(1 if health.ready else 0)
        for check in (health.live, *health.checks):
            self.check.labels(check.name).set(1 if check.ok else 0)

    def observe_jobs(self, frame: pd.DataFrame) -> None:
        """Set the job gauges from the quality table (all recorded jobs)."""
        for model, rows in frame.groupby("model"):
            self.jobs.labels(str(model)).set(len(rows))
            self.cache_hits.labels(str(model)).set(int(rows["cache_hit"].sum()))
        for token, rows in frame.groupby("token"):
            # A gauge is a float: exact amounts live in the report; this is for graphs.
            self.earnings.labels(str(token)).set(float(sum(rows["paid_to_host"])))
        ttft_s = frame["ttft_ms"].dropna() / 1000
        rate = frame["decode_tokens_per_s"].dropna()
        for quantile in QUANTILES:
            if len(ttft_s):
                self.ttft.labels(str(quantile)).set(float(ttft_s.quantile(quantile)))
            if len(rate):
                self.decode_rate.labels(str(quantile)).set(float(rate.quantile(quantile)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
