"""The one exception hierarchy of the node.

FabstirError
├── TransientError        a retry may succeed (RPC or storage outage, timeout)
├── JobRejected           the job must not be run or paid: refuse, never retry
├── IntegrityError        bytes do not match their recorded hash: stop and alert
│   ├── ModelIntegrityError
│   └── ResultIntegrityError
├── ChainError            a transaction or call the chain refused
│   └── ContractRevert    a named custom error from one of our contracts
├── ProofError            a proof could not be made or did not verify
├── DependencyMissing     an optional heavy dependency or tool is not installed
├── ObjectMissing         storage holds nothing at that key
├── AccessDenied          the caller may not do this: no, bad or expired credentials
├── LimitExceeded         too many requests or streams, or too large a request: wait or shrink
└── ConfigError           settings that cannot work together

Every error carries a stable ``code`` and keyword-only context.
"""

from __future__ import annotations

from typing import Any


class FabstirError(Exception):
    """Base of every error the node raises on purpose."""

    code = "fabstir_error"

    def __init__(self, message: str, *, code: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.context = context

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{key}={value!r}" for key, value in self.context.items())
        return f"{self.message} ({details})"


class TransientError(FabstirError):
    """A failure worth retrying: an outage or a timeout of an external system."""

    code = "transient"


class JobRejected(FabstirError):
    """The job must not be run: it is not payable, not ours, or not servable."""

    code = "job_rejected"


class IntegrityError(FabstirError):
    """Bytes do not match the hash they were recorded under."""

    code = "integrity"


class ModelIntegrityError(IntegrityError):
    """A model file does not match its expected SHA-256."""

    code = "model_integrity"


class ResultIntegrityError(IntegrityError):
    """A stored result or prompt does not match its content address."""

    code = "result_integrity"


class ChainError(FabstirError):
    """The chain refused a call or transaction."""

    code = "chain_error"


class ContractRevert(ChainError):
    """A contract reverted with one of its named custom errors."""

    code = "contract_revert"

    def __init__(self, error_name: str, args: tuple[Any, ...] = (), **context: Any) -> None:
        super().__init__(f"contract reverted with {error_name}{args!r}", **context)
        self.error_name = error_name
        self.error_args = args


class ProofError(FabstirError):
    """A proof could not be produced or did not verify."""

    code = "proof_error"


class DependencyMissing(FabstirError):
    """An optional dependency or external tool is not installed."""

    code = "dependency_missing"


class AccessDenied(FabstirError):
    """The caller is not allowed: missing, malformed, expired or someone else's credentials."""

    code = "access_denied"


class LimitExceeded(FabstirError):
    """A rate, size or concurrency limit was hit; ``retry_after_s`` says when to try again."""

    code = "limit_exceeded"


class ConfigError(FabstirError):
    """Settings that cannot work together."""

    code = "config_error"


class ObjectMissing(FabstirError):
    """A storage key or URI holds no object."""

    code = "object_missing"
