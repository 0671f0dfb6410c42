"""Random sequences of post/claim/settle/refund/cancel/withdraw never create or lose a wei.

One anvil serves every example: each starts from the same chain state by reverting to a
snapshot (``evm_snapshot``/``evm_revert``) instead of starting a new anvil.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import HTTPProvider, Web3

from fabstir.chain import ETH, ChainClient, Deployment, Devnet, Offer
from fabstir.domain import JobState
from fabstir.errors import ContractRevert
from fabstir.proofs import BillingProver
from fabstir.settings import ANVIL_KEYS, ModelSpec
from tests.support.billing import billing_proof

pytestmark = pytest.mark.integration

MODEL = ModelSpec(id="prop-model", uri="s3://m.gguf", sha256="ab" * 32)
PRICES = {"ETH": 1_000_003, "USDC": 7}
OPEN_STATES = (JobState.POSTED, JobState.CLAIMED)
RESULT_HASH = "0x" + "22" * 32


@dataclass
class Chain:
    deployment: Deployment
    w3: Web3
    snapshot: str


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with Devnet(deployment_file=tmp_path_factory.mktemp("prop") / "d.json", models=[MODEL]) as d:
        host = ChainClient(d, ANVIL_KEYS[1])
        stable = host.token_address("USDC")
        host.register(
            [Offer(MODEL.id, PRICES["ETH"]), Offer(MODEL.id, PRICES["USDC"], stable)],
            api_url="http://127.0.0.1:8000",
        )
        w3 = Web3(HTTPProvider(d.rpc_url))
        yield Chain(d, w3, w3.provider.make_request("evm_snapshot", [])["result"])


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("post"),
            st.sampled_from(("ETH", "USDC")),
            st.integers(1, 50),
            st.integers(0, 3),
            # Deadlines 15 s away from any sum of the waits below (under 700 s, sums of 30 and
            # 120 are multiples of 30): the seconds an example takes must not carry a job across
            # its deadline between a simulation and its block. Change both lists together.
            st.sampled_from((45, 615)),
        ),
        st.tuples(st.just("claim"), st.integers(0, 7)),
        st.tuples(st.just("settle"), st.integers(0, 7), st.floats(0, 1.2)),
        st.tuples(st.just("refund"), st.integers(0, 7)),
        st.tuples(st.just("cancel"), st.integers(0, 7)),
        st.tuples(st.just("withdraw"), st.integers(0, 2), st.sampled_from(("ETH", "USDC"))),
        st.tuples(st.just("wait"), st.sampled_from((30, 120, 700))),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=ops)
def test_no_wei_is_created_or_lost_and_no_job_pays_twice(
    chain: Chain, billing_prover: BillingProver, steps: list
) -> None:
    w3 = chain.w3
    assert w3.provider.make_request("evm_revert", [chain.snapshot])["result"]
    chain.snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    host, renter, treasury = (ChainClient(chain.deployment, key) for key in ANVIL_KEYS[1:4])
    tokens = {"ETH": ETH, "USDC": chain.deployment.payment_tokens["USDC"]}
    accounts = (host, renter, treasury)
    supply_before = {
        symbol: sum(c.balance_of(c.address, t) for c in accounts)
        + host.balance_of(chain.deployment.job_marketplace, t)
        for symbol, t in tokens.items()
        if symbol != "ETH"
    }
    jobs: list[int] = []
    for step in steps:
        # A refused step changes nothing; the invariants below must hold either way.
        with contextlib.suppress(ContractRevert):
            _apply(step, host, renter, accounts, tokens, jobs, w3, billing_prover)
    _check_invariants(host, accounts, tokens, jobs)
    for symbol, supply in supply_before.items():
        token = tokens[symbol]
        now = sum(c.balance_of(c.address, token) for c in accounts)
        assert now + host.balance_of(chain.deployment.job_marketplace, token) == supply


def _apply(step, host, renter, accounts, tokens, jobs, w3, prover) -> None:
    kind, *args = step
    job = lambda i: jobs[i % len(jobs)]  # noqa: E731
    if kind == "post":
        symbol, max_tokens, extra, ttl = args
        price = PRICES[symbol]
        jobs.append(
            renter.post_job(
                MODEL.id,
                "0x" + "11" * 32,
                "u",
                max_tokens,
                price,
                max_tokens * price + extra,
                renter.chain_time() + ttl,
                payment_token=tokens[symbol],
            )
        )
    elif kind == "wait":
        w3.provider.make_request("evm_increaseTime", [args[0]])
        w3.provider.make_request("evm_mine", [])
    elif kind == "withdraw":
        accounts[args[0]].withdraw(tokens[args[1]])
    elif not jobs:
        return
    elif kind == "claim":
        host.claim_job(job(args[0]))
    elif kind == "settle":
        record = host.get_job(job(args[0]))
        used = int(record.max_tokens * args[1])
        # A real proof (about 0.1 s) only where the contract would get as far as checking it.
        proof = (
            billing_proof(prover, host, record.job_id, RESULT_HASH, used)
            if record.state is JobState.CLAIMED and used <= record.max_tokens
            else b""
        )
        host.submit_result(record.job_id, RESULT_HASH, "r", used, proof)
    elif kind == "refund":
        host.refund_expired(job(args[0]))
    elif kind == "cancel":
        renter.cancel_job(job(args[0]))


def _check_invariants(host, accounts, tokens, jobs) -> None:
    market = host.deployment.job_marketplace
    records = [host.get_job(j) for j in jobs]
    for token in tokens.values():
        owed = sum(host.credit_of(c.address, token) for c in accounts)
        escrowed = sum(
            r.deposit_wei for r in records if r.payment_token == token and r.state in OPEN_STATES
        )
        assert host.balance_of(market, token) == owed + escrowed
    closing = ("JobSettled", "JobRefunded", "JobCancelled")
    for record in records:
        events = [
            e
            for name in closing
            for e in getattr(host.marketplace_events, name)().get_logs(
                from_block=0, argument_filters={"jobId": record.job_id}
            )
        ]
        assert len(events) == (0 if record.state in OPEN_STATES else 1)
