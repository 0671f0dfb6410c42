"""`fabstir-node devnet` and `fabstir-node demo`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from typing import Any

from fabstir.settings import Settings

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    devnet = commands.add_parser("devnet", help="Start anvil with our contracts until Ctrl-C.")
    devnet.set_defaults(handler=run_devnet)
    demo = commands.add_parser("demo", help="Run three paid, proven jobs end to end on a devnet.")
    demo.add_argument("--json", action="store_true", help="Print one JSON object, not tables.")
    demo.set_defaults(handler=run_demo)


def run_devnet(settings: Settings, args: argparse.Namespace) -> int:
    """Run a devnet until SIGINT/SIGTERM, with its addresses in the deployment file."""
    from fabstir.chain import Devnet

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with Devnet(
        deployment_file=settings.chain.deployment_file, models=settings.host.models
    ) as deployment:
        announcement = {
            "rpc_url": deployment.rpc_url,
            "deployment_file": str(settings.chain.deployment_file),
        }
        print(json.dumps(announcement), flush=True)
        log.info("devnet running; Ctrl-C stops it")
        stop.wait()
    log.info("devnet stopped")
    return 0


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from fabstir.demo import run_demo as demo

    return demo(settings, as_json=args.json)
