"""`tollgate health`: show provider state, run probes now, and hold providers down or up for maintenance,
talking gRPC to the health service.

`register(sub)` adds the command group to the CLI's subparsers; each command's handler is stored as
`func` (`args -> exit status`). The health address is `--health-addr` or `TOLLGATE_HEALTH_ADDR`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TypeAlias

from services.cli.common import actor, add_connection, print_json, print_table, runner, when
from services.runtime.provider_state import change, endpoint
from tollgate.health.v1 import health_pb2 as pb
from tollgate.health.v1 import health_pb2_grpc

Stub: TypeAlias = "health_pb2_grpc.ProviderHealthAsyncStub"

_COLUMNS = ("provider", "state", "latency", "p50/p90/p99 ms", "checked", "fails", "ejected until", "last error")


def print_states(states: Sequence[pb.ProviderState], as_json: bool) -> None:
    rows = [endpoint(s) for s in states]
    if as_json:
        print_json(rows)
        return
    table = [
        (
            f"{r['provider']} ({r['base_url']})",
            r["state"] + (f" (held {r['maintenance']['state']})" if r["maintenance"] else ""),
            f"{r['latency_ms']:.0f} ms" if r["last_checked_unix_ms"] else "-",
            f"{r['p50_ms']:.0f}/{r['p90_ms']:.0f}/{r['p99_ms']:.0f}",
            when(r["last_checked_unix_ms"], seconds=True),
            str(r["consecutive_failures"]),
            when(r["ejected_until_unix_ms"], seconds=True) if r["ejected"] else "-",
            r["last_error"] or "-",
        )
        for r in rows
    ]
    print_table(_COLUMNS, table)


async def show(stub: Stub, args: argparse.Namespace) -> int:
    reply = await stub.ListProviders(pb.ListProvidersRequest(), timeout=args.timeout)
    print_states(reply.providers, args.json)
    return 0


async def check_now(stub: Stub, args: argparse.Namespace) -> int:
    reply = await stub.CheckNow(pb.CheckNowRequest(providers=args.providers), timeout=args.timeout)
    print_states(reply.providers, args.json)
    return 0 if all(s.state != pb.STATE_DOWN for s in reply.providers) else 2


async def maintenance(stub: Stub, args: argparse.Namespace) -> int:
    message = pb.SetMaintenanceRequest(provider=args.provider, state=args.state, reason=args.reason, actor=actor())
    reply = await stub.SetMaintenance(message, timeout=args.timeout)
    print_states(reply.providers, args.json)
    return 0


async def maintenance_log(stub: Stub, args: argparse.Namespace) -> int:
    message = pb.ListMaintenanceRequest(provider=args.provider or "", limit=args.limit)
    reply = await stub.ListMaintenance(message, timeout=args.timeout)
    rows = [change(r) for r in reply.records]
    if args.json:
        print_json(rows)
        return 0
    table = [(when(r["at_unix_ms"], seconds=True), r["provider"], r["state"], r["actor"], r["reason"]) for r in rows]
    print_table(("when", "provider", "state", "by", "reason"), table)
    return 0


def register(sub: Any) -> None:
    """Add `tollgate health show|check-now|maintenance|maintenance-log` to the CLI's subparsers."""
    health = sub.add_parser("health", help="provider health: show state, probe now, maintenance")
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

    p = commands.add_parser("maintenance", help="hold a provider down or up, or hand it back to probes (auto)")
    p.add_argument("provider", metavar="PROVIDER", help="catalog provider id")
    p.add_argument("state", choices=("down", "up", "auto"))
    p.add_argument("--reason", default="", help="why (required for down and up); kept in the audit trail")
    options(p)
    p.set_defaults(func=runner("health", health_pb2_grpc.ProviderHealthStub, maintenance))

    p = commands.add_parser("maintenance-log", help="who held which provider down or up, when and why")
    p.add_argument("provider", nargs="?", metavar="PROVIDER", help="only this provider")
    p.add_argument("--limit", type=int, default=100)
    options(p)
    p.set_defaults(func=runner("health", health_pb2_grpc.ProviderHealthStub, maintenance_log))
