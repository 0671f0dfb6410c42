"""The operator-facing summary of one settled job (rendered as a Prefect markdown artifact)."""

from __future__ import annotations

from fabstir.domain import (
    ZERO_ADDRESS,
    ClaimedJob,
    InferenceResult,
    ProofBundle,
    Receipt,
    SettlementQueued,
)


def _tx(tx_hash: str | None, explorer_tx_url: str | None) -> str:
    if tx_hash is None:
        return "(an earlier run)"
    if explorer_tx_url is None:
        return f"`{tx_hash}`"
    return f"[`{tx_hash}`]({explorer_tx_url.format(tx=tx_hash)})"


def _proof(proof: ProofBundle | None) -> str:
    if proof is None:
        return "(an earlier run)"
    return f"`{proof.proof_path}` ({'verified' if proof.verified else 'NOT verified'})"


def job_summary_markdown(
    claimed: ClaimedJob,
    result: InferenceResult,
    proof: ProofBundle | None,
    receipt: Receipt,
    explorer_tx_url: str | None = None,
) -> str:
    """Render what a job ran on, what it cost and where its records are, as a markdown table."""
    job = claimed.job
    unit = "wei" if receipt.payment_token == ZERO_ADDRESS else f"units of {receipt.payment_token}"
    rows = [
        ("model", f"`{claimed.model_name}`"),
        ("cache hit", "yes" if result.cache_hit else "no"),
        ("tokens", f"{receipt.tokens} of {job.max_tokens} (prompt {result.prompt_tokens})"),
        ("paid to host", f"{receipt.paid_to_host_wei} {unit}"),
        ("protocol fee", f"{receipt.fee_wei} {unit}"),
        ("refund to renter", f"{receipt.refund_wei} {unit}"),
        ("claim tx", _tx(claimed.claim_tx, explorer_tx_url)),
        ("settle tx", _tx(receipt.settle_tx, explorer_tx_url)),
        ("proof", _proof(proof)),
        ("result", f"`{receipt.result_uri}` (sha256 `{receipt.result_hash}`)"),
    ]
    lines = [f"# Job {job.job_id}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def queued_summary_markdown(claimed: ClaimedJob, queued: SettlementQueued) -> str:
    """Render a job whose settlement waits for a batch: its result, and when it settles at the
    latest (chain time)."""
    rows = [
        ("model", f"`{claimed.model_name}`"),
        ("tokens", f"{queued.tokens} of {claimed.job.max_tokens}"),
        ("settlement", f"queued for batch settlement (due by chain time {queued.settle_by})"),
        ("result", f"`{queued.result_uri}` (sha256 `{queued.result_hash}`)"),
    ]
    lines = [f"# Job {queued.job_id}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"
