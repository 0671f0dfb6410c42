"""Batch settlement end to end: inference-job runs queue their jobs, the settle-batch flow proves
and settles them, one proof and one transaction per batch. Real anvil, contracts, EZKL prover."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openai import OpenAI

from fabstir.chain import ETH, ChainClient, load_artifact
from fabstir.cli import main
from fabstir.client import RenterClient
from fabstir.domain import JobState, Receipt, SettlementQueued
from fabstir.errors import JobRejected
from fabstir.pipeline import SettlementQueue, batch_proof_path_for
from fabstir.proofs import BillingProver
from fabstir.settings import ANVIL_KEYS
from flows.inference_job import inference_job
from flows.settle_batch import settle_batch
from tests.e2e.conftest import PRICE_PER_TOKEN_WEI, Node, run_states_since
from tests.e2e.test_api_flow import api_url  # noqa: F401  (the fixture: the API as `serve` builds it)

pytestmark = pytest.mark.e2e

PROMPTS = ("the cat sat on the mat", "a red fox ran", "seven blue boats", "rain over the hills")


@pytest.fixture
def batch_of_four(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABSTIR_SETTLEMENT__BATCH_SIZE", "4")
    monkeypatch.setenv("FABSTIR_SETTLEMENT__MAX_WAIT_S", "600")
    monkeypatch.setenv("FABSTIR_SETTLEMENT__DEADLINE_MARGIN_S", "900")


def money(node: Node) -> dict[str, int]:
    """Every balance a settlement could move: marketplace credits and the escrow."""
    treasury = node.host.treasury()
    return {
        "host_credit": node.host.credit_of(node.host.address),
        "treasury_credit": node.host.credit_of(treasury),
        "renter_credit": node.host.credit_of(node.renter.address),
        "market": node.host.balance_of(node.deployment.job_marketplace, ETH),
    }


def settled_events(node: Node, job_id: int) -> list:
    marketplace = node.w3.eth.contract(
        address=node.deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi
    )
    return marketplace.events.JobSettled().get_logs(
        from_block=0, argument_filters={"jobId": job_id}
    )


def queue_jobs(node: Node, prompts: tuple[str, ...]) -> list[SettlementQueued]:
    queued = [inference_job(node.post(prompt)) for prompt in prompts]
    assert all(isinstance(entry, SettlementQueued) for entry in queued), queued
    return queued  # type: ignore[return-value]


def expected_deltas(node: Node, queued: list[SettlementQueued]) -> dict[str, int]:
    payments = [entry.tokens * PRICE_PER_TOKEN_WEI for entry in queued]
    fees = [payment * node.host.fee_bps() // 10_000 for payment in payments]
    deposits = [node.renter.get_job(entry.job_id).deposit_wei for entry in queued]
    return {
        "host_credit": sum(payments) - sum(fees),
        "treasury_credit": sum(fees),
        "renter_credit": sum(deposits) - sum(payments),
        "market": 0,  # settlement only credits; nothing leaves the marketplace
    }


def deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


def advance_chain(node: Node, seconds: int) -> None:
    node.w3.provider.make_request("evm_increaseTime", [seconds])
    node.w3.provider.make_request("evm_mine", [])


def test_four_jobs_are_settled_by_one_transaction_once(batch_of_four: None, node: Node) -> None:
    from prefect.artifacts import Artifact

    queued = queue_jobs(node, PROMPTS)
    job_ids = [entry.job_id for entry in queued]
    assert all(node.host.get_job(job_id).state is JobState.CLAIMED for job_id in job_ids)
    assert SettlementQueue(node.store).job_ids() == sorted(job_ids)
    before = money(node)

    receipts = settle_batch()

    assert [receipt.job_id for receipt in receipts] == job_ids
    assert len({receipt.settle_tx for receipt in receipts}) == 1
    assert deltas(before, money(node)) == expected_deltas(node, queued)
    for entry, receipt in zip(queued, receipts, strict=True):
        assert (receipt.tokens, receipt.result_hash) == (entry.tokens, entry.result_hash)
        assert node.host.get_job(entry.job_id).state is JobState.SETTLED
        assert len(settled_events(node, entry.job_id)) == 1
    assert SettlementQueue(node.store).job_ids() == []
    artifact = Artifact.get(f"job-{job_ids[0]}")
    assert artifact is not None and receipts[0].settle_tx in str(artifact.data)

    settled = money(node)
    assert settle_batch() == []
    assert settle_batch(flush=True) == []
    assert inference_job(job_ids[0]) == receipts[0]  # a re-run finds the settlement
    assert money(node) == settled
    assert all(len(settled_events(node, job_id)) == 1 for job_id in job_ids)


def _fail_submission(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> str:
        raise RuntimeError("injected crash before the batch transaction is sent")

    monkeypatch.setattr(ChainClient, "submit_results", crash)


def _fail_release(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(self: SettlementQueue, job_id: int) -> None:
        raise RuntimeError("injected crash after the batch transaction was mined")

    monkeypatch.setattr(SettlementQueue, "remove", crash)


@pytest.mark.parametrize(
    "inject_crash",
    [_fail_submission, _fail_release],
    ids=["between-proving-and-submitting", "between-submitting-and-releasing"],
)
def test_a_settle_run_that_crashes_is_recovered_by_the_next_without_paying_twice(
    batch_of_four: None,
    node: Node,
    prover_dir: Path,
    inject_crash: Callable[[pytest.MonkeyPatch], None],
) -> None:
    """Fault injection: the crash is an exception raised in place of a chain or storage call
    (a real crash would kill the process there; what was written before it is the same)."""
    queued = queue_jobs(node, PROMPTS)
    job_ids = [entry.job_id for entry in queued]
    before = money(node)

    with pytest.MonkeyPatch.context() as crash:
        inject_crash(crash)
        with pytest.raises(RuntimeError, match="injected crash"):
            settle_batch()
    assert batch_proof_path_for(prover_dir, job_ids).exists()
    assert SettlementQueue(node.store).job_ids() == sorted(job_ids)

    receipts = settle_batch()

    assert [receipt.job_id for receipt in receipts] == job_ids
    assert len({receipt.settle_tx for receipt in receipts}) == 1
    assert deltas(before, money(node)) == expected_deltas(node, queued)
    assert all(len(settled_events(node, job_id)) == 1 for job_id in job_ids)
    assert SettlementQueue(node.store).job_ids() == []


@pytest.mark.parametrize(("limit", "advance_s"), [("max_wait", 601), ("deadline_margin", 2701)])
def test_a_partial_batch_is_settled_once_a_job_waited_long_enough_or_nears_its_deadline(
    batch_of_four: None,
    node: Node,
    monkeypatch: pytest.MonkeyPatch,
    limit: str,
    advance_s: int,
) -> None:
    if limit == "deadline_margin":  # the job's deadline is an hour away; it must not wait
        monkeypatch.setenv("FABSTIR_SETTLEMENT__MAX_WAIT_S", "100000")
    (entry,) = queue_jobs(node, PROMPTS[:1])
    before = money(node)
    assert settle_batch() == []
    assert node.host.get_job(entry.job_id).state is JobState.CLAIMED

    advance_chain(node, advance_s)
    (receipt,) = settle_batch()

    assert receipt.job_id == entry.job_id and len(settled_events(node, entry.job_id)) == 1
    assert deltas(before, money(node)) == expected_deltas(node, [entry])


def test_a_job_within_the_deadline_margin_is_settled_by_its_own_run(
    batch_of_four: None, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABSTIR_SETTLEMENT__DEADLINE_MARGIN_S", "4000")  # deadline: 1 h away
    before = money(node)

    receipt = inference_job(node.post(PROMPTS[0]))

    assert isinstance(receipt, Receipt)
    payment = receipt.tokens * PRICE_PER_TOKEN_WEI
    assert deltas(before, money(node))["host_credit"] == receipt.paid_to_host_wei > 0
    assert receipt.paid_to_host_wei + receipt.fee_wei == payment
    assert SettlementQueue(node.store).job_ids() == []


def test_a_queued_job_past_its_deadline_leaves_the_queue_and_its_renter_is_refunded(
    batch_of_four: None, node: Node
) -> None:
    (entry,) = queue_jobs(node, PROMPTS[:1])
    advance_chain(node, 3601)
    before = money(node)

    assert settle_batch() == []

    assert SettlementQueue(node.store).job_ids() == []
    assert money(node) == before
    node.renter.refund_expired(entry.job_id)
    assert node.host.get_job(entry.job_id).state is JobState.REFUNDED


def test_an_api_stream_ends_at_once_and_its_job_waits_for_the_batch(
    batch_of_four: None,
    node: Node,
    api_url: str,  # noqa: F811
    prover_dir: Path,
) -> None:
    renter = RenterClient(node.deployment, ANVIL_KEYS[2], prover=BillingProver(prover_dir))
    (offer,) = renter.find_hosts(node.model.id)
    messages = [{"role": "user", "content": "the cat sat on"}]
    job_id = renter.post_chat_job(offer, messages, max_tokens=12)
    since = datetime.now(UTC)
    client = OpenAI(
        base_url=api_url + "/v1", api_key=renter.authenticate(api_url, job_id), max_retries=0
    )
    before = money(node)

    stream = client.chat.completions.create(
        model=node.model.id, messages=messages, stream=True, max_tokens=12
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text and run_states_since(job_id, since) == ["COMPLETED"]
    assert node.host.get_job(job_id).state is JobState.CLAIMED
    assert SettlementQueue(node.store).job_ids() == [job_id]
    # The SDK checks a result against the chain's settlement record, so not before it exists.
    with pytest.raises(JobRejected) as unsettled:
        renter.fetch_result(api_url, renter.authenticate(api_url, job_id), job_id)
    assert unsettled.value.code == "job_not_settled"

    (receipt,) = settle_batch(flush=True)

    delivery = renter.fetch_result(api_url, renter.authenticate(api_url, job_id), job_id)
    assert delivery.record.output == text and delivery.proof.proved_with == (job_id,)

    queued = SettlementQueued(
        job_id=job_id,
        tokens=receipt.tokens,
        result_uri=receipt.result_uri,
        result_hash=receipt.result_hash,
        queued_at=0,
        settle_by=0,
    )
    assert receipt.tokens == delivery.record.completion_tokens
    assert deltas(before, money(node)) == expected_deltas(node, [queued])


def test_the_settle_command_settles_what_is_due_or_with_flush_everything_queued(
    batch_of_four: None, node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    (entry,) = queue_jobs(node, PROMPTS[:1])
    capsys.readouterr()

    assert main(["settle", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"settled": []}
    assert main(["settle", "--flush", "--json"]) == 0

    (settled,) = json.loads(capsys.readouterr().out.splitlines()[-1])["settled"]
    assert settled["job_id"] == entry.job_id and settled["tokens"] == entry.tokens
    assert node.host.get_job(entry.job_id).state is JobState.SETTLED
