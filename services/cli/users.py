"""`tollgate users`: a user is their API keys (keyvault) and their account (credits); create and list them."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import grpc

from services.cli.common import actor, add_connection, operator_channel, print_json, print_table, runner
from services.credits.settings import to_credits, to_micro
from services.runtime.settings import CommonSettings, load
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc


class Both:
    """Stubs of the two services a user lives in (credits at `TOLLGATE_CREDITS_ADDR`)."""

    def __init__(self, keyvault: grpc.aio.Channel) -> None:
        self.keys = keyvault_pb2_grpc.KeyVaultStub(keyvault)
        self.credits_channel = operator_channel(load(CommonSettings).credits_addr)
        self.credits = credits_pb2_grpc.CreditsStub(self.credits_channel)


async def create(both: Both, args: argparse.Namespace) -> int:
    try:
        key = await both.keys.CreateApiKey(
            keyvault_pb2.CreateApiKeyRequest(
                user_id=args.user,
                scopes=["admin", "user"] if args.admin else ["user"],
                name="created with the user",
                actor=actor(),
            ),
            timeout=args.timeout,
        )
        balance = await both.credits.GetBalance(credits_pb2.GetBalanceRequest(user_id=args.user), timeout=args.timeout)
        if args.grant:
            reply = await both.credits.Grant(
                credits_pb2.GrantRequest(
                    user_id=args.user,
                    amount_micro=to_micro(args.grant),
                    kind="grant",
                    idempotency_key=f"cli:{uuid.uuid4()}",
                    reason="initial grant",
                    actor=actor(),
                ),
                timeout=args.timeout,
            )
            balance = reply.balance
    finally:
        await both.credits_channel.close()
    print(f"user {args.user}: key {key.info.key_id}, balance {to_credits(balance.available_micro)} credits")
    print("the key is shown only now; store it safely:")
    print(key.api_key)
    return 0


async def list_users(both: Both, args: argparse.Namespace) -> int:
    try:
        keys = await both.keys.ListApiKeys(keyvault_pb2.ListApiKeysRequest(), timeout=args.timeout)
        users: dict[str, dict[str, Any]] = {}
        for info in keys.keys:
            entry = users.setdefault(info.user_id, {"user_id": info.user_id, "active_keys": 0, "scopes": set()})
            if not info.revoked_unix_ms:
                entry["active_keys"] += 1
                entry["scopes"] |= set(info.scopes)
        for entry in users.values():
            balance = await both.credits.GetBalance(
                credits_pb2.GetBalanceRequest(user_id=entry["user_id"]), timeout=args.timeout
            )
            entry |= {
                "scopes": sorted(entry["scopes"]),
                "available": to_credits(balance.available_micro),
                "low": balance.low,
            }
    finally:
        await both.credits_channel.close()
    rows = sorted(users.values(), key=lambda e: e["user_id"])
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ("user", "active keys", "scopes", "available credits", "low"),
        [
            (r["user_id"], str(r["active_keys"]), ", ".join(r["scopes"]), str(r["available"]), str(r["low"]))
            for r in rows
        ],
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("users", help="users: their keys and accounts")
    commands = group.add_subparsers(dest="users_command", required=True, metavar="COMMAND")

    p = commands.add_parser("create", help="a user's first API key (shown once) and account, with an optional grant")
    p.add_argument("user")
    p.add_argument("--admin", action="store_true", help="give the key the admin scope")
    p.add_argument("--grant", help="credits to add on top of the default grant")
    add_connection(p, "keyvault")
    p.set_defaults(func=runner("keyvault", Both, create))

    p = commands.add_parser("list", help="every user with keys: active keys, scopes, available credits")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_connection(p, "keyvault")
    p.set_defaults(func=runner("keyvault", Both, list_users))
