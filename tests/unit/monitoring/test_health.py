"""Each readiness and liveness check, failing for each of its reasons (chain: integration)."""

from __future__ import annotations

import http.server
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabstir.models import ModelStatus
from fabstir.monitoring import (
    GpuSample,
    Health,
    Heartbeat,
    ResourceSample,
    check_capacity,
    check_liveness,
    check_models,
    check_prefect,
    check_storage,
)
from fabstir.monitoring.health import failed, passed
from fabstir.settings import MonitoringSettings
from fabstir.storage import ObjectStore
from tests.support.loopback import serving


def sample(memory_available: int = 8 * 2**30, gpus: tuple[GpuSample, ...] = ()) -> ResourceSample:
    return ResourceSample(
        taken_at=0,
        cpu_percent=5,
        memory_total_bytes=16 * 2**30,
        memory_available_bytes=memory_available,
        disk_path="/",
        disk_total_bytes=100,
        disk_free_bytes=50,
        gpus=gpus,
        gpu_absent_reason=None if gpus else "NVML unavailable",
    )


def gpu(free: int) -> GpuSample:
    return GpuSample(0, "test card", 24 * 2**30, 24 * 2**30 - free, 50.0, 60.0)


def test_liveness_needs_a_recent_heartbeat() -> None:
    assert check_liveness([Heartbeat(100, "a")], now=120, interval_s=10).ok
    stale = check_liveness([Heartbeat(100, "a")], now=131, interval_s=10)
    assert stale == failed("live", "last heartbeat 31 s ago")
    assert "no heartbeat" in str(check_liveness([], now=0, interval_s=10).reason)


def test_models_need_one_usable_model() -> None:
    good = ModelStatus("m", "0x01", "ab" * 32, ok=True)
    bad = ModelStatus("n", "0x02", None, ok=False, problem="not downloaded")
    assert check_models([bad, good]).ok
    assert check_models([bad]) == failed(
        "model_loaded", "no served model is usable (n: not downloaded)"
    )
    assert check_models([]) == failed("model_loaded", "no model is configured")


def test_storage_must_be_writable(tmp_path: Path) -> None:
    assert check_storage(ObjectStore(f"file://{tmp_path / 'ok'}")) == passed("storage")
    blocked = tmp_path / "blocked"
    store = ObjectStore(f"file://{blocked}", attempts=1)
    # A plain file where the health/ folder must go: writes fail (the node runs as root in CI,
    # so permissions cannot produce this).
    (blocked / "health").write_text("in the way")
    check = check_storage(store)
    assert not check.ok and "not writable" in str(check.reason)
    assert not list(blocked.glob("health/*"))


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[int]]]:
    """A loopback HTTP server answering /health with the status code at the list's head."""
    codes = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(codes[0])
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url + "/api", codes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prefect_must_answer_its_health_endpoint(http_server: tuple[str, list[int]]) -> None:
    url, codes = http_server
    assert check_prefect(url).ok
    codes[0] = 503
    assert check_prefect(url) == failed("prefect", f"{url}/health answered HTTP 503")
    closed = check_prefect(f"http://127.0.0.1:{free_port()}/api")
    assert not closed.ok and "unreachable: ConnectError" in str(closed.reason)
    assert check_prefect(None) == failed("prefect", "no Prefect API configured (PREFECT_API_URL)")


def test_capacity_needs_ram_and_one_gpu_with_room() -> None:
    settings = MonitoringSettings(min_free_memory_bytes=2**30, min_free_gpu_memory_bytes=4 * 2**30)
    assert check_capacity(sample(), settings).ok
    assert check_capacity(sample(gpus=(gpu(5 * 2**30),)), settings).ok
    low_ram = check_capacity(sample(memory_available=2**29), settings)
    assert low_ram == failed(
        "capacity", f"available memory {2**29} B is below the floor of {2**30} B"
    )
    low_gpu = check_capacity(sample(gpus=(gpu(2**30), gpu(3 * 2**30))), settings)
    assert low_gpu == failed(
        "capacity", f"most free GPU memory {3 * 2**30} B is below the floor of {4 * 2**30} B"
    )


def test_ready_only_when_every_check_passes() -> None:
    health = Health(passed("live"), (passed("chain"), failed("storage", "disk gone")))
    assert not health.ready and health.reasons == ["storage: disk gone"]
    assert Health(failed("live", "x"), (passed("chain"),)).ready
