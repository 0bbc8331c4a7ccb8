"""`tollgate health`: show provider state and run probes now, talking gRPC to the health service.

`register(sub)` adds the command group to the CLI's subparsers; each command's handler is stored as
`func` (`args -> exit status`). The health address is `--health-addr` or `TOLLGATE_HEALTH_ADDR`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TypeAlias

import orjson

from services.cli.common import add_connection, runner, when
from tollgate.health.v1 import health_pb2 as pb
from tollgate.health.v1 import health_pb2_grpc

Stub: TypeAlias = "health_pb2_grpc.ProviderHealthAsyncStub"

_COLUMNS = ("provider", "state", "latency", "p50/p90/p99 ms", "checked", "fails", "ejected until", "last error")


def state_row(state: pb.ProviderState) -> dict[str, Any]:
    return {
        "provider": state.provider,
        "base_url": state.base_url,
        "state": pb.State.Name(state.state).removeprefix("STATE_").lower(),
        "latency_ms": round(state.latency_ms, 1),
        "p50_ms": round(state.p50_ms, 1),
        "p90_ms": round(state.p90_ms, 1),
        "p99_ms": round(state.p99_ms, 1),
        "last_checked_unix_ms": state.last_checked_unix_ms,
        "consecutive_failures": state.consecutive_failures,
        "ejected": state.ejected,
        "ejected_until_unix_ms": state.ejected_until_unix_ms,
        "ejections": state.ejections,
        "last_failure_unix_ms": state.last_failure_unix_ms,
        "last_error": state.last_error,
    }


def print_states(states: Sequence[pb.ProviderState], as_json: bool) -> None:
    rows = [state_row(s) for s in states]
    if as_json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    table = [
        (
            f"{r['provider']} ({r['base_url']})",
            r["state"],
            f"{r['latency_ms']:.0f} ms" if r["last_checked_unix_ms"] else "-",
            f"{r['p50_ms']:.0f}/{r['p90_ms']:.0f}/{r['p99_ms']:.0f}",
            when(r["last_checked_unix_ms"], seconds=True),
            str(r["consecutive_failures"]),
            when(r["ejected_until_unix_ms"], seconds=True) if r["ejected"] else "-",
            r["last_error"] or "-",
        )
        for r in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(_COLUMNS)]
    for line in (_COLUMNS, *table):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


async def show(stub: Stub, args: argparse.Namespace) -> int:
    reply = await stub.ListProviders(pb.ListProvidersRequest(), timeout=args.timeout)
    print_states(reply.providers, args.json)
    return 0


async def check_now(stub: Stub, args: argparse.Namespace) -> int:
    reply = await stub.CheckNow(pb.CheckNowRequest(providers=args.providers), timeout=args.timeout)
    print_states(reply.providers, args.json)
    return 0 if all(s.state != pb.STATE_DOWN for s in reply.providers) else 2


def register(sub: Any) -> None:
    """Add `tollgate health show|check-now` to the CLI's subparsers."""
    health = sub.add_parser("health", help="provider health: show state, probe now")
    commands = health.add_subparsers(dest="health_command", required=True)

    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON")
        add_connection(parser, "health", timeout=30.0)

    p = commands.add_parser("show", help="state, latency percentiles and ejections per provider")
    options(p)
    p.set_defaults(func=runner("health", health_pb2_grpc.ProviderHealthStub, show))

    p = commands.add_parser("check-now", help="probe providers now (all when none named); exit 2 if any is down")
    p.add_argument("providers", nargs="*", metavar="PROVIDER", help="catalog provider ids")
    options(p)
    p.set_defaults(func=runner("health", health_pb2_grpc.ProviderHealthStub, check_now))
