"""`fabstir-node demo`: a renter posts three jobs on a fresh devnet and the host runs each flow."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from fabstir.chain.devnet import STABLE_SYMBOL
from fabstir.settings import ANVIL_KEYS, Settings

log = logging.getLogger(__name__)

DEMO_PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Tell me the capital of France.",  # a paraphrase of the first: answered from the cache
)
# The second job pays in the devnet's stable-coin, the others in ETH.
DEMO_CURRENCIES = ("ETH", STABLE_SYMBOL, "ETH")
DEMO_STABLE_PRICE = 2  # USDC base units (6 decimals) per output token
DEMO_MAX_TOKENS = 64
DEADLINE_S = 3600


def use_local_prefect(settings: Settings) -> None:
    """Point Prefect at a project-local home unless the operator configured a server."""
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "fabstir")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def run_demo(settings: Settings, *, as_json: bool) -> int:
    """Run the demo and print one row per job (or one JSON object)."""
    use_local_prefect(settings)
    # Each demo starts from an empty answer cache, so the paraphrase is the only cache hit.
    run_dir = settings.home / "demo-runs" / time.strftime("%Y%m%d-%H%M%S")
    os.environ["FABSTIR_CACHE__URI"] = str(run_dir / "cache")
    # The demo shows each job's own settlement, whatever batch size the operator configured.
    os.environ["FABSTIR_SETTLEMENT__BATCH_SIZE"] = "1"
    if as_json:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from fabstir.chain import ChainClient, Devnet, Offer
    from fabstir.client import RenterClient
    from fabstir.proofs import BillingProver
    from fabstir.storage import ObjectStore, put_content
    from flows.inference_job import inference_job

    assert settings.storage.url is not None and settings.prover.work_dir is not None
    if not settings.host.models:
        raise SystemExit("no model configured: run `make demo` to install the demo model")
    model_name = settings.host.models[0].id
    price_wei = settings.host.price_per_token_wei
    store = ObjectStore(settings.storage.url)
    prover = BillingProver(Path(settings.prover.work_dir), settings.prover.srs_path)
    rows: list[dict[str, Any]] = []
    with Devnet(
        deployment_file=settings.chain.deployment_file, models=settings.host.models
    ) as deployment:
        host = ChainClient(deployment, settings.chain.host_private_key.get_secret_value())
        renter = RenterClient(deployment, ANVIL_KEYS[2], prover=prover)
        stable = host.token_address(STABLE_SYMBOL)
        stable_price = settings.host.token_prices.get(STABLE_SYMBOL, DEMO_STABLE_PRICE)
        served = pull_models(settings)
        offers = [Offer(name, price_wei) for name in served]
        offers += [Offer(name, stable_price, stable) for name in served]
        # Registering stakes the registry's minimum of the staking token (FAB on the devnet).
        host.register(offers, api_url=settings.host.public_url, region=settings.host.region)
        for prompt, currency in zip(DEMO_PROMPTS, DEMO_CURRENCIES, strict=True):
            prompt_uri, _ = put_content(store, prompt.encode(), "prompts")
            (offer,) = renter.find_hosts(model_name, token=currency)
            job_id = renter.post_job(
                offer,
                prompt.encode(),
                max_tokens=DEMO_MAX_TOKENS,
                ttl_s=DEADLINE_S,
                prompt_uri=prompt_uri,
            )
            receipt = inference_job(job_id)
            # Check the delivery as a renter would: the stored bytes against the chain's
            # result hash, and the proof the settlement carried against the job's record.
            record = renter.read_result(store, job_id).record
            rows.append(
                {
                    "job_id": job_id,
                    "currency": currency,
                    "cache_hit": record.cache_hit,
                    "tokens": receipt.tokens,
                    "paid_to_host": receipt.paid_to_host_wei,
                    "fee": receipt.fee_wei,
                    "refund": receipt.refund_wei,
                    "settle_tx": receipt.settle_tx,
                    "proof_verified": True,
                    "result_uri": receipt.result_uri,
                    "answer": record.output,
                }
            )
        # Settlement only credits earnings; the host withdraws them (pull payments).
        withdrawn = {
            currency: 0 if w is None else w.amount
            for currency, w in (
                ("ETH", host.withdraw()),
                (STABLE_SYMBOL, host.withdraw(stable)),
            )
        }
        report = write_report(settings, host)
    if as_json:
        print(json.dumps({"jobs": rows, "withdrawn": withdrawn, "report": report}))
    else:
        print_table(rows, settings)
        print(f"withdrawn by the host: {withdrawn}")
        print("QA report: " + "\n  ".join(f"{name}: {uri}" for name, uri in report.items()))
    return 0


def write_report(settings: Settings, host: Any) -> dict[str, str]:
    """Write the QA report of the last day (HTML, PNG plots, JSON); return their URIs by name."""
    from fabstir.monitoring import make_report, read_ratings, summarize_ratings, token_decimals

    output = make_report(
        settings,
        now=time.time(),
        days=1,
        ratings=summarize_ratings(read_ratings(host, host.address)),
        token_decimals=token_decimals(host),
    )
    return output.uris


def pull_models(settings: Settings) -> list[str]:
    """Pull each served model through the chain's ModelRegistry, with a progress bar.

    Returns the models whose files verify: the only ones the host advertises.
    """
    from blocks import EngineBlock
    from fabstir.models import to_model_id
    from fabstir.models.progress import download_progress

    manager = EngineBlock.from_settings(settings).get_catalog()
    for name in manager.names:
        record = manager.resolve(to_model_id(name))
        with download_progress(f"pull {name}") as progress:
            manager.fetch(record, progress)
    statuses = manager.self_check()
    for status in statuses:
        if not status.ok:
            log.warning("not advertising %s: %s", status.name, status.problem)
    return [status.name for status in statuses if status.ok]


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
        unit = "wei" if row["currency"] == "ETH" else f"{row['currency']} base units"
        table.add_row("paid to host", f"{row['paid_to_host']} {unit}")
        table.add_row("fee", f"{row['fee']} {unit}")
        table.add_row("refund", f"{row['refund']} {unit}")
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
