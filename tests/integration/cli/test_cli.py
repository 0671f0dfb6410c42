"""`fabstir-node` as an operator runs it: a real process, real signals, real anvil."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from fabstir.chain import Deployment

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "fabstir.cli"]


def _answers(rpc_url: str) -> bool:
    try:
        requests.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=2)
    except requests.ConnectionError:
        return False
    return True


def test_devnet_writes_its_deployment_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "FABSTIR_HOME": str(tmp_path)}
    process = subprocess.Popen([*CLI, "devnet"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        announced = json.loads(process.stdout.readline())
        deployment = Deployment.load(Path(announced["deployment_file"]))
        assert deployment.rpc_url == announced["rpc_url"]
        assert _answers(deployment.rpc_url)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not _answers(deployment.rpc_url)
    finally:
        process.kill()


def test_a_wrong_setting_stops_the_cli_with_the_variable_named(tmp_path: Path) -> None:
    env = {**os.environ, "FABSTIR_HOME": str(tmp_path), "FABSTIR_CHAIN__CONFIRMATIONS": "-3"}
    result = subprocess.run([*CLI, "devnet"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "FABSTIR_CHAIN__CONFIRMATIONS" in result.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run([*CLI, "mine-bitcoin"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
