from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from blocks import CacheBlock, current_settings
from fabstir.cache import CacheMaintenance
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


# Retried on a storage outage, and on a job's store committing first (each store indexes its
# row into the same indexes; stores leave them alone only while the vector index retrains).
@task(
    name="maintain-cache",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=1800,
)
def maintain_cache() -> CacheMaintenance | None:
    """Expire, evict and compact the cache, retraining its vector index if outgrown; None when
    the cache is disabled."""
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
