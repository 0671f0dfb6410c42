from __future__ import annotations

from prefect import flow

from tasks.reconcile import open_jobs, start_missing_runs


@flow(name="reconcile", log_prints=True)
def reconcile() -> list[int]:
    """Start a run for every job this host should be running and is not; return their ids."""
    return start_missing_runs(open_jobs())
