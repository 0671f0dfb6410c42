"""The renter SDK verifies what a host delivers: result hash, billing proof and record."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.client import RenterClient
from fabstir.domain import JobState
from fabstir.errors import JobRejected, ProofError, ResultIntegrityError
from fabstir.proofs import BillingProver
from fabstir.settings import ANVIL_KEYS
from tests.integration.api.conftest import PRICE_PER_TOKEN_WEI, ApiNode
from tests.integration.api.test_streaming import wait_settled

pytestmark = pytest.mark.integration


def _settled_job(node: ApiNode, content: str) -> tuple[int, str, bytes]:
    """Answer a chat job through the API; return its id, a token and its record's bytes."""
    messages = [{"role": "user", "content": content}]
    job_id = node.post_chat(messages, max_tokens=6)
    token = node.renter.authenticate(node.url, job_id)
    assert "".join(node.renter.chat(node.url, token, node.model.id, messages))
    wait_settled(node, job_id)
    result_uri = node.renter.chain.result_uri(job_id)
    return job_id, token, node.services.store.get(node.services.store.key_of(result_uri))


def test_a_fetched_result_comes_with_its_verified_billing_proof(api_node: ApiNode) -> None:
    job_id, token, _ = _settled_job(api_node, "verify me")

    delivery = api_node.renter.fetch_result(api_node.url, token, job_id)

    assert delivery.proof.job_id == job_id and delivery.proof.proved_with == (job_id,)
    assert delivery.proof.tokens == delivery.job.tokens_used == delivery.record.completion_tokens
    assert delivery.proof.amount_wei == delivery.job.tokens_used * PRICE_PER_TOKEN_WEI
    assert delivery.proof.settle_tx == api_node.host.find_settlement(job_id).settle_tx
    # A renter sharing the host's storage reads the same result at the URI on chain.
    assert api_node.renter.read_result(api_node.services.store, job_id) == delivery


def test_tampered_or_misattributed_results_are_refused(api_node: ApiNode) -> None:
    job_id, _, record = _settled_job(api_node, "tamper with me")
    other_id, _, other_record = _settled_job(api_node, "another answer")

    tampered = record[:-1] + bytes([record[-1] ^ 1])
    with pytest.raises(ResultIntegrityError):
        api_node.renter.verify_result(job_id, tampered)
    with pytest.raises(ResultIntegrityError):
        api_node.renter.verify_result(job_id, other_record)
    assert api_node.renter.verify_result(other_id, other_record).record.job_id == other_id


def test_an_unsettled_job_has_nothing_to_verify(api_node: ApiNode) -> None:
    job_id = api_node.post_chat([{"role": "user", "content": "not yet"}])
    assert api_node.renter.chain.get_job(job_id).state is JobState.POSTED
    for read in (
        lambda: api_node.renter.verify_result(job_id, b"anything"),
        lambda: api_node.renter.read_result(api_node.services.store, job_id),
    ):
        with pytest.raises(JobRejected) as refused:
            read()
        assert refused.value.code == "job_not_settled"


def test_a_proof_the_renter_cannot_verify_is_reported_not_delivered(
    api_node: ApiNode, tmp_path: Path
) -> None:
    """A renter whose verifying key comes from another SRS cannot confirm the proof the chain
    accepted, and is told so rather than handed the result."""
    from fabstir.proofs.artifacts import CIRCUIT_LOGROWS, import_ezkl

    job_id, _, record = _settled_job(api_node, "prove it")
    srs = tmp_path / "other.srs"
    import_ezkl().gen_srs(str(srs), CIRCUIT_LOGROWS)
    renter = RenterClient(
        api_node.deployment, ANVIL_KEYS[2], prover=BillingProver(tmp_path / "prover", srs)
    )

    with pytest.raises(ProofError) as rejected:
        renter.verify_result(job_id, record)
    assert rejected.value.code == "proof_rejected"
