from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import StorageBlock, current_settings
from fabstir.storage import MigrationCounts, MigrationPart
from fabstir.storage import copy_objects as copy
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


# Resumable by construction (verified objects are skipped), so a retry only copies what is missing.
@task(
    name="copy-objects",
    task_run_name="copy-{part.name}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=6 * 3600,
)
def copy_objects(part: MigrationPart) -> MigrationCounts:
    block = StorageBlock.from_settings(current_settings())
    return copy(
        block.get_client(part.source_url), block.get_client(part.target_url), part=part.name
    )
