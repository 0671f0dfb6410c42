from __future__ import annotations

import pytest

from fabstir.chain import ChainClient, Deployment
from fabstir.errors import ChainError, JobRejected
from fabstir.settings import ANVIL_KEYS

pytestmark = pytest.mark.integration


def test_wrong_chain_id_is_refused_at_construction(deployment: Deployment) -> None:
    elsewhere = deployment.model_copy(update={"chain_id": 8453})
    with pytest.raises(ChainError) as caught:
        ChainClient(elsewhere, ANVIL_KEYS[1])
    assert caught.value.code == "wrong_chain"
    assert caught.value.context == {"expected_chain_id": 8453, "rpc_chain_id": 31337}


def test_deployment_without_contracts_is_refused(deployment: Deployment) -> None:
    stale = deployment.model_copy(update={"job_marketplace": "0x" + "12" * 20})
    with pytest.raises(ChainError) as caught:
        ChainClient(stale, ANVIL_KEYS[1])
    assert caught.value.code == "not_deployed"


def test_unknown_job_is_rejected(renter: ChainClient) -> None:
    with pytest.raises(JobRejected) as caught:
        renter.get_job(1)
    assert caught.value.code == "unknown_job"
    assert caught.value.context == {"job_id": 1}


def test_unsettled_job_has_no_settlement(renter: ChainClient) -> None:
    assert renter.find_settlement(1) is None


def test_unknown_payment_token_symbol_is_a_caller_error(renter: ChainClient) -> None:
    assert renter.token_address("ETH") == "0x" + "00" * 20
    with pytest.raises(ValueError, match="USDC"):
        renter.token_address("DAI")
