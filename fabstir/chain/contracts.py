"""Compiled contract artifacts, on-chain model ids, and decoding of the contracts' custom errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address
from eth_utils.abi import abi_to_signature, get_abi_input_types

from fabstir.errors import ChainError, ContractRevert

CONTRACT_NAMES = ("ERC20Token", "ModelRegistry", "NodeRegistry", "JobMarketplace")


@dataclass(frozen=True)
class Artifact:
    """ABI and creation bytecode of one contract, as written by ``contracts/build.mjs``."""

    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    source_sha256: str


@cache
def load_artifact(contract_name: str) -> Artifact:
    """Load the committed artifact of ``contract_name`` from ``fabstir/chain/artifacts``.

    Raises:
        ValueError: no artifact of that name is packaged.
    """
    path = resources.files("fabstir.chain") / "artifacts" / f"{contract_name}.json"
    if not path.is_file():
        raise ValueError(f"no compiled artifact for contract {contract_name!r}")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Artifact(
        contract_name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        source_sha256=data["sourceSha256"],
    )


def model_id_of(name: str) -> str:
    """Return the on-chain id of a model: 0x-prefixed keccak256 of its UTF-8 name."""
    return "0x" + keccak(text=name).hex()


@dataclass(frozen=True)
class _ErrorSpec:
    name: str
    arg_types: tuple[str, ...]


def _plain(abi_type: str, value: Any) -> Any:
    """Make a decoded ABI value readable and JSON-friendly: 0x-hex bytes, checksummed addresses."""
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


@cache
def _error_specs() -> dict[bytes, _ErrorSpec]:
    specs: dict[bytes, _ErrorSpec] = {}
    for contract_name in CONTRACT_NAMES:
        for entry in load_artifact(contract_name).abi:
            if entry["type"] != "error":
                continue
            selector = keccak(text=abi_to_signature(entry))[:4]
            specs[selector] = _ErrorSpec(entry["name"], tuple(get_abi_input_types(entry)))
    return specs


def decode_revert(data: str | bytes, **context: Any) -> ChainError:
    """Turn revert data (selector + ABI-encoded arguments) into the error to raise.

    Returns a ``ContractRevert`` named after the custom error when the selector is one of our
    contracts' errors, otherwise a ``ChainError`` with ``code="unknown_revert"``.
    """
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
    spec = _error_specs().get(raw[:4])
    if spec is None:
        return ChainError(
            "contract reverted with unknown data",
            code="unknown_revert",
            data="0x" + raw.hex(),
            **context,
        )
    try:
        args = decode(list(spec.arg_types), raw[4:])
    except DecodingError as exc:
        return ChainError(
            f"malformed arguments for {spec.name}",
            code="unknown_revert",
            data="0x" + raw.hex(),
            reason=str(exc),
            **context,
        )
    plain_args = tuple(_plain(t, v) for t, v in zip(spec.arg_types, args, strict=True))
    return ContractRevert(spec.name, plain_args, **context)
