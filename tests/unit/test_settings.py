from __future__ import annotations

import pytest

from fabstir.errors import ConfigError
from fabstir.settings import load_settings


def test_defaults_are_the_local_stage_under_home(isolated_environment) -> None:
    settings = load_settings()
    assert settings.stage == "local"
    assert settings.home == isolated_environment.resolve()
    assert settings.chain.deployment_file == settings.home / "devnet.json"
    assert settings.storage.url == f"file://{settings.home / 'storage'}"


def test_nested_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_HOST__PRICE_PER_TOKEN_WEI", "12345")
    monkeypatch.setenv("FABSTIR_CHAIN__CONFIRMATIONS", "2")
    settings = load_settings()
    assert settings.host.price_per_token_wei == 12345
    assert settings.chain.confirmations == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FABSTIR_HOST__PRICE_PER_TOKEN_WEI", "-1"),
        ("FABSTIR_HOST__PRICE_PER_TOKEN_WEI", "ten"),
        # A price no job can offer (JobMarketplace caps it at 2^88 - 1) would never be paid.
        ("FABSTIR_HOST__PRICE_PER_TOKEN_WEI", str(2**88)),
        ("FABSTIR_HOST__TOKEN_PRICES", '{"USDC": 309485009821345068724781056}'),
        ("FABSTIR_STAGE", "production"),
        ("FABSTIR_CHAIN__CHAIN_ID", "0"),
        ("FABSTIR_CACHE__SIMILARITY_THRESHOLD", "1.5"),
        ("FABSTIR_ENGINE__N_CTX", "8"),
    ],
)
def test_a_wrong_value_fails_fast_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_a_model_with_a_malformed_hash_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_HOST__MODELS", '[{"id": "m", "uri": "/x.gguf", "sha256": "abc"}]')
    with pytest.raises(ConfigError, match="FABSTIR_HOST__MODELS"):
        load_settings()


def test_the_real_stage_needs_an_rpc_url_and_an_srs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_STAGE", "real")
    with pytest.raises(ConfigError, match="FABSTIR_CHAIN__RPC_URL"):
        load_settings()
