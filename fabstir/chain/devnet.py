"""A local chain for development and tests: anvil on a free loopback port, contracts deployed."""

from __future__ import annotations

import logging
import platform
import re
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from eth_account import Account

from fabstir.chain.client import ChainClient
from fabstir.chain.deployment import Deployment, MarketTerms, deploy_contracts, deploy_token
from fabstir.chain.transactions import connect
from fabstir.errors import ChainError, DependencyMissing, TransientError
from fabstir.service import stop_process
from fabstir.settings import ANVIL_KEYS, ModelSpec

log = logging.getLogger(__name__)

DEFAULT_FEE_BPS = 250
STAKING_SYMBOL = "FAB"
STABLE_SYMBOL = "USDC"
STABLE_DECIMALS = 6
DEFAULT_MIN_STAKE = 100 * 10**18
DEFAULT_COOLDOWN_S = 3600
# What every anvil account in ANVIL_KEYS receives: enough to stake and to pay many jobs.
FUNDED_STAKE = 10_000 * 10**18
FUNDED_STABLE = 1_000_000 * 10**STABLE_DECIMALS
_ANVIL_PACKAGES = {
    ("Linux", "x86_64"): "anvil-linux-amd64",
    ("Linux", "aarch64"): "anvil-linux-arm64",
    ("Darwin", "x86_64"): "anvil-darwin-amd64",
    ("Darwin", "arm64"): "anvil-darwin-arm64",
}
_LISTENING = re.compile(r"Listening on (\d+\.\d+\.\d+\.\d+):(\d+)")
_POLL_S = 0.02


def anvil_binary(search_from: Sequence[Path] | None = None) -> Path:
    """Find the anvil binary that ``npm ci`` installs under ``node_modules``.

    Looks in each directory of ``search_from`` and every directory above it; by default the
    working directory and this package's directory.

    Raises:
        DependencyMissing: no installed anvil for this platform.
    """
    package = _ANVIL_PACKAGES.get((platform.system(), platform.machine()))
    if package is None:
        raise DependencyMissing(
            f"no anvil build for {platform.system()} {platform.machine()}",
            code="anvil_unsupported_platform",
        )
    relative = Path("node_modules") / "@foundry-rs" / package / "bin" / "anvil"
    if search_from is None:
        search_from = (Path.cwd(), Path(__file__).parent)
    starts = [start.resolve() for start in search_from]
    for start in starts:
        for directory in (start, *start.parents):
            candidate = directory / relative
            if candidate.is_file():
                return candidate
    raise DependencyMissing(
        "anvil is not installed: run `npm ci` in the repository root",
        code="anvil_missing",
        searched_from=[str(start) for start in starts],
    )


class Devnet:
    """Run anvil on ``127.0.0.1`` with a free port and deploy our contracts and test tokens on it.

    Deploys a staking token (FAB) and a stable-coin (USDC, 6 decimals) that the marketplace
    accepts, funds every account of ``ANVIL_KEYS`` with both, and adds ``models`` to the model
    registry. The deployer (``ANVIL_KEYS[0]``) owns everything.

    Use as a context manager (``with Devnet() as deployment: ...``) or call :meth:`start` and
    :meth:`stop`. The anvil process is also stopped when this object is collected or the
    interpreter exits, so it never outlives its owner.
    """

    def __init__(
        self,
        *,
        deployment_file: Path | None = None,
        deployer_key: str = ANVIL_KEYS[0],
        treasury: str | None = None,
        fee_bps: int = DEFAULT_FEE_BPS,
        min_stake: int = DEFAULT_MIN_STAKE,
        unstake_cooldown_s: int = DEFAULT_COOLDOWN_S,
        models: Sequence[ModelSpec] = (),
        anvil_args: Sequence[str] = (),
        startup_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self._deployment_file = deployment_file
        self._deployer_key = deployer_key
        self._treasury = treasury or str(Account.from_key(ANVIL_KEYS[3]).address)
        self._terms = MarketTerms(
            treasury=self._treasury,
            fee_bps=fee_bps,
            min_stake=min_stake,
            unstake_cooldown_s=unstake_cooldown_s,
        )
        self._models = tuple(models)
        self._anvil_args = tuple(anvil_args)
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir: Path | None = None
        self._finalizer: weakref.finalize[..., None] | None = None
        self._deployment: Deployment | None = None

    @property
    def deployment(self) -> Deployment:
        """The deployment of the running devnet."""
        if self._deployment is None:
            raise RuntimeError("the devnet is not running")
        return self._deployment

    def start(self) -> Deployment:
        """Start anvil, wait until it answers, deploy the contracts and return the deployment.

        Writes the deployment to ``deployment_file`` when one was given.

        Raises:
            DependencyMissing: anvil is not installed (run ``npm ci``).
            ChainError: anvil exited during startup.
            TransientError: anvil did not answer within ``startup_timeout_s``.
        """
        if self._process is not None:
            raise RuntimeError("the devnet is already running")
        binary = anvil_binary()
        self._log_dir = Path(tempfile.mkdtemp(prefix="fabstir-anvil-"))
        log_path = self._log_dir / "anvil.log"
        with log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                [str(binary), "--host", "127.0.0.1", "--port", "0", *self._anvil_args],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._finalizer = weakref.finalize(self, stop_process, self._process, self._stop_timeout_s)
        try:
            rpc_url = self._wait_until_listening(log_path)
            self._wait_until_answering(rpc_url)
            deployment = self._deploy(rpc_url)
        except BaseException:
            self.stop()
            raise
        if self._deployment_file is not None:
            deployment.save(self._deployment_file)
        self._deployment = deployment
        log.info("devnet started", extra={"rpc_url": rpc_url, "pid": self._process.pid})
        return deployment

    def owner(self) -> ChainClient:
        """A client signing as the deployer, which owns the contracts and mints the tokens."""
        return ChainClient(self.deployment, self._deployer_key)

    def _deploy(self, rpc_url: str) -> Deployment:
        key = self._deployer_key
        staking = deploy_token(rpc_url, key, "Fabstir Stake", STAKING_SYMBOL, 18)
        stable = deploy_token(rpc_url, key, "Test USD", STABLE_SYMBOL, STABLE_DECIMALS)
        deployment = deploy_contracts(
            rpc_url,
            key,
            self._terms,
            staking_token=staking,
            payment_tokens={STABLE_SYMBOL: stable},
        )
        owner = ChainClient(deployment, key)
        for account_key in ANVIL_KEYS:
            account = Account.from_key(account_key).address
            owner.mint(staking, account, FUNDED_STAKE)
            owner.mint(stable, account, FUNDED_STABLE)
        # Base models first: an adapter names a base that must already be registered.
        for spec in sorted(self._models, key=lambda spec: spec.base is not None):
            owner.add_model(spec.id, spec.sha256, spec.uri, base=spec.base)
        return deployment

    def stop(self) -> None:
        """Stop anvil (SIGTERM, then SIGKILL after ``stop_timeout_s``) and remove its log."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._process = None
        self._deployment = None
        if self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_listening(self, log_path: Path) -> str:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            output = log_path.read_text(errors="replace")
            match = _LISTENING.search(output)
            if match:
                return f"http://{match.group(1)}:{match.group(2)}"
            if self._process.poll() is not None:
                raise ChainError(
                    "anvil exited during startup",
                    code="devnet_failed",
                    returncode=self._process.returncode,
                    output_tail=output[-2000:],
                )
            time.sleep(_POLL_S)
        raise TransientError("anvil did not start listening in time", code="devnet_timeout")

    def _wait_until_answering(self, rpc_url: str) -> None:
        w3 = connect(rpc_url, request_timeout_s=1.0)
        deadline = time.monotonic() + self._startup_timeout_s
        while not w3.is_connected():
            if time.monotonic() > deadline:
                raise TransientError(
                    "anvil did not answer in time", code="devnet_timeout", rpc_url=rpc_url
                )
            time.sleep(_POLL_S)
