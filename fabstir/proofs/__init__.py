"""EZKL proofs that bind a job's billing statement and its billed-amount arithmetic."""

from fabstir.proofs.circuit import BillingStatement
from fabstir.proofs.prover import BillingProver

__all__ = ["BillingProver", "BillingStatement"]
