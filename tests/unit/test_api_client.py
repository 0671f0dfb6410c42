"""The Prefect API client's fast retry of a busy server, against real loopback HTTP(S) servers.

The servers here stand in for a Prefect server answering 503 (SQLite busy), a fault that a
real server only shows under a race we cannot trigger on demand.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prefect.client.orchestration import get_client
from prefect.settings import (
    PREFECT_API_SSL_CERT_FILE,
    PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED,
    temporary_settings,
)

from tasks._api_client import BusyRetryTransport, busy_retry_settings
from tests.support.loopback import send_json, serving


class FlakyServer(ThreadingHTTPServer):
    """Answers ``busy`` requests with ``status``, then 200 with a JSON body; keeps each body."""

    def __init__(self, busy: int, status: int = 503) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.busy = busy
        self.status = status
        self.bodies: list[bytes] = []

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FlakyServer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(self.rfile.read(length))
        status = self.server.status if len(self.server.bodies) <= self.server.busy else 200
        body = b'{"exception_message": "Service Unavailable"}' if status != 200 else b"{}"
        send_json(self, status, body)

    def log_message(self, *args: object) -> None:
        pass


def _serving(server: FlakyServer) -> Iterator[FlakyServer]:
    with serving(server):
        yield server


@pytest.fixture
def busy_twice() -> Iterator[FlakyServer]:
    yield from _serving(FlakyServer(busy=2))


def test_a_busy_answer_is_sent_again_with_its_body(busy_twice: FlakyServer) -> None:
    with httpx.Client(transport=BusyRetryTransport(delays_s=(0.0,) * 5)) as client:
        response = client.post(busy_twice.url + "/flow_runs/", json={"job_id": 7})
    assert response.status_code == 200
    assert busy_twice.bodies == [b'{"job_id":7}'] * 3


def test_the_last_busy_answer_goes_back_to_the_caller() -> None:
    for server in _serving(FlakyServer(busy=100)):
        with httpx.Client(transport=BusyRetryTransport(delays_s=(0.0,) * 3)) as client:
            response = client.get(server.url + "/hello")
        assert response.status_code == 503
        assert len(server.bodies) == 4


def test_other_errors_are_not_sent_again() -> None:
    for server in _serving(FlakyServer(busy=1, status=500)):
        with httpx.Client(transport=BusyRetryTransport(delays_s=(0.0,))) as client:
            assert client.get(server.url + "/hello").status_code == 500
        assert len(server.bodies) == 1


def _prefect_at(url: str, updates: dict[Any, Any] | None = None) -> AbstractContextManager[object]:
    """Prefect's settings for the server at ``url``, with Prefect's own retries off: only the
    transport can then turn a 503 into an answer."""
    return temporary_settings(
        updates={PREFECT_API_URL: url + "/api", PREFECT_CLIENT_MAX_RETRIES: 0, **(updates or {})}
    )


def _hello(url: str, updates: dict[Any, Any] | None = None) -> int:
    with (
        _prefect_at(url, updates),
        get_client(sync_client=True, httpx_settings=busy_retry_settings()) as client,
    ):
        return client.hello().status_code


def test_prefects_client_gets_through_a_busy_server_without_its_own_retries(
    busy_twice: FlakyServer,
) -> None:
    assert _hello(busy_twice.url) == 200
    assert len(busy_twice.bodies) == 3


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[FlakyServer, Path]]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "server.pem"
    key_file = tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = FlakyServer(busy=0)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    for tls_serving in _serving(server):
        yield tls_serving, cert_file


def test_the_transport_verifies_tls_as_prefect_is_told(
    tls_server: tuple[FlakyServer, Path],
) -> None:
    server, cert_file = tls_server
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _hello(server.url)
    assert _hello(server.url, {PREFECT_API_SSL_CERT_FILE: str(cert_file)}) == 200
    assert _hello(server.url, {PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}) == 200


def test_a_job_threads_client_is_the_one_prefect_hands_out_there(busy_twice: FlakyServer) -> None:
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    from deployments.runner import LocalRunner

    runner = LocalRunner("inference-job/gpu", max_concurrent=1, heartbeat_s=30)

    def on_a_job_thread() -> tuple[bool, int]:
        client = runner._thread_client()
        # What the flow engine asks for: any client of this thread, no settings of its own.
        return get_client(sync_client=True) is client, client.hello().status_code

    # Not a Prefect server: no version to check.
    not_prefect = {PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED: False}
    with _prefect_at(busy_twice.url, not_prefect), ThreadPoolExecutor(1) as job_thread:
        # The settings above, on the job thread (the runner enters them there itself).
        with_settings = contextvars.copy_context()
        shared, status = job_thread.submit(with_settings.run, on_a_job_thread).result()
    assert shared, "the engine would build a client of its own each run"
    assert status == 200 and len(busy_twice.bodies) == 3


def test_a_job_thread_without_a_prefect_server_is_refused() -> None:
    from deployments.runner import LocalRunner

    runner = LocalRunner("inference-job/gpu", max_concurrent=1, heartbeat_s=30)
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(RuntimeError, match="PREFECT_API_URL is not set"),
    ):
        runner._thread_client()
