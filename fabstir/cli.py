"""`fabstir-node`: the host operator's command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fabstir.commands import COMMAND_MODULES
from fabstir.errors import FabstirError
from fabstir.settings import ENV_FILE_VARIABLE, load_settings, stage_file_values


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
        apply_stage_file()
        return args.handler(load_settings(), args)
    except FabstirError as exc:
        print(f"fabstir-node: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2


def apply_stage_file() -> None:
    """Give this process and the ones it starts (workers, flow runs) the stage file's Prefect
    settings, unless the environment sets them; name the file by its absolute path, so they
    find it from any working directory.

    Raises:
        ConfigError: ``FABSTIR_ENV_FILE`` names no file.
    """
    for name, value in stage_file_values("PREFECT_").items():
        os.environ.setdefault(name, value)
    if os.environ.get(ENV_FILE_VARIABLE):
        os.environ[ENV_FILE_VARIABLE] = str(Path(os.environ[ENV_FILE_VARIABLE]).resolve())


if __name__ == "__main__":
    sys.exit(main())
