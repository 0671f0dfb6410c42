"""The renter SDK: find hosts, post jobs, authenticate, stream answers, verify and close jobs."""

from fabstir.client.protocol import (
    AccessRequest,
    KeyPair,
    SessionCipher,
    access_message,
    recover_signer,
    session_key_message,
    sign_access,
)
from fabstir.client.renter import DIRECT_PROMPT_URI, Delivery, HostOffer, RenterClient

__all__ = [
    "DIRECT_PROMPT_URI",
    "AccessRequest",
    "Delivery",
    "HostOffer",
    "KeyPair",
    "RenterClient",
    "SessionCipher",
    "access_message",
    "recover_signer",
    "session_key_message",
    "sign_access",
]
