"""A fresh anvil with our contracts for every test, and the accounts that use it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.contract import Contract

from fabstir.chain import ETH, ChainClient, Deployment, Devnet, Offer, TxPolicy
from fabstir.chain.contracts import Artifact
from fabstir.chain.transactions import TransactionSender
from fabstir.proofs import BillingProver
from fabstir.settings import ANVIL_KEYS, ModelSpec
from tests.support.billing import billing_proof

# Not one of anvil's prefunded accounts: a second host, funded by the fixture.
OTHER_HOST_KEY = "0x" + "42" * 32
# Another fresh account: deploys and drives the hostile test contracts, so its nonces never race
# the clients of the named roles.
ATTACKER_KEY = "0x" + "a7" * 32
REPO_ROOT = Path(__file__).resolve().parents[3]
TEST_CONTRACTS_DIR = REPO_ROOT / "tests" / "contracts"
# solc-js standard JSON in, standard JSON out; the same compiler `npm ci` installs for contracts/.
_SOLC_JS = "process.stdout.write(require('solc').compile(require('fs').readFileSync(0, 'utf8')))"
MODEL = "smollm2-135m-instruct-q4_0"
OTHER_MODEL = "another-model"
PRICE_PER_TOKEN_WEI = 1_000_000_007
STABLE_PRICE = 5
API_URL = "http://127.0.0.1:8000"
MODELS = [
    ModelSpec(id=name, uri=f"s3://models/{name}.gguf", sha256=digest * 32)
    for name, digest in ((MODEL, "ab"), (OTHER_MODEL, "cd"))
]


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    net = Devnet(deployment_file=tmp_path / "devnet.json", models=MODELS)
    net.start()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture
def deployment(devnet: Devnet) -> Deployment:
    return devnet.deployment


@pytest.fixture
def w3(deployment: Deployment) -> Web3:
    return Web3(HTTPProvider(deployment.rpc_url))


@pytest.fixture
def owner(devnet: Devnet) -> ChainClient:
    return devnet.owner()


@pytest.fixture
def host(deployment: Deployment) -> ChainClient:
    return ChainClient(deployment, ANVIL_KEYS[1])


@pytest.fixture
def renter(deployment: Deployment) -> ChainClient:
    return ChainClient(deployment, ANVIL_KEYS[2])


@pytest.fixture
def stable(deployment: Deployment) -> str:
    return deployment.payment_tokens["USDC"]


@pytest.fixture
def other_host(deployment: Deployment, w3: Web3, owner: ChainClient) -> ChainClient:
    """A host with ETH and staking tokens but not registered."""
    address = Account.from_key(OTHER_HOST_KEY).address
    w3.provider.make_request("anvil_setBalance", [address, hex(10**20)])
    owner.mint(deployment.staking_token, address, 1_000 * 10**18)
    return ChainClient(deployment, OTHER_HOST_KEY)


def offers_for(stable: str, model: str = MODEL) -> list[Offer]:
    return [Offer(model, PRICE_PER_TOKEN_WEI, ETH), Offer(model, STABLE_PRICE, stable)]


@pytest.fixture
def registered_host(host: ChainClient, stable: str) -> ChainClient:
    host.register(offers_for(stable), api_url=API_URL, region="eu")
    return host


@pytest.fixture
def chain_now(w3: Web3) -> Callable[[], int]:
    """Return the latest block's timestamp (anvil's clock, which tests move forward)."""
    return lambda: int(w3.eth.get_block("latest")["timestamp"])


@pytest.fixture
def advance_time(w3: Web3) -> Callable[[int], None]:
    """Move the chain's clock forward by some seconds and mine a block."""

    def advance(seconds: int) -> None:
        w3.provider.make_request("evm_increaseTime", [seconds])
        w3.provider.make_request("evm_mine", [])

    return advance


@pytest.fixture
def post_job(renter: ChainClient, chain_now: Callable[[], int]) -> Callable[..., int]:
    """Post a job as the renter: by default open, in ETH, fully funded, due in an hour."""

    def post(
        *,
        model_name: str = MODEL,
        max_tokens: int = 100,
        price: int = PRICE_PER_TOKEN_WEI,
        deposit: int | None = None,
        ttl_s: int = 3600,
        token: str = ETH,
        host: str | None = None,
        client: ChainClient | None = None,
    ) -> int:
        return (client or renter).post_job(
            model_name,
            "0x" + "11" * 32,
            "file:///prompts/1.json",
            max_tokens,
            price,
            max_tokens * price if deposit is None else deposit,
            chain_now() + ttl_s,
            payment_token=token,
            **({} if host is None else {"host": host}),
        )

    return post


@pytest.fixture
def proof_for(
    billing_prover: BillingProver, renter: ChainClient
) -> Callable[[int, str, int], bytes]:
    """Prove a job's billing for a result hash and token count: (job_id, result_hash, tokens)."""
    return lambda job_id, result_hash, tokens: billing_proof(
        billing_prover, renter, job_id, result_hash, tokens
    )


@pytest.fixture(scope="session")
def test_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """Compile tests/contracts/*.sol (hostile contracts that exist only for tests, never shipped)
    with solc-js and the settings of contracts/build.mjs; keep the standard JSON in a tmp dir."""
    sources = sorted(TEST_CONTRACTS_DIR.glob("*.sol"))
    compiler_input = {
        "language": "Solidity",
        "sources": {path.name: {"content": path.read_text(encoding="utf-8")} for path in sources},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "cancun",
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    compiled = subprocess.run(
        ["node", "-e", _SOLC_JS],
        input=json.dumps(compiler_input),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    ).stdout
    (tmp_path_factory.mktemp("test-contracts") / "solc-output.json").write_text(compiled)
    output = json.loads(compiled)
    problems = [problem["formattedMessage"] for problem in output.get("errors", [])]
    assert not problems, "\n".join(problems)
    return {
        path.stem: Artifact(
            contract_name=path.stem,
            abi=output["contracts"][path.name][path.stem]["abi"],
            bytecode="0x" + output["contracts"][path.name][path.stem]["evm"]["bytecode"]["object"],
            source_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sources
    }


@pytest.fixture
def attacker(w3: Web3) -> TransactionSender:
    """A funded fresh account's transaction queue (simulates first, so reverts are decoded)."""
    w3.provider.make_request(
        "anvil_setBalance", [Account.from_key(ATTACKER_KEY).address, hex(10**20)]
    )
    return TransactionSender(w3, ATTACKER_KEY, TxPolicy())


@pytest.fixture
def deploy_test_contract(
    w3: Web3, attacker: TransactionSender, test_artifacts: dict[str, Artifact]
) -> Callable[..., Contract]:
    """Deploy one of tests/contracts by name, as the attacker: (name, *constructor_args)."""

    def deploy(name: str, *args: object) -> Contract:
        artifact = test_artifacts[name]
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = attacker.send(factory.constructor(*args), contract=name)
        return w3.eth.contract(receipt["contractAddress"], abi=artifact.abi)

    return deploy
