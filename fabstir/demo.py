"""`fabstir-node demo`: a renter posts three jobs on a fresh devnet and the host runs each flow."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from fabstir.settings import ANVIL_KEYS, Settings

DEMO_PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Tell me the capital of France.",  # a paraphrase of the first: answered from the cache
)
DEMO_MAX_TOKENS = 64
DEADLINE_S = 3600


def use_local_prefect(settings: Settings) -> None:
    """Point Prefect at a project-local home unless the operator configured a server."""
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "fabstir")


def run_demo(settings: Settings, *, as_json: bool) -> int:
    """Run the demo and print one row per job (or one JSON object)."""
    use_local_prefect(settings)
    # Each demo starts from an empty answer cache, so the paraphrase is the only cache hit.
    run_dir = settings.home / "demo-runs" / time.strftime("%Y%m%d-%H%M%S")
    os.environ["FABSTIR_CACHE__URI"] = str(run_dir / "cache")
    if as_json:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from fabstir.chain import ChainClient, Devnet
    from fabstir.pipeline import proof_path_for
    from fabstir.proofs import BillingProver, BillingStatement
    from fabstir.storage import ObjectStore, decode_record, get_verified, put_content
    from flows.inference_job import inference_job

    assert settings.storage.url is not None and settings.prover.work_dir is not None
    if not settings.host.models:
        raise SystemExit("no model configured: run `make demo` to install the demo model")
    model_name = settings.host.models[0].id
    price_wei = settings.host.price_per_token_wei
    store = ObjectStore(settings.storage.url)
    prover = BillingProver(Path(settings.prover.work_dir), settings.prover.srs_path)
    rows: list[dict[str, Any]] = []
    with Devnet(deployment_file=settings.chain.deployment_file) as deployment:
        host = ChainClient(
            deployment.rpc_url, deployment, settings.chain.host_private_key.get_secret_value()
        )
        renter = ChainClient(deployment.rpc_url, deployment, ANVIL_KEYS[2])
        host.register([spec.id for spec in settings.host.models], price_wei)
        for prompt in DEMO_PROMPTS:
            prompt_uri, prompt_hash = put_content(store, prompt.encode(), "prompts")
            job_id = renter.post_job(
                model_name,
                prompt_hash,
                prompt_uri,
                DEMO_MAX_TOKENS,
                price_wei,
                DEMO_MAX_TOKENS * price_wei,
                int(time.time()) + DEADLINE_S,
            )
            receipt = inference_job(job_id)
            # Check the delivery as a renter would: stored bytes must hash to the chain record.
            record = decode_record(get_verified(store, receipt.result_uri, receipt.result_hash))
            statement = BillingStatement(
                job_id=job_id,
                model_sha256="0x" + record.model_sha256,
                prompt_hash=record.prompt_hash,
                result_hash=receipt.result_hash,
                tokens=receipt.tokens,
                price_per_token_wei=renter.get_job(job_id).price_per_token_wei,
            )
            rows.append(
                {
                    "job_id": job_id,
                    "cache_hit": record.cache_hit,
                    "tokens": receipt.tokens,
                    "paid_to_host": receipt.paid_to_host_wei,
                    "fee": receipt.fee_wei,
                    "refund": receipt.refund_wei,
                    "settle_tx": receipt.settle_tx,
                    "proof_verified": prover.verify(
                        proof_path_for(Path(settings.prover.work_dir), job_id), statement
                    ),
                    "result_uri": receipt.result_uri,
                    "answer": record.output,
                }
            )
    if as_json:
        print(json.dumps({"jobs": rows}))
    else:
        print_table(rows, settings)
    return 0


def print_table(rows: list[dict[str, Any]], settings: Settings) -> None:
    """Print one two-column table per job, which stays readable in a narrow terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for row in rows:
        table = Table(title=f"job {row['job_id']}", show_header=False, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("cache hit", "yes" if row["cache_hit"] else "no")
        table.add_row("tokens", str(row["tokens"]))
        table.add_row("paid to host", f"{row['paid_to_host']} wei")
        table.add_row("fee", f"{row['fee']} wei")
        table.add_row("refund", f"{row['refund']} wei")
        table.add_row("settle tx", row["settle_tx"])
        table.add_row("proof verified", "yes" if row["proof_verified"] else "NO")
        table.add_row("result URI", row["result_uri"])
        table.add_row("answer", " ".join(row["answer"].split()[:12]) + " …")
        console.print(table)
    console.print(
        "See these runs in the Prefect UI: "
        f"PREFECT_HOME={os.environ['PREFECT_HOME']} .venv/bin/prefect server start, "
        "then open http://127.0.0.1:4200/runs"
    )
