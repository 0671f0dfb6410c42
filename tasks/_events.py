"""Events this node emits to Prefect, for automations to act on."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

JOB_FAILED = "fabstir.job.failed"


def job_resource(job_id: int) -> dict[str, str]:
    return {
        "prefect.resource.id": f"fabstir.job.{job_id}",
        "prefect.resource.name": f"job-{job_id}",
    }


def emit_job_failed(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook: announce a failed or crashed job run (an automation may alert on it)."""
    job_id = flow_run.parameters["job_id"]
    error = state.result(raise_on_failure=False) if state.is_failed() else None
    emit_event(
        JOB_FAILED,
        resource=job_resource(job_id),
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.role": "flow-run",
                "prefect.resource.name": flow_run.name,
            }
        ],
        payload={
            "job_id": job_id,
            "state": state.type.value,
            "message": state.message or "",
            "code": getattr(error, "code", None),
        },
    )
