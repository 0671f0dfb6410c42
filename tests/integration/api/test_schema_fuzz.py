"""Schemathesis over the app's own OpenAPI schema: no generated request is a server error.

The operations are driven from one test with hypothesis directly (schemathesis's pytest plugin
does not load under this pytest), a few examples each to keep the suite fast.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.integration.api.conftest import ApiNode

pytestmark = pytest.mark.integration


def test_generated_requests_never_get_a_server_error(api_node: ApiNode) -> None:
    job_id = api_node.post_chat([{"role": "user", "content": "fuzz"}])
    token = api_node.renter.authenticate(api_node.url, job_id)
    schema = schemathesis.openapi.from_url(api_node.url + "/openapi.json")
    server_errors = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=60)
            if response.status_code >= 500:
                server_errors.append((case.method, case.path, response.text[:300]))

        call()
    assert server_errors == []
    assert httpx.get(api_node.url + "/health").status_code == 200
