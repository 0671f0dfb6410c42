from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from blocks import CacheBlock, current_settings
from fabstir.cache import CacheMaintenance
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


# Retried on a storage outage, and on another process's compaction committing first (a job's
# store compacts every 16 commits; a retraining at 1M entries takes ~45 s).
@task(
    name="maintain-cache",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=1800,
)
def maintain_cache() -> CacheMaintenance | None:
    """Compact the cache and retrain its vector index if outgrown; None when it is disabled."""
    cache = CacheBlock.from_settings(current_settings()).get_client()
    if cache is None:
        return None
    done = cache.maintain()
    create_table_artifact(
        [
            {
                "expired": done.expired,
                "evicted": done.evicted,
                "entries": done.entries,
                "fragments": done.fragments,
                "index_retrained": done.index_retrained,
            }
        ],
        key="cache-maintenance",
        description="Entries expired (older than the TTL) and evicted (least recently used beyond "
        "FABSTIR_CACHE__MAX_ENTRIES), the entries and table fragments left, and whether the ANN "
        "index was retrained (its partitions had grown to twice their trained size).",
    )
    return done
