"""EZKL proofs of jobs' billing statements, checked on chain before payment."""

from fabstir.proofs.circuit import BATCH_CAPACITIES, BillingStatement
from fabstir.proofs.delivery import VerifiedDelivery, verify_delivery
from fabstir.proofs.prover import BillingProver, capacity_of, read_proof_bytes

__all__ = [
    "BATCH_CAPACITIES",
    "BillingProver",
    "BillingStatement",
    "VerifiedDelivery",
    "capacity_of",
    "read_proof_bytes",
    "verify_delivery",
]
