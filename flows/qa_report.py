from __future__ import annotations

from prefect import flow

from fabstir.monitoring import ReportOutput
from tasks.qa_build import qa_build
from tasks.qa_inputs import qa_job_states, qa_ratings, qa_token_decimals
from tasks.qa_publish import qa_publish


@flow(name="qa-report", flow_run_name="qa-report-{days}d")
def qa_report(days: int = 7) -> ReportOutput:
    """Report the node's jobs, earnings, latency, uptime and ratings over the last ``days``."""
    output = qa_build(days, qa_job_states(days), qa_ratings(), qa_token_decimals())
    qa_publish(output)
    return output
