"""The job watcher on anvil: confirmations, eligibility, and resuming after a restart."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from web3 import Web3

from fabstir.chain import ETH, ChainClient, Eligibility, JobEvent, JobEventKind, JobWatcher
from fabstir.errors import ConfigError
from tests.integration.chain.conftest import MODEL, OTHER_MODEL, PRICE_PER_TOKEN_WEI

pytestmark = pytest.mark.integration

RESULT_HASH = "0x" + "22" * 32


def mine(w3: Web3, blocks: int) -> None:
    w3.provider.make_request("anvil_mine", [hex(blocks)])


def our_eligibility(host: ChainClient) -> Eligibility:
    """The host serves MODEL in ETH at PRICE_PER_TOKEN_WEI."""
    return Eligibility(
        host=host.address,
        model_ids=frozenset({Web3.keccak(text=MODEL).to_0x_hex()}),
        prices={ETH: PRICE_PER_TOKEN_WEI},
    )


def test_events_are_handed_on_only_when_confirmations_deep(
    registered_host: ChainClient,
    post_job: Callable[..., int],
    w3: Web3,
    tmp_path: Path,
    proof_for: Callable[[int, str, int], bytes],
) -> None:
    seen: list[JobEvent] = []
    watcher = JobWatcher(registered_host, tmp_path / "cursor.json", seen.append, confirmations=3)
    watcher.start()
    job_id = post_job()
    assert watcher.poll() == 0
    mine(w3, 3)
    assert watcher.poll() == 1
    (posted,) = seen
    assert (posted.kind, posted.job_id) == (JobEventKind.POSTED, job_id)
    assert posted.fields["modelId"] == Web3.keccak(text=MODEL).to_0x_hex()
    assert posted.fields["deposit"] == 100 * PRICE_PER_TOKEN_WEI
    registered_host.claim_job(job_id)
    registered_host.submit_result(
        job_id, RESULT_HASH, "file:///r", 3, proof_for(job_id, RESULT_HASH, 3)
    )
    mine(w3, 3)
    assert watcher.poll() == 2
    assert [e.kind for e in seen] == [
        JobEventKind.POSTED,
        JobEventKind.CLAIMED,
        JobEventKind.SETTLED,
    ]
    assert seen[2].fields["tokens"] == 3


def test_a_restarted_watcher_resumes_exactly_where_it_stopped(
    renter: ChainClient, post_job: Callable[..., int], tmp_path: Path
) -> None:
    cursor = tmp_path / "cursor.json"
    first_run: list[int] = []
    crash_after = 2

    def crash_on_third(event: JobEvent) -> None:
        if len(first_run) == crash_after:
            raise RuntimeError("node crashed")
        first_run.append(event.job_id)

    jobs = [post_job() for _ in range(4)]
    watcher = JobWatcher(renter, cursor, crash_on_third)
    watcher.start()
    with pytest.raises(RuntimeError):
        watcher.poll()
    assert first_run == jobs[:2]

    second_run: list[int] = []
    restarted = JobWatcher(renter, cursor, lambda e: second_run.append(e.job_id))
    restarted.start()
    assert restarted.poll() == 2
    assert second_run == jobs[2:]
    later = post_job()
    again = JobWatcher(renter, cursor, lambda e: second_run.append(e.job_id))
    again.start()
    again.poll()
    assert second_run == [*jobs[2:], later]


def test_only_jobs_this_host_would_take_are_handed_on(
    registered_host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    stable: str,
    tmp_path: Path,
) -> None:
    eligibility = our_eligibility(registered_host)
    # 100 tokens at 10^13 wei pay more than serving costs in gas at anvil's ~1 gwei.
    price = 10**13
    good = post_job(price=price)
    post_job(model_name=OTHER_MODEL, price=price)
    post_job(price=PRICE_PER_TOKEN_WEI - 1)
    post_job(price=price, deposit=100 * price - 1)
    post_job(token=stable, price=5)
    post_job(host=renter.address, price=price)
    post_job(max_tokens=1, price=price)  # pays less than the gas to serve it
    direct = post_job(host=registered_host.address, price=price)
    seen: list[int] = []
    watcher = JobWatcher(
        registered_host,
        tmp_path / "c.json",
        lambda e: seen.append(e.job_id),
        eligibility=eligibility,
    )
    watcher.start()
    watcher.poll()
    assert seen == [good, direct]


def test_jobs_taken_before_the_watcher_reads_them_are_not_handed_on(
    registered_host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    tmp_path: Path,
) -> None:
    eligibility = our_eligibility(registered_host)
    price = 10**13
    taken = post_job(price=price)
    cancelled = post_job(price=price)
    open_job = post_job(price=price)
    registered_host.claim_job(taken)  # e.g. by this host's previous life, or another host
    renter.cancel_job(cancelled)
    posted: list[int] = []
    watcher = JobWatcher(
        registered_host,
        tmp_path / "c.json",
        lambda e: posted.append(e.job_id) if e.kind is JobEventKind.POSTED else None,
        eligibility=eligibility,
    )
    watcher.start()  # a first start catches up from the deployment's block
    watcher.poll()
    assert posted == [open_job]


def test_run_and_stop_in_a_thread(
    renter: ChainClient, post_job: Callable[..., int], tmp_path: Path
) -> None:
    got = threading.Event()
    watcher = JobWatcher(renter, tmp_path / "c.json", lambda e: got.set(), poll_s=0.05)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        post_job()
        assert got.wait(10)
    finally:
        watcher.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_a_cursor_of_another_deployment_is_refused(renter: ChainClient, tmp_path: Path) -> None:
    cursor = tmp_path / "c.json"
    cursor.write_text(
        '{"chain_id": 1, "job_marketplace": "0x0", "scanned": 5, "last_event": [5, 0]}'
    )
    with pytest.raises(ConfigError) as caught:
        JobWatcher(renter, cursor, print).start()
    assert caught.value.code == "cursor_mismatch"
    cursor.write_text("{")
    with pytest.raises(ConfigError) as caught:
        JobWatcher(renter, cursor, print).start()
    assert caught.value.code == "cursor_corrupt"
    with pytest.raises(ValueError):
        JobWatcher(renter, cursor, print, confirmations=-1)


# A devnet started again has the same chain id and addresses; the old chain's cursor names a
# block beyond the new chain's head, or another block at a height the new chain has reached.
@pytest.mark.parametrize("old_block", ["beyond the head", "another block"])
def test_a_cursor_of_an_earlier_chain_is_read_from_the_start(
    renter: ChainClient, post_job: Callable[..., int], tmp_path: Path, old_block: str
) -> None:
    jobs = [post_job() for _ in range(2)]
    scanned = 10_000 if old_block == "beyond the head" else renter.block_number()
    cursor = tmp_path / "cursor.json"
    deployment = renter.deployment
    cursor.write_text(
        json.dumps(
            {
                "chain_id": deployment.chain_id,
                "job_marketplace": deployment.job_marketplace,
                "scanned": scanned,
                "scanned_hash": "0x" + "ab" * 32,
                "last_event": [scanned, 0],
            }
        )
    )
    seen: list[int] = []
    watcher = JobWatcher(renter, cursor, lambda e: seen.append(e.job_id))
    watcher.start()
    watcher.poll()
    assert seen == jobs

    # The cursor it leaves is this chain's: a restart resumes from it.
    again = JobWatcher(renter, cursor, lambda e: seen.append(e.job_id))
    again.start()
    assert again.poll() == 0 and seen == jobs
    assert json.loads(cursor.read_text())["scanned_hash"] == renter.block_hash(
        json.loads(cursor.read_text())["scanned"]
    )
