"""Cheap checks of the orchestration wiring: settings, automations, reconcile decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.bootstrap import (
    AUTOMATIONS_DIR,
    MISSED_HEARTBEATS,
    apply_automations,
    load_automation,
    pools_of,
)
from fabstir.commands.run import SERVER_BATCHING, prefect_environment
from fabstir.errors import ConfigError
from fabstir.reconcile import jobs_to_start
from fabstir.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FABSTIR_ORCHESTRATION__GPUS", "[0, 0]"),
        ("FABSTIR_ORCHESTRATION__GPUS", "[]"),
        ("FABSTIR_ORCHESTRATION__HEARTBEAT_S", "10"),
        ("FABSTIR_ORCHESTRATION__DISPATCH", "teleport"),
        ("FABSTIR_ORCHESTRATION__WORK_POOL", "GPU Pool"),
        ("FABSTIR_ORCHESTRATION__EXPLORER_TX_URL", "https://scan.example/tx/"),
        ("FABSTIR_ORCHESTRATION__SERVER_NICENESS", "-5"),
        ("FABSTIR_ORCHESTRATION__SERVER_NICENESS", "20"),
    ],
)
def test_wrong_orchestration_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_every_automation_file_is_valid() -> None:
    class _NoBlocks:
        def read_block_document_by_name(self, name: str, block_type_slug: str) -> object:
            raise AssertionError("our automations refer to no block")

    ours = ["zombie-runs.yaml", "rerun-crashed-jobs.yaml"]
    for name in ours:
        load_automation(AUTOMATIONS_DIR / name, _NoBlocks(), zombie_window_s=90)


def test_the_zombie_window_is_three_heartbeats() -> None:
    heartbeat_s = load_settings().orchestration.heartbeat_s
    zombie = load_automation(
        AUTOMATIONS_DIR / "zombie-runs.yaml", None, zombie_window_s=MISSED_HEARTBEATS * heartbeat_s
    )
    assert zombie.trigger.within.total_seconds() == 3 * heartbeat_s
    assert f"{3 * heartbeat_s} s" in zombie.actions[0].message


def test_an_automation_file_with_an_unknown_variable_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x-${job_window_s}\ntrigger: {type: event}\nactions: []\n")
    with pytest.raises(ConfigError, match="job_window_s") as refused:
        load_automation(bad, None, zombie_window_s=90)
    assert refused.value.code == "automation_invalid"


@pytest.mark.parametrize("heartbeat_s", [0, -30, 1.5, True])
def test_automations_refuse_a_heartbeat_that_is_not_whole_positive_seconds(
    heartbeat_s: object,
) -> None:
    with pytest.raises(ValueError, match="heartbeat_s"):
        apply_automations(AUTOMATIONS_DIR, heartbeat_s=heartbeat_s)  # type: ignore[arg-type]


def test_an_invalid_automation_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrigger: {type: nonsense}\nactions: []\n")
    with pytest.raises(ConfigError) as refused:
        load_automation(bad, None, zombie_window_s=90)
    assert refused.value.code == "automation_invalid"


def test_bootstrap_refuses_a_pool_without_its_inference_deployment() -> None:
    assert "gpu" in pools_of(REPO_ROOT / "prefect.yaml", "gpu")
    with pytest.raises(ConfigError) as refused:
        pools_of(REPO_ROOT / "prefect.yaml", "a100")
    assert refused.value.code == "deployment_missing"


def test_reconcile_starts_jobs_without_a_live_or_completed_run_up_to_a_limit() -> None:
    runs = {
        1: ["COMPLETED"],
        2: ["RUNNING"],
        3: ["CRASHED"],
        4: ["FAILED", "CRASHED", "FAILED"],
        5: [],
    }
    assert jobs_to_start([1, 2, 3, 4, 5, 6], runs, max_runs=3) == [3, 5, 6]


def test_the_node_server_records_steps_in_batches_unless_the_operator_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import Settings as PrefectSettings

    monkeypatch.setenv("PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE", "7")
    env = prefect_environment(load_settings())
    assert env["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE"] == "7"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    services = PrefectSettings().server.services  # the names are Prefect's own
    assert services.task_run_recorder.batch_size == int(
        SERVER_BATCHING["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"]
    )
    assert services.task_run_recorder.flush_interval == 1
    assert services.event_persister.batch_size == 7
