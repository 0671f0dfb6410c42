"""Node events for Prefect automations, posted to the Prefect API over plain HTTP.

The core does not import Prefect, so events go to the server's ``POST /events`` endpoint in the
schema Prefect's own clients send. Event names are what deployments/automations/ match on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fabstir.errors import TransientError

log = logging.getLogger(__name__)

NODE_READY = "fabstir.node.ready"
NODE_NOT_READY = "fabstir.node.not-ready"
UPTIME_LOW = "fabstir.node.uptime-low"
SPOT_CHECK_FAILED = "fabstir.spot-check.failed"


def node_resource_id(address: str) -> str:
    return f"fabstir.node.{address.lower()}"


def post_event(
    api_url: str, event: str, resource_id: str, payload: Mapping[str, Any] | None = None
) -> None:
    """Record one event on the Prefect server at ``api_url``.

    Raises:
        TransientError: the server cannot be reached or refused the event.
    """
    import httpx

    body = [
        {
            "id": str(uuid.uuid4()),
            "occurred": datetime.now(UTC).isoformat(),
            "event": event,
            "resource": {"prefect.resource.id": resource_id},
            "related": [],
            "payload": dict(payload or {}),
        }
    ]
    try:
        response = httpx.post(api_url.rstrip("/") + "/events", json=body, timeout=10.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise TransientError("could not post the event", event=event, api_url=api_url) from exc
