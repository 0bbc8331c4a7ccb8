"""`tollgate catalog check FILE`: validate a catalog exactly as the router does at start-up."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from services.router.catalog import CatalogError, load


def register(sub: Any) -> None:
    """Add the `catalog` command group to the CLI's subparsers."""
    catalog = sub.add_parser("catalog", help="work with model catalogs")
    actions = catalog.add_subparsers(dest="catalog_command", required=True)
    check = actions.add_parser("check", help="validate a catalog file; exit 1 naming the offending entry")
    check.add_argument("file", help="path to the catalog YAML")
    check.set_defaults(func=check_file)


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
