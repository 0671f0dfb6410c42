from __future__ import annotations

from prefect import flow

from fabstir.storage import MigrationCounts
from tasks.copy_objects import copy_objects
from tasks.plan_migration import plan_migration
from tasks.report_migration import report_migration


@flow(name="migrate", flow_run_name="migrate-to-{target_storage_url}")
def migrate(
    target_storage_url: str,
    target_cache_url: str | None = None,
    target_models_url: str | None = None,
) -> list[MigrationCounts]:
    """Copy results, job index, cache tables and model files to another stage's backends.

    Every copy is verified by hash; re-running copies only what is missing. The source is kept.
    """
    parts = plan_migration(target_storage_url, target_cache_url, target_models_url)
    counts = [copy_objects(part) for part in parts]
    report_migration(counts)
    return counts
