"""One Prefect Block per external system; each builds its core client once per process."""

from blocks._clients import current_settings, job_streams
from blocks.cache import CacheBlock
from blocks.chain import ChainBlock
from blocks.engine import EngineBlock
from blocks.prover import ProverBlock
from blocks.storage import StorageBlock

__all__ = [
    "CacheBlock",
    "ChainBlock",
    "EngineBlock",
    "ProverBlock",
    "StorageBlock",
    "current_settings",
    "job_streams",
]
