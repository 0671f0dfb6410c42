"""Reading what a flow published, from the Prefect server the test runs against."""

from __future__ import annotations

import asyncio
import json
from typing import Any


def latest_table_artifact(key: str) -> list[dict[str, Any]]:
    """The rows of the latest table artifact under ``key``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> list[dict[str, Any]]:
        async with get_client() as client:
            artifacts = await client.read_latest_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
        data = artifacts[0].data
        return json.loads(data) if isinstance(data, str) else data

    return asyncio.run(read())
