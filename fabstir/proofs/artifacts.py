"""Build and cache the billing circuits' EZKL artifacts: settings, compiled circuit, keys.

``work_dir/circuits/<CIRCUIT_VERSION>-<capacity>-<key>/`` holds one circuit's ONNX graph,
settings, compiled circuit and keys; ``key`` hashes the graph, the run arguments, the EZKL version
and the SRS bytes, so a change to any of them builds a new directory instead of reusing stale
keys. A directory is built under a temporary name and renamed into place, so concurrent processes
never see half a cache: the first rename wins and the others discard their copy.

The SRS: without ``srs_path`` the development SRS packaged in ``fabstir/proofs/srs/`` is used. It
was made once by ``ezkl.gen_srs`` (``contracts/tools/generate_verifiers.py``) and is committed
because the committed verifier contracts embed keys derived from it; ``gen_srs`` is random, so a
fresh one would not match them. It is insecure: whoever made it could forge proofs. Production
passes a ceremony SRS file and deploys verifiers generated from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fabstir.errors import DependencyMissing, ProofError
from fabstir.proofs.circuit import BATCH_CAPACITIES, CIRCUIT_VERSION, build_billing_model

log = logging.getLogger(__name__)

CIRCUIT_LOGROWS = 8
"""2**8 rows; the 16-statement circuit uses 88 of them (the 1- and 4-statement ones fewer)."""

DEV_SRS_PATH = Path(__file__).parent / "srs" / f"dev-kzg{CIRCUIT_LOGROWS}.srs"

RUN_ARGS: dict[str, Any] = {
    "input_visibility": "public",
    "output_visibility": "public",
    "param_visibility": "fixed",
    "input_scale": 0,
    "param_scale": 0,
    "logrows": CIRCUIT_LOGROWS,
    "ignore_range_check_inputs_outputs": True,
}


def import_ezkl() -> ModuleType:
    """Import ezkl on first use.

    Raises:
        DependencyMissing: ezkl is not installed.
    """
    try:
        import ezkl
    except ImportError as exc:
        raise DependencyMissing("ezkl is not installed: pip install 'ezkl>=23.0.5,<24'") from exc
    return ezkl


@contextmanager
def translate_ezkl_errors(step: str, **context: Any) -> Iterator[None]:
    """Translate EZKL's RuntimeError (its only exception type) into ProofError."""
    try:
        yield
    except RuntimeError as exc:
        raise ProofError(
            f"ezkl {step} failed", code="ezkl_failed", step=step, reason=str(exc), **context
        ) from exc


@dataclass(frozen=True)
class CircuitArtifacts:
    """Paths of one cached circuit and the SRS its keys were made with."""

    directory: Path
    srs_path: Path
    capacity: int

    @property
    def model_path(self) -> Path:
        return self.directory / "model.onnx"

    @property
    def settings_path(self) -> Path:
        return self.directory / "settings.json"

    @property
    def compiled_path(self) -> Path:
        return self.directory / "model.compiled"

    @property
    def pk_path(self) -> Path:
        return self.directory / "pk.key"

    @property
    def vk_path(self) -> Path:
        return self.directory / "vk.key"

    def missing(self) -> list[str]:
        """Return the names of the files this directory should hold but does not."""
        paths = (
            self.model_path,
            self.settings_path,
            self.compiled_path,
            self.pk_path,
            self.vk_path,
        )
        return [path.name for path in paths if not path.is_file()]


def load_or_build_artifacts(
    work_dir: Path, srs_path: Path | None, capacity: int
) -> CircuitArtifacts:
    """Return the cached artifacts of the ``capacity``-statement circuit; build them on first use.

    ``srs_path`` None means the packaged development SRS (``DEV_SRS_PATH``).

    Raises:
        ValueError: ``capacity`` is not one of ``BATCH_CAPACITIES``.
        ProofError: the SRS file is missing, the cache is incomplete, or EZKL failed.
        DependencyMissing: ezkl or onnx is not installed.
    """
    if capacity not in BATCH_CAPACITIES:
        raise ValueError(f"capacity must be one of {BATCH_CAPACITIES}, got {capacity}")
    ezkl = import_ezkl()
    srs_path = _resolve_srs(srs_path)
    model_bytes = build_billing_model(capacity).SerializeToString(deterministic=True)
    cache_key = hashlib.sha256()
    for part in (
        CIRCUIT_VERSION,
        ezkl.__version__,
        json.dumps(RUN_ARGS, sort_keys=True),
        _file_sha256(srs_path),
    ):
        cache_key.update(part.encode() + b"\0")
    cache_key.update(model_bytes)
    name = f"{CIRCUIT_VERSION}-{capacity}-{cache_key.hexdigest()[:16]}"
    directory = work_dir / "circuits" / name
    artifacts = CircuitArtifacts(directory=directory, srs_path=srs_path, capacity=capacity)
    if directory.exists():
        log.debug("billing circuit cache hit", extra={"circuit_dir": str(directory)})
    else:
        _build_circuit(ezkl, model_bytes, artifacts)
    missing = artifacts.missing()
    if missing:
        raise ProofError(
            "billing circuit cache is incomplete; delete it to rebuild",
            code="proof_cache_corrupt",
            circuit_dir=str(directory),
            missing=missing,
        )
    return artifacts


def _build_circuit(ezkl: ModuleType, model_bytes: bytes, artifacts: CircuitArtifacts) -> None:
    started = time.perf_counter()
    artifacts.directory.parent.mkdir(parents=True, exist_ok=True)
    building = CircuitArtifacts(
        directory=Path(
            tempfile.mkdtemp(prefix=f".{artifacts.directory.name}-", dir=artifacts.directory.parent)
        ),
        srs_path=artifacts.srs_path,
        capacity=artifacts.capacity,
    )
    try:
        building.model_path.write_bytes(model_bytes)
        run_args = ezkl.PyRunArgs()
        for name, value in RUN_ARGS.items():
            setattr(run_args, name, value)
        with translate_ezkl_errors("gen_settings"):
            ezkl.gen_settings(
                str(building.model_path), str(building.settings_path), py_run_args=run_args
            )
        with translate_ezkl_errors("compile_circuit"):
            ezkl.compile_circuit(
                str(building.model_path),
                str(building.compiled_path),
                str(building.settings_path),
            )
        with translate_ezkl_errors("setup"):
            ezkl.setup(
                str(building.compiled_path),
                str(building.vk_path),
                str(building.pk_path),
                str(artifacts.srs_path),
            )
        building.directory.chmod(0o755)  # mkdtemp makes 0700
        try:
            building.directory.rename(artifacts.directory)
        except OSError:
            if not artifacts.directory.exists():
                raise
            log.info(
                "billing circuit built concurrently by another process; using theirs",
                extra={"circuit_dir": str(artifacts.directory)},
            )
            return
    finally:
        shutil.rmtree(building.directory, ignore_errors=True)
    log.info(
        "billing circuit keys generated",
        extra={
            "circuit_dir": str(artifacts.directory),
            "setup_s": round(time.perf_counter() - started, 3),
            "pk_bytes": artifacts.pk_path.stat().st_size,
        },
    )


def _resolve_srs(srs_path: Path | None) -> Path:
    if srs_path is None:
        log.warning(
            "using the packaged INSECURE development SRS: dev and tests only",
            extra={"srs_path": str(DEV_SRS_PATH)},
        )
        srs_path = DEV_SRS_PATH
    if not srs_path.is_file():
        raise ProofError("SRS file not found", code="srs_missing", srs_path=str(srs_path))
    return srs_path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
