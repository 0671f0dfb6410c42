from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from blocks import ChainBlock, current_settings
from fabstir.monitoring import UPTIME_LOW, ReportOutput, node_resource_id, report_markdown


@task(name="qa-publish", cache_policy=NO_CACHE, timeout_seconds=60)
def qa_publish(output: ReportOutput) -> None:
    """Publish the report as artifacts; announce uptime below the floor as an event."""
    links = "\n".join(f"- {name}: {uri}" for name, uri in output.uris.items())
    create_markdown_artifact(
        report_markdown(output.report) + "\nStored copies:\n" + links,
        key="qa-report",
        description="Key figures of the node over the report window.",
    )
    create_table_artifact(output.daily, key="qa-report-daily", description="Jobs per day.")
    settings = current_settings()
    uptime_24h = output.report.uptime.get("24h")
    if uptime_24h is not None and uptime_24h < settings.monitoring.min_uptime_ratio:
        address = ChainBlock.from_settings(settings).get_client().address
        emit_event(
            UPTIME_LOW,
            resource={"prefect.resource.id": node_resource_id(address)},
            payload={"uptime_24h": uptime_24h, "floor": settings.monitoring.min_uptime_ratio},
        )
