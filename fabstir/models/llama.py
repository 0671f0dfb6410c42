"""Load llama.cpp models, and free them before the interpreter tears its modules down."""

from __future__ import annotations

import atexit
import weakref
from typing import Any

from fabstir.errors import DependencyMissing

_open_models: weakref.WeakSet[Any] = weakref.WeakSet()


def load_llama(model_path: str, **options: Any) -> Any:
    """Return a ``llama_cpp.Llama`` for ``model_path`` (quiet), closed at exit.

    Raises:
        DependencyMissing: llama-cpp-python is not installed.
    """
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise DependencyMissing(
            "llama-cpp-python is not installed: run scripts/bootstrap.sh (make test does)"
        ) from exc
    model = Llama(model_path=model_path, verbose=False, **options)
    _open_models.add(model)
    return model


@atexit.register
def _close_open_models() -> None:
    # Llama.__del__ fails during interpreter teardown, once llama_cpp's module globals are gone.
    for model in list(_open_models):
        model.close()
