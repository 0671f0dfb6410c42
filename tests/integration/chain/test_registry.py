"""NodeRegistry (stake, offers, info, cool-down) and ModelRegistry on anvil."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from web3 import Web3

from fabstir.chain import ETH, ChainClient, Offer, load_artifact
from fabstir.errors import ChainError, ContractRevert, JobRejected
from tests.integration.chain.conftest import (
    API_URL,
    MODEL,
    MODELS,
    OTHER_MODEL,
    PRICE_PER_TOKEN_WEI,
    STABLE_PRICE,
    offers_for,
)
from tests.integration.chain.test_marketplace import revert

pytestmark = pytest.mark.integration

MIN_STAKE = 100 * 10**18


def test_registering_stakes_the_minimum_and_records_offers_and_info(
    host: ChainClient, renter: ChainClient, stable: str
) -> None:
    staking = host.deployment.staking_token
    before = host.balance_of(host.address, staking)
    host.register(offers_for(stable), api_url=API_URL, region="eu", metadata_uri="ipfs://m")
    assert host.balance_of(host.address, staking) == before - MIN_STAKE
    assert host.balance_of(host.deployment.node_registry, staking) == MIN_STAKE
    record = renter.get_host(host.address)
    assert (record.registered, record.active, record.stake, record.unlock_at) == (
        True,
        True,
        MIN_STAKE,
        0,
    )
    assert (record.region, record.api_url, record.metadata_uri) == ("eu", API_URL, "ipfs://m")
    model_id = Web3.keccak(text=MODEL).to_0x_hex()
    assert record.offers == (
        (model_id, ETH, PRICE_PER_TOKEN_WEI),
        (model_id, stable, STABLE_PRICE),
    )
    assert renter.price_of(host.address, MODEL) == PRICE_PER_TOKEN_WEI
    assert renter.price_of(host.address, MODEL, stable) == STABLE_PRICE
    assert renter.price_of(host.address, OTHER_MODEL) == 0


def test_register_refusals(host: ChainClient, other_host: ChainClient, stable: str) -> None:
    offers = offers_for(stable)
    assert revert(lambda: host.register(offers, api_url=API_URL, stake=MIN_STAKE - 1)) == (
        "StakeBelowMinimum",
        (MIN_STAKE - 1, MIN_STAKE),
    )
    assert revert(lambda: host.register(offers, api_url=""))[0] == "EmptyApiUrl"
    assert revert(lambda: host.register([Offer(MODEL, 0)], api_url=API_URL))[0] == "ZeroPrice"
    assert revert(lambda: host.register([Offer(MODEL, 1)] * 2, api_url=API_URL))[0] == (
        "DuplicateOffer"
    )
    assert revert(lambda: host.register([Offer("unlisted", 1)], api_url=API_URL))[0] == (
        "ModelNotActive"
    )
    assert revert(lambda: host.register([Offer(MODEL, 1)] * 33, api_url=API_URL)) == (
        "TooManyOffers",
        (33, 32),
    )
    with pytest.raises(ValueError):
        host.register([], api_url=API_URL)
    host.register(offers, api_url=API_URL)
    assert revert(lambda: host.register(offers, api_url=API_URL))[0] == "AlreadyRegistered"
    with pytest.raises(ChainError) as caught:
        other_host.register(offers, api_url=API_URL, stake=10**30)
    assert caught.value.code == "insufficient_stake_balance"


def test_updates_replace_offers_and_info(
    registered_host: ChainClient, renter: ChainClient, other_host: ChainClient
) -> None:
    host = registered_host
    host.update_offers([Offer(OTHER_MODEL, 9)])
    assert renter.price_of(host.address, MODEL) == 0
    assert renter.price_of(host.address, OTHER_MODEL) == 9
    host.update_info(region="us", api_url="https://node.example", metadata_uri="")
    record = renter.get_host(host.address)
    assert (record.region, record.api_url) == ("us", "https://node.example")
    assert revert(lambda: host.update_info(region="", api_url="", metadata_uri=""))[0] == (
        "EmptyApiUrl"
    )
    for call in (
        lambda: other_host.update_offers([Offer(MODEL, 1)]),
        lambda: other_host.update_info(region="", api_url="x", metadata_uri=""),
        lambda: other_host.add_stake(1),
        other_host.unregister,
        other_host.withdraw_stake,
    ):
        assert revert(call) == ("NotRegistered", (other_host.address,))


def test_raising_the_minimum_stake_deactivates_until_topped_up(
    registered_host: ChainClient, owner: ChainClient, renter: ChainClient
) -> None:
    host = registered_host
    owner.set_min_stake(MIN_STAKE + 5)
    assert not renter.get_host(host.address).active
    assert revert(lambda: host.add_stake(0))[0] == "ZeroAmount"
    host.add_stake(5)
    record = renter.get_host(host.address)
    assert record.active and record.stake == MIN_STAKE + 5
    assert revert(lambda: renter.set_min_stake(1)) == ("NotOwner", (renter.address,))


def test_unregister_returns_the_stake_after_the_cooldown(
    registered_host: ChainClient,
    renter: ChainClient,
    advance_time: Callable[[int], None],
    chain_now: Callable[[], int],
) -> None:
    host = registered_host
    staking = host.deployment.staking_token
    assert revert(host.withdraw_stake) == ("NotUnregistering", (host.address,))
    host.unregister()
    record = renter.get_host(host.address)
    assert not record.active and record.unlock_at == chain_now() + 3600
    assert revert(host.unregister)[0] == "Unregistering"
    assert revert(host.withdraw_stake)[0] == "CooldownNotOver"
    before = host.balance_of(host.address, staking)
    advance_time(3600)
    host.withdraw_stake()
    assert host.balance_of(host.address, staking) == before + MIN_STAKE
    assert host.balance_of(host.deployment.node_registry, staking) == 0
    assert not renter.get_host(host.address).registered
    assert renter.price_of(host.address, MODEL) == 0


def test_the_model_registry_resolves_names_and_ids(owner: ChainClient, renter: ChainClient) -> None:
    spec = MODELS[0]
    record = renter.get_model(MODEL)
    model_id = Web3.keccak(text=MODEL).to_0x_hex()
    assert record == (model_id, spec.sha256, spec.uri, MODEL, True, None)
    assert renter.get_model(record.model_id) == record
    owner.deactivate_model(MODEL)
    assert not renter.get_model(MODEL).active
    assert revert(lambda: owner.deactivate_model(MODEL))[0] == "ModelNotActive"
    with pytest.raises(JobRejected) as caught:
        renter.get_model("nobody-added-this")
    assert caught.value.code == "unknown_model"


def test_adding_models_is_owner_only_and_checked(owner: ChainClient, renter: ChainClient) -> None:
    digest = "ef" * 32
    assert revert(lambda: renter.add_model("m", digest, "s3://m"))[0] == "NotOwner"
    assert revert(lambda: owner.add_model("", digest, "s3://m"))[0] == "EmptyName"
    assert revert(lambda: owner.add_model("m", digest, ""))[0] == "EmptyUri"
    assert revert(lambda: owner.add_model("m", "00" * 32, "s3://m"))[0] == "ZeroHash"
    assert revert(lambda: owner.add_model(MODEL, digest, "s3://m"))[0] == "ModelExists"
    with pytest.raises(ValueError):
        owner.add_model("m", "abc", "s3://m")
    owner.add_model("m", digest, "s3://m")
    assert renter.get_model("m").sha256 == digest
    with pytest.raises(ContractRevert):
        renter.deactivate_model("m")


def test_updating_a_model_repoints_its_id_and_is_owner_only_and_checked(
    owner: ChainClient, renter: ChainClient, w3: Web3
) -> None:
    spec, digest = MODELS[0], "ef" * 32
    assert revert(lambda: renter.update_model(MODEL, digest, "s3://v2"))[0] == "NotOwner"
    assert revert(lambda: owner.update_model(MODEL, digest, ""))[0] == "EmptyUri"
    assert revert(lambda: owner.update_model(MODEL, "00" * 32, "s3://v2"))[0] == "ZeroHash"
    assert revert(lambda: owner.update_model(MODEL, spec.sha256, spec.uri))[0] == "NothingChanged"
    assert revert(lambda: owner.update_model("never-added", digest, "s3://v2"))[0] == (
        "UnknownModel"
    )
    with pytest.raises(ValueError):
        owner.update_model(MODEL, "ef" * 31, "s3://v2")

    tx_hash = owner.update_model(MODEL, digest, "s3://v2")
    record = renter.get_model(MODEL)
    assert (record.sha256, record.uri, record.name, record.active) == (
        digest,
        "s3://v2",
        MODEL,
        True,
    )
    registry = w3.eth.contract(
        owner.deployment.model_registry, abi=load_artifact("ModelRegistry").abi
    )
    (event,) = registry.events.ModelUpdated().process_receipt(
        w3.eth.get_transaction_receipt(tx_hash)
    )
    assert "0x" + event["args"]["modelId"].hex() == record.model_id
    assert (event["args"]["sha256Hash"].hex(), event["args"]["uri"]) == (digest, "s3://v2")
    # The same bytes moved to another URI are an update too.
    owner.update_model(MODEL, digest, "s3://moved")
    assert renter.get_model(MODEL).uri == "s3://moved"
    owner.deactivate_model(MODEL)
    assert revert(lambda: owner.update_model(MODEL, "12" * 32, "s3://v3"))[0] == "ModelNotActive"


def test_an_adapter_names_an_active_base_model(owner: ChainClient, renter: ChainClient) -> None:
    digest = "ef" * 32
    assert revert(lambda: owner.add_model("lora", digest, "s3://l", base="never-added"))[0] == (
        "UnknownModel"
    )
    owner.add_model("lora", digest, "s3://l", base=MODEL)
    adapter = renter.get_model("lora")
    assert adapter.base_model_id == renter.get_model(MODEL).model_id
    assert revert(lambda: owner.add_model("lora-of-lora", digest, "s3://x", base="lora"))[0] == (
        "BaseIsAdapter"
    )
    owner.deactivate_model(OTHER_MODEL)
    assert revert(lambda: owner.add_model("late", digest, "s3://x", base=OTHER_MODEL))[0] == (
        "ModelNotActive"
    )
