"""Encode a job's billing statement as 16-bit limbs and build the ONNX graph EZKL proves.

EZKL quantises every input to a fixed-point field element, and its ONNX front end reads inputs as
float32, which is exact only below 2**24. So every statement field is an unsigned integer split
into 16-bit limbs, least significant limb first (a hash is first read as a 256-bit big-endian
integer), and the graph runs at input/param scale 0: each limb is the exact integer it encodes.

The graph takes one input, ``statement`` (shape [1, 60], layout in ``STATEMENT_LAYOUT``), and
returns one output, ``billing_public`` (shape [1, 11]):

- ``job_id`` limbs (4), copied;
- ``tokens`` = ``tokens[0] + 2**16 * tokens[1]`` (the billed token count, one element);
- ``amount_terms[i] = tokens * price_limb[i]`` (6 elements, each below 2**48), so that
  ``amount_wei = sum(amount_terms[i] << (16 * i))`` exactly (see ``amount_wei_from_terms``).

The terms are left unnormalised (no carries) because EZKL has no exact integer division; the sum
is exact because each term is an exact field element far below the field modulus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fabstir.errors import DependencyMissing

if TYPE_CHECKING:
    import onnx

CIRCUIT_VERSION = "billing-statement-v1"
"""Bump when the layout or graph changes (the prover's cache key also hashes the graph)."""

LIMB_BITS = 16
LIMB_BASE = 1 << LIMB_BITS

STATEMENT_LAYOUT: tuple[tuple[str, int], ...] = (
    ("job_id", 4),
    ("model_sha256", 16),
    ("prompt_hash", 16),
    ("result_hash", 16),
    ("tokens", 2),
    ("price_per_token_wei", 6),
)
"""Statement fields in input order, each with its number of 16-bit limbs (bit width / 16)."""

STATEMENT_LIMB_COUNT = sum(limb_count for _, limb_count in STATEMENT_LAYOUT)
PUBLIC_OUTPUT_COUNT = 4 + 1 + 6

_LIMB_COUNTS = dict(STATEMENT_LAYOUT)
_HASH_FIELDS = ("model_sha256", "prompt_hash", "result_hash")
_INT_FIELDS = ("job_id", "tokens", "price_per_token_wei")
_HASH_PATTERN = re.compile(r"0x[0-9a-f]{64}")


def _limb_offsets() -> dict[str, int]:
    offsets: dict[str, int] = {}
    position = 0
    for name, limb_count in STATEMENT_LAYOUT:
        offsets[name] = position
        position += limb_count
    return offsets


_LIMB_OFFSETS = _limb_offsets()


@dataclass(frozen=True)
class BillingStatement:
    """What a host bills for one job: which job, model, prompt and result, and for how much.

    Hashes are ``0x`` + 64 hex digits and are stored lower-case. Integer bounds follow the limb
    layout: ``0 <= job_id < 2**64``, ``0 <= tokens < 2**32``, ``0 < price_per_token_wei < 2**96``.

    Raises:
        ValueError: a value is out of range or a hash is not 32 bytes of hex.
        TypeError: an integer field is not an ``int`` (``bool`` included).
    """

    job_id: int
    model_sha256: str
    prompt_hash: str
    result_hash: str
    tokens: int
    price_per_token_wei: int

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            upper = 1 << (LIMB_BITS * _LIMB_COUNTS[name])
            if not 0 <= value < upper:
                raise ValueError(f"{name} must be in [0, 2**{LIMB_BITS * _LIMB_COUNTS[name]})")
        if self.price_per_token_wei == 0:
            raise ValueError("price_per_token_wei must be positive")
        for name in _HASH_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not _HASH_PATTERN.fullmatch(value.lower()):
                raise ValueError(f"{name} must be '0x' followed by 64 hex digits")
            # Frozen dataclass: normalise case so equal hashes give equal statements.
            object.__setattr__(self, name, value.lower())

    @property
    def amount_wei(self) -> int:
        """Return the billed amount, tokens times price per token, in wei."""
        return self.tokens * self.price_per_token_wei


def split_into_limbs(value: int, limb_count: int) -> list[int]:
    """Split a non-negative integer into ``limb_count`` 16-bit limbs, least significant first.

    Raises:
        ValueError: the value is negative or needs more than ``limb_count`` limbs.
    """
    if not 0 <= value < 1 << (LIMB_BITS * limb_count):
        raise ValueError(f"{value} does not fit in {limb_count} limbs of {LIMB_BITS} bits")
    return [(value >> (LIMB_BITS * index)) & (LIMB_BASE - 1) for index in range(limb_count)]


def join_limbs(limbs: list[int]) -> int:
    """Join 16-bit limbs, least significant first, back into the integer they encode.

    Raises:
        ValueError: a limb is outside [0, 2**16).
    """
    value = 0
    for index, limb in enumerate(limbs):
        if not 0 <= limb < LIMB_BASE:
            raise ValueError(f"limb {index} = {limb} is outside [0, 2**{LIMB_BITS})")
        value |= limb << (LIMB_BITS * index)
    return value


def encode_statement(statement: BillingStatement) -> list[int]:
    """Encode a statement as the circuit's input: ``STATEMENT_LIMB_COUNT`` limbs in layout order."""
    limbs: list[int] = []
    for name, limb_count in STATEMENT_LAYOUT:
        value = getattr(statement, name)
        number = int(value, 16) if name in _HASH_FIELDS else value
        limbs.extend(split_into_limbs(number, limb_count))
    return limbs


def decode_statement(limbs: list[int]) -> BillingStatement:
    """Decode the circuit input produced by ``encode_statement``.

    Raises:
        ValueError: wrong number of limbs, a limb out of range, or a decoded value out of range.
    """
    if len(limbs) != STATEMENT_LIMB_COUNT:
        raise ValueError(f"expected {STATEMENT_LIMB_COUNT} limbs, got {len(limbs)}")
    fields: dict[str, int | str] = {}
    for name, limb_count in STATEMENT_LAYOUT:
        start = _LIMB_OFFSETS[name]
        number = join_limbs(limbs[start : start + limb_count])
        fields[name] = f"0x{number:064x}" if name in _HASH_FIELDS else number
    return BillingStatement(**fields)  # type: ignore[arg-type]


def public_outputs(statement: BillingStatement) -> list[int]:
    """Return the circuit's outputs for a statement: job id limbs, tokens, amount terms."""
    price_limbs = split_into_limbs(
        statement.price_per_token_wei, _LIMB_COUNTS["price_per_token_wei"]
    )
    return [
        *split_into_limbs(statement.job_id, _LIMB_COUNTS["job_id"]),
        statement.tokens,
        *(statement.tokens * limb for limb in price_limbs),
    ]


def amount_wei_from_terms(amount_terms: list[int]) -> int:
    """Return the amount in wei encoded by the circuit's unnormalised amount terms."""
    return sum(term << (LIMB_BITS * index) for index, term in enumerate(amount_terms))


def build_billing_model() -> onnx.ModelProto:
    """Build the billing-statement ONNX graph (opset 13, IR 8) described in the module docstring.

    Raises:
        DependencyMissing: onnx is not installed.
    """
    try:
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise DependencyMissing("onnx is not installed: pip install 'onnx>=1.17,<2'") from exc

    def limb_slice(name: str, output: str) -> onnx.NodeProto:
        start = _LIMB_OFFSETS[name]
        bounds = [(f"{output}_start", start), (f"{output}_end", start + _LIMB_COUNTS[name])]
        initializers.extend(
            numpy_helper.from_array(np.array([bound], dtype=np.int64), bound_name)
            for bound_name, bound in bounds
        )
        return helper.make_node(
            "Slice", ["statement", bounds[0][0], bounds[1][0], "limb_axis"], [output]
        )

    initializers = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "limb_axis"),
        numpy_helper.from_array(
            np.array([[1.0], [float(LIMB_BASE)]], dtype=np.float32), "limb_weights"
        ),
    ]
    nodes = [
        limb_slice("job_id", "job_id_limbs"),
        limb_slice("tokens", "token_limbs"),
        limb_slice("price_per_token_wei", "price_limbs"),
        helper.make_node("MatMul", ["token_limbs", "limb_weights"], ["tokens"]),
        helper.make_node("Mul", ["tokens", "price_limbs"], ["amount_terms"]),
        helper.make_node(
            "Concat", ["job_id_limbs", "tokens", "amount_terms"], ["billing_public"], axis=1
        ),
    ]
    graph = helper.make_graph(
        nodes,
        CIRCUIT_VERSION,
        [helper.make_tensor_value_info("statement", TensorProto.FLOAT, [1, STATEMENT_LIMB_COUNT])],
        [
            helper.make_tensor_value_info(
                "billing_public", TensorProto.FLOAT, [1, PUBLIC_OUTPUT_COUNT]
            )
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
