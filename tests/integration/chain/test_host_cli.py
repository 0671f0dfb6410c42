"""`fabstir-node register | update | unregister | status | withdraw | rate` against a devnet."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from fabstir.chain import ChainClient, Devnet
from fabstir.cli import main
from fabstir.settings import ANVIL_KEYS
from tests.integration.chain.conftest import MODELS, OTHER_HOST_KEY, PRICE_PER_TOKEN_WEI

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(
    devnet: Devnet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, dict, str]]:
    assert devnet.deployment  # written to tmp_path by the devnet fixture
    monkeypatch.setenv("FABSTIR_CHAIN__DEPLOYMENT_FILE", str(tmp_path / "devnet.json"))
    monkeypatch.setenv("FABSTIR_HOST__MODELS", json.dumps([MODELS[0].model_dump()]))
    monkeypatch.setenv("FABSTIR_HOST__PRICE_PER_TOKEN_WEI", str(PRICE_PER_TOKEN_WEI))
    monkeypatch.setenv("FABSTIR_HOST__TOKEN_PRICES", '{"USDC": 5}')
    monkeypatch.setenv("FABSTIR_HOST__REGION", "eu")

    def run(*argv: str) -> tuple[int, dict, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        lines = out.strip().splitlines()
        return code, json.loads(lines[-1]) if lines else {}, err

    return run


def test_register_status_update_and_unregister(
    cli: Callable[..., tuple[int, dict, str]],
    monkeypatch: pytest.MonkeyPatch,
    advance_time: Callable[[int], None],
) -> None:
    code, out, _ = cli("register")
    assert code == 0 and out["stake"] == 100 * 10**18
    code, status, _ = cli("status")
    assert code == 0 and status["registered"] and status["active"] and status["region"] == "eu"
    assert {o["price_per_token"] for o in status["offers"]} == {PRICE_PER_TOKEN_WEI, 5}
    assert status["credits"] == {"ETH": 0, "USDC": 0} and status["rating"]["count"] == 0

    monkeypatch.setenv("FABSTIR_HOST__REGION", "us")
    monkeypatch.setenv("FABSTIR_HOST__TOKEN_PRICES", "{}")
    assert cli("update")[0] == 0
    status = cli("status")[1]
    assert status["region"] == "us" and len(status["offers"]) == 1

    code, out, _ = cli("unregister")
    assert (code, out["state"]) == (0, "cooling_down")
    assert cli("unregister")[1]["state"] == "cooling_down"
    advance_time(3600)
    code, out, _ = cli("unregister")
    assert (code, out["state"], out["stake_returned"]) == (0, "unregistered", 100 * 10**18)
    assert not cli("status")[1]["registered"]


def test_withdraw_and_rate(
    cli: Callable[..., tuple[int, dict, str]],
    devnet: Devnet,
    renter: ChainClient,
    post_job: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
    proof_for: Callable[[int, str, int], bytes],
) -> None:
    assert cli("register")[0] == 0
    host = ChainClient(devnet.deployment, ANVIL_KEYS[1])
    job_id = post_job()
    host.claim_job(job_id)
    host.submit_result(
        job_id, "0x" + "22" * 32, "file:///r", 10, proof_for(job_id, "0x" + "22" * 32, 10)
    )
    owed = host.credit_of(host.address)
    code, out, _ = cli("withdraw")
    assert code == 0 and out["withdrawn"] == {"ETH": owed, "USDC": 0}
    assert host.credit_of(host.address) == 0

    monkeypatch.setenv("FABSTIR_CHAIN__HOST_PRIVATE_KEY", ANVIL_KEYS[2])  # the renter
    assert cli("rate", str(job_id), "4")[0] == 0
    assert renter.rating_of(host.address) == (1, 4)
    code, _, err = cli("rate", str(job_id), "5")
    assert code == 2 and "AlreadyRated" in err


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [
        ({}, ("update",), "[not_registered]"),
        ({}, ("unregister",), "[not_registered]"),
        (
            {"FABSTIR_CHAIN__HOST_PRIVATE_KEY": OTHER_HOST_KEY},
            ("register",),
            "[insufficient_stake_balance]",
        ),
        ({"FABSTIR_CHAIN__CHAIN_ID": "8453"}, ("status",), "[wrong_chain]"),
        ({"FABSTIR_CHAIN__NETWORK": "mainnet"}, ("status",), "[unknown_network]"),
        ({"FABSTIR_HOST__TOKEN_PRICES": '{"DAI": 1}'}, ("register",), "[unknown_payment_token]"),
        ({"FABSTIR_CHAIN__RPC_URL": "closed"}, ("status",), "[rpc_unreachable]"),
    ],
    ids=["update", "unregister", "no-stake", "chain-id", "network", "token", "rpc"],
)
def test_clear_errors(
    cli: Callable[..., tuple[int, dict, str]],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    argv: tuple[str, ...],
    expected: str,
) -> None:
    for name, value in env.items():
        if value == "closed":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                value = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FABSTIR_CHAIN__RPC_ATTEMPTS", "1")
    code, _, err = cli(*argv)
    assert code == 2 and expected in err, err


@pytest.mark.parametrize(
    "argv", [("register", "--stake", "0"), ("rate", "1", "6"), ("rate", "x", "3")]
)
def test_wrong_arguments_are_refused(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(list(argv))
    assert caught.value.code == 2
