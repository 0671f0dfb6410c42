"""Prove and verify billing statements with EZKL (KZG over BN254), one job or a batch at once.

What a valid proof establishes (docs/proofs.md says it in full): for each statement slot of the
circuit, the public ``amount`` is ``tokens * price`` for the public ``tokens`` and ``price``,
and the proof was made for exactly this vector of public instances: each slot's ``binding``
(keccak of job id, model id, prompt hash and result hash), token count and price. The contract
computes every instance itself from the job record and the host's submitted result hash and
token count, so a proof made for another job, result, token count or price does not verify. It
does NOT establish that the model was run, that the result answers the prompt, or that the token
count is what the model produced: a host that proves a false count is caught only by the
re-execution spot checks (``fabstir.spotcheck``).

The inputs are ``public`` (the contract must compare them; a ``hashed`` Poseidon commitment is
neither checkable by the contract nor small enough: its verifier exceeds 24,576 bytes), outputs
``public``, parameters ``fixed``, scales 0, so every value is an exact integer. Range checks on
inputs/outputs are off: the verifier compares every one of them exactly.

A proof file holds exactly ``{"instances": [[...]], "proof": [...]}``: EZKL's proof JSON without
its unchecked informational fields (``ezkl.verify`` and ``ezkl.encode_evm_calldata`` accept it);
``proof`` is the byte string the EVM verifier takes. ``verify_batch`` returns False for every
proof that it or EZKL's verifier rejects, malformed or tampered files included; it raises
``ProofError`` only when it cannot check at all (the proof file cannot be read, or setup failed).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
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
from fabstir.proofs.circuit import (
    BATCH_CAPACITIES,
    INSTANCES_PER_STATEMENT,
    BillingStatement,
    batch_instances,
    capacity_for,
    circuit_inputs,
)

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

    ``srs_path`` None means the packaged development SRS (insecure; see
    ``fabstir.proofs.artifacts``). Keys are built per circuit capacity on first use.
    """

    def __init__(self, work_dir: Path, srs_path: Path | None = None) -> None:
        self._work_dir = Path(work_dir)
        self._srs_path = Path(srs_path) if srs_path is not None else None
        self._artifacts: dict[int, CircuitArtifacts] = {}

    def circuit_dir(self, capacity: int) -> Path:
        """Return the cache directory of one circuit and its keys, running setup if needed."""
        return self._ensure_setup(capacity).directory

    def setup(self, capacities: Sequence[int] = BATCH_CAPACITIES) -> None:
        """Build the circuits and their proving/verifying keys once per circuit version and SRS.

        Raises:
            ValueError: a capacity is not one of ``BATCH_CAPACITIES``.
            ProofError: the SRS file is missing, or EZKL failed to build a circuit or its keys.
            DependencyMissing: ezkl or onnx is not installed.
        """
        for capacity in capacities:
            self._ensure_setup(capacity)

    def prove(self, statement: BillingStatement, proof_path: Path) -> ProofBundle:
        """Prove one job's billing statement (the 1-statement circuit); see ``prove_batch``."""
        return self.prove_batch([statement], proof_path)

    def prove_batch(self, statements: Sequence[BillingStatement], proof_path: Path) -> ProofBundle:
        """Prove statements with the smallest circuit that holds them, write the proof to
        ``proof_path`` and verify it.

        Raises:
            ValueError: no statements, more than the largest capacity, or a job id twice.
            ProofError: EZKL failed to make the witness or the proof.
            DependencyMissing: ezkl or onnx is not installed.
        """
        job_ids = [statement.job_id for statement in statements]
        if len(set(job_ids)) != len(job_ids):
            raise ValueError(f"a batch must bill each job once, got job ids {job_ids}")
        capacity = capacity_for(len(statements))
        artifacts = self._ensure_setup(capacity)
        ezkl = import_ezkl()
        proof_path = Path(proof_path)
        context = {"job_ids": job_ids, "capacity": capacity}
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".prove-", dir=self._work_dir) as scratch:
            input_path = Path(scratch) / "input.json"
            witness_path = Path(scratch) / "witness.json"
            ezkl_proof_path = Path(scratch) / "proof.json"
            # Field elements, not floats: a binding digest has 248 bits.
            felts = [_felt_hex(value) for value in circuit_inputs(statements, capacity)]
            input_path.write_text(json.dumps({"input_data": [felts]}))
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
        verified = self.verify_batch(proof_path, statements)
        log.log(
            logging.INFO if verified else logging.ERROR,
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
        """Return True only if the proof is valid for exactly this one statement."""
        return self.verify_batch(proof_path, [statement])

    def verify_batch(self, proof_path: Path, statements: Sequence[BillingStatement]) -> bool:
        """Return True only if EZKL accepts the proof and its public instances are exactly those
        of ``statements`` in the smallest circuit that holds them.

        Raises:
            ProofError: the proof file cannot be read, or setup failed.
            DependencyMissing: ezkl or onnx is not installed.
        """
        proof_path = Path(proof_path)
        context = {"job_ids": [s.job_id for s in statements], "proof_path": str(proof_path)}
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
        return self._accepts(proof_file, statements, capacity_for(len(statements)), context)

    def verify_proof_bytes(
        self, proof: bytes, statements: Sequence[BillingStatement], capacity: int
    ) -> bool:
        """Return True only if ``proof`` (the bytes a host submitted on chain) is valid for
        ``statements`` in the ``capacity``-statement circuit.

        Raises:
            ValueError: the statements do not fit ``capacity``.
            ProofError: setup failed.
        """
        instances = [_felt_hex(value) for value in batch_instances(statements, capacity)]
        proof_file = _ProofFile(instances=instances, proof=list(proof))
        context = {"job_ids": [s.job_id for s in statements], "capacity": capacity}
        return bool(proof) and self._accepts(proof_file, statements, capacity, context)

    def expected_public_instances(
        self, statements: Sequence[BillingStatement], capacity: int | None = None
    ) -> list[str]:
        """Return the public instances a proof of ``statements`` must carry, as 0x uint256 hex."""
        capacity = capacity_for(len(statements)) if capacity is None else capacity
        return [f"0x{value:064x}" for value in batch_instances(statements, capacity)]

    def _accepts(
        self,
        proof_file: _ProofFile,
        statements: Sequence[BillingStatement],
        capacity: int,
        context: dict[str, Any],
    ) -> bool:
        expected = [_felt_hex(value) for value in batch_instances(statements, capacity)]
        if proof_file.instances != expected:
            log.info(
                "billing proof rejected: public instances are not the statements'", extra=context
            )
            return False
        artifacts = self._ensure_setup(capacity)
        ezkl = import_ezkl()
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

    def _ensure_setup(self, capacity: int) -> CircuitArtifacts:
        if capacity not in self._artifacts:
            self._work_dir.mkdir(parents=True, exist_ok=True)
            self._artifacts[capacity] = load_or_build_artifacts(
                self._work_dir, self._srs_path, capacity
            )
        return self._artifacts[capacity]


def read_proof_bytes(proof_path: Path) -> bytes:
    """Return the proof bytes of a proof file, as the EVM verifier takes them.

    Raises:
        ProofError: the file cannot be read or is not a proof file (``code="proof_unreadable"``).
    """
    try:
        proof_file = _parse_proof_file(Path(proof_path).read_bytes())
    except OSError as exc:
        raise ProofError(
            "proof file cannot be read", code="proof_unreadable", proof_path=str(proof_path)
        ) from exc
    if proof_file is None:
        raise ProofError(
            "not a billing proof file", code="proof_unreadable", proof_path=str(proof_path)
        )
    return bytes(proof_file.proof)


def capacity_of(proof: ProofBundle) -> int:
    """Return the circuit capacity a proof was made with (from its number of instances).

    Raises:
        ValueError: the instance count matches no circuit.
    """
    capacity, remainder = divmod(len(proof.public_instances), INSTANCES_PER_STATEMENT)
    if remainder or capacity not in BATCH_CAPACITIES:
        raise ValueError(f"{len(proof.public_instances)} instances match no billing circuit")
    return capacity
