"""`fabstir-node models ...` as an operator runs it, on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabstir.settings import ModelSpec

pytestmark = pytest.mark.integration


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fabstir.cli", "models", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pull_verify_list_and_remove(tiny_model: ModelSpec, isolated_environment: Path) -> None:
    env = {**os.environ, "FABSTIR_HOST__MODELS": json.dumps([tiny_model.model_dump()])}
    assert _cli(env, "verify").returncode == 1  # served but not downloaded: not advertised

    pulled = _cli(env, "pull", tiny_model.id)
    assert pulled.returncode == 0, pulled.stderr
    local = json.loads(pulled.stdout.strip().splitlines()[-1])
    assert local["sha256"] == tiny_model.sha256
    assert Path(local["path"]).parent == (isolated_environment / "models").resolve()
    assert "pull tiny-test-model" in pulled.stderr  # the progress bar

    verified = _cli(env, "verify", "--json")
    assert verified.returncode == 0
    assert json.loads(verified.stdout)["models"][0]["ok"] is True
    listed = json.loads(_cli(env, "list", "--json").stdout)
    assert listed["models"][0]["cached"] is True

    assert json.loads(_cli(env, "remove", tiny_model.id).stdout)["removed"] is True
    assert not Path(local["path"]).exists()


def test_pulling_a_model_the_host_does_not_serve_names_the_reason(tiny_model: ModelSpec) -> None:
    env = {**os.environ, "FABSTIR_HOST__MODELS": json.dumps([tiny_model.model_dump()])}
    result = _cli(env, "pull", "not-a-model")
    assert result.returncode == 2
    assert "model_not_served" in result.stderr


def test_a_wrong_disk_budget_names_the_variable() -> None:
    result = _cli({**os.environ, "FABSTIR_MODELS__DISK_BUDGET_BYTES": "0"}, "list")
    assert result.returncode == 2
    assert "FABSTIR_MODELS__DISK_BUDGET_BYTES" in result.stderr
