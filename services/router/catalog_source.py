"""The catalog file a router serves, and reloading it without a restart (SIGHUP or the `ReloadCatalog` RPC).

A reload reads and validates the whole file first: a bad catalog is refused naming the offending entry and
the one in force stays. A good one replaces it for the requests that begin after it; requests under way
finish on the catalog they started with (`Router.reload`). Every reload, taken or refused, is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from services.router.catalog import Catalog, CatalogError, parse
from services.router.pipeline import Router
from services.runtime.errors import DomainError
from services.runtime.logging import register_secret

log = logging.getLogger("tollgate.router.catalog")


@dataclass(frozen=True, slots=True)
class Reloaded:
    models: int
    providers: int
    digest: str  # sha256 of the file now in force
    changed: bool


def read(path: Path) -> tuple[Catalog, str]:
    """The validated catalog at `path` and the sha256 of its text; CatalogError naming the offending entry."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise CatalogError(f"catalog {path} is not UTF-8 text") from None
    return parse(text), hashlib.sha256(raw).hexdigest()


def protect_keys(catalog: Catalog) -> None:
    """Platform keys are masked in every log line by value."""
    for provider in catalog.providers.values():
        register_secret(os.environ.get(provider.api_key_env or "", ""))


class CatalogSource:
    def __init__(self, path: Path, router: Router, digest: str) -> None:
        self.path = path
        self.router = router
        self.digest = digest

    def reload(self, actor: str) -> Reloaded:
        """Validate the file and put it in force, or refuse it (`invalid_request`) keeping the old one."""
        try:
            catalog, digest = read(self.path)
            level = self.router.settings.default_power_level
            if level not in catalog.policies:
                raise CatalogError(f"default power level {level!r} is not one of {', '.join(catalog.policies)}")
        except CatalogError as exc:
            log.warning("catalog reload by %s refused, the catalog in force is kept: %s: %s", actor, self.path, exc)
            raise DomainError(
                "invalid_request", f"catalog refused, the one in force is kept: {exc}", "catalog"
            ) from None
        changed = digest != self.digest
        protect_keys(catalog)
        self.router.reload(catalog)
        self.digest = digest
        log.info(
            "catalog reloaded by %s: %s: %d models, %d providers, sha256 %s (%s)",
            actor,
            self.path,
            len(catalog.models),
            len(catalog.providers),
            digest[:12],
            "changed" if changed else "unchanged",
        )
        return Reloaded(len(catalog.models), len(catalog.providers), digest, changed)

    async def on_sighup(self) -> None:
        """Reload on every SIGHUP while the router runs."""
        hangups = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, hangups.set)
        try:
            while True:
                await hangups.wait()
                hangups.clear()
                with contextlib.suppress(DomainError):  # logged; the catalog in force stays
                    self.reload("SIGHUP")
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
