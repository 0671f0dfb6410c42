"""What our store asks of S3 per call: the request count and headers that set its latency."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from fabstir.storage import open_store
from tests.conftest import S3Server

pytestmark = pytest.mark.integration


def test_a_read_is_one_get_and_a_write_one_put_sent_at_once(s3_server: S3Server) -> None:
    store = open_store(s3_server.storage_settings("fabstir-tests", uuid.uuid4().hex[:12]))
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((request.method, dict(request.headers)))

    # The client's own hooks run after the store's, so this sees the request as it goes out.
    store._fs.s3.meta.events.register("before-send.s3", record)
    store.put("k", b"x" * 1024)
    assert store.get("k") == b"x" * 1024

    assert [method for method, _ in sent] == ["PUT", "GET"]  # no HEAD before the GET
    assert "Expect" not in sent[0][1]  # no round trip waiting for "100 Continue"
    assert "x-amz-checksum-crc32" in sent[0][1]  # the server still checks what it receives
