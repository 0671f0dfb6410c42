"""Prove and verify a job's billing statement with EZKL (KZG over BN254).

What a proof establishes: the prover knew a 60-limb statement (job id, model SHA-256, prompt
hash, result hash, token count, price per token; layout in ``circuit.STATEMENT_LAYOUT``) whose
Poseidon hash is public instance 0, and the public outputs were computed from that same
statement: the job id limbs, the token count, and amount terms with
``sum(term_i << 16*i) == tokens * price_per_token_wei``. ``verify`` recomputes every instance
from the expected statement (Poseidon via ``ezkl.poseidon_hash``, outputs as Python integers) and
requires an exact match, so a valid proof for another job, model, prompt, result, token count or
price is rejected.

What it does NOT establish: that the model was run, that the result is the model's output for
the prompt, or that the token count is what the model produced. It binds the host to a billing
claim; inference correctness is checked separately by deterministic re-execution spot checks.
The dev SRS made by ``ezkl.gen_srs`` is insecure (whoever made it can forge proofs): production
must pass a ceremony SRS file as ``srs_path``.

Visibility: the statement input is ``hashed`` (public instance = its Poseidon commitment, so the
hashes stay out of calldata yet are bound), the output is ``public`` (what a contract reads), and
parameters are ``fixed``. Scales are 0 and limbs are 16-bit, so every value is an exact integer.
Range checks on inputs/outputs are off: they would only bound values the verifier already
compares exactly, and the amount terms (< 2**48) exceed EZKL's default decomposition range.
``logrows`` is 12 (the Poseidon chip uses about 2,400 rows), set by hand because
``calibrate_settings`` is slow and picks a larger circuit.

Public instances, as uint256 words in order: commitment, job_id limbs 0..3, tokens, amount terms
0..5.

A proof file holds exactly ``{"instances": [[...]], "proof": [...]}``: EZKL's proof JSON without
its unchecked informational fields (``ezkl.verify`` and ``ezkl.encode_evm_calldata`` accept it),
so changing any byte changes what is verified. ``verify`` returns False for every proof that it
or EZKL's verifier rejects, malformed or tampered files included; it raises ``ProofError`` only
when it cannot check at all (the proof file cannot be read, or setup failed).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabstir.domain import ProofBundle
from fabstir.errors import ProofError
from fabstir.proofs.artifacts import (
    CircuitArtifacts,
    import_ezkl,
    load_or_build_artifacts,
    translate_ezkl_errors,
)
from fabstir.proofs.circuit import BillingStatement, encode_statement, public_outputs

log = logging.getLogger(__name__)

_FELT_PATTERN = re.compile(r"[0-9a-f]{64}")
_PROOF_KEYS = {"instances", "proof"}


def _felt_hex(value: int) -> str:
    """Encode a field element as EZKL writes it: 32 bytes, little-endian, lower-case hex."""
    return value.to_bytes(32, "little").hex()


def _uint256_hex(felt_hex: str) -> str:
    """Convert EZKL's little-endian felt hex into the ``0x`` big-endian word a contract reads."""
    return "0x" + bytes.fromhex(felt_hex)[::-1].hex()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; proofs are public data
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _ProofFile:
    instances: list[str]
    proof: list[int]

    def to_json_bytes(self) -> bytes:
        document = {"instances": [self.instances], "proof": self.proof}
        return json.dumps(document, separators=(",", ":")).encode()


def _parse_proof_file(data: bytes) -> _ProofFile | None:
    """Parse a proof file strictly; return None when it is not exactly what ``prove`` writes."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return None
    return _proof_from_document(document)


def _proof_from_document(document: Any) -> _ProofFile | None:
    if not isinstance(document, dict) or set(document) != _PROOF_KEYS:
        return None
    instance_lists, proof = document["instances"], document["proof"]
    if not (isinstance(instance_lists, list) and len(instance_lists) == 1):
        return None
    instances = instance_lists[0]
    if not isinstance(instances, list) or not all(
        isinstance(felt, str) and _FELT_PATTERN.fullmatch(felt) for felt in instances
    ):
        return None
    if (
        not isinstance(proof, list)
        or not proof
        or not all(type(byte) is int and 0 <= byte < 256 for byte in proof)
    ):
        return None
    return _ProofFile(instances=instances, proof=proof)


class BillingProver:
    """Make and check EZKL proofs of billing statements, with keys cached in ``work_dir``.

    ``srs_path`` None means a development SRS generated once in ``work_dir`` (insecure, logged as
    such). The cache layout and its race safety are described in ``fabstir.proofs.artifacts``.
    """

    def __init__(self, work_dir: Path, srs_path: Path | None = None) -> None:
        self._work_dir = Path(work_dir)
        self._srs_path = Path(srs_path) if srs_path is not None else None
        self._artifacts: CircuitArtifacts | None = None

    @property
    def circuit_dir(self) -> Path:
        """Return the cache directory of the circuit and its keys, running setup if needed."""
        return self._ensure_setup().directory

    def setup(self) -> None:
        """Build the circuit and its proving/verifying keys once per circuit version and SRS.

        Raises:
            ProofError: the SRS file is missing, or EZKL failed to build the circuit or keys.
            DependencyMissing: ezkl or onnx is not installed.
        """
        self._ensure_setup()

    def prove(self, statement: BillingStatement, proof_path: Path) -> ProofBundle:
        """Prove a billing statement, write the proof to ``proof_path`` and verify it.

        Raises:
            ProofError: EZKL failed to make the witness or the proof.
            DependencyMissing: ezkl or onnx is not installed.
        """
        artifacts = self._ensure_setup()
        ezkl = import_ezkl()
        proof_path = Path(proof_path)
        context = {"job_id": statement.job_id}
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".prove-", dir=self._work_dir) as scratch:
            input_path = Path(scratch) / "input.json"
            witness_path = Path(scratch) / "witness.json"
            ezkl_proof_path = Path(scratch) / "proof.json"
            input_path.write_text(json.dumps({"input_data": [encode_statement(statement)]}))
            with translate_ezkl_errors("gen_witness", **context):
                ezkl.gen_witness(str(input_path), str(artifacts.compiled_path), str(witness_path))
            with translate_ezkl_errors("prove", **context):
                ezkl.prove(
                    str(witness_path),
                    str(artifacts.compiled_path),
                    str(artifacts.pk_path),
                    str(ezkl_proof_path),
                    str(artifacts.srs_path),
                )
            ezkl_document = json.loads(ezkl_proof_path.read_bytes())
        # Keep only what the verifier checks; EZKL's other fields are informational.
        proof_file = _proof_from_document({key: ezkl_document.get(key) for key in _PROOF_KEYS})
        if proof_file is None:
            raise ProofError(
                "ezkl wrote a proof in an unexpected format", code="ezkl_failed", **context
            )
        _write_atomically(proof_path, proof_file.to_json_bytes())
        prove_s = time.perf_counter() - started
        verified = self.verify(proof_path, statement)
        log_level = logging.INFO if verified else logging.ERROR
        log.log(
            log_level,
            "billing proof written",
            extra={
                **context,
                "proof_path": str(proof_path),
                "verified": verified,
                "prove_s": round(prove_s, 3),
            },
        )
        return ProofBundle(
            proof_path=str(proof_path),
            public_instances=[_uint256_hex(felt) for felt in proof_file.instances],
            verified=verified,
        )

    def verify(self, proof_path: Path, statement: BillingStatement) -> bool:
        """Return True only if EZKL accepts the proof and its public instances are the statement's.

        Raises:
            ProofError: the proof file cannot be read, or setup failed.
            DependencyMissing: ezkl or onnx is not installed.
        """
        artifacts = self._ensure_setup()
        ezkl = import_ezkl()
        proof_path = Path(proof_path)
        context = {"job_id": statement.job_id, "proof_path": str(proof_path)}
        try:
            data = proof_path.read_bytes()
        except OSError as exc:
            raise ProofError(
                "proof file cannot be read", code="proof_unreadable", reason=str(exc), **context
            ) from exc
        proof_file = _parse_proof_file(data)
        if proof_file is None:
            log.info("billing proof rejected: malformed proof file", extra=context)
            return False
        if proof_file.instances != self._expected_felts(statement):
            log.info(
                "billing proof rejected: public instances are not the statement's", extra=context
            )
            return False
        # Verify the bytes checked above, not the file again, which could change in between.
        with tempfile.TemporaryDirectory(prefix=".verify-", dir=self._work_dir) as scratch:
            checked_path = Path(scratch) / "proof.json"
            checked_path.write_bytes(proof_file.to_json_bytes())
            try:
                accepted = ezkl.verify(
                    str(checked_path),
                    str(artifacts.settings_path),
                    str(artifacts.vk_path),
                    str(artifacts.srs_path),
                )
            except RuntimeError as exc:
                # EZKL raises, rather than returning False, for every invalid proof.
                log.info(
                    "billing proof rejected by the ezkl verifier",
                    extra={**context, "reason": str(exc)},
                )
                return False
        return bool(accepted)

    def expected_public_instances(self, statement: BillingStatement) -> list[str]:
        """Return the public instances a proof of ``statement`` must carry, as 0x uint256 hex."""
        return [_uint256_hex(felt) for felt in self._expected_felts(statement)]

    def _expected_felts(self, statement: BillingStatement) -> list[str]:
        ezkl = import_ezkl()
        statement_felts = [_felt_hex(limb) for limb in encode_statement(statement)]
        with translate_ezkl_errors("poseidon_hash", job_id=statement.job_id):
            commitment = ezkl.poseidon_hash(statement_felts)
        if len(commitment) != 1:
            raise ProofError(
                "unexpected Poseidon output length",
                code="ezkl_failed",
                job_id=statement.job_id,
                length=len(commitment),
            )
        return [commitment[0], *(_felt_hex(value) for value in public_outputs(statement))]

    def _ensure_setup(self) -> CircuitArtifacts:
        if self._artifacts is None:
            self._artifacts = load_or_build_artifacts(self._work_dir, self._srs_path)
        return self._artifacts
