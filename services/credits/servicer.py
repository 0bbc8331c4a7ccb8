"""The gRPC adapter of the ledger: unpack the request, call one domain function, pack the reply.

Who may call each method is in `access.py` (the router moves money, the gateway reads for users, admins
grant); the gateway authorizes the user it speaks for.
"""

from __future__ import annotations

import asyncio
from typing import TypeAlias

import grpc

from services.credits import budgets, holds, usage
from services.credits.ledger import Balance, Ledger, Transaction
from services.credits.metrics import operation
from services.credits.usage import UsageEntry
from services.runtime import identity
from services.runtime.errors import DomainError, rpc, unhandled
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[object, object]

MAX_SETTLE_BATCH = 256


def balance_message(b: Balance) -> credits_pb2.Balance:
    return credits_pb2.Balance(
        user_id=b.user_id,
        balance_micro=b.balance_micro,
        reserved_micro=b.reserved_micro,
        available_micro=b.available_micro,
        low=b.low,
        low_threshold_micro=b.low_threshold_micro,
        tier=b.tier,
        overdraft_micro=b.overdraft_micro,
    )


def usage_entry(record: credits_pb2.UsageRecord) -> UsageEntry:
    return UsageEntry(
        request_id=record.request_id,
        user_id=record.user_id,
        api_key_id=record.api_key_id,
        model=record.model,
        provider=record.provider,
        deployment=record.deployment,
        power_level=record.power_level,
        route=record.route,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cost_micro=record.cost_micro,
        latency_ms=record.latency_ms,
        status=record.status,
        byok=record.byok,
        cache_hit=record.cache_hit,
        fallback_count=record.fallback_count,
        usage_estimated=record.usage_estimated,
        decision=record.decision,
        cache_read_tokens=record.cache_read_tokens,
        cache_write_tokens=record.cache_write_tokens,
        reasoning_tokens=record.reasoning_tokens,
        end_user=record.end_user,
        tags=dict(record.tags),
    )


def usage_record(entry: UsageEntry) -> credits_pb2.UsageRecord:
    return credits_pb2.UsageRecord(
        request_id=entry.request_id,
        user_id=entry.user_id,
        api_key_id=entry.api_key_id,
        model=entry.model,
        provider=entry.provider,
        deployment=entry.deployment,
        power_level=entry.power_level,
        route=entry.route,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        cost_micro=entry.cost_micro,
        latency_ms=entry.latency_ms,
        status=entry.status,
        byok=entry.byok,
        cache_hit=entry.cache_hit,
        fallback_count=entry.fallback_count,
        usage_estimated=entry.usage_estimated,
        decision=entry.decision,
        cache_read_tokens=entry.cache_read_tokens,
        cache_write_tokens=entry.cache_write_tokens,
        reasoning_tokens=entry.reasoning_tokens,
        end_user=entry.end_user,
        tags=entry.tags,
    )


def usage_filter(message: credits_pb2.UsageFilter) -> usage.UsageFilter:
    return usage.UsageFilter(
        model=message.model,
        api_key_id=message.api_key_id,
        end_user=message.end_user,
        tags=dict(message.tags),
        users=tuple(message.user_ids),
    )


def transaction_message(t: Transaction) -> credits_pb2.Transaction:
    return credits_pb2.Transaction(
        id=str(t.id),
        user_id=t.user_id,
        kind=t.kind,
        amount_micro=t.amount_micro,
        request_id=t.request_id,
        idempotency_key=t.idempotency_key,
        created_unix_ms=t.created_at,
        reason=t.reason,
        overdraft_micro=t.overdraft_micro,
        hold_id=t.hold_id,
    )


def budget_message(b: budgets.Budget) -> credits_pb2.Budget:
    return credits_pb2.Budget(
        budget_id=b.budget_id,
        scope=b.scope,
        scope_id=b.scope_id,
        period=b.period,
        timezone=b.timezone,
        limit_micro=b.limit_micro,
        alert_percents=list(b.alert_percents),
        soft_limit_micro=b.soft_limit_micro,
        spent_micro=b.spent_micro,
        reserved_micro=b.reserved_micro,
        period_start_unix_ms=b.period_start,
        resets_unix_ms=b.period_end,
        actor=b.actor,
    )


def budget_of(message: credits_pb2.Budget) -> budgets.Budget:
    return budgets.Budget(
        budget_id=message.budget_id,
        scope=message.scope,
        scope_id=message.scope_id,
        period=message.period,
        timezone=message.timezone,
        limit_micro=message.limit_micro,
        soft_limit_micro=message.soft_limit_micro,
        alert_percents=tuple(message.alert_percents),
        actor=message.actor,
    )


def cursor(value: str, param: str) -> int | None:
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 18):  # '³' is a digit to isdigit(), not to int()
        raise DomainError("invalid_request", f"{param} must be a cursor returned by a previous page", param)
    return int(value)


class CreditsServicer(credits_pb2_grpc.CreditsServicer):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @rpc
    async def GetBalance(self, request: credits_pb2.GetBalanceRequest, context: Context) -> credits_pb2.Balance:
        return balance_message(await self.ledger.balance(request.user_id))

    @rpc
    async def Grant(self, request: credits_pb2.GrantRequest, context: Context) -> credits_pb2.GrantReply:
        with operation("grant"):
            tx_id, balance = await self.ledger.grant(
                request.user_id,
                request.amount_micro,
                request.idempotency_key,
                request.kind,
                request.reason,
                request.actor,
            )
        return credits_pb2.GrantReply(transaction_id=str(tx_id), balance=balance_message(balance))

    @rpc
    async def Reserve(self, request: credits_pb2.ReserveRequest, context: Context) -> credits_pb2.ReserveReply:
        with operation("reserve"):
            hold_id, balance = await holds.reserve(
                self.ledger,
                request.user_id,
                request.amount_micro,
                request.idempotency_key,
                request.request_id,
                request.ttl_seconds,
                account_id=request.account_id,
                key_id=request.key_id,
                team_id=request.team_id,
            )
        return credits_pb2.ReserveReply(hold_id=hold_id, balance=balance_message(balance))

    @rpc
    async def Settle(self, request: credits_pb2.SettleRequest, context: Context) -> credits_pb2.SettleReply:
        return await self._settle(request)

    async def _settle(self, request: credits_pb2.SettleRequest) -> credits_pb2.SettleReply:
        entry = usage_entry(request.usage) if request.HasField("usage") else None
        with operation("settle"):
            done = await holds.settle(
                self.ledger, request.hold_id, request.amount_micro, request.idempotency_key, entry
            )
        return credits_pb2.SettleReply(
            charged_micro=done.charged_micro,
            overdraft_micro=done.overdraft_micro,
            balance=balance_message(done.balance),
        )

    @rpc
    async def SettleBatch(
        self, request: credits_pb2.SettleBatchRequest, context: Context
    ) -> credits_pb2.SettleBatchReply:
        if len(request.settles) > MAX_SETTLE_BATCH:
            raise DomainError("invalid_request", f"at most {MAX_SETTLE_BATCH} settles per call", "settles")
        outcomes = await asyncio.gather(*(self._settle_one(settle) for settle in request.settles))
        return credits_pb2.SettleBatchReply(outcomes=outcomes)

    async def _settle_one(self, request: credits_pb2.SettleRequest) -> credits_pb2.SettleOutcome:
        try:
            return credits_pb2.SettleOutcome(reply=await self._settle(request))
        except DomainError as err:
            return credits_pb2.SettleOutcome(error_code=err.code, error_message=err.message)
        except Exception as exc:
            refusal = unhandled(self.SettleBatch, exc)
            return credits_pb2.SettleOutcome(error_code=refusal.code, error_message=refusal.message)

    @rpc
    async def Release(self, request: credits_pb2.ReleaseRequest, context: Context) -> credits_pb2.ReleaseReply:
        entry = usage_entry(request.usage) if request.HasField("usage") else None
        with operation("release"):
            balance = await holds.release(self.ledger, request.hold_id, request.idempotency_key, entry)
        return credits_pb2.ReleaseReply(balance=balance_message(balance))

    @rpc
    async def RecordUsage(
        self, request: credits_pb2.RecordUsageRequest, context: Context
    ) -> credits_pb2.RecordUsageReply:
        entry = usage_entry(request.usage)
        peer = identity.current()
        if peer is not None and peer.service == identity.GATEWAY:
            usage.require_free_cache_hit(entry)
        with operation("record_usage"):
            await usage.record_usage(self.ledger, entry, request.idempotency_key)
        return credits_pb2.RecordUsageReply()

    @rpc
    async def ListTransactions(
        self, request: credits_pb2.ListTransactionsRequest, context: Context
    ) -> credits_pb2.ListTransactionsReply:
        page, after = await self.ledger.transactions(
            request.user_id, request.limit, cursor(request.before_id, "before_id")
        )
        return credits_pb2.ListTransactionsReply(
            transactions=[transaction_message(t) for t in page], next_before_id=str(after) if after else ""
        )

    @rpc
    async def ListUsage(self, request: credits_pb2.ListUsageRequest, context: Context) -> credits_pb2.ListUsageReply:
        rows, after = await usage.list_usage(
            self.ledger,
            request.user_id,
            request.since_unix_ms,
            request.until_unix_ms,
            request.limit,
            cursor(request.before_id, "before_id"),
            usage_filter(request.filter),
        )
        return credits_pb2.ListUsageReply(
            rows=[credits_pb2.UsageRow(usage=usage_record(r.entry), created_unix_ms=r.created_at) for r in rows],
            next_before_id=str(after) if after else "",
        )

    @rpc
    async def UsageSummary(
        self, request: credits_pb2.UsageSummaryRequest, context: Context
    ) -> credits_pb2.UsageSummaryReply:
        groups = await usage.summary(
            self.ledger,
            request.user_id,
            request.group_by,
            request.since_unix_ms,
            request.until_unix_ms,
            usage_filter(request.filter),
        )
        return credits_pb2.UsageSummaryReply(
            groups=[
                credits_pb2.UsageGroup(
                    key=g.key,
                    requests=g.requests,
                    prompt_tokens=g.prompt_tokens,
                    completion_tokens=g.completion_tokens,
                    cost_micro=g.cost_micro,
                    cache_read_tokens=g.cache_read_tokens,
                    cache_write_tokens=g.cache_write_tokens,
                    reasoning_tokens=g.reasoning_tokens,
                )
                for g in groups
            ]
        )

    @rpc
    async def SetBudget(self, request: credits_pb2.Budget, context: Context) -> credits_pb2.Budget:
        return budget_message(await budgets.save(self.ledger, budget_of(request)))

    @rpc
    async def ListBudgets(
        self, request: credits_pb2.ListBudgetsRequest, context: Context
    ) -> credits_pb2.ListBudgetsReply:
        found = await budgets.find(self.ledger, request.scope, request.scope_id, request.budget_id)
        return credits_pb2.ListBudgetsReply(budgets=[budget_message(b) for b in found])

    @rpc
    async def DeleteBudget(
        self, request: credits_pb2.DeleteBudgetRequest, context: Context
    ) -> credits_pb2.DeleteBudgetReply:
        return credits_pb2.DeleteBudgetReply(deleted=await budgets.remove(self.ledger, request.budget_id))
