"""`tollgate <group> <command>`: users' keys, credits, usage, the vault, the catalog and provider health.

Every command talks gRPC to the services, the same path internal callers use. Command groups are the
modules of this package that define `register(subparsers)`; each command stores its handler as `func`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from services import cli


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tollgate", description=__doc__.split("\n\n")[0] if __doc__ else None)
    groups = root.add_subparsers(dest="group", required=True, metavar="GROUP")
    for module in sorted(m.name for m in pkgutil.iter_modules(cli.__path__) if not m.name.startswith("_")):
        found = importlib.import_module(f"{cli.__name__}.{module}")
        if hasattr(found, "register"):
            found.register(groups)
    return root


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
