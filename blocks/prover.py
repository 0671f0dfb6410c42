from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from blocks._clients import client_once
from fabstir.proofs import BillingProver
from fabstir.settings import Settings


class ProverBlock(Block):
    """The EZKL prover: circuit, keys and SRS on disk."""

    _block_type_name = "Fabstir Prover"

    work_dir: str = Field(description="Circuit, keys and proofs directory.")
    srs_path: str | None = Field(default=None, description="Ceremony SRS; unset = local dev SRS.")

    @classmethod
    def from_settings(cls, settings: Settings) -> ProverBlock:
        srs = settings.prover.srs_path
        return cls(work_dir=str(settings.prover.work_dir), srs_path=str(srs) if srs else None)

    def get_client(self) -> BillingProver:
        return client_once(
            "prover",
            self.model_dump_json(),
            lambda: BillingProver(
                Path(self.work_dir), Path(self.srs_path) if self.srs_path else None
            ),
        )
