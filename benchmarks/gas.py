"""Gas used by each marketplace operation on our contracts (anvil devnet).

python -m benchmarks.gas [--json]

Gas is deterministic for given inputs, so one run is the measurement. Each ERC-20 figure is
printed beside its ETH baseline (the same operation paid in ETH), with their ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from importlib import metadata
from pathlib import Path

from web3 import HTTPProvider, Web3

from fabstir.chain import ETH, ChainClient, Devnet, Offer
from fabstir.proofs import BillingProver, BillingStatement, read_proof_bytes
from fabstir.settings import ANVIL_KEYS, ModelSpec

MODEL = ModelSpec(id="bench-model", uri="s3://models/bench.gguf", sha256="ab" * 32)
PRICE_WEI = 10**9
STABLE_PRICE = 2
MAX_TOKENS = 256
TOKENS = 100
OPERATIONS = ("post", "claim", "submit", "withdraw")


RESULT_HASH = "0x" + "22" * 32


def _proof(prover: BillingProver, chain: ChainClient, job_id: int, scratch: Path) -> bytes:
    job = chain.get_job(job_id)
    statement = BillingStatement(
        job_id=job_id,
        model_id=job.model_id,
        prompt_hash=job.prompt_hash,
        result_hash=RESULT_HASH,
        tokens=TOKENS,
        price_per_token_wei=job.price_per_token_wei,
    )
    return read_proof_bytes(Path(prover.prove(statement, scratch / "job.proof").proof_path))


def measure() -> dict[str, int]:
    """Run each operation once on a fresh devnet and return the gas each used.

    ``submit`` includes verifying the job's billing proof (see ``benchmarks.proofs``).
    """
    gas: dict[str, int] = {}
    scratch = Path(tempfile.mkdtemp(prefix="fabstir-gas-"))
    prover = BillingProver(scratch)
    with Devnet(models=[MODEL]) as deployment:
        w3 = Web3(HTTPProvider(deployment.rpc_url))
        host = ChainClient(deployment, ANVIL_KEYS[1])
        renter = ChainClient(deployment, ANVIL_KEYS[2])
        stable = host.token_address("USDC")
        tx = host.register(
            [Offer(MODEL.id, PRICE_WEI), Offer(MODEL.id, STABLE_PRICE, stable)],
            api_url="http://127.0.0.1:8000",
        )
        gas["register"] = host.gas_used(tx)
        for label, token, price in (("eth", ETH, PRICE_WEI), ("erc20", stable, STABLE_PRICE)):
            args = ("0x" + "11" * 32, "s3://prompts/p.txt", MAX_TOKENS, price, MAX_TOKENS * price)
            # A first job pays the one-off costs (token approval, first storage of counters)...
            warm = renter.post_job(MODEL.id, *args, host.chain_time() + 3600, payment_token=token)
            host.claim_job(warm)
            proof = _proof(prover, host, warm, scratch)
            host.submit_result(warm, RESULT_HASH, "s3://results/r.cbor", TOKENS, proof)
            host.withdraw(token)
            # ...so the second one measures what every later job costs.
            job_id = renter.post_job(MODEL.id, *args, host.chain_time() + 3600, payment_token=token)
            post_tx = w3.eth.get_block("latest")["transactions"][-1].to_0x_hex()
            gas[f"post_{label}"] = renter.gas_used(post_tx)
            gas[f"claim_{label}"] = host.gas_used(host.claim_job(job_id))
            gas[f"submit_{label}"] = host.gas_used(
                host.submit_result(
                    job_id,
                    RESULT_HASH,
                    "s3://results/r.cbor",
                    TOKENS,
                    _proof(prover, host, job_id, scratch),
                )
            )
            withdrawal = host.withdraw(token)
            assert withdrawal is not None
            gas[f"withdraw_{label}"] = host.gas_used(withdrawal.tx_hash)
    return gas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="End with one JSON object.")
    args = parser.parse_args()
    gas = measure()
    ratios = {op: round(gas[f"{op}_erc20"] / gas[f"{op}_eth"], 3) for op in OPERATIONS}
    print(f"{'operation':<10} {'ETH gas':>10} {'ERC-20 gas':>11} {'ratio':>6}")
    for op in OPERATIONS:
        print(f"{op:<10} {gas[op + '_eth']:>10} {gas[op + '_erc20']:>11} {ratios[op]:>6}")
    print(f"{'register':<10} {gas['register']:>10}  (stake + 2 offers)")
    if args.json:
        machine = {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "web3": metadata.version("web3"),
        }
        print(json.dumps({"gas": gas, "erc20_over_eth": ratios, "machine": machine}))


if __name__ == "__main__":
    main()
