"""Real billing proofs for tests that settle jobs on the devnet (keys shared per session)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fabstir.chain import ChainClient
from fabstir.proofs import BillingProver, BillingStatement, read_proof_bytes


def statement_for(
    chain: ChainClient, job_id: int, result_hash: str, tokens: int
) -> BillingStatement:
    """The statement a host bills for a job on chain with this result and token count."""
    job = chain.get_job(job_id)
    return BillingStatement(
        job_id=job_id,
        model_id=job.model_id,
        prompt_hash=job.prompt_hash,
        result_hash=result_hash,
        tokens=tokens,
        price_per_token_wei=job.price_per_token_wei,
    )


def billing_proof(
    prover: BillingProver, chain: ChainClient, job_id: int, result_hash: str, tokens: int
) -> bytes:
    """Prove the job's billing statement; return the proof bytes ``submitResult`` takes."""
    with tempfile.TemporaryDirectory(prefix="fabstir-test-proof-") as scratch:
        bundle = prover.prove(
            statement_for(chain, job_id, result_hash, tokens), Path(scratch) / "job.proof"
        )
        assert bundle.verified
        return read_proof_bytes(Path(bundle.proof_path))
