"""The node's one door to the chain: NodeRegistry and JobMarketplace calls, signed locally."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hexbytes import HexBytes
from web3.contract.contract import ContractFunction

from fabstir.chain.contracts import load_artifact, model_id_of
from fabstir.chain.deployment import Deployment
from fabstir.chain.transactions import TransactionSender, connect, translate_errors
from fabstir.domain import Job, JobState, Receipt
from fabstir.errors import ChainError, JobRejected

log = logging.getLogger(__name__)

# JobMarketplace.Job's fields in struct order, named as in fabstir.domain.Job.
_JOB_FIELDS = (
    "renter",
    "host",
    "model_id",
    "prompt_hash",
    "prompt_uri",
    "max_tokens",
    "price_per_token_wei",
    "deposit_wei",
    "deadline",
    "state",
    "result_hash",
    "result_uri",
    "tokens_used",
)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _bytes32(value: str) -> bytes:
    raw = bytes(HexBytes(value))
    if len(raw) != 32:
        raise ValueError(f"expected a 0x-prefixed 32-byte hex string, got {value!r}")
    return raw


class ChainClient:
    """Read and write our contracts as the account of ``private_key``.

    Transactions are signed locally and simulated first, so a call that would revert raises
    ``ContractRevert`` (named after the contract's custom error) without spending gas.
    """

    def __init__(
        self,
        rpc_url: str,
        deployment: Deployment,
        private_key: str,
        *,
        confirmations: int = 0,
        receipt_timeout_s: float = 60.0,
    ) -> None:
        """Connect and check that ``deployment`` is live on the chain behind ``rpc_url``.

        Raises:
            ChainError: the RPC serves another chain (``code="wrong_chain"``) or has no contract at
                the deployment's marketplace address (``code="not_deployed"``).
            TransientError: the RPC cannot be reached.
        """
        self._w3 = connect(rpc_url)
        self._deployment = deployment
        self._sender = TransactionSender(
            self._w3, private_key, confirmations=confirmations, receipt_timeout_s=receipt_timeout_s
        )
        with translate_errors(rpc_url=rpc_url):
            chain_id = self._w3.eth.chain_id
            marketplace_code = self._w3.eth.get_code(deployment.job_marketplace)
        if chain_id != deployment.chain_id:
            raise ChainError(
                "the RPC serves a different chain than the deployment",
                code="wrong_chain",
                expected_chain_id=deployment.chain_id,
                rpc_chain_id=chain_id,
            )
        if not marketplace_code:
            raise ChainError(
                "no JobMarketplace at the deployment's address; the deployment file is stale",
                code="not_deployed",
                job_marketplace=deployment.job_marketplace,
            )
        self._registry = self._w3.eth.contract(
            address=deployment.node_registry, abi=load_artifact("NodeRegistry").abi
        )
        self._marketplace = self._w3.eth.contract(
            address=deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi
        )

    @property
    def address(self) -> str:
        """The checksummed address that signs this client's transactions."""
        return self._sender.address

    def register(self, model_names: Sequence[str], price_per_token_wei: int) -> str | None:
        """Register this account as a host serving ``model_names`` at one price per output token.

        Returns the transaction hash, or None (sending nothing) when the account is already
        registered with exactly these models at this price.

        Raises:
            ContractRevert: e.g. ``ZeroPrice`` or ``DuplicateModel``.
        """
        if not model_names:
            raise ValueError("register at least one model")
        model_ids = [_bytes32(model_id_of(name)) for name in model_names]
        with translate_errors(host=self.address):
            current = self._registry.functions.modelsOf(self.address).call()
            if (
                set(current) == set(model_ids)
                and len(current) == len(model_ids)
                and all(
                    self._registry.functions.priceOf(self.address, model_id).call()
                    == price_per_token_wei
                    for model_id in model_ids
                )
            ):
                log.info("host already registered", extra={"host": self.address})
                return None
        prices = [price_per_token_wei] * len(model_ids)
        return self._send("register", self._registry.functions.register(model_ids, prices))

    def price_of(self, host: str, model_name: str) -> int:
        """Return ``host``'s price per output token for ``model_name`` in wei (0 = not served)."""
        model_id = _bytes32(model_id_of(model_name))
        with translate_errors(host=host):
            return int(self._registry.functions.priceOf(host, model_id).call())

    def get_job(self, job_id: int) -> Job:
        """Read a job's on-chain record.

        Raises:
            JobRejected: no job has this id (``code="unknown_job"``).
        """
        with translate_errors(job_id=job_id):
            record = self._marketplace.functions.getJob(job_id).call()
        fields = dict(zip(_JOB_FIELDS, record, strict=True))
        if fields["state"] == JobState.NONE:
            raise JobRejected("no such job", code="unknown_job", job_id=job_id)
        for name in ("model_id", "prompt_hash", "result_hash"):
            fields[name] = _hex(fields[name])
        return Job(job_id=job_id, **fields)

    def post_job(
        self,
        model_name: str,
        prompt_hash: str,
        prompt_uri: str,
        max_tokens: int,
        price_per_token_wei: int,
        deposit_wei: int,
        deadline: int,
    ) -> int:
        """Escrow ``deposit_wei`` for a job and return its id.

        Raises:
            ContractRevert: e.g. ``ZeroDeposit`` or ``DeadlineInPast``.
        """
        call = self._marketplace.functions.postJob(
            _bytes32(model_id_of(model_name)),
            _bytes32(prompt_hash),
            prompt_uri,
            max_tokens,
            price_per_token_wei,
            deadline,
        )
        receipt = self._sender.send(call, value_wei=deposit_wei, action="postJob")
        (posted,) = self._marketplace.events.JobPosted().process_receipt(receipt)
        job_id = int(posted["args"]["jobId"])
        log.info("job posted", extra={"job_id": job_id, "gas_used": receipt["gasUsed"]})
        return job_id

    def claim_job(self, job_id: int) -> str:
        """Claim a posted job for this host; return the transaction hash.

        Raises:
            ContractRevert: e.g. ``InsufficientDeposit``, ``ModelNotServed``, ``PriceAboveJob``,
                ``HostNotRegistered``, ``NotPosted``, ``DeadlinePassed``, ``UnknownJob``.
        """
        return self._send("claimJob", self._marketplace.functions.claimJob(job_id), job_id=job_id)

    def submit_result(self, job_id: int, result_hash: str, result_uri: str, tokens: int) -> str:
        """Submit the result of a job this host claimed, settling it; return the transaction hash.

        Raises:
            ContractRevert: e.g. ``NotClaimed``, ``NotJobHost``, ``TokensAboveMax``.
        """
        call = self._marketplace.functions.submitResult(
            job_id, _bytes32(result_hash), result_uri, tokens
        )
        return self._send("submitResult", call, job_id=job_id)

    def refund_expired(self, job_id: int) -> str:
        """Return an expired job's deposit to its renter; return the transaction hash.

        Raises:
            ContractRevert: ``DeadlineNotReached`` or ``NotRefundable``.
        """
        call = self._marketplace.functions.refundExpired(job_id)
        return self._send("refundExpired", call, job_id=job_id)

    def find_settlement(self, job_id: int) -> Receipt | None:
        """Return how a job was settled, read from its ``JobSettled`` event; None if it was not."""
        with translate_errors(job_id=job_id):
            events = self._marketplace.events.JobSettled().get_logs(
                from_block=self._deployment.deploy_block, argument_filters={"jobId": job_id}
            )
        if not events:
            return None
        event = events[0]
        args = event["args"]
        return Receipt(
            job_id=job_id,
            settle_tx=_hex(event["transactionHash"]),
            tokens=args["tokens"],
            paid_to_host_wei=args["paymentWei"] - args["feeWei"],
            fee_wei=args["feeWei"],
            refund_wei=args["refundWei"],
            result_uri=args["resultUri"],
            result_hash=_hex(args["resultHash"]),
        )

    def balance_of(self, address: str) -> int:
        """Return the ETH balance of ``address`` in wei."""
        with translate_errors(address=address):
            return int(self._w3.eth.get_balance(address))

    def gas_cost_wei(self, tx_hash: str) -> int:
        """Return what a mined transaction cost its sender in gas: gasUsed * effectiveGasPrice."""
        with translate_errors(tx_hash=tx_hash):
            receipt = self._w3.eth.get_transaction_receipt(tx_hash)
        return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])

    def _send(self, action: str, call: ContractFunction, **context: Any) -> str:
        receipt = self._sender.send(call, action=action, **context)
        tx_hash = _hex(receipt["transactionHash"])
        log.info(
            "transaction mined",
            extra={"action": action, "tx_hash": tx_hash, "gas_used": receipt["gasUsed"], **context},
        )
        return tx_hash
