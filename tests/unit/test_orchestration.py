"""Cheap checks of the orchestration wiring: settings, automations, reconcile decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployments.bootstrap import AUTOMATIONS_DIR, load_automation, pools_of
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
        load_automation(AUTOMATIONS_DIR / name, _NoBlocks())


def test_the_zombie_window_covers_three_heartbeats() -> None:
    zombie = yaml.safe_load((AUTOMATIONS_DIR / "zombie-runs.yaml").read_text())
    assert zombie["trigger"]["within"] >= 3 * load_settings().orchestration.heartbeat_s


def test_an_invalid_automation_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrigger: {type: nonsense}\nactions: []\n")
    with pytest.raises(ConfigError) as refused:
        load_automation(bad, None)
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
