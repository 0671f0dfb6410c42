"""Real EZKL proofs of billing statements: made, verified, and rejected for any other statement.

One prover (the packaged dev SRS, keys built once) serves the session. A tampered proof file makes
``verify`` return False rather than raise: rejection is an expected outcome, not an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fabstir.domain import ProofBundle
from fabstir.errors import ProofError
from fabstir.proofs import BillingProver, BillingStatement
from fabstir.proofs.artifacts import DEV_SRS_PATH
from fabstir.proofs.circuit import BATCH_CAPACITIES, binding_digest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]

# Values at the top of every range, so any float rounding or overflow would show.
STATEMENT = BillingStatement(
    job_id=2**256 - 2,
    model_id="0x" + hashlib.sha256(b"model").hexdigest(),
    prompt_hash="0x" + hashlib.sha256(b"prompt").hexdigest(),
    result_hash="0x" + hashlib.sha256(b"result").hexdigest(),
    tokens=2**32 - 3,
    price_per_token_wei=2**88 - 5,
)
MANIFEST = REPO_ROOT / "fabstir" / "proofs" / "verifiers.json"


@pytest.fixture(scope="module")
def prover(billing_prover: BillingProver) -> BillingProver:
    return billing_prover


@pytest.fixture(scope="module")
def proof(prover: BillingProver, tmp_path_factory: pytest.TempPathFactory) -> ProofBundle:
    return prover.prove(STATEMENT, tmp_path_factory.mktemp("proofs") / "job.proof")


def copy_with_bytes(source: str, destination: Path, data: bytes | None = None) -> Path:
    destination.write_bytes(Path(source).read_bytes() if data is None else data)
    return destination


def test_a_valid_proof_verifies(prover: BillingProver, proof: ProofBundle) -> None:
    assert proof.verified
    assert prover.verify(Path(proof.proof_path), STATEMENT)
    assert proof.public_instances == prover.expected_public_instances([STATEMENT])


def test_public_instances_expose_binding_tokens_price_and_the_exact_amount(
    proof: ProofBundle,
) -> None:
    values = [int(word, 16) for word in proof.public_instances]
    assert len(values) == 4
    assert values[0] == binding_digest(STATEMENT) < 2**248
    assert values[1:3] == [STATEMENT.tokens, 2**88 - 5]
    assert values[3] == STATEMENT.tokens * STATEMENT.price_per_token_wei > 2**119


def test_the_committed_verifier_contracts_match_the_keys_built_now(prover: BillingProver) -> None:
    """The verifiers in contracts/ embed the verifying keys; a changed circuit, EZKL or dev SRS
    must come with regenerated verifiers (contracts/tools/generate_verifiers.py)."""
    manifest = json.loads(MANIFEST.read_text())
    assert sorted(map(int, manifest)) == sorted(BATCH_CAPACITIES)
    for capacity in BATCH_CAPACITIES:
        vk = (prover.circuit_dir(capacity) / "vk.key").read_bytes()
        entry = manifest[str(capacity)]
        hint = "stale verifiers: run contracts/tools/generate_verifiers.py and commit"
        assert entry["vk_sha256"] == hashlib.sha256(vk).hexdigest(), hint
        assert entry["srs_sha256"] == hashlib.sha256(DEV_SRS_PATH.read_bytes()).hexdigest(), hint
        assert (REPO_ROOT / "contracts" / entry["source"]).is_file()


@pytest.mark.parametrize(
    "changes",
    [
        {"tokens": STATEMENT.tokens - 1},
        {"job_id": STATEMENT.job_id + 1},
        {"result_hash": "0x" + hashlib.sha256(b"another result").hexdigest()},
        {"model_id": "0x" + hashlib.sha256(b"another model").hexdigest()},
        {"prompt_hash": "0x" + hashlib.sha256(b"another prompt").hexdigest()},
        {"price_per_token_wei": STATEMENT.price_per_token_wei - 1},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_verify_rejects_the_proof_for_another_statement(
    prover: BillingProver, proof: ProofBundle, changes: dict[str, Any]
) -> None:
    assert not prover.verify(Path(proof.proof_path), dataclasses.replace(STATEMENT, **changes))


def test_a_valid_proof_of_another_job_is_rejected(prover: BillingProver, tmp_path: Path) -> None:
    other = dataclasses.replace(STATEMENT, job_id=1, tokens=5)
    other_proof = prover.prove(other, tmp_path / "other.proof")
    assert other_proof.verified
    assert not prover.verify(Path(other_proof.proof_path), STATEMENT)


def test_instances_swapped_for_another_statement_fail_the_ezkl_verifier(
    prover: BillingProver, proof: ProofBundle, tmp_path: Path
) -> None:
    # The instance comparison passes here, so only EZKL's verifier can reject it.
    other = dataclasses.replace(STATEMENT, tokens=STATEMENT.tokens - 1)
    document = json.loads(Path(proof.proof_path).read_bytes())
    document["instances"] = [
        [bytes.fromhex(word[2:])[::-1].hex() for word in prover.expected_public_instances([other])]
    ]
    forged = copy_with_bytes(
        proof.proof_path,
        tmp_path / "forged.proof",
        json.dumps(document, separators=(",", ":")).encode(),
    )
    assert not prover.verify(forged, other)


def test_a_proof_with_one_byte_flipped_is_rejected(
    prover: BillingProver, proof: ProofBundle, tmp_path: Path
) -> None:
    document = json.loads(Path(proof.proof_path).read_bytes())
    document["proof"][len(document["proof"]) // 2] ^= 0xFF
    tampered = copy_with_bytes(
        proof.proof_path,
        tmp_path / "tampered.proof",
        json.dumps(document, separators=(",", ":")).encode(),
    )
    assert not prover.verify(tampered, STATEMENT)


def test_any_single_byte_flip_in_the_file_is_rejected(
    prover: BillingProver, proof: ProofBundle, tmp_path: Path
) -> None:
    original = Path(proof.proof_path).read_bytes()
    accepted = []
    for position in range(0, len(original), 53):
        flipped = bytearray(original)
        flipped[position] ^= 0x01
        path = copy_with_bytes(proof.proof_path, tmp_path / "flipped.proof", bytes(flipped))
        if prover.verify(path, STATEMENT):
            accepted.append(position)
    assert accepted == []


@pytest.mark.parametrize(
    ("witness_field", "index"),
    [("inputs", 1), ("outputs", 0)],
    ids=["tokens-changed-after-the-amount", "amount-not-computed"],
)
def test_a_forged_witness_yields_no_valid_proof(
    prover: BillingProver, tmp_path: Path, witness_field: str, index: int
) -> None:
    import ezkl

    from fabstir.proofs.circuit import circuit_inputs

    # Lets ezkl prove from a doctored witness (its check mode is unsafe): the circuit's
    # constraints, not the witness generator, must be what ties the amount to tokens and price.
    circuit_dir = prover.circuit_dir(1)
    srs_path = DEV_SRS_PATH
    felts = [value.to_bytes(32, "little").hex() for value in circuit_inputs([STATEMENT], 1)]
    (tmp_path / "input.json").write_text(json.dumps({"input_data": [felts]}))
    ezkl.gen_witness(
        str(tmp_path / "input.json"),
        str(circuit_dir / "model.compiled"),
        str(tmp_path / "witness.json"),
    )
    witness = json.loads((tmp_path / "witness.json").read_text())
    witness[witness_field][0][index] = (12345).to_bytes(32, "little").hex()
    (tmp_path / "witness.json").write_text(json.dumps(witness))
    ezkl.prove(
        str(tmp_path / "witness.json"),
        str(circuit_dir / "model.compiled"),
        str(circuit_dir / "pk.key"),
        str(tmp_path / "forged.json"),
        str(srs_path),
    )
    with pytest.raises(RuntimeError, match="constraint system is not satisfied"):
        ezkl.verify(
            str(tmp_path / "forged.json"),
            str(circuit_dir / "settings.json"),
            str(circuit_dir / "vk.key"),
            str(srs_path),
        )


def test_a_missing_proof_file_raises(prover: BillingProver, tmp_path: Path) -> None:
    with pytest.raises(ProofError) as raised:
        prover.verify(tmp_path / "absent.proof", STATEMENT)
    assert raised.value.code == "proof_unreadable"


def test_setup_twice_reuses_the_cached_keys(
    prover: BillingProver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ezkl

    circuit_dir = prover.circuit_dir(1)
    stamps = {path.name: path.stat().st_mtime_ns for path in circuit_dir.iterdir()}
    keygens: list[tuple[Any, ...]] = []
    real_setup = ezkl.setup

    def counting_setup(*args: Any, **kwargs: Any) -> bool:
        keygens.append(args)
        return real_setup(*args, **kwargs)

    monkeypatch.setattr(ezkl, "setup", counting_setup)

    prover.setup()
    fresh_prover = BillingProver(circuit_dir.parent.parent)
    fresh_prover.setup()

    assert keygens == []
    assert fresh_prover.circuit_dir(1) == circuit_dir
    assert {path.name: path.stat().st_mtime_ns for path in circuit_dir.iterdir()} == stamps
    built = {path.name for path in circuit_dir.parent.iterdir()}
    assert built == {prover.circuit_dir(capacity).name for capacity in BATCH_CAPACITIES}


def test_concurrent_setups_share_one_set_of_keys(tmp_path: Path) -> None:
    script = (
        "import hashlib, sys\n"
        "from pathlib import Path\n"
        "from fabstir.proofs import BillingProver\n"
        "prover = BillingProver(Path(sys.argv[1]))\n"
        "prover.setup([4])\n"
        "vk = (prover.circuit_dir(4) / 'vk.key').read_bytes()\n"
        "print(prover.circuit_dir(4).name, hashlib.sha256(vk).hexdigest())\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert len(list((tmp_path / "circuits").iterdir())) == 1


def test_a_missing_srs_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ProofError) as raised:
        BillingProver(tmp_path, srs_path=tmp_path / "absent.srs").setup()
    assert raised.value.code == "srs_missing"


def test_ezkl_failures_become_proof_errors(
    prover: BillingProver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ezkl

    def failing_prove(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("Failed to run prove: simulated")

    monkeypatch.setattr(ezkl, "prove", failing_prove)
    with pytest.raises(ProofError) as raised:
        prover.prove(STATEMENT, tmp_path / "never.proof")
    assert raised.value.code == "ezkl_failed"
    assert raised.value.context["job_ids"] == [STATEMENT.job_id]
    assert not (tmp_path / "never.proof").exists()
