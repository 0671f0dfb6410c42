"""`fabstir-node models list | pull | remove | verify`: the host's local model files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fabstir.models import ModelDiskCache, ModelManager, SettingsModelRegistry, to_model_id
from fabstir.models.progress import download_progress
from fabstir.settings import Settings
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


def build_manager(settings: Settings) -> ModelManager:
    """Wire the model manager of the node's settings (the registry is the host's model list)."""
    assert settings.models.dir is not None
    disk = ModelDiskCache(Path(settings.models.dir), settings.models.disk_budget_bytes)
    specs = settings.host.models
    return ModelManager(
        SettingsModelRegistry(specs),
        disk,
        [spec.id for spec in specs],
        source_options={"s3": storage_options(settings.storage, "s3://")},
    )


def list_models(settings: Settings, args: argparse.Namespace) -> int:
    manager = build_manager(settings)
    cached = {entry.sha256: entry for entry in manager.disk.entries()}
    rows = []
    for spec in settings.host.models:
        entry = cached.get(spec.sha256)
        rows.append(
            {
                "name": spec.id,
                "sha256": spec.sha256,
                "uri": spec.uri,
                "cached": entry is not None,
                "size_bytes": None if entry is None else entry.size_bytes,
            }
        )
    if args.json:
        print(json.dumps({"models": rows, "budget_bytes": manager.disk.budget_bytes}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "sha256", "cached", "size", "uri", title="served models")
    for row in rows:
        size = "" if row["size_bytes"] is None else f"{row['size_bytes']:,} B"
        cached_mark = "yes" if row["cached"] else "no"
        table.add_row(row["name"], row["sha256"][:12], cached_mark, size, row["uri"])
    Console().print(table)
    return 0


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
