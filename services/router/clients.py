"""The router's calls to credits and keyvault, each with a deadline, failures read back as `DomainError`.

`Ledger` and `Vault` are the interfaces the pipeline needs; the gRPC implementations here are the real
ones. Provider-key answers (found and not found) are cached for a few seconds so that the hot path does
not ask keyvault on every request. Keyvault gives plaintext provider keys to the router's identity alone,
which every call on the runtime's channels carries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from services.runtime.channels import metadata
from services.runtime.errors import DomainError, from_rpc_error
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc


@dataclass(slots=True)
class Funds:
    """What the ledger says is left after an operation."""

    available_micro: int
    low: bool


@dataclass(frozen=True, slots=True)
class Payer:
    """Who pays a hold and whose budgets it counts against, beside the user."""

    account_id: str = ""  # empty: the user; "team:<team_id>" for a team's pool
    key_id: str = ""
    team_id: str = ""


SELF = Payer()


@dataclass(slots=True)
class Hold:
    hold_id: str
    funds: Funds  # what is left with this hold taken
    amount_micro: int = 0


class Ledger(Protocol):
    async def reserve(
        self,
        user_id: str,
        amount_micro: int,
        key: str,
        request_id: str,
        ttl_seconds: int,
        timeout: float,
        payer: Payer = SELF,
    ) -> Hold: ...

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds: ...

    async def settle_many(
        self, settles: list[credits_pb2.SettleRequest], timeout: float
    ) -> list[Funds | DomainError]: ...

    async def release(self, hold_id: str, key: str, usage: credits_pb2.UsageRecord | None, timeout: float) -> None: ...

    async def record_usage(self, usage: credits_pb2.UsageRecord, key: str, timeout: float) -> None: ...

    async def funds(self, user_id: str, timeout: float) -> Funds: ...


class Vault(Protocol):
    async def provider_key(self, user_id: str, provider: str, timeout: float) -> str | None: ...


def _funds(balance: credits_pb2.Balance) -> Funds:
    return Funds(balance.available_micro, balance.low)


class GrpcLedger:
    def __init__(self, channel: Callable[[], grpc.aio.Channel]) -> None:
        self._channel = channel
        self._made: credits_pb2_grpc.CreditsStub | None = None

    @property
    def _stub(self) -> credits_pb2_grpc.CreditsStub:
        if self._made is None:
            self._made = credits_pb2_grpc.CreditsStub(self._channel())
        return self._made

    async def reserve(
        self,
        user_id: str,
        amount_micro: int,
        key: str,
        request_id: str,
        ttl_seconds: int,
        timeout: float,
        payer: Payer = SELF,
    ) -> Hold:
        request = credits_pb2.ReserveRequest(
            user_id=user_id,
            amount_micro=amount_micro,
            idempotency_key=key,
            request_id=request_id,
            ttl_seconds=ttl_seconds,
            account_id=payer.account_id,
            key_id=payer.key_id,
            team_id=payer.team_id,
        )
        try:
            reply = await self._stub.Reserve(request, timeout=timeout, metadata=metadata())
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "credits") from None
        return Hold(reply.hold_id, _funds(reply.balance), amount_micro)

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds:
        request = credits_pb2.SettleRequest(
            hold_id=hold_id, amount_micro=amount_micro, idempotency_key=key, usage=usage
        )
        try:
            reply = await self._stub.Settle(request, timeout=timeout, metadata=metadata())
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "credits") from None
        return _funds(reply.balance)

    async def settle_many(self, settles: list[credits_pb2.SettleRequest], timeout: float) -> list[Funds | DomainError]:
        """Several settles in one call: each one's funds, or the error it failed with alone."""
        request = credits_pb2.SettleBatchRequest(settles=settles)
        try:
            reply = await self._stub.SettleBatch(request, timeout=timeout, metadata=metadata())
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "credits") from None
        return [
            _funds(o.reply.balance) if not o.error_code else DomainError(o.error_code, o.error_message)
            for o in reply.outcomes
        ]

    async def release(self, hold_id: str, key: str, usage: credits_pb2.UsageRecord | None, timeout: float) -> None:
        request = credits_pb2.ReleaseRequest(hold_id=hold_id, idempotency_key=key, usage=usage)
        try:
            await self._stub.Release(request, timeout=timeout, metadata=metadata())
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "credits") from None

    async def record_usage(self, usage: credits_pb2.UsageRecord, key: str, timeout: float) -> None:
        request = credits_pb2.RecordUsageRequest(usage=usage, idempotency_key=key)
        try:
            await self._stub.RecordUsage(request, timeout=timeout, metadata=metadata())
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "credits") from None

    async def funds(self, user_id: str, timeout: float) -> Funds:
        try:
            reply = await self._stub.GetBalance(
                credits_pb2.GetBalanceRequest(user_id=user_id), timeout=timeout, metadata=metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "credits") from None
        return _funds(reply)


class GrpcVault:
    """Users' own provider keys from keyvault, answers cached for `ttl` seconds."""

    def __init__(self, channel: Callable[[], grpc.aio.Channel], ttl: float) -> None:
        self._channel = channel
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def provider_key(self, user_id: str, provider: str, timeout: float) -> str | None:
        now = time.monotonic()
        cached = self._cache.get((user_id, provider))
        if cached is not None and cached[0] > now:
            return cached[1]
        stub = keyvault_pb2_grpc.KeyVaultStub(self._channel())
        try:
            reply = await stub.GetProviderKey(
                keyvault_pb2.GetProviderKeyRequest(user_id=user_id, provider=provider),
                timeout=timeout,
                metadata=metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "keyvault") from None
        key = reply.api_key if reply.found and reply.api_key else None
        if self._ttl > 0:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[(user_id, provider)] = (now + self._ttl, key)
        return key
