"""Subcommands of `fabstir-node`, one module per area.

Each module defines ``register(commands)``: it adds its parsers to the argparse subparsers and
sets ``handler=function(settings, args) -> exit code`` on each.
"""

from fabstir.commands import api, host, models, node, ops, run, settle

COMMAND_MODULES = (node, models, host, ops, run, api, settle)

__all__ = ["COMMAND_MODULES"]
