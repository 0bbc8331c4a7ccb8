"""Secrets that must survive restarts: read from settings, or in embedded mode created once on disk.

A generated secret is written with 0600 permissions into the data folder and reused on every later
start; tollgate never falls back to an ephemeral secret, which would make stored data unreadable.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from pathlib import Path

from services.runtime.logging import register_secret
from services.runtime.settings import CommonSettings, fail

_CREDENTIAL = re.compile(r"[\x21-\x7e]+")


def is_credential(value: str) -> bool:
    """A key fit for a header: printable ASCII, no spaces, nothing that could end or smuggle a header."""
    return _CREDENTIAL.fullmatch(value) is not None


log = logging.getLogger("tollgate.secrets")


def persistent_secret(settings: CommonSettings, value: str, setting: str, filename: str, nbytes: int = 32) -> str:
    """`value` when set; otherwise (embedded only) the secret stored in `data_dir/filename`."""
    if value:
        register_secret(value)
        return value
    if settings.production:
        fail(
            setting,
            f"required in production; generate one with: python -c 'import secrets; "
            f"print(secrets.token_urlsafe({nbytes}))'",
        )
    stored, created = stored_secret(Path(settings.data_dir) / filename, nbytes)
    if created:
        log.warning(
            "generated %s into %s (embedded mode); set TOLLGATE_%s in production",
            setting.lower(),
            Path(settings.data_dir) / filename,
            setting,
        )
    register_secret(stored)
    return stored


def stored_secret(path: Path, nbytes: int = 32) -> tuple[str, bool]:
    """The secret kept in `path` (0600, its folder 0700 when new), made now if absent; and whether it was."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_when_written(path), False
    stored = secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w") as fh:
        fh.write(stored + "\n")
    return stored, True


def _read_when_written(path: Path) -> str:
    # Another process may have created the file a moment ago and not yet written it.
    for _ in range(100):
        stored = path.read_text().strip()
        if stored:
            return stored
        time.sleep(0.02)
    raise SystemExit(f"tollgate: {path} is empty; delete it to generate a new secret")
