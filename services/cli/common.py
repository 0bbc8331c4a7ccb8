"""What every command group shares: a gRPC runner with one-line errors, connection options, output.

Every call is signed as the operator (`TOLLGATE_OPERATOR_IDENTITY_KEY`; embedded mode reads the key the
launcher keeps in the data folder), which the services accept for admin operations.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import orjson

from services.runtime import identity
from services.runtime.errors import from_rpc_error
from services.runtime.identity import SignedChannel
from services.runtime.settings import CommonSettings, load


class OperatorSettings(CommonSettings):
    operator_identity_key: str = ""
    """The operator's identity secret (the `tollgate` CLI) towards the services: admin operations (grants, keys,
    vault, probes). Embedded mode reads `data/identity/operator.key`."""


def operator_channel(address: str) -> SignedChannel:
    """A channel to `address` whose calls are signed as the operator."""
    settings = load(OperatorSettings)
    signer = identity.signer_for(settings, identity.OPERATOR, settings.operator_identity_key, create=False)
    return SignedChannel(grpc.aio.insecure_channel(address), signer)


def actor() -> str:
    """Who runs the command, for the audit trail."""
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def when(unix_ms: int, seconds: bool = False) -> str:
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime(fmt) if unix_ms else "-"


def print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    for line in (columns, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def add_connection(parser: argparse.ArgumentParser, service: str, timeout: float = 10.0) -> None:
    """`--<service>-addr` (default `TOLLGATE_<SERVICE>_ADDR`) and `--timeout`."""
    parser.add_argument(f"--{service}-addr", help=f"{service} address (default: TOLLGATE_{service.upper()}_ADDR)")
    parser.add_argument("--timeout", type=float, default=timeout, help=f"seconds per call (default {timeout:g})")


def runner(
    service: str,
    stub: Callable[[grpc.aio.Channel], Any],
    command: Callable[[Any, argparse.Namespace], Awaitable[int]],
    interrupted: str = "interrupted",
) -> Callable[[argparse.Namespace], int]:
    """A CLI handler: open a channel to `service`, run `command`, turn a failed call into one line."""

    def run(args: argparse.Namespace) -> int:
        address = getattr(args, f"{service}_addr", None) or getattr(load(CommonSettings), f"{service}_addr")

        async def go() -> int:
            async with operator_channel(address) as chan:
                try:
                    return await command(stub(chan), args)
                except grpc.aio.AioRpcError as exc:
                    print(f"tollgate: {from_rpc_error(exc, service).message}", file=sys.stderr)
                    return 1

        try:
            return asyncio.run(go())
        except KeyboardInterrupt:
            print(f"\n{interrupted}", file=sys.stderr)
            return 130

    return run
