"""Prove time and settlement gas per job when N jobs settle with one billing proof (N = 1, 4, 16).

python -m benchmarks.proofs [--json] [--repeats R]

For each N: prove N statements with one proof (median of R proofs, keys built beforehand), then
settle N claimed jobs on a fresh devnet with that proof in one transaction (``submitResult`` for
N = 1, ``submitResults`` otherwise). Gas is the whole transaction (the proof check, the instance
building, the settlement's storage writes and events) divided by N; ``verify`` is the verifier's
share alone (an ``eth_estimateGas`` of ``verifyProof`` with the same proof and instances). The
N = 1 row is the baseline a batch is compared with: N single settlements cost N times it.
Result URIs are 79-character ``s3://`` content addresses, as the node writes them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector
from web3 import HTTPProvider, Web3

from fabstir.chain import ChainClient, Devnet, Offer, ResultSubmission, load_artifact
from fabstir.proofs import (
    BATCH_CAPACITIES,
    BillingProver,
    BillingStatement,
    capacity_of,
    read_proof_bytes,
)
from fabstir.proofs.circuit import batch_instances
from fabstir.settings import ANVIL_KEYS, ModelSpec

MODEL = ModelSpec(id="bench-model", uri="s3://models/bench.gguf", sha256="ab" * 32)
PRICE_WEI = 10**9
MAX_TOKENS = 256
TOKENS = 100
RESULT_URI = "s3://fabstir-results/results/1220" + "cd" * 22
VERIFY_SELECTOR = function_signature_to_4byte_selector("verifyProof(bytes,uint256[])")


def _statements(chain: ChainClient, job_ids: list[int]) -> list[BillingStatement]:
    statements = []
    for job_id in job_ids:
        job = chain.get_job(job_id)
        statements.append(
            BillingStatement(
                job_id=job_id,
                model_id=job.model_id,
                prompt_hash=job.prompt_hash,
                result_hash=f"0x{job_id:064x}",
                tokens=TOKENS,
                price_per_token_wei=PRICE_WEI,
            )
        )
    return statements


def measure(repeats: int) -> dict[int, dict[str, float]]:
    scratch = Path(tempfile.mkdtemp(prefix="fabstir-bench-proofs-"))
    prover = BillingProver(scratch)
    prover.setup()
    figures: dict[int, dict[str, float]] = {}
    with Devnet(models=[MODEL]) as deployment:
        w3 = Web3(HTTPProvider(deployment.rpc_url))
        host = ChainClient(deployment, ANVIL_KEYS[1])
        renter = ChainClient(deployment, ANVIL_KEYS[2])
        host.register([Offer(MODEL.id, PRICE_WEI)], api_url="http://127.0.0.1:8000")
        market = w3.eth.contract(
            deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi
        )
        # A first settlement pays one-off storage costs (the host's and treasury's first credit).
        warm = _post_and_claim(host, renter, 1)
        _settle(host, prover, scratch, _statements(host, warm))
        for count in BATCH_CAPACITIES:
            job_ids = _post_and_claim(host, renter, count)
            statements = _statements(host, job_ids)
            prove_s = []
            for attempt in range(repeats):
                started = time.perf_counter()
                prover.prove_batch(statements, scratch / f"bench-{count}-{attempt}.proof")
                prove_s.append(time.perf_counter() - started)
            tx, proof = _settle(host, prover, scratch, statements)
            verify_gas = w3.eth.estimate_gas(
                {
                    "to": market.functions.verifiers(count).call(),
                    "data": "0x"
                    + (
                        VERIFY_SELECTOR
                        + encode(
                            ["bytes", "uint256[]"], [proof, batch_instances(statements, count)]
                        )
                    ).hex(),
                }
            )
            figures[count] = {
                "prove_s_per_job": statistics.median(prove_s) / count,
                "gas_per_job": host.gas_used(tx) / count,
                "verify_gas_per_job": verify_gas / count,
            }
    return figures


def _post_and_claim(host: ChainClient, renter: ChainClient, count: int) -> list[int]:
    job_ids = []
    for index in range(count):
        job_id = renter.post_job(
            MODEL.id,
            f"0x{index + 1:064x}",
            "s3://prompts/p.txt",
            MAX_TOKENS,
            PRICE_WEI,
            MAX_TOKENS * PRICE_WEI,
            renter.chain_time() + 3600,
        )
        host.claim_job(job_id)
        job_ids.append(job_id)
    return job_ids


def _settle(
    host: ChainClient, prover: BillingProver, scratch: Path, statements: list[BillingStatement]
) -> tuple[str, bytes]:
    bundle = prover.prove_batch(statements, scratch / "settle.proof")
    proof = read_proof_bytes(Path(bundle.proof_path))
    if len(statements) == 1:
        (s,) = statements
        return host.submit_result(s.job_id, s.result_hash, RESULT_URI, s.tokens, proof), proof
    submissions = [
        ResultSubmission(s.job_id, s.result_hash, RESULT_URI, s.tokens) for s in statements
    ]
    capacity = capacity_of(bundle)
    return host.submit_results(submissions, capacity, proof), proof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="End with one JSON object.")
    parser.add_argument("--repeats", type=int, default=5, help="Proofs timed per N (median).")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    figures = measure(args.repeats)
    baseline = figures[1]["gas_per_job"]
    print(f"{'N':>3} {'prove s/job':>12} {'gas/job':>10} {'verify gas/job':>15} {'vs N=1':>7}")
    for count, row in figures.items():
        print(
            f"{count:>3} {row['prove_s_per_job']:>12.4f} {row['gas_per_job']:>10.0f}"
            f" {row['verify_gas_per_job']:>15.0f} {row['gas_per_job'] / baseline:>7.3f}"
        )
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
        f", ezkl {metadata.version('ezkl')}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    str(count): {
                        "prove_s_per_job": round(row["prove_s_per_job"], 4),
                        "gas_per_job": round(row["gas_per_job"]),
                    }
                    for count, row in figures.items()
                }
            )
        )


if __name__ == "__main__":
    main()
