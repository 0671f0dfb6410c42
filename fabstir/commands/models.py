"""`fabstir-node models list | pull | remove | verify`: the host's local model files.

Model ids resolve through the on-chain ModelRegistry when a deployment is configured (a network,
an RPC URL or an existing devnet deployment file), otherwise through the host's model settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fabstir.errors import FabstirError
from fabstir.models import (
    ChainModelRegistry,
    ModelDiskCache,
    ModelManager,
    ModelRecord,
    ModelRegistryReader,
    SettingsModelRegistry,
    to_model_id,
)
from fabstir.models.progress import download_progress
from fabstir.settings import DEVNET, Settings
from fabstir.storage import storage_options


def register(commands: Any) -> None:
    models = commands.add_parser("models", help="List, download, remove and verify model files.")
    actions = models.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="Served models and the files in the cache.")
    listing.add_argument("--json", action="store_true", help="Print one JSON object.")
    listing.set_defaults(handler=list_models)
    pull = actions.add_parser("pull", help="Download and verify a served model.")
    pull.add_argument("model", help="Model name (or 0x on-chain id).")
    pull.set_defaults(handler=pull_model)
    remove = actions.add_parser("remove", help="Delete a model's file from the cache.")
    remove.add_argument("model", help="Model name (or 0x on-chain id).")
    remove.set_defaults(handler=remove_model)
    verify = actions.add_parser("verify", help="Re-hash every served model; exit 1 on a problem.")
    verify.add_argument("--json", action="store_true", help="Print one JSON object.")
    verify.set_defaults(handler=verify_models)


class _ChainRegistryOnFirstUse:
    """The chain registry, connected at the first lookup.

    ``verify`` and ``fabstir-node health`` then report an unreachable chain as a problem of each
    model instead of failing before they check anything.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._registry: ChainModelRegistry | None = None

    def model(self, model_id: str) -> ModelRecord:
        if self._registry is None:
            from fabstir.commands.host import connect

            self._registry = ChainModelRegistry(connect(self._settings))
        return self._registry.model(model_id)


def build_registry(settings: Settings) -> ModelRegistryReader:
    """Return the on-chain registry when a deployment is configured, else the settings' one."""
    chain = settings.chain
    devnet_absent = chain.deployment_file is None or not chain.deployment_file.exists()
    if chain.network == DEVNET and chain.rpc_url is None and devnet_absent:
        return SettingsModelRegistry(settings.host.models)
    return _ChainRegistryOnFirstUse(settings)


def build_manager(settings: Settings) -> ModelManager:
    """Wire the model manager of the node's settings: the host serves ``host.models``' ids."""
    assert settings.models.dir is not None
    disk = ModelDiskCache(Path(settings.models.dir), settings.models.disk_budget_bytes)
    return ModelManager(
        build_registry(settings),
        disk,
        [spec.id for spec in settings.host.models],
        source_options={"s3": storage_options(settings.storage, "s3://")},
    )


def list_models(settings: Settings, args: argparse.Namespace) -> int:
    manager = build_manager(settings)
    entries = manager.disk.entries()
    cached = {entry.sha256: entry for entry in entries}
    rows = []
    for name in manager.names:
        try:
            record = manager.resolve(to_model_id(name))
        except FabstirError as exc:
            rows.append({"name": name, "problem": f"[{exc.code}] {exc.message}"})
            continue
        entry = cached.get(record.sha256)
        rows.append(
            {
                "name": name,
                "sha256": record.sha256,
                "uri": record.uri,
                "base_id": record.base_id,
                "cached": entry is not None,
                "size_bytes": None if entry is None else entry.size_bytes,
            }
        )
    files = [
        {"name": e.name, "sha256": e.sha256, "size_bytes": e.size_bytes, "path": str(e.path)}
        for e in reversed(entries)
    ]
    if args.json:
        print(
            json.dumps({"models": rows, "files": files, "budget_bytes": manager.disk.budget_bytes})
        )
        return 0
    _print_tables(rows, files)
    return 0


def _print_tables(rows: list[dict[str, Any]], files: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table("name", "sha256", "cached", "size", "uri", title="served models")
    for row in rows:
        if "problem" in row:
            table.add_row(row["name"], "", "", "", escape(row["problem"]))
            continue
        size = "" if row["size_bytes"] is None else f"{row['size_bytes']:,} B"
        cached_mark = "yes" if row["cached"] else "no"
        table.add_row(row["name"], row["sha256"][:12], cached_mark, size, row["uri"])
    files_table = Table("name", "sha256", "size", title="cached files, most recently used first")
    for file in files:
        files_table.add_row(file["name"], file["sha256"][:12], f"{file['size_bytes']:,} B")
    console = Console()
    console.print(table)
    console.print(files_table)


def pull_model(settings: Settings, args: argparse.Namespace) -> int:
    manager = build_manager(settings)
    record = manager.resolve(to_model_id(args.model))
    with download_progress(f"pull {record.name}") as progress:
        model = manager.fetch(record, progress)
    print(json.dumps({"name": model.name, "sha256": model.sha256, "path": model.path}))
    return 0


def remove_model(settings: Settings, args: argparse.Namespace) -> int:
    removed = build_manager(settings).remove(args.model)
    print(json.dumps({"name": args.model, "removed": removed}))
    return 0


def verify_models(settings: Settings, args: argparse.Namespace) -> int:
    statuses = build_manager(settings).self_check()
    if args.json:
        print(json.dumps({"models": [status.__dict__ for status in statuses]}))
    else:
        for status in statuses:
            verdict = "ok" if status.ok else f"NOT ADVERTISED: {status.problem}"
            print(f"{status.name}: {verdict}")
    return 0 if all(status.ok for status in statuses) else 1
