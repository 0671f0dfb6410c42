"""The node's health and QA report assembled from its settings: what `fabstir-node status`,
`fabstir-node health`, `fabstir-node report`, the monitor loop and the qa-report flow share."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fabstir.errors import ConfigError
from fabstir.models import ModelStatus
from fabstir.monitoring.health import (
    Health,
    check_capacity,
    check_chain,
    check_liveness,
    check_models,
    check_prefect,
    check_storage,
    failed,
)
from fabstir.monitoring.quality import QualityLog, RatingSummary
from fabstir.monitoring.report import (
    QAReport,
    build_report,
    daily_table,
    render_plots,
    save_report,
)
from fabstir.monitoring.resources import ResourceSample
from fabstir.monitoring.uptime import DAY_S, HeartbeatLog, uptime
from fabstir.settings import Settings
from fabstir.spotcheck import read_spot_checks
from fabstir.storage import open_store

log = logging.getLogger(__name__)


def node_health(
    settings: Settings,
    sample: ResourceSample,
    statuses: Sequence[ModelStatus],
    *,
    prefect_api_url: str | None,
    now: float,
) -> Health:
    """Run every liveness and readiness check of the node configured by ``settings``."""
    monitoring = settings.monitoring
    assert monitoring.heartbeat_file is not None  # filled from home by Settings
    try:
        chain = check_chain(settings.chain.deployment().rpc_url, monitoring, now=now)
    except ConfigError as exc:
        chain = failed("chain", exc.message)
    return Health(
        live=check_liveness(
            HeartbeatLog(monitoring.heartbeat_file).read(), now, monitoring.sample_interval_s
        ),
        checks=(
            check_models(statuses),
            chain,
            check_storage(open_store(settings.storage)),
            check_prefect(monitoring.prefect_api_url or prefect_api_url),
            check_capacity(sample, monitoring),
        ),
    )


@dataclass(frozen=True)
class ReportOutput:
    report: QAReport
    daily: list[dict]
    uris: dict[str, str]


def make_report(
    settings: Settings,
    *,
    now: float,
    days: int,
    job_states: Mapping[str, int] | None = None,
    ratings: RatingSummary | None = None,
    token_decimals: Mapping[str, int] | None = None,
) -> ReportOutput:
    """Build the QA report of the last ``days`` from the quality table, heartbeats and the
    spot-check outcomes stored in the window (skipped checks left out), draw its plots and save
    HTML, PNGs and JSON to storage.

    Raises:
        TransientError: storage stayed unreachable.
    """
    monitoring = settings.monitoring
    assert monitoring.heartbeat_file is not None
    store = open_store(settings.storage)
    frame = QualityLog(store).frame()
    checked = read_spot_checks(store, since=now - days * DAY_S)
    report = build_report(
        frame,
        now=now,
        days=days,
        uptime=uptime(
            HeartbeatLog(monitoring.heartbeat_file).read(),
            now,
            interval_s=monitoring.sample_interval_s,
        ),
        ratings=ratings,
        job_states=job_states,
        spot_checks=[
            c.status == "passed" for c in checked if c.status != "skipped" and c.checked_at <= now
        ],
        token_decimals=token_decimals,
    )
    daily = daily_table(frame, now, days)
    uris = save_report(store, report, render_plots(frame, now, days), daily)
    log.info("QA report written", extra={"uri": uris["html"]})
    return ReportOutput(report, daily, uris)
