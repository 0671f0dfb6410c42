"""Locally signed transactions, and translation of web3 failures into ``fabstir.errors``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TooManyRequests,
    Web3RPCError,
)
from web3.types import TxReceipt

from fabstir.chain.contracts import decode_revert
from fabstir.errors import ChainError, FabstirError, TransientError

_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    ProviderConnectionError,
    RequestTimedOut,
    TooManyRequests,
)
_RECEIPT_POLL_S = 0.05


def connect(rpc_url: str, *, request_timeout_s: float = 10.0) -> Web3:
    """Return a Web3 on ``rpc_url`` that does not retry by itself (callers' tasks own retries)."""
    provider = HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": request_timeout_s},
        exception_retry_configuration=None,
    )
    return Web3(provider)


@contextmanager
def translate_errors(**context: Any) -> Iterator[None]:
    """Re-raise web3 and transport failures as ``fabstir.errors`` types, keeping ``context``.

    Raises:
        ContractRevert: a custom error of our contracts.
        ChainError: any other revert, a panic, or an RPC error.
        TransientError: the node could not be reached, or a receipt did not arrive in time.
    """
    try:
        yield
    except FabstirError:
        raise
    except ContractCustomError as exc:
        raise decode_revert(str(exc.data), **context) from exc
    except ContractPanicError as exc:
        raise ChainError(f"contract panicked: {exc.message}", code="panic", **context) from exc
    except ContractLogicError as exc:
        raise ChainError(f"contract reverted: {exc.message}", code="revert", **context) from exc
    except TimeExhausted as exc:
        raise TransientError(str(exc), code="receipt_timeout", **context) from exc
    except _TRANSIENT as exc:
        raise TransientError(
            f"chain node unreachable: {exc}", code="rpc_unreachable", **context
        ) from exc
    except Web3RPCError as exc:
        raise ChainError(f"RPC error: {exc.message}", code="rpc_error", **context) from exc


class TransactionSender:
    """Sign transactions with one key and send them one at a time, waiting for their receipts.

    Gas is estimated before sending, so a transaction that would revert raises without costing gas.
    """

    def __init__(
        self,
        w3: Web3,
        private_key: str,
        *,
        confirmations: int = 0,
        receipt_timeout_s: float = 60.0,
    ) -> None:
        if confirmations < 0:
            raise ValueError("confirmations must be >= 0")
        self._w3 = w3
        self._account = Account.from_key(private_key)
        self._confirmations = confirmations
        self._receipt_timeout_s = receipt_timeout_s
        self._nonce_lock = threading.Lock()

    @property
    def address(self) -> str:
        return str(self._account.address)

    def send(
        self,
        call: ContractFunction | ContractConstructor,
        *,
        value_wei: int = 0,
        **context: Any,
    ) -> TxReceipt:
        """Simulate, sign and send ``call``; return its receipt once mined (and confirmed).

        Raises:
            ContractRevert: the simulation hit one of our custom errors; nothing was sent.
            ChainError: another revert, an RPC error, or a mined receipt with status 0.
            TransientError: the node is unreachable or the receipt timed out.
        """
        with translate_errors(**context):
            with self._nonce_lock:
                nonce = self._w3.eth.get_transaction_count(self._account.address, "pending")
                tx = call.build_transaction(
                    {"from": self._account.address, "nonce": nonce, "value": value_wei}
                )
                signed = self._account.sign_transaction(tx)
                tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self._w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self._receipt_timeout_s, poll_latency=_RECEIPT_POLL_S
            )
            if receipt["status"] != 1:
                raise ChainError(
                    "transaction failed on chain",
                    code="tx_failed",
                    tx_hash="0x" + bytes(tx_hash).hex(),
                    **context,
                )
            self._wait_for_confirmations(receipt["blockNumber"], **context)
        return receipt

    def _wait_for_confirmations(self, block_number: int, **context: Any) -> None:
        if self._confirmations == 0:
            return
        deadline = time.monotonic() + self._receipt_timeout_s
        while self._w3.eth.block_number - block_number < self._confirmations:
            if time.monotonic() > deadline:
                raise TransientError(
                    f"fewer than {self._confirmations} confirmations in time",
                    code="confirmation_timeout",
                    **context,
                )
            time.sleep(_RECEIPT_POLL_S)
