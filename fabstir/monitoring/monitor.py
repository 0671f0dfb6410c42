"""The node's monitor loop: every interval, sample the machine, write a heartbeat, refresh the
gauges and check readiness, then hand the result to ``on_health`` (which posts it as an event)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fabstir.monitoring.health import Health
from fabstir.monitoring.metrics import NodeMetrics
from fabstir.monitoring.quality import QualityLog
from fabstir.monitoring.resources import ResourceSample, sample_resources
from fabstir.monitoring.uptime import HeartbeatLog
from fabstir.settings import MonitoringSettings

log = logging.getLogger(__name__)


class NodeMonitor:
    """Run ``tick`` every ``sample_interval_s`` between ``start()`` and ``stop()``."""

    def __init__(
        self,
        settings: MonitoringSettings,
        heartbeats: HeartbeatLog,
        metrics: NodeMetrics,
        *,
        disk_path: Path,
        check_health: Callable[[ResourceSample], Health],
        quality: QualityLog | None = None,
        on_health: Callable[[Health], None] | None = None,
    ) -> None:
        self._settings = settings
        self._heartbeats = heartbeats
        self._metrics = metrics
        self._disk_path = disk_path
        self._check_health = check_health
        self._quality = quality
        self._on_health = on_health
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> Health:
        self._heartbeats.beat()
        sample = sample_resources(self._disk_path)
        self._metrics.observe_resources(sample)
        if self._quality is not None:
            self._metrics.observe_jobs(self._quality.frame())
        health = self._check_health(sample)
        self._metrics.observe_health(health)
        if not health.ready:
            log.warning("node not ready", extra={"reasons": health.reasons})
        if self._on_health is not None:
            self._on_health(health)
        return health

    def start(self) -> None:
        """Run the loop in a background thread."""
        self._thread = threading.Thread(target=self.run, name="node-monitor", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Tick until ``stop()``; an error ends the loop (and the process, when run in front)."""
        self._heartbeats.prune(time.time())
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self._settings.sample_interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
