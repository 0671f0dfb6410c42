"""An alert automation fires for a failed inference-job run: a local Prefect server (the shared
test harness, whose ephemeral server runs the trigger and action services) notifies a local
webhook receiver through the Custom Webhook block the automation files name."""

from __future__ import annotations

import http.server
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.loopback import serving

pytestmark = pytest.mark.e2e

AUTOMATIONS_DIR = Path(__file__).resolve().parents[2] / "deployments" / "automations"
BLOCK_REFERENCE = re.compile(r"^\{\{\s*prefect\.blocks\.([\w-]+)\.([\w-]+)\s*\}\}$")


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server that records every JSON body POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url + "/alerts", received


def resolve_blocks(data: Any) -> Any:
    """Replace ``{{ prefect.blocks.<type-slug>.<name> }}`` values with the saved block's id."""
    from prefect.client.orchestration import get_client

    if isinstance(data, dict):
        return {key: resolve_blocks(value) for key, value in data.items()}
    if isinstance(data, list):
        return [resolve_blocks(value) for value in data]
    match = BLOCK_REFERENCE.match(data) if isinstance(data, str) else None
    if match is None:
        return data
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(match[2], block_type_slug=match[1])
    return str(document.id)


def apply_automation(path: Path) -> Any:
    from prefect.automations import Automation

    automation = Automation.model_validate(resolve_blocks(yaml.safe_load(path.read_text())))
    return automation.create()


@pytest.mark.parametrize("path", sorted(AUTOMATIONS_DIR.glob("alert-*.yaml")), ids=lambda p: p.stem)
def test_every_alert_file_is_a_valid_automation(path: Path) -> None:
    import uuid

    from prefect.automations import Automation

    data = yaml.safe_load(path.read_text())
    placeholder = str(uuid.uuid4())
    for action in data["actions"]:
        assert BLOCK_REFERENCE.match(action["block_document_id"])
        action["block_document_id"] = placeholder
    automation = Automation.model_validate(data)
    assert automation.name == path.stem.replace("alert-", "fabstir-alert-")


def test_a_failed_job_run_notifies_the_webhook(
    prefect_server: None, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.inference_job import inference_job

    url, received = webhook
    CustomWebhookNotificationBlock(
        name="fabstir-alerts",
        url=url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    ).save("fabstir-alerts", overwrite=True)
    automation = apply_automation(AUTOMATIONS_DIR / "alert-job-run-failed.yaml")
    try:
        # No devnet is configured, so the claim step fails: a real failed run, not a staged one.
        state = inference_job(job_id=424242, return_state=True)
        assert state.is_failed()
        deadline = time.monotonic() + 45
        while not received and time.monotonic() < deadline:
            time.sleep(0.5)
        assert received, "the automation sent no notification within 45 s"
        alert = received[0]
        assert "job-424242" in alert["subject"] and "Failed" in alert["subject"]
        assert "job-424242" in alert["body"]
    finally:
        automation.delete()
