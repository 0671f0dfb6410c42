from __future__ import annotations

from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from fabstir.chain import decode_revert, load_artifact, model_id_of
from fabstir.chain.contracts import CONTRACT_NAMES
from fabstir.errors import ChainError, ContractRevert
from fabstir.settings import ANVIL_KEYS

HOST = Account.from_key(ANVIL_KEYS[1]).address


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_model_id_is_keccak_of_the_utf8_name() -> None:
    assert model_id_of("") == "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert model_id_of("smollm2") == "0x" + keccak(b"smollm2").hex()
    assert model_id_of("modèle") == "0x" + keccak("modèle".encode()).hex()


def test_artifacts_load_with_abi_and_bytecode() -> None:
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        assert artifact.contract_name == name
        assert artifact.bytecode.startswith("0x60")
        assert any(entry["type"] == "function" for entry in artifact.abi)


def test_custom_error_with_arguments_is_decoded_by_name() -> None:
    data = _selector("InsufficientDeposit(uint256,uint256)") + encode(
        ["uint256", "uint256"], [5, 100]
    )
    error = decode_revert("0x" + data.hex(), job_id=7)
    assert isinstance(error, ContractRevert)
    assert error.error_name == "InsufficientDeposit"
    assert error.error_args == (5, 100)
    assert error.context == {"job_id": 7}


def test_addresses_and_bytes32_are_decoded_readably() -> None:
    model_id = bytes.fromhex("ab" * 32)
    data = _selector("ModelNotServed(address,bytes32,address)") + encode(
        ["address", "bytes32", "address"], [HOST, model_id, HOST]
    )
    error = decode_revert(data)
    assert isinstance(error, ContractRevert)
    assert error.error_args == (HOST, "0x" + "ab" * 32, HOST)


def test_enum_argument_is_decoded_as_its_index() -> None:
    data = _selector("NotPosted(uint256,uint8)") + encode(["uint256", "uint8"], [3, 2])
    error = decode_revert(data)
    assert isinstance(error, ContractRevert)
    assert (error.error_name, error.error_args) == ("NotPosted", (3, 2))


def test_error_without_arguments_is_decoded_from_its_bare_selector() -> None:
    error = decode_revert("0x" + _selector("EmptyOffers()").hex())
    assert isinstance(error, ContractRevert)
    assert (error.error_name, error.error_args) == ("EmptyOffers", ())


def test_unknown_selector_is_a_chain_error_with_the_raw_data() -> None:
    error = decode_revert("0xdeadbeef")
    assert not isinstance(error, ContractRevert)
    assert isinstance(error, ChainError)
    assert error.code == "unknown_revert"
    assert error.context["data"] == "0xdeadbeef"


def test_truncated_arguments_are_a_chain_error() -> None:
    data = _selector("InsufficientDeposit(uint256,uint256)") + encode(["uint256"], [5])
    error = decode_revert(data)
    assert not isinstance(error, ContractRevert)
    assert error.code == "unknown_revert"
