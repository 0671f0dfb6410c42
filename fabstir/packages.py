"""Packages installed only for their files (model weights), whose own dependencies are absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fabstir.errors import DependencyMissing


def data_package_dir(module: str, distribution: str) -> Path:
    """Locate the directory of package ``module`` without importing it (importing would fail).

    Raises:
        DependencyMissing: the package is not installed.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyMissing(
            f"{distribution} is not installed: run scripts/bootstrap.sh "
            f"(or pip install --no-deps {distribution})",
            package=distribution,
        )
    return Path(next(iter(spec.submodule_search_locations)))
