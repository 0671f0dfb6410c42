"""Batch settlement settings, the queue's batching rules and the `settle` command's bad input
(no chain: no queued job here is past its deadline, which is when the planner reads the chain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.cli import main
from fabstir.domain import ClaimedJob, InferenceResult, StoredResult
from fabstir.errors import ConfigError
from fabstir.pipeline import SettlementQueue, plan_batches, queue_settlement
from fabstir.settings import SettlementSettings, load_settings
from fabstir.storage import ObjectStore
from tests.support import jobs
from tests.support.jobs import HASH

DEADLINE = 10_000


def claimed_job(job_id: int, deadline: int = DEADLINE) -> ClaimedJob:
    return jobs.claimed_job(job_id, deadline=deadline)


def queue_job(queue: SettlementQueue, settings: SettlementSettings, job_id: int, now: int) -> None:
    result = InferenceResult(text="hi", prompt_tokens=2, completion_tokens=3, cache_hit=False)
    stored = StoredResult(uri=f"file:///results/{job_id}", sha256=HASH)
    assert queue_settlement(queue, settings, claimed_job(job_id), stored, result, now) is not None


@pytest.fixture
def queue(tmp_path: Path) -> SettlementQueue:
    return SettlementQueue(ObjectStore(f"file://{tmp_path / 'storage'}"))


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FABSTIR_SETTLEMENT__BATCH_SIZE", "3", "batch size must be 1, 4 or 16"),
        ("FABSTIR_SETTLEMENT__BATCH_SIZE", "32", "batch size must be 1, 4 or 16"),
        ("FABSTIR_SETTLEMENT__BATCH_SIZE", "four", "valid integer"),
        ("FABSTIR_SETTLEMENT__MAX_WAIT_S", "-1", "greater than or equal to 0"),
        ("FABSTIR_SETTLEMENT__MAX_WAIT_S", "inf", "finite number"),
        ("FABSTIR_SETTLEMENT__DEADLINE_MARGIN_S", "0", "greater than 0"),
    ],
)
def test_wrong_settlement_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert variable in str(refused.value) and message in str(refused.value)


def test_the_settle_command_refuses_a_wrong_batch_size_before_doing_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FABSTIR_SETTLEMENT__BATCH_SIZE", "3")
    assert main(["settle"]) == 2
    assert "FABSTIR_SETTLEMENT__BATCH_SIZE" in capsys.readouterr().err


def test_the_settle_command_refuses_an_unknown_argument() -> None:
    with pytest.raises(SystemExit) as refused:
        main(["settle", "--flush=yes"])
    assert refused.value.code == 2


def test_batch_size_one_queues_nothing(queue: SettlementQueue) -> None:
    result = InferenceResult(text="hi", prompt_tokens=2, completion_tokens=3, cache_hit=False)
    stored = StoredResult(uri="file:///results/1", sha256=HASH)
    settings = SettlementSettings()
    assert settings.batch_size == 1
    assert queue_settlement(queue, settings, claimed_job(1), stored, result, now=0) is None
    assert queue.job_ids() == []


def test_full_batches_go_at_once_and_the_rest_waits_until_due_or_flushed(
    queue: SettlementQueue,
) -> None:
    settings = SettlementSettings(batch_size=4, max_wait_s=100, deadline_margin_s=900)
    for job_id, now in [(5, 10), (3, 10), (9, 12), (1, 11), (2, 20)]:
        queue_job(queue, settings, job_id, now)

    assert plan_batches(None, queue, settings, now=20) == [[3, 5, 1, 9]]  # type: ignore[arg-type]
    assert plan_batches(None, queue, settings, now=20, flush=True) == [[3, 5, 1, 9], [2]]  # type: ignore[arg-type]
    assert plan_batches(None, queue, settings, now=120) == [[3, 5, 1, 9], [2]]  # type: ignore[arg-type]


def test_queuing_a_job_again_keeps_its_place(queue: SettlementQueue) -> None:
    settings = SettlementSettings(batch_size=4, max_wait_s=100, deadline_margin_s=900)
    queue_job(queue, settings, 7, now=10)
    queue_job(queue, settings, 7, now=50)

    ready = queue.get(7)
    assert ready is not None and ready.queued_at == 10
    assert plan_batches(None, queue, settings, now=110) == [[7]]  # type: ignore[arg-type]


def test_a_job_near_its_deadline_is_not_queued(queue: SettlementQueue) -> None:
    settings = SettlementSettings(batch_size=16, max_wait_s=100, deadline_margin_s=900)
    result = InferenceResult(text="hi", prompt_tokens=2, completion_tokens=3, cache_hit=False)
    stored = StoredResult(uri="file:///results/1", sha256=HASH)
    now = DEADLINE - 900
    assert queue_settlement(queue, settings, claimed_job(1), stored, result, now) is None
    assert queue.job_ids() == []


def test_the_settle_batch_deployment_runs_on_a_schedule_one_run_at_a_time() -> None:
    import yaml

    from tests.conftest import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "settle-batch"]
    assert deployment["entrypoint"] == "flows/settle_batch.py:settle_batch"
    assert [schedule["interval"] for schedule in deployment["schedules"]] == [60]
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    # A job closer to its deadline than the margin would miss it waiting for the next run.
    assert SettlementSettings().deadline_margin_s > 60
