"""`tollgate catalog check FILE`: validate a catalog exactly as the router does at start-up;
`tollgate catalog reload`: have the running router reload its catalog file (refused, naming the entry, when bad).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from services.cli.common import actor, add_connection, print_json, runner
from services.router.catalog import CatalogError, load
from tollgate.router.v1 import router_pb2, router_pb2_grpc


def register(sub: Any) -> None:
    """Add the `catalog` command group to the CLI's subparsers."""
    catalog = sub.add_parser("catalog", help="work with model catalogs")
    actions = catalog.add_subparsers(dest="catalog_command", required=True)
    check = actions.add_parser("check", help="validate a catalog file; exit 1 naming the offending entry")
    check.add_argument("file", help="path to the catalog YAML")
    check.set_defaults(func=check_file)
    reload = actions.add_parser(
        "reload", help="have the running router reload its catalog file; a bad one is refused and the old one kept"
    )
    reload.add_argument("--json", action="store_true", help="print JSON")
    add_connection(reload, "router")
    reload.set_defaults(func=runner("router", router_pb2_grpc.RouterStub, reload_catalog))


async def reload_catalog(stub: Any, args: argparse.Namespace) -> int:
    reply = await stub.ReloadCatalog(router_pb2.ReloadCatalogRequest(actor=actor()), timeout=args.timeout)
    if args.json:
        print_json(
            {"models": reply.models, "providers": reply.providers, "sha256": reply.digest, "changed": reply.changed}
        )
        return 0
    print(
        f"catalog reloaded: {reply.models} models, {reply.providers} providers, sha256 {reply.digest[:12]}"
        + ("" if reply.changed else " (unchanged)")
    )
    return 0


def check_file(args: argparse.Namespace) -> int:
    try:
        catalog = load(args.file)
    except CatalogError as exc:
        print(f"{args.file}: invalid: {exc}", file=sys.stderr)
        return 1
    enabled = [m for m in catalog.models.values() if m.enabled]
    tiers = Counter(m.tier for m in catalog.models.values())
    print(
        f"{args.file}: ok: {len(catalog.models)} models ({len(enabled)} enabled), "
        f"{len(catalog.providers)} providers, {len(tiers)} tiers ("
        + ", ".join(f"{tier} {count}" for tier, count in sorted(tiers.items()))
        + f"), default power level {catalog.default_power_level}"
    )
    return 0
