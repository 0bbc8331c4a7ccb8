"""`tollgate keys`: create, list, update (access policy) and revoke gateway API keys, talking gRPC to keyvault.

`register(sub)` adds the command group to the CLI's subparsers; each command's handler is stored as
`func` (`args -> exit status`). The keyvault address is `--keyvault-addr` or `TOLLGATE_KEYVAULT_ADDR`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from services.cli.common import actor, add_connection, print_json, runner, when
from tollgate.keyvault.v1 import keyvault_pb2 as pb
from tollgate.keyvault.v1 import keyvault_pb2_grpc


def key_row(info: pb.ApiKeyInfo) -> dict[str, Any]:
    return {
        "key_id": info.key_id,
        "user_id": info.user_id,
        "name": info.name,
        "prefix": info.prefix,
        "scopes": list(info.scopes),
        "created": when(info.created_unix_ms),
        "expires": when(info.expires_unix_ms),
        "revoked": when(info.revoked_unix_ms),
        "last_used": when(info.last_used_unix_ms),
        "rpm_limit": info.rpm_limit,
        "tpm_limit": info.tpm_limit,
        "team_id": info.team_id,
        **policy_row(info.policy),
    }


def policy_row(policy: pb.AccessPolicy) -> dict[str, Any]:
    return {
        "models": list(policy.models),
        "max_parallel": policy.max_parallel,
        "model_limits": {m: {"rpm": lim.rpm, "tpm": lim.tpm} for m, lim in policy.model_limits.items()},
    }


def model_limit(text: str) -> tuple[str, int, int]:
    """`MODEL=RPM:TPM` (either number may be empty or 0: no limit)."""
    model, sep, numbers = text.partition("=")
    rpm, _, tpm = numbers.partition(":")
    if not sep or not model or not all(n.isdigit() for n in (rpm or "0", tpm or "0")):
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=RPM:TPM")
    return model, int(rpm or 0), int(tpm or 0)


def policy_of(args: argparse.Namespace, base: pb.AccessPolicy | None = None) -> pb.AccessPolicy:
    """`--models`, `--max-parallel` and `--model-limit` over `base` (the fields given replace its own)."""
    policy = pb.AccessPolicy()
    if base is not None:
        policy.CopyFrom(base)
    if args.models is not None:
        del policy.models[:]
        policy.models.extend(m.strip() for m in args.models.split(",") if m.strip())
    if args.max_parallel is not None:
        policy.max_parallel = args.max_parallel
    if args.model_limit is not None:
        policy.model_limits.clear()
        for model, rpm, tpm in args.model_limit:
            policy.model_limits[model].CopyFrom(pb.ModelLimit(rpm=rpm, tpm=tpm))
    return policy


def add_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="comma-separated model ids, aliases or tier:NAME it may use ('': every model)")
    p.add_argument("--max-parallel", type=int, help="requests of one key in flight at once (0: no cap)")
    p.add_argument(
        "--model-limit",
        action="append",
        type=model_limit,
        metavar="MODEL=RPM:TPM",
        help="this key's own RPM/TPM for one model; repeat for several",
    )


async def create(stub: keyvault_pb2_grpc.KeyVaultAsyncStub, args: argparse.Namespace) -> int:
    expires = int((time.time() + args.expires_days * 86400) * 1000) if args.expires_days else 0
    reply = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(
            user_id=args.user,
            scopes=args.scope or ["user"],
            name=args.name,
            expires_unix_ms=expires,
            rpm_limit=args.rpm,
            tpm_limit=args.tpm,
            actor=actor(),
            policy=policy_of(args),
            team_id=args.team or "",
        ),
        timeout=args.timeout,
    )
    if args.json:
        print_json({"api_key": reply.api_key, **key_row(reply.info)})
    else:
        print(f"created {reply.info.key_id} for {reply.info.user_id} (scopes: {', '.join(reply.info.scopes)})")
        print("the key is shown only now; store it safely:")
        print(reply.api_key)
    return 0


async def list_keys(stub: keyvault_pb2_grpc.KeyVaultAsyncStub, args: argparse.Namespace) -> int:
    reply = await stub.ListApiKeys(pb.ListApiKeysRequest(user_id=args.user or ""), timeout=args.timeout)
    rows = [key_row(k) for k in reply.keys]
    if args.json:
        print_json(rows)
        return 0
    columns = ("key_id", "user_id", "prefix", "scopes", "created", "expires", "revoked", "last_used")
    table = [[", ".join(r[c]) if c == "scopes" else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))
    return 0


async def update(stub: keyvault_pb2_grpc.KeyVaultAsyncStub, args: argparse.Namespace) -> int:
    listed = await stub.ListApiKeys(pb.ListApiKeysRequest(), timeout=args.timeout)
    current = next((k for k in listed.keys if k.key_id == args.key_id), None)
    if current is None:
        print(f"no key {args.key_id}")
        return 1
    info = await stub.UpdateApiKey(
        pb.UpdateApiKeyRequest(key_id=args.key_id, policy=policy_of(args, current.policy), actor=actor()),
        timeout=args.timeout,
    )
    print_json(key_row(info))
    return 0


async def revoke(stub: keyvault_pb2_grpc.KeyVaultAsyncStub, args: argparse.Namespace) -> int:
    info = await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=args.key_id, user_id=args.user or "", actor=actor()), timeout=args.timeout
    )
    print(f"revoked {info.key_id} ({info.user_id}) at {when(info.revoked_unix_ms)} UTC")
    return 0


def register(sub: Any) -> None:
    """Add `tollgate keys create|list|update|revoke` to the CLI's subparsers."""
    keys = sub.add_parser("keys", help="gateway API keys: create, list, update, revoke")
    commands = keys.add_subparsers(dest="keys_command", required=True)

    p = commands.add_parser("create", help="create a key for a user (shown once)")
    p.add_argument("--user", required=True, help="the user the key belongs to")
    p.add_argument("--scope", action="append", choices=["user", "admin"], help="repeat for several (default: user)")
    p.add_argument("--name", default="", help="a label for the key")
    p.add_argument("--expires-days", type=float, default=0, help="expire after this many days (default: never)")
    p.add_argument("--rpm", type=int, default=0, help="requests per minute for this key (0: gateway default)")
    p.add_argument("--tpm", type=int, default=0, help="tokens per minute for this key (0: gateway default)")
    p.add_argument("--team", help="refuse unless the user is a member of this team")
    add_policy(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    add_connection(p, "keyvault")
    p.set_defaults(func=runner("keyvault", keyvault_pb2_grpc.KeyVaultStub, create))

    p = commands.add_parser("update", help="change a key's access policy (options left out keep their value)")
    p.add_argument("key_id")
    add_policy(p)
    add_connection(p, "keyvault")
    p.set_defaults(func=runner("keyvault", keyvault_pb2_grpc.KeyVaultStub, update))

    p = commands.add_parser("list", help="list keys (masked)")
    p.add_argument("--user", help="only this user's keys")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_connection(p, "keyvault")
    p.set_defaults(func=runner("keyvault", keyvault_pb2_grpc.KeyVaultStub, list_keys))

    p = commands.add_parser("revoke", help="revoke a key by its id")
    p.add_argument("key_id")
    p.add_argument("--user", help="refuse unless the key belongs to this user")
    add_connection(p, "keyvault")
    p.set_defaults(func=runner("keyvault", keyvault_pb2_grpc.KeyVaultStub, revoke))
