"""Object store put/get latency for 1 KB and 1 MB objects: local directory against S3 on loopback.

    python -m benchmarks.storage [--count 100] [--json]

The S3 server is moto's (ThreadedMotoServer on a free loopback port), reached through s3fs as the
node reaches real S3. Baseline: the local directory store; candidate: S3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any

import numpy as np

from fabstir.settings import StorageSettings
from fabstir.storage import ObjectStore, open_store

SIZES = {"1KB": 1024, "1MB": 1024 * 1024}


def measure(store: ObjectStore, count: int) -> dict[str, Any]:
    """Time ``count`` puts then ``count`` gets per size; return p50/p95 in ms."""
    result = {}
    for label, size in SIZES.items():
        payloads = [os.urandom(size) for _ in range(count)]
        put_ms, get_ms = [], []
        for n, payload in enumerate(payloads):
            started = time.perf_counter()
            store.put(f"bench/{label}/{n}", payload)
            put_ms.append((time.perf_counter() - started) * 1000)
        for n, payload in enumerate(payloads):
            started = time.perf_counter()
            data = store.get(f"bench/{label}/{n}")
            get_ms.append((time.perf_counter() - started) * 1000)
            assert data == payload
        for name, values in (("put", put_ms), ("get", get_ms)):
            result[f"{name}_{label}_p50_ms"] = float(np.percentile(values, 50))
            result[f"{name}_{label}_p95_ms"] = float(np.percentile(values, 95))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage", description=__doc__)
    parser.add_argument("--count", type=int, default=100, help="Objects per size and backend.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object last.")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3fs.S3FileSystem(key="bench", secret="bench", endpoint_url=endpoint).mkdir("bench")
        with tempfile.TemporaryDirectory() as directory:
            local = measure(open_store(StorageSettings(url=f"file://{directory}")), args.count)
        s3_settings = StorageSettings.model_validate(
            {
                "url": "s3://bench/objects",
                "s3_endpoint_url": endpoint,
                "s3_access_key_id": "bench",
                "s3_secret_access_key": "bench",
            }
        )
        s3 = measure(open_store(s3_settings), args.count)
    finally:
        server.stop()
    print(f"{args.count} puts and gets per size; p50 / p95 in ms")
    print(f"{'operation':<10} {'local (baseline)':>18} {'S3 on loopback':>18} {'ratio p95':>10}")
    for key in local:
        if key.endswith("p50_ms"):
            p95 = key.replace("p50", "p95")
            print(
                f"{key[:-7]:<10} {local[key]:>8.2f} / {local[p95]:<7.2f} "
                f"{s3[key]:>8.2f} / {s3[p95]:<7.2f} {s3[p95] / max(local[p95], 1e-9):>9.1f}x"
            )
    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    if args.json:
        print(json.dumps({"count": args.count, "local": local, "s3": s3}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
