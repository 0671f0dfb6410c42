"""The node's one door to the chain: registries, marketplace and tokens, signed locally."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hexbytes import HexBytes
from web3.contract.contract import ContractFunction
from web3.exceptions import BlockNotFound
from web3.logs import DISCARD
from web3.types import TxReceipt

from fabstir.chain.contracts import load_artifact, model_id_of
from fabstir.chain.records import (
    ETH,
    HostRecord,
    ModelRecord,
    Offer,
    Rating,
    ResultSubmission,
    SubmittedProof,
    Withdrawal,
)
from fabstir.chain.transactions import TransactionSender, TxPolicy, connect, with_retries
from fabstir.domain import ZERO_ADDRESS, Job, JobState, Receipt
from fabstir.errors import ChainError, ContractRevert, JobRejected
from fabstir.settings import Deployment

log = logging.getLogger(__name__)

T = TypeVar("T")

# JobMarketplace.Job's fields in struct order, named as in fabstir.domain.Job.
_JOB_FIELDS = (
    "renter",
    "state",
    "fee_bps",
    "tokens_used",
    "settled_block",
    "host",
    "deadline",
    "max_tokens",
    "payment_token",
    "price_per_token_wei",
    "rated",
    "deposit_wei",
    "model_id",
    "prompt_hash",
    "result_hash",
    "prompt_uri",
)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _bytes32(value: str) -> bytes:
    raw = bytes(HexBytes(value))
    if len(raw) != 32:
        raise ValueError(f"expected a 0x-prefixed 32-byte hex string, got {value!r}")
    return raw


def _sha256_bytes(sha256: str) -> bytes:
    digest = bytes.fromhex(sha256.removeprefix("0x"))
    if len(digest) != 32:
        raise ValueError(f"sha256 must be 32 bytes of hex, got {sha256!r}")
    return digest


def _model_id(model: str) -> bytes:
    """Accept a model's name or its 0x-prefixed 32-byte id."""
    if model.startswith("0x") and len(model) == 66:
        return _bytes32(model)
    return _bytes32(model_id_of(model))


class ChainClient:
    """Read and write our contracts as the account of ``private_key``.

    Transactions go through one queue per client (see ``TransactionSender``): simulated first, so
    a call that would revert raises ``ContractRevert`` (named after the contract's custom error)
    without spending gas. Amounts are integers in base units of their token (wei for ETH).
    """

    def __init__(
        self, deployment: Deployment, private_key: str, *, policy: TxPolicy | None = None
    ) -> None:
        """Connect and check that ``deployment`` is live on the chain behind its RPC URL.

        Raises:
            ChainError: the RPC serves another chain (``code="wrong_chain"``) or has no contract at
                the deployment's marketplace address (``code="not_deployed"``).
            TransientError: the RPC cannot be reached (``code="rpc_unreachable"``).
        """
        self._policy = policy or TxPolicy()
        self._w3 = connect(deployment.rpc_url)
        self._deployment = deployment
        self._sender = TransactionSender(self._w3, private_key, self._policy)
        chain_id = self._read(lambda: self._w3.eth.chain_id, rpc_url=deployment.rpc_url)
        if chain_id != deployment.chain_id:
            raise ChainError(
                "the RPC serves a different chain than the deployment",
                code="wrong_chain",
                expected_chain_id=deployment.chain_id,
                rpc_chain_id=chain_id,
            )
        if not self._read(lambda: self._w3.eth.get_code(deployment.job_marketplace)):
            raise ChainError(
                "no JobMarketplace at the deployment's address; the deployment is stale",
                code="not_deployed",
                job_marketplace=deployment.job_marketplace,
            )
        contract = self._w3.eth.contract
        self._models = contract(deployment.model_registry, abi=load_artifact("ModelRegistry").abi)
        self._nodes = contract(deployment.node_registry, abi=load_artifact("NodeRegistry").abi)
        self._market = contract(deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi)
        self._token_abi = load_artifact("ERC20Token").abi

    @property
    def address(self) -> str:
        """The checksummed address that signs this client's transactions."""
        return self._sender.address

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    def token_address(self, symbol: str) -> str:
        """Return the address of an accepted payment token by symbol; ``ETH`` for ``"ETH"``.

        Raises:
            ValueError: the deployment accepts no token of that symbol.
        """
        if symbol == "ETH":
            return ETH
        try:
            return self._deployment.payment_tokens[symbol]
        except KeyError:
            known = ["ETH", *self._deployment.payment_tokens]
            raise ValueError(f"unknown payment token {symbol!r}; known: {known}") from None

    # Models -------------------------------------------------------------------------------------

    def get_model(self, model: str) -> ModelRecord:
        """Return the ModelRegistry entry of ``model`` (its name, or its 0x-prefixed id).

        Raises:
            JobRejected: the registry has no such model (``code="unknown_model"``).
            TransientError: the RPC cannot be reached.
        """
        model_id = _model_id(model)
        try:
            sha256, uri, name, active, base_id = self._read(
                lambda: self._models.functions.getModel(model_id).call(), model=model
            )
        except ContractRevert as exc:
            if exc.error_name != "UnknownModel":
                raise
            raise JobRejected(
                "model not in the registry", code="unknown_model", model=model
            ) from exc
        base_model_id = None if bytes(base_id) == bytes(32) else _hex(base_id)
        return ModelRecord(
            _hex(model_id), bytes(sha256).hex(), uri, name, bool(active), base_model_id
        )

    def add_model(self, name: str, sha256: str, uri: str, *, base: str | None = None) -> str:
        """Add a model to the registry (owner only); return the transaction hash.

        ``base`` (a name or 0x id) makes the model a LoRA adapter of that active base model.

        Raises:
            ContractRevert: e.g. ``NotOwner``, ``ModelExists``, ``EmptyUri``, ``UnknownModel``
                or ``BaseIsAdapter`` (for ``base``).
        """
        base_id = bytes(32) if base is None else _model_id(base)
        call = self._models.functions.addModel(name, _sha256_bytes(sha256), uri, base_id)
        return self._send("addModel", call, model=name)

    def update_model(self, model: str, sha256: str, uri: str) -> str:
        """Point an active model at a new version (owner only); return the transaction hash.

        Hosts notice the new hash on their next lookup, verify the new file in the background and
        switch new jobs to it; jobs already running finish on the old file.

        Raises:
            ContractRevert: e.g. ``NotOwner``, ``UnknownModel``, ``ModelNotActive``,
                ``NothingChanged``, ``EmptyUri``, ``ZeroHash``.
        """
        call = self._models.functions.updateModel(_model_id(model), _sha256_bytes(sha256), uri)
        return self._send("updateModel", call, model=model)

    def deactivate_model(self, model: str) -> str:
        """Stop hosts from offering ``model`` (owner only); return the transaction hash."""
        return self._send(
            "deactivateModel", self._models.functions.deactivateModel(_model_id(model))
        )

    # Hosts --------------------------------------------------------------------------------------

    def register(
        self,
        offers: Sequence[Offer],
        *,
        stake: int | None = None,
        region: str = "",
        api_url: str,
        metadata_uri: str = "",
    ) -> str:
        """Register this account as a host, staking ``stake`` (default: the minimum).

        Approves the staking token first when its allowance is short. Returns the register
        transaction's hash.

        Raises:
            ChainError: the account holds less of the staking token than the stake
                (``code="insufficient_stake_balance"``).
            ContractRevert: e.g. ``AlreadyRegistered``, ``StakeBelowMinimum``, ``ModelNotActive``,
                ``DuplicateOffer``, ``ZeroPrice``, ``EmptyApiUrl``.
        """
        stake = self.min_stake() if stake is None else stake
        token = self._deployment.staking_token
        balance = self.balance_of(self.address, token)
        if balance < stake:
            raise ChainError(
                "not enough staking tokens for the stake",
                code="insufficient_stake_balance",
                balance=balance,
                stake=stake,
                staking_token=token,
            )
        self._approve(token, self._deployment.node_registry, stake)
        call = self._nodes.functions.register(
            stake, self._offer_tuples(offers), region, api_url, metadata_uri
        )
        return self._send("register", call, host=self.address)

    def update_offers(self, offers: Sequence[Offer]) -> str:
        """Replace this host's whole offer list; return the transaction hash."""
        call = self._nodes.functions.updateOffers(self._offer_tuples(offers))
        return self._send("updateOffers", call, host=self.address)

    def update_info(self, *, region: str, api_url: str, metadata_uri: str) -> str:
        """Replace this host's region, API URL and metadata URI; return the transaction hash."""
        call = self._nodes.functions.updateInfo(region, api_url, metadata_uri)
        return self._send("updateInfo", call, host=self.address)

    def add_stake(self, amount: int) -> str:
        """Stake ``amount`` more staking tokens; return the transaction hash."""
        self._approve(self._deployment.staking_token, self._deployment.node_registry, amount)
        return self._send("addStake", self._nodes.functions.addStake(amount), host=self.address)

    def unregister(self) -> str:
        """Stop taking jobs and start the stake's cool-down; return the transaction hash."""
        return self._send("unregister", self._nodes.functions.unregister(), host=self.address)

    def withdraw_stake(self) -> str:
        """Return the whole stake once the cool-down is over; return the transaction hash."""
        return self._send("withdrawStake", self._nodes.functions.withdrawStake(), host=self.address)

    def min_stake(self) -> int:
        return int(self._read(lambda: self._nodes.functions.minStake().call()))

    def get_host(self, host: str) -> HostRecord:
        """Return ``host``'s registry entry, active flag, offers and ratings."""
        stake, unlock_at, registered, region, api_url, metadata_uri = self._read(
            lambda: self._nodes.functions.getNode(host).call(), host=host
        )
        offers = self._read(lambda: self._nodes.functions.offersOf(host).call(), host=host)
        active = self._read(lambda: self._nodes.functions.isActive(host).call(), host=host)
        return HostRecord(
            address=host,
            registered=bool(registered),
            active=bool(active),
            stake=int(stake),
            unlock_at=int(unlock_at),
            region=region,
            api_url=api_url,
            metadata_uri=metadata_uri,
            offers=tuple((_hex(m), str(t), int(p)) for m, t, p in offers),
            rating=self.rating_of(host),
        )

    def price_of(self, host: str, model: str, token: str = ETH) -> int:
        """Return ``host``'s price per output token for ``model`` in ``token`` (0 = not offered)."""
        model_id = _model_id(model)
        return int(
            self._read(
                lambda: self._nodes.functions.priceOf(host, model_id, token).call(), host=host
            )
        )

    def rating_of(self, host: str) -> Rating:
        count, score_sum = self._read(lambda: self._market.functions.ratingOf(host).call())
        return Rating(int(count), int(score_sum))

    # Jobs ---------------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        """Read a job's on-chain record.

        Raises:
            JobRejected: no job has this id (``code="unknown_job"``).
        """
        job = self._find_job(job_id)
        if job is None:
            raise JobRejected("no such job", code="unknown_job", job_id=job_id)
        return job

    def post_job(
        self,
        model_name: str,
        prompt_hash: str,
        prompt_uri: str,
        max_tokens: int,
        price_per_token: int,
        deposit: int,
        deadline: int,
        *,
        payment_token: str = ETH,
        host: str = ZERO_ADDRESS,
    ) -> int:
        """Escrow ``deposit`` for a job and return its id.

        ``payment_token`` is ``ETH`` or an accepted ERC-20 (approved here when its allowance is
        short); ``host`` names the only host that may claim it (a direct job) or is zero.

        Raises:
            ContractRevert: e.g. ``ZeroDeposit``, ``DeadlineInPast``, ``TokenNotAccepted``,
                ``InsufficientBalance``, ``MaxTokensTooHigh`` (above 2**32 - 1),
                ``PriceTooHigh`` (above 2**88 - 1).
        """
        if payment_token != ETH:
            self._approve(payment_token, self._deployment.job_marketplace, deposit)
        request = (
            host,
            payment_token,
            _model_id(model_name),
            _bytes32(prompt_hash),
            prompt_uri,
            max_tokens,
            price_per_token,
            deposit,
            deadline,
        )
        value_wei = deposit if payment_token == ETH else 0
        receipt = self._sender.send(
            self._market.functions.postJob(request), value_wei=value_wei, action="postJob"
        )
        (posted,) = self._market.events.JobPosted().process_receipt(receipt, errors=DISCARD)
        job_id = int(posted["args"]["jobId"])
        log.info("job posted", extra={"job_id": job_id, "gas_used": receipt["gasUsed"]})
        return job_id

    def cancel_job(self, job_id: int) -> str:
        """Cancel an unclaimed job of ours; its deposit is credited back to us."""
        return self._send("cancelJob", self._market.functions.cancelJob(job_id), job_id=job_id)

    def claim_job(self, job_id: int) -> str:
        """Claim a posted job for this host; return the transaction hash.

        Raises:
            ContractRevert: e.g. ``InsufficientDeposit``, ``ModelNotServed``, ``PriceAboveJob``,
                ``HostNotActive``, ``NotNamedHost``, ``NotPosted``, ``DeadlinePassed``.
        """
        return self._send("claimJob", self._market.functions.claimJob(job_id), job_id=job_id)

    def submit_result(
        self, job_id: int, result_hash: str, result_uri: str, tokens: int, proof: bytes
    ) -> str:
        """Submit the result of a job this host claimed with its billing proof (the 1-job
        circuit), settling it; return the transaction hash.

        Raises:
            ContractRevert: e.g. ``InvalidProof``, ``NotClaimed``, ``NotJobHost``,
                ``TokensAboveMax``, ``DeadlinePassed``.
        """
        call = self._market.functions.submitResult(
            job_id, _bytes32(result_hash), result_uri, tokens, proof
        )
        return self._send("submitResult", call, job_id=job_id)

    def submit_results(
        self, results: Sequence[ResultSubmission], capacity: int, proof: bytes
    ) -> str:
        """Settle several claimed jobs with one billing proof of the ``capacity``-job circuit;
        all settle or none. Return the transaction hash.

        Raises:
            ContractRevert: e.g. ``InvalidProof``, ``BatchSize``, ``NoVerifier``, or any refusal
                of ``submit_result`` for one of the jobs.
        """
        rows = [(r.job_id, _bytes32(r.result_hash), r.result_uri, r.tokens) for r in results]
        call = self._market.functions.submitResults(rows, capacity, proof)
        return self._send("submitResults", call, job_ids=[r.job_id for r in results])

    def submitted_proof(self, job_id: int) -> SubmittedProof | None:
        """Return the proof a settled job was paid with, read from its settlement transaction's
        input; None when the job was not settled.
        """
        receipt = self.find_settlement(job_id)
        if receipt is None:
            return None
        tx = self._read(lambda: self._w3.eth.get_transaction(receipt.settle_tx), job_id=job_id)
        function, args = self._market.decode_function_input(tx["input"])
        if function.fn_name == "submitResult":
            return SubmittedProof((int(args["jobId"]),), 1, bytes(args["proof"]))
        return SubmittedProof(
            job_ids=tuple(int(row["jobId"]) for row in args["results"]),
            capacity=int(args["capacity"]),
            proof=bytes(args["proof"]),
        )

    def refund_expired(self, job_id: int) -> str:
        """Credit an expired job's deposit back to its renter; return the transaction hash.

        Raises:
            ContractRevert: ``DeadlineNotReached`` or ``NotRefundable``.
        """
        call = self._market.functions.refundExpired(job_id)
        return self._send("refundExpired", call, job_id=job_id)

    def rate_host(self, job_id: int, score: int) -> str:
        """As the renter of a settled job, rate its host 1-5, once; return the transaction hash.

        Raises:
            ContractRevert: ``NotSettled``, ``NotJobRenter``, ``AlreadyRated``, ``ScoreOutOfRange``.
        """
        if not 0 <= score <= 255:
            raise ValueError(f"score must be 1-5, got {score}")
        return self._send("rateHost", self._market.functions.rateHost(job_id, score), job_id=job_id)

    def find_settlement(self, job_id: int) -> Receipt | None:
        """Return how a job was settled, read from its ``JobSettled`` event in the block the job
        record names; None if the job is not settled (or does not exist).

        Raises:
            ChainError: the settle block holds no ``JobSettled`` event of the job
                (``code="settlement_event_missing"``), e.g. the RPC has pruned its logs.
        """
        job = self._find_job(job_id)
        if job is None or job.state is not JobState.SETTLED:
            return None
        events = self._read(
            lambda: self._market.events.JobSettled().get_logs(
                from_block=job.settled_block,
                to_block=job.settled_block,
                argument_filters={"jobId": job_id},
            ),
            job_id=job_id,
        )
        if not events:
            raise ChainError(
                "settled job has no JobSettled event in its settle block",
                code="settlement_event_missing",
                job_id=job_id,
                block=job.settled_block,
            )
        event = events[0]
        args = event["args"]
        return Receipt(
            job_id=job_id,
            settle_tx=_hex(event["transactionHash"]),
            payment_token=job.payment_token,
            tokens=args["tokens"],
            paid_to_host_wei=args["hostEarnings"],
            fee_wei=args["fee"],
            refund_wei=args["refund"],
            result_uri=args["resultUri"],
            result_hash=_hex(args["resultHash"]),
        )

    def result_uri(self, job_id: int) -> str:
        """Return where a settled job's result is stored: the URI its host submitted, which the
        chain keeps only in the job's ``JobSettled`` event.

        Raises:
            JobRejected: the job is not settled (``code="job_not_settled"``) or does not exist
                (``code="unknown_job"``).
        """
        receipt = self.find_settlement(job_id)
        if receipt is None:
            state = self.get_job(job_id).state
            raise JobRejected(
                "job is not settled", code="job_not_settled", job_id=job_id, state=state.name
            )
        return receipt.result_uri

    # Money --------------------------------------------------------------------------------------

    def credit_of(self, account: str, token: str = ETH) -> int:
        """Return what ``account`` can withdraw from the marketplace in ``token``."""
        return int(
            self._read(
                lambda: self._market.functions.creditOf(account, token).call(), account=account
            )
        )

    def withdraw(self, token: str = ETH) -> Withdrawal | None:
        """Withdraw everything credited to this account in ``token``; None when nothing is."""
        amount = self.credit_of(self.address, token)
        if amount == 0:
            return None
        tx_hash = self._send("withdraw", self._market.functions.withdraw(token), token=token)
        return Withdrawal(tx_hash, amount)

    def balance_of(self, address: str, token: str = ETH) -> int:
        """Return ``address``'s balance of ``token`` (ETH in wei, or an ERC-20 in base units)."""
        if token == ETH:
            return int(self._read(lambda: self._w3.eth.get_balance(address), address=address))
        erc20 = self._w3.eth.contract(token, abi=self._token_abi)
        return int(self._read(lambda: erc20.functions.balanceOf(address).call(), address=address))

    def gas_cost_wei(self, tx_hash: str) -> int:
        """Return what a mined transaction cost its sender in gas: gasUsed * effectiveGasPrice."""
        receipt = self._receipt(tx_hash)
        return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])

    def gas_used(self, tx_hash: str) -> int:
        return int(self._receipt(tx_hash)["gasUsed"])

    def fee_bps(self) -> int:
        return int(self._read(lambda: self._market.functions.feeBps().call()))

    def treasury(self) -> str:
        return str(self._read(lambda: self._market.functions.treasury().call()))

    def set_fee_bps(self, fee_bps: int) -> str:
        """Set the protocol fee for jobs claimed from now on (owner only)."""
        return self._send("setFee", self._market.functions.setFee(fee_bps))

    def set_treasury(self, treasury: str) -> str:
        return self._send("setTreasury", self._market.functions.setTreasury(treasury))

    def set_min_stake(self, min_stake: int) -> str:
        return self._send("setMinStake", self._nodes.functions.setMinStake(min_stake))

    def mint(self, token: str, to: str, amount: int) -> str:
        """Mint one of our test tokens (only its deployer may)."""
        erc20 = self._w3.eth.contract(token, abi=self._token_abi)
        return self._send("mint", erc20.functions.mint(to, amount), token=token)

    # Chain --------------------------------------------------------------------------------------

    def block_number(self) -> int:
        return int(self._read(lambda: self._w3.eth.block_number))

    def block_hash(self, number: int) -> str | None:
        """Return block ``number``'s hash (0x hex), or None when the chain has no such block."""

        def read() -> str | None:
            try:
                return _hex(self._w3.eth.get_block(number)["hash"])
            except BlockNotFound:
                return None

        return self._read(read)

    def block_time(self, number: int) -> int:
        """Return block ``number``'s timestamp (Unix seconds)."""
        return int(self._read(lambda: self._w3.eth.get_block(number)["timestamp"]))

    def chain_time(self) -> int:
        """Return the latest block's timestamp (what the contracts compare deadlines with)."""
        return int(self._read(lambda: self._w3.eth.get_block("latest")["timestamp"]))

    def gas_price_wei(self) -> int:
        return int(self._read(lambda: self._w3.eth.gas_price))

    def job_logs(self, from_block: int, to_block: int) -> list[Any]:
        """Return the marketplace's raw logs in ``[from_block, to_block]``, in chain order."""
        return list(
            self._read(
                lambda: self._w3.eth.get_logs(
                    {
                        "address": self._deployment.job_marketplace,
                        "fromBlock": from_block,
                        "toBlock": to_block,
                    }
                ),
                from_block=from_block,
                to_block=to_block,
            )
        )

    @property
    def marketplace_events(self) -> Any:
        """The marketplace's event decoders (``.JobPosted().process_log(log)``)."""
        return self._market.events

    # Internals ----------------------------------------------------------------------------------

    def _find_job(self, job_id: int) -> Job | None:
        """Read a job's on-chain record; None when no job has this id."""
        record = self._read(lambda: self._market.functions.getJob(job_id).call(), job_id=job_id)
        fields = dict(zip(_JOB_FIELDS, record, strict=True))
        if fields["state"] == JobState.NONE:
            return None
        for name in ("model_id", "prompt_hash", "result_hash"):
            fields[name] = _hex(fields[name])
        return Job(job_id=job_id, **fields)

    def _read(self, request: Callable[[], T], **context: Any) -> T:
        return with_retries(self._policy, request, **context)

    def _receipt(self, tx_hash: str) -> TxReceipt:
        return self._read(lambda: self._w3.eth.get_transaction_receipt(tx_hash), tx_hash=tx_hash)

    def _offer_tuples(self, offers: Sequence[Offer]) -> list[tuple[bytes, str, int]]:
        if not offers:
            raise ValueError("offer at least one model")
        return [(_model_id(o.model_name), o.token, o.price_per_token) for o in offers]

    def _approve(self, token: str, spender: str, amount: int) -> None:
        erc20 = self._w3.eth.contract(token, abi=self._token_abi)
        allowance = self._read(lambda: erc20.functions.allowance(self.address, spender).call())
        if allowance < amount:
            self._send("approve", erc20.functions.approve(spender, amount), token=token)

    def _send(self, action: str, call: ContractFunction, **context: Any) -> str:
        receipt = self._sender.send(call, action=action, **context)
        tx_hash = _hex(receipt["transactionHash"])
        log.info(
            "transaction mined",
            extra={"action": action, "tx_hash": tx_hash, "gas_used": receipt["gasUsed"], **context},
        )
        return tx_hash
