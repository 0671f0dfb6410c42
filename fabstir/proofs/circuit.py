"""A job's billing statement, the public instances that bind it, and the graph EZKL proves.

A circuit has a fixed ``capacity`` (1, 4 or 16 statements, ``BATCH_CAPACITIES``): a batch of ``n``
jobs is proved by the smallest circuit that holds it, its unused slots all zero. Each slot takes
three public inputs and gives one public output, all exact integers (scale 0):

- ``binding``: the top 248 bits of ``keccak256(abi.encode(jobId, modelId, promptHash,
  resultHash))`` (see ``binding_digest``), which JobMarketplace computes itself from the job
  record and the submitted result hash;
- ``tokens``: the billed token count (below 2**32, JobMarketplace's ``MAX_JOB_TOKENS`` + 1);
- ``price``: the job's price per token (below 2**88, ``MAX_PRICE_PER_TOKEN`` + 1);
- output ``amount = tokens * price``.

EZKL orders instances as all inputs, row by row, then all outputs; ``batch_instances`` returns
exactly that, and the contract builds the same array. The amount stays below 2**120, inside
EZKL's 128-bit integer witness and far below the field, so it is the exact integer product.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eth_abi import encode
from eth_utils import keccak

from fabstir.errors import DependencyMissing

if TYPE_CHECKING:
    import onnx

CIRCUIT_VERSION = "billing-batch-v3"
"""Bump when the layout or graph changes (the prover's cache key also hashes the graph)."""

BATCH_CAPACITIES = (1, 4, 16)
"""Statements per circuit; each capacity has its own keys and its own verifier contract."""

INPUTS_PER_STATEMENT = 3
OUTPUTS_PER_STATEMENT = 1
INSTANCES_PER_STATEMENT = INPUTS_PER_STATEMENT + OUTPUTS_PER_STATEMENT
MAX_TOKENS = 2**32 - 1
"""JobMarketplace's ``MAX_JOB_TOKENS``: no job can bill more."""
MAX_PRICE_PER_TOKEN_WEI = 2**88 - 1
"""JobMarketplace's ``MAX_PRICE_PER_TOKEN``: ``postJob`` refuses a higher price."""
BINDING_SHIFT_BITS = 8
"""``binding`` drops keccak's low 8 bits so it is below the BN254 scalar field."""

_HASH_PATTERN = re.compile(r"0x[0-9a-f]{64}")
_HASH_FIELDS = ("model_id", "prompt_hash", "result_hash")


@dataclass(frozen=True)
class BillingStatement:
    """What a host bills for one job: the job, its model and prompt, the result, the token count
    and the price (at most ``MAX_PRICE_PER_TOKEN_WEI`` base units of the job's token).

    ``model_id`` and ``prompt_hash`` are the job's on-chain values, ``result_hash`` the SHA-256 of
    the stored result record (what ``submitResult`` records). Hashes are ``0x`` + 64 hex digits,
    stored lower-case.

    Raises:
        ValueError: a value is out of range or a hash is not 32 bytes of hex.
        TypeError: an integer field is not an ``int`` (``bool`` included).
    """

    job_id: int
    model_id: str
    prompt_hash: str
    result_hash: str
    tokens: int
    price_per_token_wei: int

    def __post_init__(self) -> None:
        bounds = {
            "job_id": (1, 2**256),
            "tokens": (0, MAX_TOKENS + 1),
            "price_per_token_wei": (1, MAX_PRICE_PER_TOKEN_WEI + 1),
        }
        for name, (lower, upper) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if not lower <= value < upper:
                raise ValueError(f"{name} must be in [{lower}, {upper}), got {value}")
        for name in _HASH_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not _HASH_PATTERN.fullmatch(value.lower()):
                raise ValueError(f"{name} must be '0x' followed by 64 hex digits")
            # Frozen dataclass: normalise case so equal hashes give equal statements.
            object.__setattr__(self, name, value.lower())

    @property
    def amount_wei(self) -> int:
        """Return the billed amount, tokens times price per token, in base units of the token."""
        return self.tokens * self.price_per_token_wei


def binding_digest(statement: BillingStatement) -> int:
    """Return the ``binding`` input: ``keccak256(abi.encode(jobId, modelId, promptHash,
    resultHash)) >> 8``, as JobMarketplace computes it."""
    encoded = encode(
        ["uint256", "bytes32", "bytes32", "bytes32"],
        [
            statement.job_id,
            bytes.fromhex(statement.model_id[2:]),
            bytes.fromhex(statement.prompt_hash[2:]),
            bytes.fromhex(statement.result_hash[2:]),
        ],
    )
    return int.from_bytes(keccak(encoded), "big") >> BINDING_SHIFT_BITS


def capacity_for(count: int) -> int:
    """Return the smallest circuit capacity that holds ``count`` statements.

    Raises:
        ValueError: ``count`` is below 1 or above the largest capacity.
    """
    for capacity in BATCH_CAPACITIES:
        if 1 <= count <= capacity:
            return capacity
    raise ValueError(f"a batch holds 1 to {BATCH_CAPACITIES[-1]} statements, got {count}")


def circuit_inputs(statements: Sequence[BillingStatement], capacity: int) -> list[int]:
    """Return the circuit's input for ``statements`` padded to ``capacity`` (row-major).

    Raises:
        ValueError: ``capacity`` is not a circuit capacity or is too small for the statements.
    """
    if capacity not in BATCH_CAPACITIES or not 1 <= len(statements) <= capacity:
        raise ValueError(f"{len(statements)} statements do not fit a circuit of {capacity}")
    rows = [[binding_digest(s), s.tokens, s.price_per_token_wei] for s in statements]
    rows += [[0] * INPUTS_PER_STATEMENT] * (capacity - len(statements))
    return [value for row in rows for value in row]


def batch_instances(statements: Sequence[BillingStatement], capacity: int) -> list[int]:
    """Return every public instance a proof of ``statements`` must carry, in EZKL's order.

    Raises:
        ValueError: the statements do not fit ``capacity``.
    """
    inputs = circuit_inputs(statements, capacity)
    tokens, prices = inputs[1::INPUTS_PER_STATEMENT], inputs[2::INPUTS_PER_STATEMENT]
    return inputs + [count * price for count, price in zip(tokens, prices, strict=True)]


def build_billing_model(capacity: int) -> onnx.ModelProto:
    """Build the ONNX graph (opset 13, IR 8) for ``capacity`` statements: input ``statements``
    [capacity, 3], output ``amount`` [capacity, 1] = tokens column times price column.

    Raises:
        ValueError: ``capacity`` is not one of ``BATCH_CAPACITIES``.
        DependencyMissing: onnx is not installed.
    """
    if capacity not in BATCH_CAPACITIES:
        raise ValueError(f"capacity must be one of {BATCH_CAPACITIES}, got {capacity}")
    try:
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise DependencyMissing("onnx is not installed: pip install 'onnx>=1.17,<2'") from exc

    bounds = {"column_axis": 1, "tokens_start": 1, "price_start": 2, "row_end": 3}
    initializers = [
        numpy_helper.from_array(np.array([value], dtype=np.int64), name)
        for name, value in bounds.items()
    ]
    nodes = [
        helper.make_node(
            "Slice", ["statements", "tokens_start", "price_start", "column_axis"], ["tokens"]
        ),
        helper.make_node(
            "Slice", ["statements", "price_start", "row_end", "column_axis"], ["price"]
        ),
        helper.make_node("Mul", ["tokens", "price"], ["amount"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"{CIRCUIT_VERSION}-{capacity}",
        [
            helper.make_tensor_value_info(
                "statements", TensorProto.FLOAT, [capacity, INPUTS_PER_STATEMENT]
            )
        ],
        [
            helper.make_tensor_value_info(
                "amount", TensorProto.FLOAT, [capacity, OUTPUTS_PER_STATEMENT]
            )
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
