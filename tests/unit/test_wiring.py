"""Cheap checks of the wiring: import directions, task policies, prefect.yaml entrypoints."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import fabstir
from fabstir.errors import JobRejected, TransientError

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = ("claim", "fetch_model", "cache_lookup", "infer", "store_result", "prove", "settle")


def test_the_core_never_imports_prefect() -> None:
    modules = [
        m.name
        for m in pkgutil.walk_packages(fabstir.__path__, "fabstir.")
        if not m.name.endswith("__main__")
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prefect', 'flows', 'tasks', 'blocks'))\n"
        "print(leaked); sys.exit(1 if leaked else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("step", STEPS)
def test_every_step_retries_outages_only(step: str) -> None:
    task = getattr(importlib.import_module(f"tasks.{step}"), step)
    assert task.retries >= 1 and task.timeout_seconds
    condition = task.retry_condition_fn

    class _State:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def result(self, raise_on_failure: bool = True) -> Exception:
            return self.error

    assert condition(task, None, _State(TransientError("rpc down")))
    assert not condition(task, None, _State(JobRejected("no")))
    assert not condition(task, None, _State(ValueError("bug")))


def test_prefect_yaml_entrypoints_load() -> None:
    from prefect.flows import load_flow_from_entrypoint

    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    assert config["deployments"]
    for deployment in config["deployments"]:
        flow = load_flow_from_entrypoint(str(REPO_ROOT / deployment["entrypoint"]))
        assert flow.name == deployment["entrypoint"].rsplit(":", 1)[1].replace("_", "-")


@pytest.mark.parametrize("wait_s", [-1, 61, "soon"])
def test_the_inference_job_refuses_a_wrong_request_wait(wait_s: object) -> None:
    from prefect.exceptions import ParameterTypeError

    from flows.inference_job import inference_job

    with pytest.raises(ParameterTypeError, match="await_request_s"):
        inference_job.validate_parameters({"job_id": 1, "await_request_s": wait_s})
    assert inference_job.validate_parameters({"job_id": 1, "await_request_s": 10}) == {
        "job_id": 1,
        "await_request_s": 10.0,
    }


def test_the_steps_settings_follow_the_environment_stage_file_and_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from blocks import current_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FABSTIR_HOME")  # home is then .fabstir in the working directory
    first = current_settings()
    assert current_settings() is first, "unchanged sources: built once"
    monkeypatch.setenv("FABSTIR_ENGINE__N_CTX", "1024")
    assert current_settings().engine.n_ctx == 1024
    stage = tmp_path / "stage.env"
    stage.write_text("FABSTIR_SETTLEMENT__BATCH_SIZE=4\n")
    monkeypatch.setenv("FABSTIR_ENV_FILE", str(stage))
    assert current_settings().settlement.batch_size == 4
    stage.write_text("FABSTIR_SETTLEMENT__BATCH_SIZE=16\n")
    assert current_settings().settlement.batch_size == 16
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert current_settings().home == tmp_path / "elsewhere" / ".fabstir"
