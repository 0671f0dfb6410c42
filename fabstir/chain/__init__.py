"""Chain access: contract artifacts, the local devnet, deployments and the node's chain client."""

from fabstir.chain.client import ChainClient
from fabstir.chain.contracts import decode_revert, load_artifact, model_id_of
from fabstir.chain.deployment import Deployment, deploy_contracts
from fabstir.chain.devnet import Devnet, anvil_binary

__all__ = [
    "ChainClient",
    "Deployment",
    "Devnet",
    "anvil_binary",
    "decode_revert",
    "deploy_contracts",
    "load_artifact",
    "model_id_of",
]
