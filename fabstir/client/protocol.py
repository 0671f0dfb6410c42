"""What renter and host must derive the same way: the signed access request and session keys.

Access: the renter signs (EIP-191) a text naming the chain, the marketplace, the job, the host, a
nonce and an expiry; the host recovers the signer and checks it is the job's renter. Session
encryption (WebSocket): each side makes an ephemeral secp256k1 key, the host signs both public
keys with its chain key (so the renter knows it talks to the job's host), and HKDF-SHA256 over
their ECDH secret gives one ChaCha20-Poly1305 key per direction. Every sealed frame carries a
sequence number that must be exactly the next one, so replayed, dropped or reordered frames are
refused.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from eth_account.messages import encode_defunct

from fabstir.errors import AccessDenied

NONCE_BYTES = 16


@dataclass(frozen=True)
class AccessRequest:
    """A renter's signed request for a bearer token to one job (the body of ``POST /v1/auth``)."""

    job_id: int
    host: str
    nonce: str
    expires_at: int
    signature: str


def access_message(
    chain_id: int, marketplace: str, job_id: int, host: str, nonce: str, expires_at: int
) -> str:
    """Return the exact text a renter signs to access ``job_id`` on ``host``."""
    return (
        "Fabstir job access\n"
        f"chain: {chain_id}\n"
        f"marketplace: {marketplace.lower()}\n"
        f"job: {job_id}\n"
        f"host: {host.lower()}\n"
        f"nonce: {nonce}\n"
        f"expires: {expires_at}"
    )


def sign_access(
    private_key: str,
    *,
    chain_id: int,
    marketplace: str,
    job_id: int,
    host: str,
    expires_at: int,
    nonce: str | None = None,
) -> AccessRequest:
    """Sign an access request with a fresh random nonce (or the one given)."""
    nonce = nonce or secrets.token_hex(NONCE_BYTES)
    text = access_message(chain_id, marketplace, job_id, host, nonce, expires_at)
    signed = Account.sign_message(encode_defunct(text=text), private_key)
    return AccessRequest(job_id, host, nonce, expires_at, "0x" + signed.signature.hex())


def recover_signer(text: str, signature: str) -> str:
    """Return the address that signed ``text`` (EIP-191).

    Raises:
        AccessDenied: the signature is malformed (``code="invalid_signature"``).
    """
    try:
        return Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as exc:  # eth_account raises several unrelated types for bad bytes
        raise AccessDenied(
            "signature is not a valid EIP-191 signature", code="invalid_signature"
        ) from exc


def session_key_message(job_id: int, renter_key: str, host_key: str) -> str:
    """Return the text a host signs to vouch for its ephemeral session key."""
    return f"Fabstir session key\njob: {job_id}\nrenter key: {renter_key}\nhost key: {host_key}"


class KeyPair:
    """An ephemeral secp256k1 key for one session."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256K1())

    @property
    def public_hex(self) -> str:
        return "0x" + self._public_bytes().hex()

    def _public_bytes(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def cipher(self, peer_public_hex: str, job_id: int, *, is_host: bool) -> SessionCipher:
        """Agree on this session's keys with the peer's public key.

        Raises:
            AccessDenied: the peer's key is not a secp256k1 point (``code="invalid_session_key"``).
        """
        try:
            raw = bytes.fromhex(peer_public_hex.removeprefix("0x"))
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
        except ValueError as exc:
            raise AccessDenied(
                "session key is not a secp256k1 public key", code="invalid_session_key"
            ) from exc
        secret = self._private.exchange(ec.ECDH(), peer)
        keys = HKDF(
            algorithm=hashes.SHA256(), length=64, salt=None, info=b"fabstir-ws-v1:%d" % job_id
        ).derive(secret)
        to_host, to_renter = keys[:32], keys[32:]
        send, receive = (to_renter, to_host) if is_host else (to_host, to_renter)
        return SessionCipher(send, receive, job_id)


class SessionCipher:
    """Seal and open the frames of one session, in order, each exactly once."""

    def __init__(self, send_key: bytes, receive_key: bytes, job_id: int) -> None:
        self._send = ChaCha20Poly1305(send_key)
        self._receive = ChaCha20Poly1305(receive_key)
        self._job_id = job_id
        self._sent = 0
        self._received = 0

    def seal(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Encrypt one frame as ``{"type": "sealed", "seq": n, "ciphertext": hex}``."""
        seq = self._sent
        self._sent += 1
        data = json.dumps(payload, separators=(",", ":")).encode()
        sealed = self._send.encrypt(self._nonce(seq), data, self._aad(seq))
        return {"type": "sealed", "seq": seq, "ciphertext": sealed.hex()}

    def open(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Decrypt the next frame.

        Raises:
            AccessDenied: it is not the next in sequence (``code="bad_sequence"``: replayed,
                dropped or reordered) or does not decrypt (``code="decrypt_failed"``).
        """
        seq = frame.get("seq")
        if not isinstance(seq, int) or seq != self._received:
            raise AccessDenied(
                "sealed frame out of sequence (replayed, dropped or reordered)",
                code="bad_sequence",
                expected=self._received,
                got=seq,
            )
        try:
            data = bytes.fromhex(str(frame.get("ciphertext", "")))
            plain = self._receive.decrypt(self._nonce(seq), data, self._aad(seq))
            payload = json.loads(plain)
        except (ValueError, InvalidTag) as exc:
            raise AccessDenied("sealed frame does not decrypt", code="decrypt_failed") from exc
        if not isinstance(payload, dict):
            raise AccessDenied("sealed frame is not a JSON object", code="decrypt_failed")
        self._received += 1
        return payload

    @staticmethod
    def _nonce(seq: int) -> bytes:
        return b"\0\0\0\0" + seq.to_bytes(8, "big")

    def _aad(self, seq: int) -> bytes:
        return b"fabstir-ws-v1:%d:%d" % (self._job_id, seq)
