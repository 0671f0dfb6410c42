from __future__ import annotations

import pytest

from fabstir.errors import ConfigError
from fabstir.settings import load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FABSTIR_API__PORT", "70000"),
        ("FABSTIR_API__MAX_BODY_BYTES", "10"),
        ("FABSTIR_API__RATE_PER_IP_PER_MIN", "0"),
        ("FABSTIR_API__MAX_STREAMS", "-1"),
        ("FABSTIR_API__MAX_CLAIMS_PER_RENTER", "0"),
        ("FABSTIR_API__TOKEN_TIMEOUT_S", "0"),
        ("FABSTIR_API__AUTH_MAX_TTL_S", "abc"),
        ("FABSTIR_API__REQUEST_WAIT_S", "-1"),
        ("FABSTIR_API__REQUEST_WAIT_S", "61"),
        ("FABSTIR_API__WAITING_FLOWS", "-1"),
    ],
)
def test_a_wrong_api_setting_stops_the_node_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_api_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_API__PORT", "9001")
    assert load_settings().api.port == 9001
