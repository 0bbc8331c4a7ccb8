"""Prometheus's own checker, `promtool` (Debian's `prometheus` package; `make promtool` installs it)."""

from __future__ import annotations

import shutil

import pytest


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: run `make promtool` (apt-get install prometheus)")
    return found
