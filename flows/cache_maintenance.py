from __future__ import annotations

from prefect import flow

from fabstir.cache import CacheMaintenance
from tasks.maintain_cache import maintain_cache


@flow(name="cache-maintenance")
def cache_maintenance() -> CacheMaintenance | None:
    """Expire and evict the answer cache's entries and rewrite their fragments, retrain its
    vector index once the table has outgrown it, and delete week-old versions' files: the
    upkeep that would slow a job's store or, done there, every lookup after it."""
    return maintain_cache()
