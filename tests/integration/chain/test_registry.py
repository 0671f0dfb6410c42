from __future__ import annotations

import pytest

from fabstir.chain import ChainClient
from fabstir.errors import ContractRevert

pytestmark = pytest.mark.integration


def test_registered_models_have_their_price(host: ChainClient, renter: ChainClient) -> None:
    assert host.price_of(host.address, "llama") == 0
    assert host.register(["llama", "smol"], 7) is not None
    assert renter.price_of(host.address, "llama") == 7
    assert renter.price_of(host.address, "smol") == 7
    assert renter.price_of(host.address, "other") == 0
    assert renter.price_of(renter.address, "llama") == 0


def test_registering_again_with_the_same_terms_sends_nothing(host: ChainClient) -> None:
    host.register(["llama", "smol"], 7)
    balance_wei = host.balance_of(host.address)
    assert host.register(["smol", "llama"], 7) is None
    assert host.balance_of(host.address) == balance_wei


def test_registering_again_replaces_models_and_prices(host: ChainClient) -> None:
    host.register(["llama", "smol"], 7)
    assert host.register(["smol"], 9) is not None
    assert host.price_of(host.address, "smol") == 9
    assert host.price_of(host.address, "llama") == 0


def test_zero_price_is_refused(host: ChainClient) -> None:
    with pytest.raises(ContractRevert) as caught:
        host.register(["llama"], 0)
    assert caught.value.error_name == "ZeroPrice"


def test_duplicate_models_are_refused(host: ChainClient) -> None:
    with pytest.raises(ContractRevert) as caught:
        host.register(["llama", "llama"], 5)
    assert caught.value.error_name == "DuplicateModel"


def test_no_models_is_a_caller_error(host: ChainClient) -> None:
    with pytest.raises(ValueError):
        host.register([], 5)
