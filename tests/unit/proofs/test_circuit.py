"""The billing statement's validation, the public instances' layout, and the spot-check sample."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_utils import keccak

from fabstir.proofs.circuit import (
    BATCH_CAPACITIES,
    INSTANCES_PER_STATEMENT,
    MAX_PRICE_PER_TOKEN_WEI,
    MAX_TOKENS,
    BillingStatement,
    batch_instances,
    binding_digest,
    build_billing_model,
    capacity_for,
)
from fabstir.spotcheck import select_for_spot_check

STATEMENT = BillingStatement(
    job_id=7,
    model_id="0x" + "AB" * 32,
    prompt_hash="0x" + "11" * 32,
    result_hash="0x" + "22" * 32,
    tokens=5,
    price_per_token_wei=1_000_000_007,
)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"job_id": 0}, ValueError),
        ({"job_id": 2**256}, ValueError),
        ({"tokens": -1}, ValueError),
        ({"tokens": 2**32}, ValueError),
        ({"tokens": True}, TypeError),
        ({"tokens": 5.0}, TypeError),
        ({"price_per_token_wei": 0}, ValueError),
        ({"price_per_token_wei": 2**88}, ValueError),
        ({"result_hash": "0x" + "22" * 31}, ValueError),
        ({"model_id": "ab" * 32}, ValueError),
        ({"prompt_hash": "0x" + "zz" * 32}, ValueError),
        ({"prompt_hash": None}, ValueError),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_a_statement_out_of_range_is_refused(changes: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        dataclasses.replace(STATEMENT, **changes)


def test_hashes_are_stored_lower_case_so_equal_statements_compare_equal() -> None:
    assert STATEMENT.model_id == "0x" + "ab" * 32
    assert dataclasses.replace(STATEMENT, model_id="0x" + "ab" * 32) == STATEMENT


def test_the_binding_is_keccak_of_the_abi_encoded_job_without_its_low_byte() -> None:
    encoded = (
        (7).to_bytes(32, "big")
        + bytes.fromhex("ab" * 32)
        + bytes.fromhex("11" * 32)
        + bytes.fromhex("22" * 32)
    )
    assert binding_digest(STATEMENT) == int.from_bytes(keccak(encoded), "big") >> 8
    assert binding_digest(dataclasses.replace(STATEMENT, job_id=8)) != binding_digest(STATEMENT)


def test_the_largest_amount_is_an_exact_128_bit_integer() -> None:
    # JobMarketplace's MAX_JOB_TOKENS and MAX_PRICE_PER_TOKEN (checked on anvil in
    # tests/integration/chain/test_marketplace.py).
    assert (MAX_TOKENS, MAX_PRICE_PER_TOKEN_WEI) == (2**32 - 1, 2**88 - 1)
    largest = dataclasses.replace(STATEMENT, tokens=MAX_TOKENS, price_per_token_wei=2**88 - 1)
    assert batch_instances([largest], 1)[-1] == largest.amount_wei < 2**120


def test_instances_are_all_inputs_then_all_outputs_with_unused_slots_zero() -> None:
    other = dataclasses.replace(STATEMENT, job_id=8, tokens=3)
    instances = batch_instances([STATEMENT, other], 4)
    assert len(instances) == 4 * INSTANCES_PER_STATEMENT
    inputs, outputs = instances[:12], instances[12:]
    assert inputs[0:3] == [binding_digest(STATEMENT), 5, 1_000_000_007]
    assert inputs[3:6] == [binding_digest(other), 3, 1_000_000_007]
    assert inputs[6:] == [0] * 6
    assert outputs == [5 * 1_000_000_007, 3 * 1_000_000_007, 0, 0]


@pytest.mark.parametrize(("count", "capacity"), [(1, 1), (2, 4), (4, 4), (5, 16), (16, 16)])
def test_a_batch_takes_the_smallest_circuit_that_holds_it(count: int, capacity: int) -> None:
    assert capacity_for(count) == capacity


@pytest.mark.parametrize("count", [0, 17, -1])
def test_a_batch_of_no_jobs_or_more_than_sixteen_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 16"):
        capacity_for(count)
    with pytest.raises(ValueError):
        batch_instances([STATEMENT] * max(count, 0), 16 if count > 0 else 1)


@pytest.mark.parametrize("capacity", [0, 2, 32])
def test_there_is_no_circuit_of_another_capacity(capacity: int) -> None:
    with pytest.raises(ValueError):
        build_billing_model(capacity)
    with pytest.raises(ValueError):
        batch_instances([STATEMENT], capacity)


def test_each_capacity_builds_a_valid_graph() -> None:
    for capacity in BATCH_CAPACITIES:
        graph = build_billing_model(capacity).graph
        assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [capacity, 3]
        assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [capacity, 1]


def test_the_spot_check_sample_is_deterministic_and_about_the_rate() -> None:
    jobs = range(1, 2001)
    sample = select_for_spot_check(jobs, 0.1, "seed")
    assert sample == select_for_spot_check(jobs, 0.1, "seed")
    assert sample != select_for_spot_check(jobs, 0.1, "another seed")
    assert 150 <= len(sample) <= 250
    assert select_for_spot_check(jobs, 0.0, "seed") == []
    assert select_for_spot_check(jobs, 1.0, "seed") == list(jobs)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_spot_check_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        select_for_spot_check([1], rate, "seed")
