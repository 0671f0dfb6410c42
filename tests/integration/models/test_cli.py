"""`fabstir-node models ...` as an operator runs it, on the tiny model, with and without a chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabstir.chain import ChainClient, Deployment, Devnet
from fabstir.cli import main
from fabstir.models import file_sha256
from fabstir.settings import ANVIL_KEYS, ModelSpec
from tests.support.tiny_gguf import write_tiny_gguf

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


def _main_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["models", *args])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_with_a_devnet_deployed_the_commands_follow_the_chain_registry(
    tiny_model: ModelSpec,
    isolated_environment: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The host's settings only name the model; the hash and URI on chain are what count.
    named = ModelSpec(id=tiny_model.id, uri=str(tmp_path / "nowhere.gguf"), sha256="00" * 32)
    monkeypatch.setenv("FABSTIR_HOST__MODELS", json.dumps([named.model_dump()]))
    v2 = write_tiny_gguf(tmp_path / "v2.gguf", seed=8)
    with Devnet(deployment_file=isolated_environment / "devnet.json", models=[tiny_model]) as net:
        assert _main_json(capsys, "verify", "--json")[1]["models"][0]["problem"] == (
            "not downloaded"
        )
        code, pulled = _main_json(capsys, "pull", tiny_model.id)
        assert code == 0 and pulled["sha256"] == tiny_model.sha256
        assert _main_json(capsys, "verify", "--json")[0] == 0

        ChainClient(net, ANVIL_KEYS[0]).update_model(tiny_model.id, file_sha256(v2), str(v2))
        listed = _main_json(capsys, "list", "--json")[1]
        assert (listed["models"][0]["sha256"], listed["models"][0]["cached"]) == (
            file_sha256(v2),
            False,
        )
        assert [file["sha256"] for file in listed["files"]] == [tiny_model.sha256]
        assert _main_json(capsys, "verify", "--json")[0] == 1  # the new version is not here yet
        assert _main_json(capsys, "pull", tiny_model.id)[1]["sha256"] == file_sha256(v2)

        assert _main_json(capsys, "remove", tiny_model.id)[1]["removed"] is True
        assert _main_json(capsys, "list", "--json")[1]["files"] == []


def test_an_unreachable_chain_fails_pull_and_is_a_problem_for_verify(
    tiny_model: ModelSpec,
    isolated_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = "0x" + "11" * 20
    Deployment(
        rpc_url="http://127.0.0.1:9",  # discard port: nothing answers
        chain_id=31337,
        model_registry=address,
        node_registry=address,
        job_marketplace=address,
        staking_token=address,
    ).save(isolated_environment / "devnet.json")
    monkeypatch.setenv("FABSTIR_HOST__MODELS", json.dumps([tiny_model.model_dump()]))
    monkeypatch.setenv("FABSTIR_CHAIN__RPC_ATTEMPTS", "1")
    assert main(["models", "pull", tiny_model.id]) == 2
    assert "[rpc_unreachable]" in capsys.readouterr().err
    code, verified = _main_json(capsys, "verify", "--json")
    assert code == 1 and not verified["models"][0]["ok"]


def test_an_rpc_url_without_a_deployment_is_refused(
    tiny_model: ModelSpec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FABSTIR_HOST__MODELS", json.dumps([tiny_model.model_dump()]))
    monkeypatch.setenv("FABSTIR_CHAIN__RPC_URL", "http://127.0.0.1:9")
    assert main(["models", "pull", tiny_model.id]) == 2
    assert "[deployment_missing]" in capsys.readouterr().err
