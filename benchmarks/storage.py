"""Object store put/get latency for 1 KB and 1 MB objects: local directory and S3 on loopback.

    python -m benchmarks.storage [--count 100] [--json]

The S3 server is moto's (``moto_server``, in its own process as a real S3 service would be, on a
free loopback port), reached through s3fs as the node reaches real S3. Candidate: our store
(``open_store``). Baselines: the same store over s3fs's default options, and the local directory.
Each round of ``count`` puts then ``count`` gets runs on every backend in turn, twice, so that a
shared machine's load falls on all of them alike; the 1-minute load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fabstir.settings import StorageSettings
from fabstir.storage import ObjectStore, open_store

SIZES = {"1KB": 1024, "1MB": 1024 * 1024}
ROUNDS = 2
_CREDENTIAL = "bench"


def measure(stores: dict[str, ObjectStore], count: int) -> dict[str, dict[str, float]]:
    """Time ``count`` puts then ``count`` gets per size on each store; return p50/p95 in ms."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in stores}
    for label, size in SIZES.items():
        payloads = [os.urandom(size) for _ in range(count)]
        for round_ in range(ROUNDS):
            for name, store in stores.items():
                put_ms = samples[name].setdefault(f"put_{label}", [])
                get_ms = samples[name].setdefault(f"get_{label}", [])
                keys = [f"bench/{label}/{round_}/{n}" for n in range(count)]
                for key, payload in zip(keys, payloads, strict=True):
                    started = time.perf_counter()
                    store.put(key, payload)
                    put_ms.append((time.perf_counter() - started) * 1000)
                for key, payload in zip(keys, payloads, strict=True):
                    started = time.perf_counter()
                    data = store.get(key)
                    get_ms.append((time.perf_counter() - started) * 1000)
                    assert data == payload
    return {
        name: {
            f"{operation}_{quantile}_ms": float(np.percentile(values, int(quantile[1:])))
            for operation, values in operations.items()
            for quantile in ("p50", "p95")
        }
        for name, operations in samples.items()
    }


@contextmanager
def moto_server() -> Iterator[str]:
    """Run ``moto_server`` on a free loopback port; yield its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage", description=__doc__)
    parser.add_argument("--count", type=int, default=100, help="Objects per size, round, backend.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object last.")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    import s3fs

    with moto_server() as endpoint, tempfile.TemporaryDirectory() as directory:
        s3fs.S3FileSystem(key=_CREDENTIAL, secret=_CREDENTIAL, endpoint_url=endpoint).mkdir("bench")
        tuned = StorageSettings.model_validate(
            {
                "url": "s3://bench/store",
                "s3_endpoint_url": endpoint,
                "s3_access_key_id": _CREDENTIAL,
                "s3_secret_access_key": _CREDENTIAL,
            }
        )
        stores = {
            "local": open_store(StorageSettings(url=f"file://{directory}")),
            "s3_defaults": ObjectStore(
                "s3://bench/defaults",
                endpoint_url=endpoint,
                key=_CREDENTIAL,
                secret=_CREDENTIAL,
                use_listings_cache=False,
            ),
            "s3": open_store(tuned),
        }
        result = measure(stores, args.count)
    load_1m = os.getloadavg()[0]
    local, defaults, s3 = result["local"], result["s3_defaults"], result["s3"]
    print(f"{ROUNDS} x {args.count} puts and gets per size and backend; p50 / p95 in ms")
    print(
        f"{'operation':<10} {'local':>16} {'S3, s3fs defaults':>18} {'S3, our store':>16}"
        f" {'p95 ours/defaults':>18}"
    )
    for key in s3:
        if key.endswith("p50_ms"):
            p95 = key.replace("p50", "p95")
            print(
                f"{key[:-7]:<10} {local[key]:>7.2f} / {local[p95]:<6.2f}"
                f" {defaults[key]:>8.2f} / {defaults[p95]:<7.2f}"
                f" {s3[key]:>7.2f} / {s3[p95]:<6.2f} {s3[p95] / defaults[p95]:>17.2f}x"
            )
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}"
    )
    print(f"machine: {machine}; 1-minute load average {load_1m:.2f}")
    if args.json:
        print(
            json.dumps(
                {"count": args.count, "rounds": ROUNDS, "load_1m": load_1m, "machine": machine}
                | result
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
