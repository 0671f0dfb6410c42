"""`fabstir-node`: the host operator's command line."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from fabstir.errors import FabstirError
from fabstir.settings import Settings, load_settings

log = logging.getLogger("fabstir.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fabstir-node", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("devnet", help="Start anvil with our contracts until Ctrl-C.")
    demo = commands.add_parser("demo", help="Run three paid, proven jobs end to end on a devnet.")
    demo.add_argument(
        "--json", action="store_true", help="Print one JSON object instead of tables."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "json", False) else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
        if args.command == "devnet":
            return run_devnet(settings)
        from fabstir.demo import run_demo

        return run_demo(settings, as_json=args.json)
    except FabstirError as exc:
        print(f"fabstir-node: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2


def run_devnet(settings: Settings) -> int:
    """Run a devnet until SIGINT/SIGTERM, with its addresses in the deployment file."""
    from fabstir.chain import Devnet

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with Devnet(deployment_file=settings.chain.deployment_file) as deployment:
        print(
            json.dumps(
                {
                    "rpc_url": deployment.rpc_url,
                    "deployment_file": str(settings.chain.deployment_file),
                }
            ),
            flush=True,
        )
        log.info("devnet running; Ctrl-C stops it")
        stop.wait()
    log.info("devnet stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
