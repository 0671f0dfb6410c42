"""The Grafana dashboard only graphs metrics the node exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fabstir.monitoring import NodeMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deployments" / "grafana" / "fabstir-node.json"


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bfabstir_\w+", target["expr"])
    }
    exported = {metric.name for metric in NodeMetrics().registry.collect()}
    assert queried and queried <= exported, queried - exported
    topics = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("jobs", "first token", "decode", "cache", "earnings", "gpu"):
        assert topic in topics
