"""Build and cache the billing circuit's EZKL artifacts: SRS, settings, compiled circuit, keys.

``work_dir/circuits/<CIRCUIT_VERSION>-<key>/`` holds the ONNX graph, settings, compiled circuit and
keys; ``key`` hashes the graph, the run arguments, the EZKL version and the SRS bytes, so a change
to any of them builds a new directory instead of reusing stale keys. A directory is built under a
temporary name and renamed into place, so concurrent processes never see half a cache: the first
rename wins and the others discard their copy. The dev SRS is created the same way (``os.link``
never replaces), so racing processes all end up on one SRS.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
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
from fabstir.proofs.circuit import CIRCUIT_VERSION, build_billing_model

log = logging.getLogger(__name__)

CIRCUIT_LOGROWS = 12
"""2**12 rows; the Poseidon commitment of the 60 input limbs uses about 2,460 of them."""

RUN_ARGS: dict[str, Any] = {
    "input_visibility": "hashed",
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


def load_or_build_artifacts(work_dir: Path, srs_path: Path | None) -> CircuitArtifacts:
    """Return the cached circuit artifacts for this SRS, building them on first use.

    ``srs_path`` None means a development SRS generated once under ``work_dir/srs``.

    Raises:
        ProofError: the SRS file is missing, the cache is incomplete, or EZKL failed.
        DependencyMissing: ezkl or onnx is not installed.
    """
    ezkl = import_ezkl()
    srs_path = _resolve_srs(ezkl, work_dir, srs_path)
    model_bytes = build_billing_model().SerializeToString(deterministic=True)
    cache_key = hashlib.sha256()
    for part in (
        CIRCUIT_VERSION,
        ezkl.__version__,
        json.dumps(RUN_ARGS, sort_keys=True),
        _file_sha256(srs_path),
    ):
        cache_key.update(part.encode() + b"\0")
    cache_key.update(model_bytes)
    directory = work_dir / "circuits" / f"{CIRCUIT_VERSION}-{cache_key.hexdigest()[:16]}"
    artifacts = CircuitArtifacts(directory=directory, srs_path=srs_path)
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


def _resolve_srs(ezkl: ModuleType, work_dir: Path, srs_path: Path | None) -> Path:
    if srs_path is None:
        return _dev_srs(ezkl, work_dir)
    if not srs_path.is_file():
        raise ProofError("SRS file not found", code="srs_missing", srs_path=str(srs_path))
    return srs_path


def _dev_srs(ezkl: ModuleType, work_dir: Path) -> Path:
    """Return the development SRS in ``work_dir``, generating it on first use."""
    dev_srs_path = work_dir / "srs" / f"dev-kzg{CIRCUIT_LOGROWS}.srs"
    if not dev_srs_path.exists():
        dev_srs_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{dev_srs_path.name}-", dir=dev_srs_path.parent
        )
        os.close(descriptor)
        try:
            with translate_ezkl_errors("gen_srs"):
                ezkl.gen_srs(temporary, CIRCUIT_LOGROWS)
            os.chmod(temporary, 0o644)  # mkstemp makes 0600
            # link() never replaces, so if another process won the race everyone uses its SRS.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, dev_srs_path)
        finally:
            Path(temporary).unlink(missing_ok=True)
    log.warning(
        "using an INSECURE development SRS made by ezkl.gen_srs: whoever made it can forge "
        "proofs; dev and tests only",
        extra={"srs_path": str(dev_srs_path)},
    )
    return dev_srs_path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
