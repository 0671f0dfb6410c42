"""Where spot checks come from and where they go, on a devnet and file storage: the scheduled flow
checks this node's settled, unchecked jobs from its job index, and `fabstir-node report` and
`fabstir-node status` read the node's state back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fabstir.chain import ChainClient
from fabstir.cli import main
from fabstir.domain import JobState
from fabstir.proofs import BillingProver
from fabstir.settings import ModelSpec, Settings
from fabstir.spotcheck import SpotCheck, pending_spot_checks, spot_check_key
from fabstir.storage import JobEntry, JobIndex, ObjectStore, open_store
from tests.support.billing import billing_proof

from .test_claim_and_ratings import post

pytestmark = pytest.mark.integration
RESULT_HASH = "0x" + "ab" * 32


def index(store: ObjectStore, renter: ChainClient, job_id: int) -> None:
    JobIndex(store).record(JobEntry(job_id, renter.address, f"results/{job_id}", RESULT_HASH))


def test_pending_checks_are_settled_indexed_jobs_without_an_outcome(
    host: ChainClient,
    renter: ChainClient,
    tiny_model: ModelSpec,
    tmp_path: Path,
    billing_prover: BillingProver,
) -> None:
    store = ObjectStore(f"file://{tmp_path / 'storage'}")
    settled = []
    for _ in range(3):
        job_id = post(renter, store, tiny_model.id)
        host.claim_job(job_id)
        proof = billing_proof(billing_prover, host, job_id, RESULT_HASH, 3)
        host.submit_result(job_id, RESULT_HASH, "file:///result", 3, proof)
        settled.append(job_id)
    claimed = post(renter, store, tiny_model.id)
    host.claim_job(claimed)
    not_indexed = post(renter, store, tiny_model.id)
    for job_id in [*settled, claimed]:
        index(store, renter, job_id)
    checked = settled[0]
    store.put(
        spot_check_key(checked), SpotCheck(checked, "passed", "reproduced", "", "", 1.0).to_json()
    )
    assert host.get_job(claimed).state is JobState.CLAIMED

    assert pending_spot_checks(host, store, 1.0, "seed") == settled[1:]
    assert pending_spot_checks(host, store, 0.0, "seed") == []
    assert not_indexed not in pending_spot_checks(host, store, 1.0, "other seed")
    with pytest.raises(ValueError, match="rate must be in"):
        pending_spot_checks(host, store, 2.0, "seed")


def test_report_includes_the_stored_spot_checks_of_its_window(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = open_store(Settings().storage)
    now = time.time()
    for job_id, status, checked_at in [
        (1, "passed", now - 60),
        (2, "passed", now - 60),
        (3, "failed", now - 60),
        (4, "skipped", now - 60),
        (5, "failed", now - 3 * 86_400),  # before a 2-day window
    ]:
        outcome = SpotCheck(job_id, status, "synthetic", "", "", checked_at)  # type: ignore[arg-type]
        store.put(spot_check_key(job_id), outcome.to_json())

    assert main(["report", "--days", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["figures"]
    assert figures["spot checks passed"] == "66.67 % of 3"
    assert main(["report", "--days", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["figures"]["spot checks passed"] == "50.00 % of 4"


def test_status_shows_registration_and_health_with_reasons(
    host: ChainClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FABSTIR_CHAIN__DEPLOYMENT_FILE", str(tmp_path / "devnet.json"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")  # nothing listens there

    assert main(["status"]) == 0  # not ready, yet the registration was read
    status = json.loads(capsys.readouterr().out)
    assert (
        status["registered"] and status["active"] and status["chain_id"] == host.deployment.chain_id
    )
    health = status["health"]
    checks = {check["name"]: check for check in health["checks"]}
    assert list(checks) == ["live", "model_loaded", "chain", "storage", "prefect", "capacity"]
    assert health["ready"] is False and health["live"] is False
    assert checks["chain"]["ok"] and checks["storage"]["ok"]
    assert checks["prefect"]["reason"] == "http://127.0.0.1:1/api/health unreachable: ConnectError"
    assert "prefect: " + checks["prefect"]["reason"] in health["reasons"]
    assert checks["live"]["reason"] == "no heartbeat recorded; is the node running?"

    assert main(["health", "--json"]) == 1  # the health-only view agrees, and exits 1
    alone = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in alone["checks"]] == list(checks)
    assert alone["reasons"] == health["reasons"]
