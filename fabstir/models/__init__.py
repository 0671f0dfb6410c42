"""Model files this host serves and the llama.cpp engine that runs them."""

from fabstir.models.catalog import ModelCatalog, file_sha256
from fabstir.models.engine import EnginePool, LlamaEngine

__all__ = ["EnginePool", "LlamaEngine", "ModelCatalog", "file_sha256"]
