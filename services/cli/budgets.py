"""`tollgate budgets` (set, list, delete): spending limits per period on a key, a user or a team.

The commands talk gRPC to the credits service (`--credits-addr` or `TOLLGATE_CREDITS_ADDR`) as the
operator. Amounts are in credits; a budget resets at midnight of its time zone (weeks on Monday).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from services.cli.common import actor, add_connection, print_json, runner, when
from services.credits.settings import to_credits, to_micro
from tollgate.credits.v1 import credits_pb2 as pb
from tollgate.credits.v1 import credits_pb2_grpc


def budget_view(b: pb.Budget) -> dict[str, Any]:
    return {
        "id": b.budget_id,
        "scope": b.scope,
        "scope_id": b.scope_id,
        "period": b.period,
        "timezone": b.timezone,
        "limit": to_credits(b.limit_micro),
        "soft_limit": to_credits(b.soft_limit_micro),
        "alert_percents": list(b.alert_percents),
        "spent": to_credits(b.spent_micro),
        "reserved": to_credits(b.reserved_micro),
        "period_start": when(b.period_start_unix_ms),
        "resets_at": when(b.resets_unix_ms),
        "actor": b.actor,
    }


def _micro(value: str | None, flag: str) -> int | None:
    try:
        return 0 if value is None else to_micro(value)
    except (ArithmeticError, ValueError) as exc:
        print(f"tollgate: {flag} must be a number of credits: {exc}", file=sys.stderr)
        return None


async def _set(stub: credits_pb2_grpc.CreditsAsyncStub, args: argparse.Namespace) -> int:
    limit, soft = _micro(args.limit, "--limit"), _micro(args.soft_limit, "--soft-limit")
    if limit is None or soft is None:
        return 2
    reply = await stub.SetBudget(
        pb.Budget(
            scope=args.scope,
            scope_id=args.scope_id,
            period=args.period,
            timezone=args.timezone,
            limit_micro=limit,
            soft_limit_micro=soft,
            alert_percents=args.alert or [],
            actor=actor(),
        ),
        timeout=args.timeout,
    )
    print_json(budget_view(reply))
    return 0


async def _list(stub: credits_pb2_grpc.CreditsAsyncStub, args: argparse.Namespace) -> int:
    reply = await stub.ListBudgets(
        pb.ListBudgetsRequest(scope=args.scope or "", scope_id=args.scope_id or ""), timeout=args.timeout
    )
    print_json([budget_view(b) for b in reply.budgets])
    return 0


async def _delete(stub: credits_pb2_grpc.CreditsAsyncStub, args: argparse.Namespace) -> int:
    reply = await stub.DeleteBudget(
        pb.DeleteBudgetRequest(budget_id=args.budget_id, actor=actor()), timeout=args.timeout
    )
    if not reply.deleted:
        print(f"tollgate: no budget {args.budget_id}", file=sys.stderr)
        return 1
    print(f"deleted budget {args.budget_id}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("budgets", help="spending limits per period on keys, users and teams")
    commands = group.add_subparsers(dest="command", required=True, metavar="COMMAND")

    setting = commands.add_parser("set", help="create or replace the budget of a scope and period")
    setting.add_argument("scope", choices=("key", "user", "team"))
    setting.add_argument("scope_id", help="the key id, user id or team id")
    setting.add_argument("--period", required=True, choices=("daily", "weekly", "monthly"))
    setting.add_argument("--timezone", required=True, help="IANA time zone whose midnight resets it, e.g. UTC")
    setting.add_argument("--limit", help="hard limit in credits: a request that could pass it is refused (402)")
    setting.add_argument("--soft-limit", help="alert base in credits when there is no hard limit; never refuses")
    setting.add_argument(
        "--alert", type=int, action="append", metavar="PERCENT", help="alert threshold (repeatable; default 50 80 100)"
    )
    add_connection(setting, "credits")
    setting.set_defaults(func=runner("credits", credits_pb2_grpc.CreditsStub, _set))

    listing = commands.add_parser("list", help="budgets with their current period's spent and reserved")
    listing.add_argument("--scope", choices=("key", "user", "team"))
    listing.add_argument("--scope-id")
    add_connection(listing, "credits")
    listing.set_defaults(func=runner("credits", credits_pb2_grpc.CreditsStub, _list))

    deleting = commands.add_parser("delete", help="delete a budget")
    deleting.add_argument("budget_id")
    add_connection(deleting, "credits")
    deleting.set_defaults(func=runner("credits", credits_pb2_grpc.CreditsStub, _delete))
