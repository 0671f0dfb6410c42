"""Chain access: contract artifacts, the local devnet, deployments, the client and the watcher."""

from fabstir.chain.client import ChainClient
from fabstir.chain.contracts import decode_revert, load_artifact, model_id_of
from fabstir.chain.deployment import Deployment, MarketTerms, deploy_contracts, deploy_token
from fabstir.chain.devnet import Devnet, anvil_binary
from fabstir.chain.records import (
    ETH,
    HostRecord,
    ModelRecord,
    Offer,
    Rating,
    ResultSubmission,
    SubmittedProof,
    Withdrawal,
)
from fabstir.chain.transactions import TxPolicy
from fabstir.chain.watcher import Eligibility, JobEvent, JobEventKind, JobWatcher

__all__ = [
    "ETH",
    "ChainClient",
    "Deployment",
    "Devnet",
    "Eligibility",
    "HostRecord",
    "JobEvent",
    "JobEventKind",
    "JobWatcher",
    "MarketTerms",
    "ModelRecord",
    "Offer",
    "Rating",
    "ResultSubmission",
    "SubmittedProof",
    "TxPolicy",
    "Withdrawal",
    "anvil_binary",
    "decode_revert",
    "deploy_contracts",
    "deploy_token",
    "load_artifact",
    "model_id_of",
]
