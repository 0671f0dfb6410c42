"""Models this host serves: registry lookups, verified downloads, disk cache, llama.cpp engine."""

from fabstir.models.disk import CachedModel, ModelDiskCache
from fabstir.models.download import download_verified, file_sha256
from fabstir.models.engine import EnginePool, LlamaEngine
from fabstir.models.manager import ModelManager, ModelStatus, to_model_id
from fabstir.models.registry import (
    ChainModelRegistry,
    ModelRecord,
    ModelRegistryReader,
    SettingsModelRegistry,
)
from fabstir.models.sampling import SamplingParams
from fabstir.models.scheduler import Generation, TokenPiece
from fabstir.models.updates import UpdatePoller

__all__ = [
    "CachedModel",
    "ChainModelRegistry",
    "EnginePool",
    "Generation",
    "LlamaEngine",
    "ModelDiskCache",
    "ModelManager",
    "ModelRecord",
    "ModelRegistryReader",
    "ModelStatus",
    "SamplingParams",
    "SettingsModelRegistry",
    "TokenPiece",
    "UpdatePoller",
    "download_verified",
    "file_sha256",
    "to_model_id",
]
