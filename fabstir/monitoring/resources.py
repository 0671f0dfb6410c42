"""What this machine has left: CPU, RAM, the model cache's disk and each GPU (through NVML).

A machine without a GPU, or without NVIDIA's driver, reports no GPUs and says why; nothing is
estimated or faked. Capacity management reads the same samples: the node stops claiming new jobs
when RAM or GPU memory headroom falls below the configured floor.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabstir.errors import JobRejected
from fabstir.settings import MonitoringSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuSample:
    """One GPU as NVML reports it."""

    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_percent: float
    temperature_c: float

    @property
    def memory_free_bytes(self) -> int:
        return self.memory_total_bytes - self.memory_used_bytes


@dataclass(frozen=True)
class ResourceSample:
    """One reading of the machine. ``gpus`` is empty when none is present; ``gpu_absent_reason``
    then says why (no driver, no device)."""

    taken_at: float
    cpu_percent: float
    memory_total_bytes: int
    memory_available_bytes: int
    disk_path: str
    disk_total_bytes: int
    disk_free_bytes: int
    gpus: tuple[GpuSample, ...] = field(default_factory=tuple)
    gpu_absent_reason: str | None = None


def read_gpus() -> tuple[tuple[GpuSample, ...], str | None]:
    """Return every GPU NVML sees, or no GPU and the reason NVML gave."""
    try:
        import pynvml
    except ImportError:
        return (), "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return (), f"NVML unavailable: {exc}"
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                GpuSample(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_total_bytes=int(memory.total),
                    memory_used_bytes=int(memory.used),
                    utilization_percent=float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    temperature_c=float(
                        pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
                    ),
                )
            )
    except pynvml.NVMLError as exc:
        return (), f"NVML query failed: {exc}"
    finally:
        pynvml.nvmlShutdown()
    if not gpus:
        return (), "NVML reports no GPU"
    return tuple(gpus), None


def sample_resources(disk_path: Path) -> ResourceSample:
    """Read CPU, RAM, the disk holding ``disk_path`` (the model cache) and the GPUs now."""
    import psutil

    existing = disk_path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the cache directory may not be created yet
    disk = shutil.disk_usage(existing)
    memory = psutil.virtual_memory()
    gpus, reason = read_gpus()
    return ResourceSample(
        taken_at=time.time(),
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        memory_total_bytes=int(memory.total),
        memory_available_bytes=int(memory.available),
        disk_path=str(disk_path),
        disk_total_bytes=int(disk.total),
        disk_free_bytes=int(disk.free),
        gpus=gpus,
        gpu_absent_reason=reason,
    )


def capacity_problems(sample: ResourceSample, settings: MonitoringSettings) -> list[str]:
    """Return why the node must not take another job now (empty when it may)."""
    problems = []
    if sample.memory_available_bytes < settings.min_free_memory_bytes:
        problems.append(
            f"available memory {sample.memory_available_bytes} B is below the floor of "
            f"{settings.min_free_memory_bytes} B"
        )
    # A job needs one GPU with room; a machine without GPUs runs on the CPU and is not held back.
    if sample.gpus and all(
        gpu.memory_free_bytes < settings.min_free_gpu_memory_bytes for gpu in sample.gpus
    ):
        most_free = max(gpu.memory_free_bytes for gpu in sample.gpus)
        problems.append(
            f"most free GPU memory {most_free} B is below the floor of "
            f"{settings.min_free_gpu_memory_bytes} B"
        )
    return problems


def ensure_capacity(sample: ResourceSample, settings: MonitoringSettings, job_id: int) -> None:
    """Refuse a new job when the machine lacks headroom.

    Raises:
        JobRejected: RAM or GPU memory is below its floor (``code="no_capacity"``).
    """
    problems = capacity_problems(sample, settings)
    if problems:
        log.warning("not claiming: no capacity", extra={"job_id": job_id, "problems": problems})
        raise JobRejected(
            "no capacity for another job: " + "; ".join(problems),
            code="no_capacity",
            job_id=job_id,
        )


class CapacityGuard:
    """The claim step's capacity check: samples the machine and refuses a job without headroom."""

    def __init__(self, settings: MonitoringSettings, disk_path: Path) -> None:
        self._settings = settings
        self._disk_path = disk_path

    def check(self, job_id: int) -> None:
        """Raise ``JobRejected(code="no_capacity")`` when RAM or GPU memory is below its floor."""
        ensure_capacity(sample_resources(self._disk_path), self._settings, job_id)
