"""`fabstir-node settle`: run the settle-batch flow now."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fabstir.settings import Settings


def register(commands: Any) -> None:
    settle = commands.add_parser(
        "settle",
        help="Settle the jobs queued for batch settlement that are due now (the settle-batch "
        "flow, run in this process); with --flush, every queued job.",
    )
    settle.add_argument(
        "--flush",
        action="store_true",
        help="Settle every queued job now, in padded batches, without waiting for full ones.",
    )
    settle.add_argument("--json", action="store_true", help="Print one JSON object.")
    settle.set_defaults(handler=run_settle)


def run_settle(settings: Settings, args: argparse.Namespace) -> int:
    from flows.settle_batch import settle_batch

    receipts = settle_batch(flush=args.flush)
    if args.json:
        print(json.dumps({"settled": [receipt.model_dump() for receipt in receipts]}))
        return 0
    if not receipts:
        print("nothing to settle now")
    for receipt in receipts:
        print(
            f"job {receipt.job_id}: {receipt.tokens} tokens, {receipt.paid_to_host_wei} base "
            f"units to this host, settle tx {receipt.settle_tx}"
        )
    return 0
