"""`fabstir-node register | update | unregister | status | withdraw | rate`: the host on chain.

Each command signs with FABSTIR_CHAIN__HOST_PRIVATE_KEY on the configured network and prints one
JSON object. `status` adds the node's health checks (as `fabstir-node health --json` prints them).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from fabstir.commands.ops import check_health
from fabstir.errors import ChainError, ConfigError
from fabstir.settings import Settings

if TYPE_CHECKING:
    from fabstir.chain import ChainClient, Offer


def register(commands: Any) -> None:
    reg = commands.add_parser("register", help="Stake and register this host with its offers.")
    reg.add_argument(
        "--stake", type=_positive_int, help="Staking-token base units (default: the minimum)."
    )
    reg.set_defaults(handler=run_register)
    commands.add_parser(
        "update", help="Replace this host's offers, region, API URL and metadata on chain."
    ).set_defaults(handler=run_update)
    commands.add_parser(
        "unregister",
        help="Stop taking jobs and start the stake's cool-down; run again after it to get the "
        "stake back.",
    ).set_defaults(handler=run_unregister)
    commands.add_parser(
        "status",
        help="Show this host's registration, stake, offers, ratings and earnings, and the node's "
        "health checks (liveness, readiness with reasons).",
    ).set_defaults(handler=run_status)
    commands.add_parser(
        "withdraw", help="Withdraw everything the marketplace credits this account."
    ).set_defaults(handler=run_withdraw)
    rate = commands.add_parser("rate", help="As the renter of a settled job, rate its host.")
    rate.add_argument("job_id", type=_positive_int)
    rate.add_argument("score", type=int, choices=range(1, 6), metavar="SCORE (1-5)")
    rate.set_defaults(handler=run_rate)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def connect(settings: Settings) -> ChainClient:
    """Build the chain client for the configured network and key.

    Raises:
        ConfigError: unknown network, missing deployment file, or a chain id mismatch.
        ChainError: the RPC serves another chain than the deployment (``code="wrong_chain"``).
        TransientError: the RPC cannot be reached (``code="rpc_unreachable"``).
    """
    from fabstir.chain import ChainClient
    from fabstir.chain.transactions import policy_from_settings

    chain = settings.chain
    return ChainClient(
        chain.deployment(),
        chain.host_private_key.get_secret_value(),
        policy=policy_from_settings(chain),
    )


def offers_from_settings(settings: Settings, client: ChainClient) -> list[Offer]:
    """Offer every configured model in ETH and in each token of ``host.token_prices``.

    Raises:
        ConfigError: no models configured, or a token symbol this network does not accept.
    """
    from fabstir.chain import ETH, Offer

    host = settings.host
    if not host.models:
        raise ConfigError("no models configured in FABSTIR_HOST__MODELS", code="no_models")
    tokens = {ETH: host.price_per_token_wei}
    for symbol, price in host.token_prices.items():
        try:
            tokens[client.token_address(symbol)] = price
        except ValueError as exc:
            raise ConfigError(
                f"FABSTIR_HOST__TOKEN_PRICES: {exc}", code="unknown_payment_token"
            ) from exc
    return [Offer(spec.id, price, token) for spec in host.models for token, price in tokens.items()]


def _print(payload: dict[str, Any]) -> int:
    print(json.dumps(payload))
    return 0


def _registered(client: ChainClient) -> None:
    if not client.get_host(client.address).registered:
        raise ChainError(
            "this account is not registered as a host; run `fabstir-node register`",
            code="not_registered",
            host=client.address,
        )


def run_register(settings: Settings, args: argparse.Namespace) -> int:
    client = connect(settings)
    host = settings.host
    tx = client.register(
        offers_from_settings(settings, client),
        stake=args.stake or host.stake,
        region=host.region,
        api_url=host.public_url,
        metadata_uri=host.metadata_uri,
    )
    record = client.get_host(client.address)
    return _print({"host": client.address, "tx": tx, "stake": record.stake})


def run_update(settings: Settings, args: argparse.Namespace) -> int:
    client = connect(settings)
    _registered(client)
    host = settings.host
    offers_tx = client.update_offers(offers_from_settings(settings, client))
    info_tx = client.update_info(
        region=host.region, api_url=host.public_url, metadata_uri=host.metadata_uri
    )
    return _print({"host": client.address, "offers_tx": offers_tx, "info_tx": info_tx})


def run_unregister(settings: Settings, args: argparse.Namespace) -> int:
    client = connect(settings)
    _registered(client)
    record = client.get_host(client.address)
    if record.unlock_at == 0:
        client.unregister()
        unlock_at = client.get_host(client.address).unlock_at
        return _print({"host": client.address, "state": "cooling_down", "unlock_at": unlock_at})
    if client.chain_time() < record.unlock_at:
        return _print(
            {"host": client.address, "state": "cooling_down", "unlock_at": record.unlock_at}
        )
    tx = client.withdraw_stake()
    return _print(
        {"host": client.address, "state": "unregistered", "stake_returned": record.stake, "tx": tx}
    )


def _tokens(client: ChainClient) -> dict[str, str]:
    from fabstir.chain import ETH

    return {"ETH": ETH, **client.deployment.payment_tokens}


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    client = connect(settings)
    record = client.get_host(client.address)
    status = record._asdict()
    status["rating"] = record.rating._asdict()
    status["offers"] = [
        {"model_id": model_id, "token": token, "price_per_token": price}
        for model_id, token, price in record.offers
    ]
    status["credits"] = {
        symbol: client.credit_of(client.address, token) for symbol, token in _tokens(client).items()
    }
    status["staking_balance"] = client.balance_of(client.address, client.deployment.staking_token)
    status["network"] = settings.chain.network
    status["chain_id"] = client.deployment.chain_id
    # Exit 0 even when not ready: `status` also answers "am I registered?" on a machine where the
    # node is not running; `fabstir-node health` is the probe that exits 1.
    status["health"] = check_health(settings)
    return _print(status)


def run_withdraw(settings: Settings, args: argparse.Namespace) -> int:
    client = connect(settings)
    withdrawn = {}
    for symbol, token in _tokens(client).items():
        withdrawal = client.withdraw(token)
        withdrawn[symbol] = 0 if withdrawal is None else withdrawal.amount
    return _print({"account": client.address, "withdrawn": withdrawn})


def run_rate(settings: Settings, args: argparse.Namespace) -> int:
    client = connect(settings)
    tx = client.rate_host(args.job_id, args.score)
    return _print({"job_id": args.job_id, "score": args.score, "tx": tx})
