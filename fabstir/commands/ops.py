"""`fabstir-node health`, `fabstir-node report` and `fabstir-node monitor`: host operations.

(`status` is the host's on-chain registration, in commands/host.py.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fabstir.errors import FabstirError, TransientError
from fabstir.settings import Settings

log = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def register(commands: Any) -> None:
    health = commands.add_parser(
        "health", help="Run the liveness and readiness checks; exit 1 when not ready."
    )
    health.add_argument("--json", action="store_true", help="Print one JSON object.")
    health.set_defaults(handler=show_health)
    report = commands.add_parser(
        "report", help="Write the QA report (HTML, PNG plots, JSON) to storage and print it."
    )
    report.add_argument(
        "--days", type=_positive_int, default=7, help="Days of history (default 7)."
    )
    report.add_argument("--json", action="store_true", help="Print one JSON object.")
    report.set_defaults(handler=write_report)
    monitor = commands.add_parser(
        "monitor",
        help="Sample resources, write heartbeats and post readiness events until Ctrl-C.",
    )
    monitor.add_argument(
        "--metrics-port", type=_port, default=None, help="Serve Prometheus /metrics here."
    )
    monitor.set_defaults(handler=run_monitor)


def _prefect_api_url() -> str | None:
    return os.environ.get("PREFECT_API_URL") or None


def _health(settings: Settings, sample: Any) -> Any:
    from fabstir.commands.models import build_manager
    from fabstir.monitoring import node_health

    return node_health(
        settings,
        sample,
        build_manager(settings).self_check(),
        prefect_api_url=_prefect_api_url(),
        now=time.time(),
    )


def check_health(settings: Settings) -> dict[str, Any]:
    """Sample resources, run the liveness and readiness checks and compute uptime: the JSON that
    `fabstir-node health --json` prints and `fabstir-node status` includes as ``health``."""
    from fabstir.monitoring import HeartbeatLog, sample_resources, uptime

    assert settings.models.dir is not None and settings.monitoring.heartbeat_file is not None
    sample = sample_resources(Path(settings.models.dir))
    health = _health(settings, sample)
    windows = uptime(
        HeartbeatLog(settings.monitoring.heartbeat_file).read(),
        time.time(),
        interval_s=settings.monitoring.sample_interval_s,
    )
    return {
        "live": health.live.ok,
        "ready": health.ready,
        "reasons": health.reasons,
        "checks": [asdict(check) for check in (health.live, *health.checks)],
        "resources": asdict(sample),
        "uptime": {u.window: u.ratio for u in windows},
    }


def show_health(settings: Settings, args: argparse.Namespace) -> int:
    health = check_health(settings)
    if args.json:
        print(json.dumps(health))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("check", "ok", "reason", title="node health", title_justify="left")
        for check in health["checks"]:
            table.add_row(check["name"], "yes" if check["ok"] else "NO", check["reason"] or "")
        console = Console()
        console.print(table)
        resources = health["resources"]
        gpus = (
            ", ".join(
                f"{g['index']}: {g['name']} {g['memory_free_bytes']:,} B free"
                for g in resources["gpus"]
            )
            or f"none ({resources['gpu_absent_reason']})"
        )
        console.print(
            f"memory available {resources['memory_available_bytes']:,} B; model disk free "
            f"{resources['disk_free_bytes']:,} B; GPUs: {gpus}"
        )
        console.print(
            "uptime "
            + ", ".join(
                f"{window} " + ("n/a" if ratio is None else f"{ratio * 100:.2f} %")
                for window, ratio in health["uptime"].items()
            )
        )
        console.print("READY" if health["ready"] else "NOT READY: " + "; ".join(health["reasons"]))
    return 0 if health["ready"] else 1


def _chain_figures(settings: Settings) -> tuple[Any, dict[str, int] | None]:
    """Ratings and token decimals from the chain, or (None, None) when it cannot be reached."""
    from fabstir.chain import ChainClient
    from fabstir.monitoring import read_ratings, summarize_ratings, token_decimals

    try:
        deployment = settings.chain.deployment()
        chain = ChainClient(deployment, settings.chain.host_private_key.get_secret_value())
        scores = read_ratings(chain, chain.address, deployment.deploy_block)
        return summarize_ratings(scores), token_decimals(chain)
    except (FabstirError, OSError) as exc:
        log.warning("report without ratings: chain unavailable (%s)", exc)
        return None, None


def write_report(settings: Settings, args: argparse.Namespace) -> int:
    from fabstir.monitoring import job_run_states, key_figures, make_report
    from fabstir.monitoring.uptime import DAY_S

    now = time.time()
    job_states = None
    api_url = _prefect_api_url()
    if api_url:
        try:
            job_states = job_run_states(api_url, now - args.days * DAY_S)
        except TransientError as exc:
            log.warning("report without job states: %s", exc)
    ratings, decimals = _chain_figures(settings)
    output = make_report(
        settings,
        now=now,
        days=args.days,
        job_states=job_states,
        ratings=ratings,
        token_decimals=decimals,
    )
    if args.json:
        figures = dict(key_figures(output.report))
        print(json.dumps({"figures": figures, "daily": output.daily, "files": output.uris}))
        return 0
    for label, value in key_figures(output.report):
        print(f"{label:>22}: {value}")
    for name, uri in output.uris.items():
        print(f"{name:>22}: {uri}")
    return 0


def run_monitor(settings: Settings, args: argparse.Namespace) -> int:
    """Run the monitor loop in front until SIGINT/SIGTERM."""
    from fabstir.monitoring import (
        NODE_NOT_READY,
        NODE_READY,
        HeartbeatLog,
        NodeMetrics,
        NodeMonitor,
        QualityLog,
        node_resource_id,
        post_event,
    )
    from fabstir.storage import open_store

    assert settings.models.dir is not None and settings.monitoring.heartbeat_file is not None
    metrics = NodeMetrics()
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    from eth_account import Account

    address = Account.from_key(settings.chain.host_private_key.get_secret_value()).address
    api_url = settings.monitoring.prefect_api_url or _prefect_api_url()

    def publish(health: Any) -> None:
        if api_url is None:
            return
        event = NODE_READY if health.ready else NODE_NOT_READY
        try:
            post_event(api_url, event, node_resource_id(address), {"reasons": health.reasons})
        except TransientError as exc:
            log.warning("could not post the readiness event: %s", exc)

    monitor = NodeMonitor(
        settings.monitoring,
        HeartbeatLog(settings.monitoring.heartbeat_file),
        metrics,
        disk_path=Path(settings.models.dir),
        check_health=lambda sample: _health(settings, sample),
        quality=QualityLog(open_store(settings.storage)),
        on_health=publish,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: monitor.stop())
    monitor.run()
    return 0
