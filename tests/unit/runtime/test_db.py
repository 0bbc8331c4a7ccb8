"""SQLite files of the embedded mode are their owner's alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from services.runtime.db import create_engine, ping


async def test_sqlite_files_are_created_0600_in_a_0700_folder(tmp_path: Path) -> None:
    path = tmp_path / "data" / "credits.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert await ping(engine)
    finally:
        await engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for extra in (path.with_name("credits.db-wal"), path.with_name("credits.db-shm")):
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600


async def test_an_existing_readable_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "keyvault.db"
    path.touch()
    os.chmod(path, 0o644)
    engine = create_engine(f"sqlite:///{path}")
    await engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
