"""Create, idempotently, everything Prefect needs to run this host's jobs.

The work pool and one queue per GPU, one global concurrency limit per GPU (held by the infer
step), every deployment in ``prefect.yaml`` and every automation in ``deployments/automations/``
(one YAML file each; other areas add their own files there). Running it again changes nothing
that is already right, and updates what changed.

Automation files may use ``${zombie_window_s}``: the silence after which a run counts as dead,
rendered from ``FABSTIR_ORCHESTRATION__HEARTBEAT_S`` so the window always follows the heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from string import Template
from typing import Any

import yaml
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
)
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings
from prefect.workers.process import ProcessWorker

from fabstir.errors import ConfigError
from fabstir.settings import OrchestrationSettings

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AUTOMATIONS_DIR = Path(__file__).resolve().parent / "automations"
INFERENCE_FLOW = "inference-job"
# Heartbeats a run may miss before the zombie automation marks it Crashed: one late event is
# normal on a busy server, three in a row is a dead process.
MISSED_HEARTBEATS = 3


def gpu_queue_name(gpu: int) -> str:
    return f"gpu-{gpu}"


def bootstrap(
    orchestration: OrchestrationSettings,
    *,
    project_root: Path = PROJECT_ROOT,
    automations_dir: Path = AUTOMATIONS_DIR,
) -> None:
    """Create or update the pool, queues, GPU limits, deployments and automations.

    Raises:
        ConfigError: ``prefect.yaml`` has no inference-job deployment for the work pool, an
            automation file is invalid, or ``prefect deploy`` failed.
    """
    pools = pools_of(project_root / "prefect.yaml", orchestration.work_pool)
    ensure_pools(pools)
    ensure_gpu_queues(orchestration)
    ensure_gpu_limits(orchestration)
    deploy_all(project_root)
    apply_automations(automations_dir, heartbeat_s=orchestration.heartbeat_s)


def pools_of(prefect_yaml: Path, gpu_pool: str) -> list[str]:
    """Return the work pools ``prefect.yaml`` deploys to, checking that ``gpu_pool`` has the
    inference-job deployment named after it.

    Raises:
        ConfigError: it has no such deployment.
    """
    config = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8"))
    deployments = config.get("deployments") or []
    if not any(
        d.get("entrypoint") == "flows/inference_job.py:inference_job"
        and d.get("name") == gpu_pool
        and d.get("work_pool", {}).get("name") == gpu_pool
        for d in deployments
    ):
        raise ConfigError(
            f"prefect.yaml has no inference-job deployment {gpu_pool!r} on work pool {gpu_pool!r}",
            code="deployment_missing",
            path=str(prefect_yaml),
        )
    return sorted({d["work_pool"]["name"] for d in deployments if d.get("work_pool")})


def ensure_pools(pools: list[str]) -> None:
    """Create each work pool as a process pool, unless it exists."""
    with get_client(sync_client=True) as client:
        for pool in pools:
            try:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=pool,
                        type=ProcessWorker.type,
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )
                log.info("work pool created", extra={"pool": pool})
            except ObjectAlreadyExists:
                pass


def ensure_gpu_queues(orchestration: OrchestrationSettings) -> None:
    pool = orchestration.work_pool
    with get_client(sync_client=True) as client:
        for gpu in orchestration.gpus:
            name = gpu_queue_name(gpu)
            try:
                client.create_work_queue(
                    name,
                    work_pool_name=pool,
                    description=f"Runs for GPU {gpu} only.",
                    concurrency_limit=orchestration.jobs_per_worker,
                )
                log.info("work queue created", extra={"pool": pool, "queue": name})
            except ObjectAlreadyExists:
                pass


def ensure_gpu_limits(orchestration: OrchestrationSettings) -> None:
    limit = orchestration.infer_slots_per_gpu
    with get_client(sync_client=True) as client:
        for gpu in orchestration.gpus:
            name = orchestration.gpu_limit_name(gpu)
            try:
                existing = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )
                log.info("GPU limit created", extra={"limit_name": name, "limit": limit})
                continue
            if existing.limit != limit or not existing.active:
                client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(limit=limit, active=True)
                )


def deploy_all(project_root: Path) -> None:
    """Apply every deployment of ``prefect.yaml`` (`prefect deploy --all`)."""
    prefect = Path(sys.executable).with_name("prefect")
    result = subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all"],
        cwd=project_root,
        # The server this process talks to, even when it was set in-process (a test harness).
        env={**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ConfigError(
            "prefect deploy failed: " + (result.stdout + result.stderr)[-2000:],
            code="deploy_failed",
        )


_BLOCK_REFERENCE = re.compile(r"^\{\{\s*prefect\.blocks\.([\w-]+)\.([\w-]+)\s*\}\}$")


class BlockMissing(LookupError):
    """An automation refers to a block document that does not exist (yet)."""


def _resolve_blocks(value: Any, client: Any) -> Any:
    """Replace each ``{{ prefect.blocks.<type-slug>.<name> }}`` string with that block's id."""
    if isinstance(value, dict):
        return {key: _resolve_blocks(item, client) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_blocks(item, client) for item in value]
    if isinstance(value, str) and (match := _BLOCK_REFERENCE.match(value)):
        slug, name = match.groups()
        try:
            return str(client.read_block_document_by_name(name, block_type_slug=slug).id)
        except ObjectNotFound as exc:
            raise BlockMissing(f"{slug}/{name}") from exc
    return value


def load_automation(path: Path, client: Any, *, zombie_window_s: int) -> Automation:
    """Read one automation definition (the fields of ``prefect.automations.Automation``),
    with ``${zombie_window_s}`` rendered and block references resolved to block ids.

    Raises:
        ConfigError: the file uses another ``$`` variable, is not valid YAML or not a valid
            automation.
        BlockMissing: it refers to a block that does not exist.
    """
    template = Template(path.read_text(encoding="utf-8"))
    try:
        text = template.substitute(zombie_window_s=zombie_window_s)
    except (KeyError, ValueError) as exc:
        raise ConfigError(
            f"invalid automation file: unknown variable {exc} (only ${{zombie_window_s}}; "
            "write $$ for a literal $)",
            code="automation_invalid",
            path=str(path),
        ) from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"invalid automation file: {exc}", code="automation_invalid", path=str(path)
        ) from exc
    if isinstance(data, dict):
        data["actions"] = _resolve_blocks(data.get("actions"), client)
    try:
        return Automation.model_validate(data)
    except ValueError as exc:
        raise ConfigError(
            f"invalid automation file: {exc}", code="automation_invalid", path=str(path)
        ) from exc


def apply_automations(folder: Path, *, heartbeat_s: int) -> list[str]:
    """Create every automation in ``folder`` (``*.yaml``), replacing any of the same name;
    return the names applied. Runs silent for ``MISSED_HEARTBEATS`` heartbeat periods of
    ``heartbeat_s`` count as dead.

    An automation whose block (e.g. the alerts webhook) is not configured yet is skipped with
    a warning; the next bootstrap after the block is saved applies it.

    Raises:
        ValueError: ``heartbeat_s`` is not a positive number of seconds.
        ConfigError: a file is invalid, or two files share a name.
    """
    if isinstance(heartbeat_s, bool) or not isinstance(heartbeat_s, int) or heartbeat_s < 1:
        raise ValueError(f"heartbeat_s must be a whole number of seconds >= 1, not {heartbeat_s!r}")
    zombie_window_s = MISSED_HEARTBEATS * heartbeat_s
    automations = []
    with get_client(sync_client=True) as client:
        for path in sorted(folder.glob("*.yaml")):
            try:
                automations.append(load_automation(path, client, zombie_window_s=zombie_window_s))
            except BlockMissing as missing:
                log.warning(
                    "automation skipped: its block does not exist yet",
                    extra={"path": str(path), "block": str(missing)},
                )
    names = [automation.name for automation in automations]
    if len(set(names)) != len(names):
        raise ConfigError("two automation files share a name", code="automation_invalid")
    for automation in automations:
        with contextlib.suppress(ValueError):  # raised when none has that name yet
            Automation.read(name=automation.name).delete()
        automation.create()
        log.info("automation applied", extra={"automation": automation.name})
    return names
