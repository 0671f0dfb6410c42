"""The stage files in deployments/stages/ each load into valid settings through FABSTIR_ENV_FILE,
with their secrets from the environment; `real` without them is refused, naming them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fabstir.cli import apply_stage_file
from fabstir.errors import ConfigError
from fabstir.settings import ANVIL_KEYS, load_settings

STAGES = Path(__file__).resolve().parents[2] / "deployments" / "stages"
HOST_KEY = "0x" + "5a" * 32
BASE = {
    "rpc_url": "https://mainnet.base.org",
    "chain_id": 8453,
    "model_registry": "0x" + "11" * 20,
    "node_registry": "0x" + "22" * 20,
    "job_marketplace": "0x" + "33" * 20,
    "staking_token": "0x" + "44" * 20,
}


def _use(monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    monkeypatch.setenv("FABSTIR_ENV_FILE", str(STAGES / f"{stage}.env"))


def _supply_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_CHAIN__HOST_PRIVATE_KEY", HOST_KEY)
    monkeypatch.setenv("FABSTIR_CHAIN__NETWORKS", json.dumps({"base": BASE}))


def test_there_is_one_file_per_stage() -> None:
    assert sorted(path.stem for path in STAGES.glob("*.env")) == ["connected", "local", "real"]


@pytest.mark.parametrize("stage", ["local", "connected", "real"])
def test_each_stage_file_loads_into_valid_settings_of_its_stage(
    monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    _use(monkeypatch, stage)
    _supply_real_secrets(monkeypatch)
    settings = load_settings()
    assert settings.stage == stage
    if stage == "local":
        assert str(settings.storage.url).startswith("file://")
    else:
        assert str(settings.storage.url).startswith("s3://")
        assert str(settings.cache.uri).startswith("s3://")


def test_the_real_stage_is_base_and_its_file_names_no_local_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _use(monkeypatch, "real")
    _supply_real_secrets(monkeypatch)
    settings = load_settings()
    deployment = settings.chain.deployment()
    assert (deployment.rpc_url, deployment.chain_id) == ("https://mainnet.base.org", 8453)
    assert settings.prover.srs_path is not None
    assert settings.chain.host_private_key.get_secret_value() == HOST_KEY
    text = (STAGES / "real.env").read_text()
    for local in ("127.0.0.1", "localhost", "/tmp", "devnet", "anvil"):
        assert local not in text


def test_no_stage_file_holds_a_secret() -> None:
    for path in STAGES.glob("*.env"):
        names = [line.split("=", 1)[0] for line in path.read_text().splitlines() if "=" in line]
        assigned = [name for name in names if not name.startswith("#")]
        assert not [name for name in assigned if "KEY" in name or "SECRET" in name], path


def test_the_real_stage_without_its_secrets_is_refused_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _use(monkeypatch, "real")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "FABSTIR_CHAIN__HOST_PRIVATE_KEY" in str(refused.value)
    assert "FABSTIR_CHAIN__NETWORKS" in str(refused.value)
    monkeypatch.setenv("FABSTIR_CHAIN__HOST_PRIVATE_KEY", ANVIL_KEYS[1])
    monkeypatch.setenv("FABSTIR_CHAIN__NETWORKS", json.dumps({"base": BASE}))
    with pytest.raises(ConfigError, match="FABSTIR_CHAIN__HOST_PRIVATE_KEY"):
        load_settings()


def test_the_environment_wins_over_the_stage_file(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, "real")
    _supply_real_secrets(monkeypatch)
    monkeypatch.setenv("FABSTIR_CHAIN__CONFIRMATIONS", "7")
    assert load_settings().chain.confirmations == 7


def test_a_wrong_value_in_a_stage_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stage = tmp_path / "bad.env"
    stage.write_text("FABSTIR_STAGE=production\n")
    monkeypatch.setenv("FABSTIR_ENV_FILE", str(stage))
    with pytest.raises(ConfigError, match="FABSTIR_STAGE"):
        load_settings()


def test_a_stage_file_that_does_not_exist_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FABSTIR_ENV_FILE", str(tmp_path / "nowhere.env"))
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert refused.value.code == "env_file_missing"


def test_the_cli_gives_child_processes_the_files_prefect_settings_and_absolute_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(STAGES.parent.parent)
    monkeypatch.setenv("FABSTIR_ENV_FILE", "deployments/stages/connected.env")
    monkeypatch.setenv("PREFECT_API_URL", "unset below")
    monkeypatch.delenv("PREFECT_API_URL")
    apply_stage_file()
    assert os.environ["PREFECT_API_URL"] == "http://prefect.fabstir.internal:4200/api"
    assert os.environ["FABSTIR_ENV_FILE"] == str(STAGES / "connected.env")

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4201/api")
    apply_stage_file()
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4201/api", "the environment wins"
