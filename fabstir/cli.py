"""`fabstir-node`: the host operator's command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fabstir.commands import COMMAND_MODULES
from fabstir.errors import FabstirError
from fabstir.settings import load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fabstir-node", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        # Machine-readable output keeps stderr for warnings only.
        level=logging.WARNING if getattr(args, "json", False) else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return args.handler(load_settings(), args)
    except FabstirError as exc:
        print(f"fabstir-node: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
