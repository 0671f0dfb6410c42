from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import current_settings
from fabstir.storage import MigrationPart
from fabstir.storage import plan_migration as plan


@task(name="plan-migration", cache_policy=NO_CACHE, timeout_seconds=60)
def plan_migration(
    target_storage_url: str, target_cache_url: str | None, target_models_url: str | None
) -> list[MigrationPart]:
    return plan(current_settings(), target_storage_url, target_cache_url, target_models_url)
