"""`tollgate vault`: rotate the master key of the BYOK store, show rows per key version, retire a version.

`rotate` rewraps in batches and draws a progress bar; Ctrl-C stops it between rows and running it
again resumes (what is left is simply the rows still under an older version).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from services.cli.common import actor, add_connection, print_json, runner, when
from tollgate.keyvault.v1 import keyvault_pb2 as pb
from tollgate.keyvault.v1 import keyvault_pb2_grpc

Progress = Callable[[int, int], None]


def progress_bar(out: TextIO, width: int = 30) -> Progress:
    def draw(done: int, total: int) -> None:
        filled = width if total == 0 else min(width, width * done // total)
        out.write(f"\rrewrapping [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        out.flush()

    return draw


async def rotate_all(
    stub: keyvault_pb2_grpc.KeyVaultAsyncStub, batch: int, progress: Progress, timeout: float = 30.0
) -> pb.RotateMasterKeyReply:
    """Call `RotateMasterKey` until a full pass finds nothing left to move; returns the last reply."""
    status = await stub.VaultStatus(pb.VaultStatusRequest(), timeout=timeout)
    todo = sum(v.rows for v in status.versions if not v.active)
    done = 0
    cursor = 0
    progress(0, todo)
    while True:
        reply: pb.RotateMasterKeyReply = await stub.RotateMasterKey(
            pb.RotateMasterKeyRequest(limit=batch, actor=actor(), after_id=cursor), timeout=timeout
        )
        done += reply.rewrapped
        todo = max(todo, done + int(reply.remaining) - reply.failed)
        progress(done, todo)
        cursor = reply.cursor
        if cursor == 0 and (reply.remaining == 0 or reply.rewrapped == 0):
            return reply


async def rotate(stub: keyvault_pb2_grpc.KeyVaultAsyncStub, args: argparse.Namespace) -> int:
    reply = await rotate_all(stub, args.batch, progress_bar(sys.stderr), args.timeout)
    print(file=sys.stderr)
    if reply.remaining:
        print(
            f"{reply.remaining} provider keys are still under older versions "
            f"({reply.failed} could not be decrypted in the last pass); see `tollgate vault status`"
        )
        return 1
    print(f"every provider key is under v{reply.active_version} ({reply.total} keys)")
    return 0


async def status(stub: keyvault_pb2_grpc.KeyVaultAsyncStub, args: argparse.Namespace) -> int:
    reply = await stub.VaultStatus(pb.VaultStatusRequest(), timeout=args.timeout)
    rows = [
        {
            "version": v.version,
            "rows": v.rows,
            "active": v.active,
            "configured": v.configured,
            "retired": when(v.retired_unix_ms),
        }
        for v in reply.versions
    ]
    if args.json:
        print_json({"active_version": reply.active_version, "total": reply.total, "versions": rows})
        return 0
    print(f"active master key: v{reply.active_version}; {reply.total} provider keys")
    print("version  rows      active  configured  retired")
    for r in rows:
        print(
            f"v{r['version']:<7} {r['rows']:<9} {'yes' if r['active'] else '-':<7} "
            f"{'yes' if r['configured'] else 'no':<11} {r['retired']}"
        )
    return 0


async def retire(stub: keyvault_pb2_grpc.KeyVaultAsyncStub, args: argparse.Namespace) -> int:
    version = int(str(args.version).lstrip("vV"))
    reply = await stub.RetireMasterKey(pb.RetireMasterKeyRequest(version=version, actor=actor()), timeout=args.timeout)
    print(f"retired v{reply.version}; it can now be removed from TOLLGATE_VAULT_KEYS")
    return 0


def register(sub: Any) -> None:
    """Add `tollgate vault rotate|status|retire` to the CLI's subparsers."""
    vault = sub.add_parser("vault", help="master keys of the BYOK store: rotate, status, retire")
    commands = vault.add_subparsers(dest="vault_command", required=True)

    p = commands.add_parser("rotate", help="rewrap every provider key to the active master key (resumable)")
    p.add_argument("--batch", type=int, default=200, help="rows per call (default 200)")
    add_connection(p, "keyvault")
    p.set_defaults(
        func=runner(
            "keyvault",
            keyvault_pb2_grpc.KeyVaultStub,
            rotate,
            "interrupted; run `tollgate vault rotate` again to resume",
        )
    )

    p = commands.add_parser("status", help="provider keys per master-key version")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_connection(p, "keyvault")
    p.set_defaults(func=runner("keyvault", keyvault_pb2_grpc.KeyVaultStub, status))

    p = commands.add_parser("retire", help="retire a master-key version no row uses any more")
    p.add_argument("version", help="e.g. 1 or v1")
    add_connection(p, "keyvault")
    p.set_defaults(func=runner("keyvault", keyvault_pb2_grpc.KeyVaultStub, retire))
