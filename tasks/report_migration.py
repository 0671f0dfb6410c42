from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from fabstir.storage import MigrationCounts, check_migrated


@task(name="report-migration", cache_policy=NO_CACHE, timeout_seconds=60)
def report_migration(counts: list[MigrationCounts]) -> None:
    create_table_artifact(
        [
            {
                "part": c.part,
                "copied": c.copied,
                "skipped": c.skipped,
                "failed": c.failed,
                "abandoned_removed": c.abandoned_removed,
            }
            for c in counts
        ],
        key="migration-counts",
        description="Objects copied, skipped (already verified at the target) and failed per "
        "part, and partial writes of killed runs removed from the target.",
    )
    check_migrated(counts)
