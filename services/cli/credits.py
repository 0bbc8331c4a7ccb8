"""`tollgate credits` (grant, show, reconcile) and `tollgate usage` (show, summary).

grant, show and usage talk gRPC to the credits service (`--credits-addr` or `TOLLGATE_CREDITS_ADDR`), the
single writer of money. `reconcile` reads the credits database itself (`--database-url` or
`TOLLGATE_CREDITS_DATABASE_URL`, the embedded SQLite file by default) in one consistent snapshot, so it
also works while the service is down; it exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from services.cli.common import actor, add_connection, print_json, runner, when
from services.credits.settings import CreditsSettings, to_credits, to_micro
from services.runtime.settings import load
from tollgate.credits.v1 import credits_pb2 as pb
from tollgate.credits.v1 import credits_pb2_grpc


def _unix_ms(text: str) -> int:
    """A date (`2025-01-31`) or ISO time, UTC, as unix milliseconds."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _balance(b: pb.Balance) -> dict[str, Any]:
    return {
        "user_id": b.user_id,
        "balance": to_credits(b.balance_micro),
        "reserved": to_credits(b.reserved_micro),
        "available": to_credits(b.available_micro),
        "overdraft": to_credits(b.overdraft_micro),
        "low": b.low,
        "low_threshold": to_credits(b.low_threshold_micro),
        "tier": b.tier,
    }


async def _grant(stub: credits_pb2_grpc.CreditsAsyncStub, args: argparse.Namespace) -> int:
    if bool(args.user) == bool(args.team):
        print("tollgate: name a USER or a --team (not both)", file=sys.stderr)
        return 2
    account = args.user or f"team:{args.team}"
    try:
        amount = to_micro(args.amount)
    except (ArithmeticError, ValueError) as exc:
        print(f"tollgate: AMOUNT must be a number of credits: {exc}", file=sys.stderr)
        return 2
    reply = await stub.Grant(
        pb.GrantRequest(
            user_id=account,
            amount_micro=amount,
            idempotency_key=args.key or f"cli:{uuid.uuid4().hex}",
            kind=args.kind,
            reason=args.reason,
            actor=actor(),
        ),
        timeout=args.timeout,
    )
    print(f"granted {to_credits(amount)} credits to {account} (transaction {reply.transaction_id})")
    print_json(_balance(reply.balance))
    return 0


async def _show(stub: credits_pb2_grpc.CreditsAsyncStub, args: argparse.Namespace) -> int:
    balance = await stub.GetBalance(pb.GetBalanceRequest(user_id=args.user), timeout=args.timeout)
    txs = await stub.ListTransactions(
        pb.ListTransactionsRequest(user_id=args.user, limit=args.limit), timeout=args.timeout
    )
    result = _balance(balance)
    result["transactions"] = [
        {
            "id": t.id,
            "at": when(t.created_unix_ms, seconds=True),
            "kind": t.kind,
            "amount": to_credits(t.amount_micro),
            "overdraft": to_credits(t.overdraft_micro),
            "request_id": t.request_id,
            "reason": t.reason,
        }
        for t in txs.transactions
    ]
    print_json(result)
    return 0


USAGE_COLUMNS = (
    "at",
    "request_id",
    "user_id",
    "model",
    "provider",
    "deployment",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "latency_ms",
    "byok",
    "cache_hit",
    "fallback_count",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "key_id",
    "end_user",
    "tags",
)
PART_COLUMNS = ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _filter(args: argparse.Namespace) -> pb.UsageFilter:
    tags: dict[str, str] = {}
    for given in args.tag or ():
        name, sep, value = given.partition("=")
        if not sep or not name:
            raise SystemExit(f"tollgate: --tag must be NAME=VALUE (got {given!r})")
        tags[name] = value
    return pb.UsageFilter(model=args.model or "", api_key_id=args.key or "", end_user=args.end_user or "", tags=tags)


async def _usage_show(stub: credits_pb2_grpc.CreditsAsyncStub, args: argparse.Namespace) -> int:
    reply = await stub.ListUsage(
        pb.ListUsageRequest(
            user_id=args.user or "",
            since_unix_ms=_unix_ms(args.since) if args.since else 0,
            until_unix_ms=_unix_ms(args.until) if args.until else 0,
            limit=args.limit,
            filter=_filter(args),
        ),
        timeout=args.timeout,
    )
    rows = [
        {
            "at": when(r.created_unix_ms, seconds=True),
            "request_id": r.usage.request_id,
            "user_id": r.usage.user_id,
            "model": r.usage.model,
            "provider": r.usage.provider,
            "deployment": r.usage.deployment,
            "status": r.usage.status,
            "prompt_tokens": r.usage.prompt_tokens,
            "completion_tokens": r.usage.completion_tokens,
            **{name: getattr(r.usage, name) for name in PART_COLUMNS},
            "cost": to_credits(r.usage.cost_micro),
            "latency_ms": round(r.usage.latency_ms, 1),
            "byok": r.usage.byok,
            "cache_hit": r.usage.cache_hit,
            "fallback_count": r.usage.fallback_count,
            "key_id": r.usage.api_key_id,
            "end_user": r.usage.end_user,
            "tags": ",".join(f"{k}={v}" for k, v in sorted(r.usage.tags.items())) if args.csv else dict(r.usage.tags),
        }
        for r in reply.rows
    ]
    _emit(rows, USAGE_COLUMNS, args.csv)
    return 0


async def _usage_summary(stub: credits_pb2_grpc.CreditsAsyncStub, args: argparse.Namespace) -> int:
    reply = await stub.UsageSummary(
        pb.UsageSummaryRequest(
            user_id=args.user or "",
            group_by=args.by,
            since_unix_ms=_unix_ms(args.since) if args.since else 0,
            until_unix_ms=_unix_ms(args.until) if args.until else 0,
            filter=_filter(args),
        ),
        timeout=args.timeout,
    )
    rows = [
        {
            args.by: g.key,
            "requests": g.requests,
            "prompt_tokens": g.prompt_tokens,
            "completion_tokens": g.completion_tokens,
            **{name: getattr(g, name) for name in PART_COLUMNS},
            "cost": to_credits(g.cost_micro),
        }
        for g in reply.groups
    ]
    columns = (args.by, "requests", "prompt_tokens", "completion_tokens", "cost", *PART_COLUMNS)
    _emit(rows, columns, args.csv)
    return 0


def _emit(rows: list[dict[str, Any]], columns: tuple[str, ...], as_csv: bool) -> None:
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print_json(rows)


def _reconcile(args: argparse.Namespace) -> int:
    from services.credits.reconcile import reconcile
    from services.runtime.db import create_engine

    url = args.database_url or load(CreditsSettings).database_url()

    async def go() -> bool:
        engine = create_engine(url, pool_size=1)
        try:
            report = await reconcile(engine)
        finally:
            await engine.dispose()
        print("\n".join(report.lines()))
        return report.ok

    try:
        ok = asyncio.run(go())
    except Exception as exc:
        print(f"tollgate: cannot read the credits database: {type(exc).__name__}", file=sys.stderr)
        return 2
    return 0 if ok else 1


def _window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="one user's usage (default: every user)")
    parser.add_argument("--since", help="from this UTC date or time (ISO 8601)")
    parser.add_argument("--until", help="before this UTC date or time (ISO 8601)")
    parser.add_argument("--csv", action="store_true", help="CSV instead of JSON")
    parser.add_argument("--model", help="only this model")
    parser.add_argument("--key", help="only this API key id")
    parser.add_argument("--end-user", help="only this end user (the body's OpenAI `user`)")
    parser.add_argument("--tag", action="append", metavar="NAME=VALUE", help="only rows with this tag (repeatable)")
    add_connection(parser, "credits")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("credits", help="balances, grants and ledger reconciliation")
    commands = group.add_subparsers(dest="command", required=True, metavar="COMMAND")

    grant = commands.add_parser("grant", help="add credits to a user's account or a team's pool (a journal row)")
    grant.add_argument("user", nargs="?", help="the user (omit with --team)")
    grant.add_argument("amount", help="credits, e.g. 25 or 0.5 (1 credit = 1 USD of provider list price)")
    grant.add_argument("--team", help="grant to this team's shared pool (account team:<TEAM>) instead of a user")
    grant.add_argument("--kind", default="top-up", choices=("top-up", "grant", "refund", "adjustment"))
    grant.add_argument("--reason", default="")
    grant.add_argument("--key", help="idempotency key: the same key never grants twice (default: a new one)")
    add_connection(grant, "credits")
    grant.set_defaults(func=runner("credits", credits_pb2_grpc.CreditsStub, _grant))

    show = commands.add_parser("show", help="a user's balance and latest transactions")
    show.add_argument("user")
    show.add_argument("--limit", type=int, default=20)
    add_connection(show, "credits")
    show.set_defaults(func=runner("credits", credits_pb2_grpc.CreditsStub, _show))

    check = commands.add_parser("reconcile", help="check the ledger; exit 1 on any mismatch")
    check.add_argument("--database-url", help="credits database (default: TOLLGATE_CREDITS_DATABASE_URL)")
    check.set_defaults(func=_reconcile)

    usage = sub.add_parser("usage", help="per-request usage log and summaries")
    usage_commands = usage.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = usage_commands.add_parser("show", help="usage rows, newest first")
    listing.add_argument("--limit", type=int, default=100)
    _window(listing)
    listing.set_defaults(func=runner("credits", credits_pb2_grpc.CreditsStub, _usage_show))
    summary = usage_commands.add_parser("summary", help="requests, tokens and cost grouped")
    summary.add_argument(
        "--by", default="day", help="day, model, provider, user, key, end_user or tag:NAME (default: day)"
    )
    _window(summary)
    summary.set_defaults(func=runner("credits", credits_pb2_grpc.CreditsStub, _usage_summary))
