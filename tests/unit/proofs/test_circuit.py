"""The billing statement's limb encoding, its validation, and the ONNX graph's arithmetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir.proofs import BillingStatement
from fabstir.proofs.circuit import (
    LIMB_BASE,
    PUBLIC_OUTPUT_COUNT,
    STATEMENT_LIMB_COUNT,
    amount_wei_from_terms,
    build_billing_model,
    decode_statement,
    encode_statement,
    join_limbs,
    public_outputs,
    split_into_limbs,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
HASH = "0x" + "ab" * 32

hashes = st.integers(min_value=0, max_value=2**256 - 1).map(lambda value: f"0x{value:064x}")
statements = st.builds(
    BillingStatement,
    job_id=st.integers(min_value=0, max_value=2**64 - 1),
    model_sha256=hashes,
    prompt_hash=hashes,
    result_hash=hashes,
    tokens=st.integers(min_value=0, max_value=2**32 - 1),
    price_per_token_wei=st.integers(min_value=1, max_value=2**96 - 1),
)


def make_statement(**changes: Any) -> BillingStatement:
    fields: dict[str, Any] = {
        "job_id": 7,
        "model_sha256": HASH,
        "prompt_hash": HASH,
        "result_hash": HASH,
        "tokens": 12,
        "price_per_token_wei": 10**12,
    }
    return BillingStatement(**{**fields, **changes})


@given(
    st.integers(min_value=1, max_value=16).flatmap(
        lambda count: st.tuples(st.just(count), st.integers(0, 2 ** (16 * count) - 1))
    )
)
def test_limbs_round_trip_exactly(count_and_value: tuple[int, int]) -> None:
    limb_count, value = count_and_value
    limbs = split_into_limbs(value, limb_count)
    assert len(limbs) == limb_count
    assert all(0 <= limb < LIMB_BASE for limb in limbs)
    assert join_limbs(limbs) == value


def test_limbs_are_least_significant_first() -> None:
    assert split_into_limbs(0x0001_0002_0003, 3) == [3, 2, 1]


@pytest.mark.parametrize(("value", "limb_count"), [(-1, 1), (2**16, 1), (2**64, 4)])
def test_split_rejects_values_that_do_not_fit(value: int, limb_count: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        split_into_limbs(value, limb_count)


@pytest.mark.parametrize("limb", [-1, LIMB_BASE])
def test_join_rejects_limbs_out_of_range(limb: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        join_limbs([0, limb])


@given(statements)
def test_statement_encoding_round_trips_exactly(statement: BillingStatement) -> None:
    limbs = encode_statement(statement)
    assert len(limbs) == STATEMENT_LIMB_COUNT
    # EZKL reads inputs as float32: every limb must survive that conversion unchanged.
    assert [int(value) for value in np.array(limbs, dtype=np.float32)] == limbs
    assert decode_statement(limbs) == statement


@given(statements)
def test_public_outputs_carry_job_tokens_and_the_exact_amount(statement: BillingStatement) -> None:
    outputs = public_outputs(statement)
    assert len(outputs) == PUBLIC_OUTPUT_COUNT
    assert join_limbs(outputs[:4]) == statement.job_id
    assert outputs[4] == statement.tokens
    assert amount_wei_from_terms(outputs[5:]) == statement.tokens * statement.price_per_token_wei
    assert all(term < 2**48 for term in outputs[5:])


def test_hashes_are_stored_lower_case() -> None:
    statement = make_statement(result_hash="0x" + "AB" * 32)
    assert statement.result_hash == HASH
    assert statement == make_statement()


@pytest.mark.parametrize(
    "changes",
    [
        {"job_id": -1},
        {"job_id": 2**64},
        {"tokens": -1},
        {"tokens": 2**32},
        {"price_per_token_wei": 0},
        {"price_per_token_wei": -5},
        {"price_per_token_wei": 2**96},
        {"model_sha256": "ab" * 32},
        {"prompt_hash": "0x" + "ab" * 31},
        {"result_hash": "0x" + "zz" * 32},
        {"result_hash": "0x" + "ab" * 33},
    ],
)
def test_statement_rejects_out_of_range_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_statement(**changes)


@pytest.mark.parametrize("changes", [{"tokens": True}, {"tokens": 3.0}, {"job_id": "7"}])
def test_statement_rejects_non_integer_amounts(changes: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        make_statement(**changes)


def test_decode_rejects_the_wrong_number_of_limbs() -> None:
    with pytest.raises(ValueError, match="limbs"):
        decode_statement([0] * (STATEMENT_LIMB_COUNT - 1))


def test_the_graph_computes_the_public_outputs() -> None:
    from onnx.reference import ReferenceEvaluator

    # The reference evaluator runs in float32, so keep every output below 2**24 here;
    # exactness at full range is checked by the integration tests through EZKL.
    statement = make_statement(
        job_id=0x0004_0003_0002_0001,
        tokens=0x0001_0002,
        price_per_token_wei=0x0006_0005_0004_0003_0002_0001,
    )
    limbs = np.array([encode_statement(statement)], dtype=np.float32)
    (outputs,) = ReferenceEvaluator(build_billing_model()).run(None, {"statement": limbs})
    assert outputs.shape == (1, PUBLIC_OUTPUT_COUNT)
    assert [int(value) for value in outputs[0]] == public_outputs(statement)


def test_importing_the_package_loads_neither_ezkl_nor_onnx() -> None:
    script = (
        "import sys, fabstir.proofs\n"
        "heavy = sorted({'ezkl', 'onnx', 'numpy'} & set(sys.modules))\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
