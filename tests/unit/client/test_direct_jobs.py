"""Direct jobs (prompt URI ``DIRECT_PROMPT_URI``) naming this host are the renter API's to run:
the watcher of `fabstir-node run` leaves them alone, so no job runs twice."""

from __future__ import annotations

import pytest

from fabstir.chain import ETH, Eligibility, JobEvent, JobEventKind
from fabstir.client import DIRECT_PROMPT_URI

US = "0x" + "11" * 20
OTHER = "0x" + "22" * 20
MODEL = "0x" + "33" * 32
WATCHER = Eligibility(
    host=US,
    model_ids=frozenset({MODEL}),
    prices={ETH: 10},
    direct_prompt_uri=DIRECT_PROMPT_URI,
)


def _posted(host: str, prompt_uri: str) -> JobEvent:
    fields = {
        "host": host,
        "promptUri": prompt_uri,
        "modelId": MODEL,
        "paymentToken": ETH,
        "pricePerToken": 10**14,
        "maxTokens": 16,
        "deposit": 16 * 10**14,
    }
    return JobEvent(JobEventKind.POSTED, 1, 1, 0, "0x", fields)


@pytest.mark.parametrize(
    ("host", "prompt_uri", "reason"),
    [
        (US, DIRECT_PROMPT_URI, "direct job: the renter API runs it"),
        (US.upper().replace("0X", "0x"), DIRECT_PROMPT_URI, "direct job: the renter API runs it"),
        (US, "file:///prompts/1220ab", None),
        (ETH, DIRECT_PROMPT_URI, None),
        (OTHER, DIRECT_PROMPT_URI, "direct job for another host"),
    ],
)
def test_the_watcher_leaves_this_hosts_direct_jobs_to_the_api(
    host: str, prompt_uri: str, reason: str | None
) -> None:
    assert WATCHER.skip_reason(_posted(host, prompt_uri), gas_price_wei=1) == reason


def test_without_a_direct_marker_every_job_naming_us_is_taken() -> None:
    market_only = Eligibility(host=US, model_ids=frozenset({MODEL}), prices={ETH: 10})
    assert market_only.skip_reason(_posted(US, DIRECT_PROMPT_URI), gas_price_wei=1) is None
