"""Where a model id points: the storage URI and SHA-256 a registry records for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fabstir.chain.contracts import model_id_of
from fabstir.errors import JobRejected
from fabstir.settings import ModelSpec

if TYPE_CHECKING:
    from fabstir.chain import ChainClient


@dataclass(frozen=True)
class ModelRecord:
    """One registry entry: a model's on-chain id, name, the bytes it must be and where they are.

    ``base_id`` is set for a LoRA adapter: the on-chain id of the model it applies to.
    """

    id: str
    name: str
    sha256: str
    uri: str
    active: bool = True
    base_id: str | None = None


class ModelRegistryReader(Protocol):
    """Read-only view of a model registry (on chain, or from settings on a devnet-free node)."""

    def model(self, model_id: str) -> ModelRecord:
        """Return the record of ``model_id`` (0x on-chain id).

        Raises:
            JobRejected: the registry has no such model (``code="unknown_model"``).
        """
        ...


class SettingsModelRegistry:
    """A registry read from the host's settings: each ``ModelSpec`` is one active model."""

    def __init__(self, specs: Sequence[ModelSpec]) -> None:
        names = {spec.id for spec in specs}
        for spec in specs:
            if spec.base is not None and spec.base not in names:
                raise ValueError(f"model {spec.id!r} names an unknown base model {spec.base!r}")
        self._records = {
            model_id_of(spec.id): ModelRecord(
                id=model_id_of(spec.id),
                name=spec.id,
                sha256=spec.sha256,
                uri=spec.uri,
                base_id=None if spec.base is None else model_id_of(spec.base),
            )
            for spec in specs
        }

    def model(self, model_id: str) -> ModelRecord:
        record = self._records.get(model_id.lower())
        if record is None:
            raise JobRejected("model not in the registry", code="unknown_model", model_id=model_id)
        return record


class ChainModelRegistry:
    """The on-chain ModelRegistry, read through the node's chain client."""

    def __init__(self, chain: ChainClient) -> None:
        self._chain = chain

    def model(self, model_id: str) -> ModelRecord:
        entry = self._chain.get_model(model_id)
        return ModelRecord(
            id=entry.model_id.lower(),
            name=entry.name,
            sha256=entry.sha256,
            uri=entry.uri,
            active=entry.active,
            base_id=entry.base_model_id,
        )
