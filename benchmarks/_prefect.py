"""A Prefect server of a benchmark's own, started as `fabstir-node run` starts one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fabstir.commands.run import SERVER_BATCHING
from fabstir.service import ProcessService
from fabstir.settings import EMBEDDING_MODEL_FILE, load_settings


def start_prefect_server(workdir: Path, port: int) -> ProcessService:
    """Point this process (Prefect and the node's settings) at ``workdir`` and a fresh Prefect
    server on SQLite listening on ``port``; return the running server, to stop when done."""
    os.environ.update(
        {
            "PREFECT_HOME": str(workdir / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "FABSTIR_HOME": str(workdir / "home"),
        }
    )
    os.environ.setdefault(
        "FABSTIR_CACHE__EMBEDDING_MODEL_PATH",
        str(Path(".fabstir/models", EMBEDDING_MODEL_FILE).resolve()),
    )
    os.environ.setdefault("FABSTIR_PROVER__WORK_DIR", str(Path(".fabstir/proofs").resolve()))
    server = ProcessService(
        [
            *(str(Path(sys.executable).with_name("prefect")), "server", "start", "--no-ui"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        log_path=workdir / "prefect-server.log",
        ready_url=f"http://127.0.0.1:{port}/api/health",
        env={**SERVER_BATCHING, **os.environ},
        niceness=load_settings().orchestration.server_niceness,
    )
    server.start()
    return server
