from __future__ import annotations

import pytest
from eth_account import Account

from fabstir.client import KeyPair, access_message, recover_signer, sign_access
from fabstir.errors import AccessDenied
from fabstir.settings import ANVIL_KEYS

MARKET = "0x" + "ab" * 20
HOST = "0x" + "cd" * 20


def test_a_signed_access_request_recovers_to_its_signer() -> None:
    request = sign_access(
        ANVIL_KEYS[2], chain_id=31337, marketplace=MARKET, job_id=7, host=HOST, expires_at=99
    )
    text = access_message(31337, MARKET, 7, HOST, request.nonce, 99)
    assert recover_signer(text, request.signature) == Account.from_key(ANVIL_KEYS[2]).address
    other = access_message(31337, MARKET, 8, HOST, request.nonce, 99)
    assert recover_signer(other, request.signature) != Account.from_key(ANVIL_KEYS[2]).address


def test_signatures_are_recovered_by_libsecp256k1_not_pure_python() -> None:
    """Every handshake recovers its signer on the API's event loop: eth-keys' pure-Python
    fallback holds every other stream for ~3-5 ms; coincurve (a dependency) takes ~0.1 ms."""
    from eth_keys import KeyAPI
    from eth_keys.backends import CoinCurveECCBackend

    assert isinstance(KeyAPI().backend, CoinCurveECCBackend)


def test_each_request_gets_a_fresh_nonce() -> None:
    fields = {"chain_id": 1, "marketplace": MARKET, "job_id": 1, "host": HOST, "expires_at": 5}
    assert sign_access(ANVIL_KEYS[2], **fields).nonce != sign_access(ANVIL_KEYS[2], **fields).nonce


@pytest.mark.parametrize("signature", ["0x", "0x" + "00" * 65, "not hex"])
def test_a_malformed_signature_is_access_denied(signature: str) -> None:
    with pytest.raises(AccessDenied) as info:
        recover_signer("text", signature)
    assert info.value.code == "invalid_signature"


def pair(job_id: int = 3):
    renter, host = KeyPair(), KeyPair()
    return (
        renter.cipher(host.public_hex, job_id, is_host=False),
        host.cipher(renter.public_hex, job_id, is_host=True),
    )


def test_sealed_frames_open_in_order_both_ways() -> None:
    renter, host = pair()
    for n in range(3):
        assert host.open(renter.seal({"n": n})) == {"n": n}
    assert renter.open(host.seal({"reply": 1})) == {"reply": 1}


def test_replayed_reordered_and_forged_frames_are_refused() -> None:
    renter, host = pair()
    first, second = renter.seal({"n": 0}), renter.seal({"n": 1})
    with pytest.raises(AccessDenied, match="sequence"):
        host.open(second)  # reordered
    host.open(first)
    with pytest.raises(AccessDenied, match="sequence"):
        host.open(first)  # replayed
    forged = {**second, "ciphertext": "00" + second["ciphertext"][2:]}
    with pytest.raises(AccessDenied) as info:
        host.open(forged)
    assert info.value.code == "decrypt_failed"


def test_keys_are_bound_to_the_job_and_direction() -> None:
    renter, _ = pair(job_id=1)
    _, other_job_host = pair(job_id=2)
    with pytest.raises(AccessDenied):
        other_job_host.open(renter.seal({"n": 0}))
    renter, _ = pair()
    with pytest.raises(AccessDenied):
        renter.open(renter.seal({"echo": True}))  # a frame reflected back is not the host's


def test_a_session_key_that_is_not_a_curve_point_is_refused() -> None:
    with pytest.raises(AccessDenied) as info:
        KeyPair().cipher("0x04" + "00" * 64, 1, is_host=True)
    assert info.value.code == "invalid_session_key"
