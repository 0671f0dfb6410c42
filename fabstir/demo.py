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
    "what's the capital city of France",  # a paraphrase of the first: answered from the cache
)
DEMO_MAX_TOKENS = 48
DEADLINE_S = 3600


def use_local_prefect(settings: Settings) -> None:
    """Point Prefect at a project-local home unless the operator configured a server."""
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "fabstir")


def run_demo(settings: Settings, *, as_json: bool) -> int:
    """Run the demo and print one row per job (or one JSON object)."""
    use_local_prefect(settings)
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
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Fabstir demo: three jobs on a local devnet")
    for column in (
        "job",
        "cache hit",
        "tokens",
        "paid to host (wei)",
        "fee (wei)",
        "refund (wei)",
        "settle tx",
        "proof verified",
        "result URI",
        "answer",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            str(row["job_id"]),
            "yes" if row["cache_hit"] else "no",
            str(row["tokens"]),
            str(row["paid_to_host"]),
            str(row["fee"]),
            str(row["refund"]),
            row["settle_tx"][:18] + "…",
            "yes" if row["proof_verified"] else "NO",
            row["result_uri"],
            " ".join(row["answer"].split()[:8]),
        )
    console = Console()
    console.print(table)
    console.print(
        "See the runs in the Prefect UI: "
        f"PREFECT_HOME={os.environ['PREFECT_HOME']} .venv/bin/prefect server start, "
        "then open http://127.0.0.1:4200/runs"
    )
