"""One lifecycle for the node's long-running parts, and a group that runs them together.

Every service has ``start()`` (get ready; raise if it cannot), ``run()`` (block until stopped;
return or raise when it dies) and ``stop()`` (make ``run()`` return soon; safe to call twice).
A :class:`ServiceGroup` starts them in order, runs each ``run()`` in a thread, and stops all of
them in reverse order as soon as one ends or a stop is requested; it reports failure when any
service ended on its own, so the process exits non-zero instead of running half a node.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from fabstir.errors import ConfigError

log = logging.getLogger(__name__)


class Service(Protocol):
    def start(self) -> None: ...

    def run(self) -> None: ...

    def stop(self) -> None: ...


class ServiceGroup:
    """Run services together; the first to end (or a stop request) stops them all."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        """``services`` by name, in start order."""
        self._services = dict(services)
        self._stop = threading.Event()
        self._ended: list[str] = []
        self._lock = threading.Lock()

    def request_stop(self) -> None:
        """Ask the group to stop (e.g. from a SIGTERM handler); :meth:`run` then returns 0."""
        self._stop.set()

    def run(self) -> int:
        """Start every service, wait, stop them all; return 0 after a requested stop, else 1."""
        started: list[tuple[str, Service]] = []
        threads: list[threading.Thread] = []
        try:
            for name, service in self._services.items():
                service.start()
                started.append((name, service))
                log.info("service started", extra={"service": name})
            freeze_startup_heap()
            for name, service in started:
                thread = threading.Thread(
                    target=self._run_one, args=(name, service), name=name, daemon=True
                )
                thread.start()
                threads.append(thread)
            self._stop.wait()
        finally:
            for _, service in reversed(started):
                service.stop()
        for thread in threads:
            thread.join(timeout=30)
        with self._lock:
            failed = list(self._ended)
        if failed:
            log.error("node stopped because a service ended", extra={"services": failed})
            return 1
        return 0

    def _run_one(self, name: str, service: Service) -> None:
        try:
            service.run()
        except Exception:
            log.exception("service died", extra={"service": name})
            self._ended_on_its_own(name)
            return
        if not self._stop.is_set():
            log.error("service ended on its own", extra={"service": name})
            self._ended_on_its_own(name)

    def _ended_on_its_own(self, name: str) -> None:
        with self._lock:
            if not self._stop.is_set():
                self._ended.append(name)
        self._stop.set()


class ProcessService:
    """A child process (a Prefect server or worker) run as a service.

    ``start()`` launches it and, given ``ready_url``, waits until that URL answers; ``run()``
    waits for the process and raises if it exits; ``stop()`` terminates it (then kills it).
    ``niceness`` (0–19) is added to this process's own, as ``nice -n`` does: it lowers the
    child's CPU priority.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path,
        ready_url: str | None = None,
        ready_timeout_s: float = 120.0,
        niceness: int = 0,
    ) -> None:
        if not 0 <= niceness <= 19:
            raise ConfigError("niceness must be 0-19", code="invalid_niceness", niceness=niceness)
        self._argv = list(argv)
        self._niceness = niceness
        self._env = {**os.environ, **(env or {})}
        self._log_path = log_path
        self._ready_url = ready_url
        self._ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Launch the process and wait until it is ready.

        Raises:
            ConfigError: another process already listens at ``ready_url`` (``code="port_in_use"``:
                its answer would pass for ours); or the process exited or did not answer in time
                (``code="service_not_ready"``), its log file says why.
        """
        if self._ready_url is not None and _listening(self._ready_url):
            raise ConfigError(
                "another process already listens at the service's address",
                code="port_in_use",
                url=self._ready_url,
            )
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as output:
            self._process = subprocess.Popen(
                self._argv, env=self._env, stdout=output, stderr=subprocess.STDOUT
            )
        if self._niceness:
            # Added to ours, as `nice` does (only root may lower it). Set before the child, just
            # exec'd, starts any thread: each thread inherits the priority of its starter.
            niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + self._niceness)
            os.setpriority(os.PRIO_PROCESS, self._process.pid, niceness)
        if self._ready_url is None:
            return
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline and self._process.poll() is None:
            if _answers(self._ready_url):
                return
            time.sleep(0.5)
        self.stop()
        raise ConfigError(
            f"{self._argv[0]} did not become ready",
            code="service_not_ready",
            url=self._ready_url,
            log=str(self._log_path),
        )

    def run(self) -> None:
        assert self._process is not None, "call start() first"
        returncode = self._process.wait()
        if not self._stopping.is_set():
            raise RuntimeError(f"{self._argv} exited with {returncode}; see {self._log_path}")

    def stop(self) -> None:
        self._stopping.set()
        if self._process is not None:
            stop_process(self._process, grace_s=20)


def stop_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM ``process`` and wait; kill it if it has not exited within ``grace_s``.

    A Prefect 3.9 process worker can take a SIGTERM and go on polling: its shutdown, run as an
    asyncio cancellation, is sometimes swallowed.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("process ignored SIGTERM; killing it", extra={"pid": process.pid})
        process.kill()
        process.wait()


def freeze_startup_heap() -> None:
    """Keep what start-up made (modules, clients, loaded models) out of the garbage collector's
    sight: a full collection then scans only what came after. Over the node's whole heap one
    took 128 ms, holding the GIL in the middle of a renter's stream (7 ms once frozen)."""
    gc.collect()
    gc.freeze()


def _listening(url: str) -> bool:
    address = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((address.hostname, address.port), timeout=1):
            return True
    except OSError:
        return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False
